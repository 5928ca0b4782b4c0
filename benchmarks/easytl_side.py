"""The same workflows with easytl (defaults unless the workflow says otherwise).

Run through ``benchmarks/run.py``; alone: ``python benchmarks/easytl_side.py WORKFLOW DATA``.
"""

from __future__ import annotations

import json
import resource
import sys
import time

import numpy as np
import torch

from common import load_data, run_workflow
from easytl import FeatureExtractor, Phase, TransferClassifier


def feature_extraction(X_train, y_train, X_test, y_test, classes, epochs):
    from sklearn.linear_model import LogisticRegression
    extractor = FeatureExtractor().fit()
    probe = LogisticRegression(max_iter=1000).fit(extractor.transform(X_train), y_train)
    return float(probe.score(extractor.transform(X_test), y_test))


def default(X_train, y_train, X_test, y_test, classes, epochs):
    """``TransferClassifier()`` as a user gets it: every default adapts to the data."""
    clf = TransferClassifier(random_state=0, verbose=0).fit(X_train, y_train)
    print(json.dumps({"image_size": clf.image_size_, "phases": [p.name for p in clf.phases_],
                      "epochs": len(clf.history_), "best_epoch": clf.best_epoch_}), file=sys.stderr)
    return float(clf.score(X_test, y_test))


def _fit_and_score(schedule, X_train, y_train, X_test, y_test, epochs=None):
    clf = TransferClassifier(schedule=schedule, epochs=epochs, val_size=0, random_state=0,
                             verbose=0).fit(X_train, y_train)
    return float(clf.score(X_test, y_test))


def two_phase(X_train, y_train, X_test, y_test, classes, epochs):
    return _fit_and_score([Phase(epochs, 0), Phase(epochs, "all")], X_train, y_train, X_test, y_test)


def progressive(X_train, y_train, X_test, y_test, classes, epochs):
    """The default schedule at the same total epochs as the notebook's two phases."""
    return _fit_and_score("progressive", X_train, y_train, X_test, y_test, epochs=2 * epochs)


def predict(X_train, y_train, X_test, y_test, classes, epochs):
    clf = TransferClassifier(schedule="feature_extraction", epochs=1, val_size=0, verbose=0,
                             random_state=0).fit(X_train, y_train)
    start = time.perf_counter()
    labels = clf.predict(X_test)
    seconds = time.perf_counter() - start
    assert len(labels) == len(X_test)
    return None, seconds


def throughput(*data, batch=64, n=512):
    """img/s at 224 px: the bare model (bf16 autocast + channels_last) vs FeatureExtractor.transform."""
    extractor = FeatureExtractor(batch_size=batch).fit()
    model = extractor.backbone_.to(memory_format=torch.channels_last)
    x = torch.randn(batch, 3, 224, 224).contiguous(memory_format=torch.channels_last)
    images = np.random.default_rng(0).integers(0, 256, (n, 224, 224, 3), dtype=np.uint8)
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
        model(x)
        start = time.perf_counter()
        for _ in range(n // batch):
            model(x)
        bare = n / (time.perf_counter() - start)
    extractor.transform(images[:batch])
    start = time.perf_counter()
    extractor.transform(images)
    ours = n / (time.perf_counter() - start)
    return {"bare_img_s": bare, "easytl_img_s": ours, "ratio": ours / bare}


def memory(*args, n=50_000):
    """Peak RSS of predict on 50,000 32 px images (model input 64 px)."""
    from easytl import make_textures
    X, y = make_textures(n_per_class=10, size=32)
    clf = TransferClassifier(schedule="feature_extraction", epochs=1, image_size=64, val_size=0,
                             verbose=0).fit(X, y)
    big = np.random.default_rng(0).integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)  # 150 MB
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    clf.predict(big)
    return {"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "rss_before_mb": before, "seconds": time.perf_counter() - start}


def feature_cosine(*args):
    """Cosine similarity between bf16 and fp32 features of the same 400 textures (target >= 0.99)."""
    from easytl import make_textures
    X, _ = make_textures(random_state=42)
    fast = FeatureExtractor(mixed_precision="auto").fit().transform(X)
    exact = FeatureExtractor(mixed_precision="no").fit().transform(X)
    cosine = (fast * exact).sum(1) / (np.linalg.norm(fast, axis=1) * np.linalg.norm(exact, axis=1))
    return {"min": float(cosine.min()), "mean": float(cosine.mean())}


def matmul_gflops(size=2048, repeats=10):
    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b
        start = time.perf_counter()
        for _ in range(repeats):
            a @ b
        out[name] = 2 * size**3 * repeats / (time.perf_counter() - start) / 1e9
    return out


WORKFLOWS = {"feature_extraction": feature_extraction, "two_phase": two_phase,
             "progressive": progressive, "predict": predict, "default": default}
EXTRAS = {"throughput": throughput, "memory": memory, "feature_cosine": feature_cosine,
          "matmul": matmul_gflops}


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in EXTRAS:
        data = load_data("textures", "predict") if argv[0] == "throughput" else ()
        print(json.dumps(EXTRAS[argv[0]](*data)))
        return
    run_workflow(WORKFLOWS, argv)


if __name__ == "__main__":
    sys.exit(main())

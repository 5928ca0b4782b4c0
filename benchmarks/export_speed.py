"""fp32 PyTorch, fp32 ONNX / OpenVINO and int8 exports: accuracy and images/s on this CPU.

    python benchmarks/export_speed.py            # 224 px, the README's table (minutes)
    python benchmarks/export_speed.py --quick    # 64 px, few images: proves the script works

For each visible task (the synthetic textures, scikit-learn digits; stratified
75/25 splits, as benchmarks/common.py), a TransferClassifier on the packaged
EfficientNet-Lite0 is fitted once (with its adaptive defaults; --quick: a
linear probe on frozen features), then
exported as fp32 ONNX, int8 ONNX (ONNX Runtime QDQ, per-channel weights) and,
when openvino and nncf are installed, fp32 and int8 OpenVINO (NNCF); int8 is
calibrated on at most 300 training images. Each export runs through
``easytl.Predictor`` on the held-out images: accuracy, agreement of its labels
with PyTorch's ``predict``, and the share of held-out images ``reject_unknown``
calls unknown. Speed: images/s of the graph alone (uint8 images already at the
model's size, as a service sees decoded uploads) at batch 1 and batch 32, for
the PyTorch module of the same graph (fp32, ``torch.inference_mode``) and each
export; the median of ``--repeats`` timed runs after a warm-up. The CPU's
features (AVX2, AVX-512, VNNI, AMX) are printed first: int8 gains need VNNI/AMX.
Prints one JSON line per (task, runtime) and a markdown table at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

CPU_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "amx_bf16")


def cpu_features() -> dict:
    """Model name, core count and the SIMD features int8 speed depends on (Linux)."""
    info = {"cpus": os.cpu_count()}
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return info
    for line in text.splitlines():
        if line.startswith("model name"):
            info["model"] = line.split(":", 1)[1].strip()
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            info["features"] = [f for f in CPU_FLAGS if f in flags]
            break
    return info


def images_per_second(run, images: np.ndarray, batch: int, repeats: int) -> float:
    """Median images/s of ``run(batch of images)`` over ``repeats`` passes through ``images``."""
    batches = [images[i:i + batch] for i in range(0, len(images) - batch + 1, batch)]
    run(batches[0])  # warm-up: first-run allocations, OpenVINO/ORT kernel selection
    rates = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            run(b)
        rates.append(len(batches) * batch / (time.perf_counter() - start))
    return statistics.median(rates)


def runtimes(clf, folder: Path, X_calibration, with_openvino: bool) -> dict:
    """name -> (Predictor or None, raw run(images) for timing), fp32 PyTorch first."""
    import torch

    from easytl import Predictor
    from easytl.deploy.export import export_model, predictor_for
    module = predictor_for(clf)

    def torch_run(images):
        with torch.inference_mode():
            return module(torch.from_numpy(images))
    out = {"pytorch fp32": (None, torch_run)}
    formats = [("onnx", None), ("onnx", "int8")]
    if with_openvino:
        formats += [("openvino", None), ("openvino", "int8")]
    for fmt, quantize in formats:
        name = f"{fmt} {quantize or 'fp32'}"
        path = folder / (name.replace(" ", "-") + (".onnx" if fmt == "onnx" else ""))
        started = time.perf_counter()
        export_model(clf, path, fmt, quantize=quantize,
                     calibration=X_calibration if quantize else None)
        print(f"# {name}: exported in {time.perf_counter() - started:.0f} s", file=sys.stderr)
        predictor = Predictor(path)
        out[name] = (predictor, raw_runner(predictor))
    return out


def raw_runner(predictor):
    """The export's graph alone: probabilities of a uint8 (N, H, W, 3) batch."""
    return lambda images: predictor._run(images, False)


def measure(task: str, args) -> list[dict]:
    from common import load_data

    from easytl import TransferClassifier
    X_train, y_train, X_test, y_test, _ = load_data(task, "fit")
    if args.quick:
        X_train, y_train, X_test, y_test = X_train[:48], y_train[:48], X_test[:32], y_test[:32]
    if args.quick:  # a linear probe on cached frozen features: seconds
        clf = TransferClassifier("efficientnet_lite0", image_size=args.size,
                                 schedule="feature_extraction", epochs=args.epochs, head="linear",
                                 mixed_precision="no", random_state=0, verbose=0)
    else:  # what a user gets: the adaptive defaults, at the pretrained size
        clf = TransferClassifier("efficientnet_lite0", image_size=args.size, random_state=0,
                                 verbose=0)
    clf.fit(X_train, y_train)
    reference = clf.predict(X_test)
    rows = []
    size = clf.image_size_
    rng = np.random.default_rng(0)
    timing_images = rng.integers(0, 256, (args.timing_images, size, size, 3), dtype=np.uint8)
    with tempfile.TemporaryDirectory() as folder:
        for name, (predictor, run) in runtimes(clf, Path(folder), X_train,
                                               not args.no_openvino).items():
            answerer = clf if predictor is None else predictor
            labels = answerer.predict(X_test)
            unknown = answerer.predict(X_test, reject_unknown=True)
            row = {"task": task, "runtime": name, "image_size": size,
                   "accuracy": float(np.mean(labels == y_test)),
                   "agreement_with_pytorch": float(np.mean(labels == reference)),
                   "unknown_rate_held_out": float(np.mean(unknown == "unknown"))}
            for batch in (1, 32):
                row[f"images_per_s_batch{batch}"] = (
                    None if args.no_timing else
                    round(images_per_second(run, timing_images, batch, args.repeats), 1))
            print(json.dumps(row), flush=True)
            rows.append(row)
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| task | runtime | accuracy | agrees with PyTorch | unknown (held-out) | img/s b=1 | "
             "img/s b=32 |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        speed = [("-" if r[k] is None else f"{r[k]:.0f}")
                 for k in ("images_per_s_batch1", "images_per_s_batch32")]
        lines.append(f"| {r['task']} | {r['runtime']} | {100 * r['accuracy']:.1f}% | "
                     f"{100 * r['agreement_with_pytorch']:.1f}% | "
                     f"{100 * r['unknown_rate_held_out']:.1f}% | {speed[0]} | {speed[1]} |")
    return "\n".join(lines)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="64 px, 48 training / 32 test images, 1 timed repeat")
    parser.add_argument("--tasks", default="textures,digits")
    parser.add_argument("--size", type=int, default=None, help="input size (default 224; quick 64)")
    parser.add_argument("--epochs", type=int, default=20, help="--quick's probe epochs")
    parser.add_argument("--repeats", type=int, default=None, help="timed runs (default 5; quick 1)")
    parser.add_argument("--timing-images", type=int, default=None,
                        help="images per timed run (default 256; quick 32)")
    parser.add_argument("--no-openvino", action="store_true")
    parser.add_argument("--no-timing", action="store_true", help="accuracy only")
    args = parser.parse_args(argv)
    args.size = args.size or (64 if args.quick else 224)
    args.repeats = args.repeats or (1 if args.quick else 5)
    args.timing_images = args.timing_images or (32 if args.quick else 256)
    if not args.no_openvino:
        try:
            import nncf  # noqa: F401
            import openvino  # noqa: F401
        except ImportError:
            print("# openvino/nncf not installed: ONNX only (pip install 'easytl[openvino]')",
                  file=sys.stderr)
            args.no_openvino = True
    print(json.dumps({"cpu": cpu_features()}), flush=True)
    rows = [row for task in args.tasks.split(",") for row in measure(task, args)]
    print(markdown(rows))


if __name__ == "__main__":
    main()

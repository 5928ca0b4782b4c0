"""Camera photos at real size: a folder of JPEGs against the same images as arrays.

    python benchmarks/photos.py                      # 120 photos at 4000x3000, fit on 30
    python benchmarks/photos.py --sizes 4000x3000 2000x1500 1024x768 640x480
    python benchmarks/photos.py --large 2000         # + time to first output, peak RSS
    python benchmarks/photos.py --quick              # a tiny run that proves the script works

* predict: images/s of ``predict_proba`` on a folder of N JPEGs, and on the same
  images already decoded and resized to the model's 224 px, as one uint8 array
  (what the model costs without any decoding); their ratio (target >= 0.8).
* fit: seconds of the default ``TransferClassifier().fit`` on ``--fit-n`` of the
  files (half in each of two classes) against the same images as a 224 px
  array, alternated, best of --repeats each; their ratio (target <= 1.3).
* ``--large N``: in a fresh process each, fit (feature extraction, 1 epoch) and
  predict on a folder of N photos: seconds from the call to the first progress
  output on stderr (bars appear after 2 s by design) and peak resident memory.

The photos are scikit-image's (chelsea, coffee, astronaut, rocket) scaled up to
the photo size with sensor-like noise (a smooth upscale compresses, and so
decodes, far faster than a camera's photo), saved at JPEG quality 92; 8 distinct
files are written and copied to make N. Prints one JSON line per measurement.
Uses only the public API, so it also runs on an easytl from before reduced-size
decoding (to measure "before"; pass ``--workers 0`` there).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

PHOTOS = ("chelsea", "coffee", "astronaut", "rocket")
DISTINCT = 8


def write_photos(folder: Path, n: int, width: int, height: int, noise: float, classes: int = 1,
                 seed: int = 0) -> list[Path]:
    """``n`` JPEGs (copies of ``DISTINCT`` different ones), in ``classes`` sub-folders."""
    import skimage.data
    rng = np.random.default_rng(seed)
    originals = []
    for k in range(min(DISTINCT, n)):
        base = Image.fromarray(getattr(skimage.data, PHOTOS[k % len(PHOTOS)])()).convert("RGB")
        pixels = np.asarray(base.resize((width, height), Image.BICUBIC), dtype=np.float32)
        pixels = np.clip(pixels + rng.normal(0, noise, pixels.shape), 0, 255).astype(np.uint8)
        path = folder / f"original_{k}.jpg"
        Image.fromarray(pixels).save(path, quality=92)
        originals.append(path)
    paths = []
    for i in range(n):
        sub = folder / f"class_{i % classes}"
        sub.mkdir(exist_ok=True)
        path = sub / f"photo_{i:05d}.jpg"
        shutil.copyfile(originals[i % len(originals)], path)
        paths.append(path)
    for path in originals:
        path.unlink()
    return paths


def as_arrays(paths, size: int = 224) -> np.ndarray:
    """The photos fully decoded, upright, resized to ``size`` (Pillow's antialiased bilinear)."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as image:
            out[i] = np.asarray(ImageOps.exif_transpose(image).convert("RGB").resize(
                (size, size), Image.BILINEAR))
    return out


def _classifier(args, **params):
    from easytl import TransferClassifier
    if args.workers is not None:
        params["num_workers"] = args.workers if args.workers == "auto" else int(args.workers)
    return TransferClassifier(random_state=0, verbose=0, **params)


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def measure_predict(args, folder: Path, width: int, height: int) -> dict:
    paths = [str(p) for p in write_photos(folder, args.n, width, height, args.noise)]
    arrays = as_arrays(paths)
    clf = _classifier(args, schedule="feature_extraction", epochs=1, val_size=0)
    clf.fit(arrays[:8], np.arange(len(arrays[:8])) % 2)
    clf.predict_proba(arrays[:4])  # warm-up: one-time costs are not throughput
    clf.predict_proba(paths[:4])
    files_s = min(timed(lambda: clf.predict_proba(paths)) for _ in range(args.repeats))
    arrays_s = min(timed(lambda: clf.predict_proba(arrays)) for _ in range(args.repeats))
    return {"measure": "predict", "photo": f"{width}x{height}", "images": len(paths),
            "file_mb": round(os.path.getsize(paths[0]) / 2**20, 2),
            "files_images_per_s": round(len(paths) / files_s, 1),
            "arrays_images_per_s": round(len(paths) / arrays_s, 1),
            "ratio": round(arrays_s / files_s, 2)}


def measure_fit(args, folder: Path, width: int, height: int) -> dict:
    paths = write_photos(folder, args.fit_n, width, height, args.noise, classes=2)
    arrays = as_arrays(paths)
    labels = np.array([p.parent.name for p in paths])
    params = {"epochs": args.fit_epochs} if args.fit_epochs else {}
    files, files_s, arrays_s = [str(p) for p in paths], float("inf"), float("inf")
    # alternated, best of --repeats each, so warm-up and load drift favour neither side
    for _ in range(args.repeats):
        files_s = min(files_s, timed(lambda: _classifier(args, **params).fit(files, labels)))
        arrays_s = min(arrays_s, timed(lambda: _classifier(args, **params).fit(arrays, labels)))
    return {"measure": "fit", "photo": f"{width}x{height}", "images": len(paths),
            "files_seconds": round(files_s, 1), "arrays_seconds": round(arrays_s, 1),
            "ratio": round(files_s / arrays_s, 2)}


def measure_large(args, folder: Path, width: int, height: int) -> list[dict]:
    write_photos(folder, args.large, width, height, args.noise, classes=2)
    rows = []
    for mode in ("fit", "predict"):
        command = [sys.executable, __file__, "--child", mode, str(folder)]
        if args.workers is not None:
            command += ["--workers", str(args.workers)]
        result = subprocess.run(command, capture_output=True, text=True, check=True)
        row = json.loads(result.stdout.strip().splitlines()[-1])
        rows.append(dict(row, measure=f"large_{mode}", photo=f"{width}x{height}",
                         images=args.large))
    return rows


def child(args) -> None:
    """One fit or predict on a folder, in a fresh process: first stderr output, peak RSS."""
    import resource

    class FirstWrite:
        def __init__(self, stream):
            self.stream, self.at = stream, None

        def write(self, text):
            if self.at is None and text.strip():
                self.at = time.perf_counter()
            return self.stream.write(text)

        def __getattr__(self, name):
            return getattr(self.stream, name)

    folder = Path(args.child[1])
    clf = _classifier(args, schedule="feature_extraction", epochs=1, val_size=0)
    if args.child[0] == "predict":  # a model fitted on 8 small arrays; predicting is measured
        paths = sorted(str(p) for p in folder.rglob("*.jpg"))
        clf.fit(as_arrays(paths[:8]), np.arange(len(paths[:8])) % 2)
        clf.set_params(verbose=1)
        call = lambda: clf.predict_proba(paths)  # noqa: E731
    else:
        clf.set_params(verbose=1)
        call = lambda: clf.fit(folder)  # noqa: E731
    sys.stderr = FirstWrite(sys.stderr)
    start = time.perf_counter()
    call()
    end = time.perf_counter()
    first = sys.stderr.at
    sys.stderr = sys.stderr.stream
    print(json.dumps({"seconds": round(end - start, 1),
                      "first_output_s": None if first is None else round(first - start, 1),
                      "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}))


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=120, help="photos to predict")
    parser.add_argument("--sizes", nargs="+", default=["4000x3000"], help="photo sizes WxH")
    parser.add_argument("--fit-n", type=int, default=30, help="photos to fit on")
    parser.add_argument("--fit-epochs", type=int, default=None, help="default: the adaptive plan")
    parser.add_argument("--large", type=int, default=0, help="photos for first output / peak RSS")
    parser.add_argument("--noise", type=float, default=4.0, help="sensor noise (grey levels)")
    parser.add_argument("--repeats", type=int, default=2, help="predict and fit timings (best of)")
    parser.add_argument("--workers", default=None, help="num_workers (default: easytl's)")
    parser.add_argument("--quick", action="store_true", help="tiny sizes: check the script runs")
    parser.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        return child(args)
    if args.quick:
        args.n, args.sizes, args.fit_n, args.repeats = 6, ["800x600"], 6, 1
        args.fit_epochs, args.large = 1, args.large and 6
    for size in args.sizes:
        width, height = (int(v) for v in size.lower().split("x"))
        with tempfile.TemporaryDirectory(prefix="easytl-photos-") as tmp:
            print(json.dumps(measure_predict(args, _mk(tmp, "p"), width, height)), flush=True)
            if size == args.sizes[0]:
                print(json.dumps(measure_fit(args, _mk(tmp, "f"), width, height)), flush=True)
                if args.large:
                    for row in measure_large(args, _mk(tmp, "l"), width, height):
                        print(json.dumps(row), flush=True)


def _mk(tmp: str, name: str) -> Path:
    path = Path(tmp) / name
    path.mkdir()
    return path


if __name__ == "__main__":
    main()

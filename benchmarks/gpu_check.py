"""GPU check: fit and predict with each precision on CUDA, parity with the CPU, img/s at 224 px.

    python benchmarks/gpu_check.py                 # on a CUDA machine: the full check
    python benchmarks/gpu_check.py --image-size 32 --n-per-class 8 --epochs 1 --images 16
                                                   # a quick run (the tests run it on the CPU)

1. Parity: the same seeded fit (EfficientNet-Lite0, packaged weights, textures)
   on the CPU in fp32 and on the GPU in fp32, bf16 and fp16; held-out accuracy
   of each and its difference from the CPU run (tolerance --tolerance).
2. Throughput at --image-size for resnet18 and efficientnet_lite0 (random
   init: no download needed): training img/s (one whole-network epoch through
   TransferClassifier.fit) and inference img/s (TransferClassifier.predict).

Without CUDA the GPU rows say "no CUDA device" and only the CPU reference runs.
Prints Markdown tables; exit code 1 if a GPU precision misses the tolerance.
"""

from __future__ import annotations

import argparse
import platform
import sys
import time

import numpy as np
import torch
from sklearn.model_selection import train_test_split

from easytl import Phase, TransferClassifier, make_textures

PRECISIONS = {"fp32": "no", "bf16": "bf16", "fp16": "fp16"}


def parity_row(device: str, precision: str, data, args) -> dict:
    X_train, X_test, y_train, y_test = data
    clf = TransferClassifier(device=device, mixed_precision=PRECISIONS[precision],
                             image_size=args.image_size, epochs=args.epochs, random_state=0, verbose=0)
    start = time.perf_counter()
    clf.fit(X_train, y_train)
    seconds = time.perf_counter() - start
    return {"device": device, "precision": precision, "fit_s": seconds,
            "accuracy": float(clf.score(X_test, y_test))}


def throughput_row(device: str, precision: str, backbone: str, args) -> dict:
    rng = np.random.default_rng(0)
    n = args.images
    X = rng.integers(0, 256, (n, args.image_size, args.image_size, 3), dtype=np.uint8)
    y = np.arange(n) % 4
    clf = TransferClassifier(backbone=backbone, weights=None, device=device,
                             mixed_precision=PRECISIONS[precision], image_size=args.image_size,
                             schedule=[Phase(2, "all")], epochs=None, val_size=0, augment=None,
                             batch_size=args.batch_size, predict_batch_size=args.batch_size,
                             random_state=0, verbose=0).fit(X, y)
    train_s = clf.history_[-1]["seconds"]  # the second epoch: warm kernels and allocator
    clf.predict(X[: args.batch_size])  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    clf.predict(X)
    predict_s = time.perf_counter() - start
    return {"backbone": backbone, "device": device, "precision": precision,
            "train_img_s": n / train_s, "predict_img_s": n / predict_s}


def parse_args(argv=None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n-per-class", type=int, default=60)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--images", type=int, default=512, help="images per throughput run")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--tolerance", type=float, default=0.05, help="allowed accuracy difference")
    parser.add_argument("--cpu-throughput", action="store_true",
                        help="also measure CPU throughput (slow at 224 px)")
    return parser.parse_args(argv)


def check(args) -> tuple[list[dict], list[dict], bool]:
    """Run the parity fits and throughput runs; print the tables; return (parity rows,
    throughput rows, whether a GPU precision missed the tolerance)."""
    cuda = torch.cuda.is_available()
    card = torch.cuda.get_device_name(0) if cuda else "no CUDA device"
    print(f"# easytl GPU check — {card}; torch {torch.__version__}; "
          f"{platform.processor() or platform.machine()}; {time.strftime('%Y-%m-%d')}\n")

    X, y = make_textures(n_per_class=args.n_per_class, random_state=42)
    data = train_test_split(X, y, test_size=0.25, stratify=y, random_state=0)
    reference = parity_row("cpu", "fp32", data, args)
    rows, failed = [reference], False
    for precision in PRECISIONS:
        if not cuda:
            rows.append({"device": "cuda", "precision": precision, "skipped": card})
            continue
        if precision == "bf16" and not torch.cuda.is_bf16_supported():
            rows.append({"device": "cuda", "precision": precision, "skipped": "no bf16 on this GPU"})
            continue
        row = parity_row("cuda", precision, data, args)
        row["ok"] = abs(row["accuracy"] - reference["accuracy"]) <= args.tolerance
        failed |= not row["ok"]
        rows.append(row)
    print("| device | precision | fit s | held-out accuracy | vs CPU fp32 |")
    print("|---|---|---|---|---|")
    for row in rows:
        if "skipped" in row:
            print(f"| {row['device']} | {row['precision']} | – | – | skipped: {row['skipped']} |")
            continue
        delta = row["accuracy"] - reference["accuracy"]
        verdict = "reference" if row is reference else ("ok" if row["ok"] else "MISMATCH")
        print(f"| {row['device']} | {row['precision']} | {row['fit_s']:.1f} | {row['accuracy']:.3f} "
              f"| {delta:+.3f} {verdict} |")

    speed = []
    for backbone in ("resnet18", "efficientnet_lite0"):
        if cuda:
            for precision in PRECISIONS:
                if precision != "bf16" or torch.cuda.is_bf16_supported():
                    speed.append(throughput_row("cuda", precision, backbone, args))
        if args.cpu_throughput or not cuda:
            speed.append(throughput_row("cpu", "fp32", backbone, args))
    print(f"\nThroughput at {args.image_size} px, batch {args.batch_size}, {args.images} images:\n")
    print("| backbone | device | precision | train img/s | predict img/s |")
    print("|---|---|---|---|---|")
    for row in speed:
        print(f"| {row['backbone']} | {row['device']} | {row['precision']} | {row['train_img_s']:.1f} "
              f"| {row['predict_img_s']:.1f} |")
    return rows, speed, failed


def main(argv=None) -> int:
    _, _, failed = check(parse_args(argv))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

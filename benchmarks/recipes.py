"""What each small-data recipe does to the default TransferClassifier, on the visible tasks.

    python benchmarks/recipes.py [--tasks textures,digits,digits15] [--seeds 2] [--json out.json]

For each task, the defaults alone and then with one recipe added (label
smoothing 0.1, MixUp α = 0.2, CutMix α = 1.0, weight EMA 0.999, strong
augmentation, gradient accumulation ×2, lr="auto"), fitted in this process
one after another on the same split; held-out accuracy (mean over ``--seeds``
draws of the k-shot task, one split otherwise) and fit time of the first draw.
Prints a Markdown table with the CPU's features.
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np

from adaptive import cpu_features
from common import load_data
from easytl import TransferClassifier

RECIPES = {
    "defaults": {},
    "label_smoothing=0.1": {"label_smoothing": 0.1},
    "mixup=0.2": {"mixup": 0.2},
    "cutmix=1.0": {"cutmix": 1.0},
    "ema=0.999": {"ema": 0.999},
    'augment="strong"': {"augment": "strong"},
    "accumulate=2": {"accumulate": 2},
    'lr="auto"': {"lr": "auto"},
}


def measure(task: str, params: dict, seed: int) -> tuple[float, float]:
    X_train, y_train, X_test, y_test, _ = load_data(task, "default", seed)
    start = time.perf_counter()
    clf = TransferClassifier(random_state=0, verbose=0, **params).fit(X_train, y_train)
    accuracy = float(np.mean(clf.predict(X_test) == y_test))
    return accuracy, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", default="textures,digits,digits15")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", type=int, default=2, help="draws of the k-shot tasks")
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    tasks, recipes = args.tasks.split(","), args.recipes.split(",")
    results = {}
    for task in tasks:
        seeds = range(args.seeds) if task[len("digits"):].isdigit() else range(1)
        for name in recipes:
            runs = [measure(task, RECIPES[name], seed) for seed in seeds]
            results[(task, name)] = (float(np.mean([a for a, _ in runs])), runs[0][1])
            print(f"{task} {name}: {results[(task, name)][0]:.3f} {runs[0][1]:.1f} s", flush=True)
    print(f"\n{cpu_features()}\n")
    print("| recipe | " + " | ".join(tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for name in recipes:
        cells = [f"{results[(t, name)][0]:.3f} ({results[(t, name)][1]:.0f} s)" for t in tasks]
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{t}/{n}": v for (t, n), v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()

"""What each small-data recipe does to the default TransferClassifier, on the visible tasks.

    python benchmarks/recipes.py [--tasks textures,digits,digits15] [--seeds 2] [--json out.json]

For each task, the defaults alone, then with one recipe added (label
smoothing 0.1, MixUp α = 0.2, CutMix α = 1.0, weight EMA 0.999, strong
augmentation, gradient accumulation ×2, lr="auto"), then the "small data"
preset (all the regularisers together), fitted in this process one after
another. Seed s sets the estimator's ``random_state`` (and, on the k-shot
task, which 15 images per class train; the rest of the 1,797 is the test
set); textures and digits keep one stratified 75/25 split. Held-out accuracy
is the mean ± std over ``--seeds``; time is the mean fit time. Prints a
Markdown table with the CPU's features.
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
    "small data preset": {"augment": "strong", "mixup": 0.2, "label_smoothing": 0.1, "ema": 0.999},
}


def measure(task: str, params: dict, seed: int) -> tuple[float, float]:
    X_train, y_train, X_test, y_test, _ = load_data(task, "default", seed)
    start = time.perf_counter()
    clf = TransferClassifier(random_state=seed, verbose=0, **params).fit(X_train, y_train)
    accuracy = float(np.mean(clf.predict(X_test) == y_test))
    return accuracy, time.perf_counter() - start


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--tasks", default="textures,digits,digits15")
    parser.add_argument("--recipes", default=",".join(RECIPES))
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--json")
    args = parser.parse_args(argv)
    tasks, recipes = args.tasks.split(","), args.recipes.split(",")
    results = {}
    for task in tasks:
        for name in recipes:
            runs = np.array([measure(task, RECIPES[name], seed) for seed in range(args.seeds)])
            results[(task, name)] = (float(runs[:, 0].mean()), float(runs[:, 0].std()),
                                     float(runs[:, 1].mean()))
            print(f"{task} {name}: {results[(task, name)]}", flush=True)
    print(f"\n{cpu_features()}; {args.seeds} seeds\n")
    print("| recipe | " + " | ".join(tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for name in recipes:
        cells = []
        for task in tasks:
            mean, std, seconds = results[(task, name)]
            base = results[(task, "defaults")][2] if (task, "defaults") in results else seconds
            cells.append(f"{mean:.3f} ± {std:.3f}, {seconds:.0f} s ({seconds / base:.1f}×)")
        print(f"| {name} | " + " | ".join(cells) + " |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({f"{t}/{n}": dict(zip(("mean", "std", "seconds"), v))
                       for (t, n), v in results.items()}, f, indent=1)


if __name__ == "__main__":
    main()

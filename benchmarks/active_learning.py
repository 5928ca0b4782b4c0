"""Do ``suggest_labels`` picks save labels? A labelling simulation on the visible tasks.

    python benchmarks/active_learning.py [--seeds 3] [--rounds 5] [--plot docs/images/active_learning.png]

For each task (scikit-learn digits: 1347 pool / 450 test images; the synthetic
textures: 300 / 100) and seed: start from 2 labelled images per class drawn
from the pool, then ``--rounds`` rounds; each round fits a classifier on the
labelled images, records its accuracy on the held-out test images, and labels
``n`` more pool images (n = 2 per class) chosen by each strategy:

* ``random``: drawn uniformly from the unlabelled pool;
* ``uncertainty``: ``clf.suggest_labels(pool, n, diversity=False)`` (margin only);
* ``suggested``: ``clf.suggest_labels(pool, n)`` (margin + diversity, the default).

The classifier is a ``TransferClassifier`` with a linear-probe schedule on
EfficientNet-Lite0 features (packaged weights, 32 px). To keep 100+ fits
affordable on two cores, the Lite0 features of every image are computed once
and the estimator's backbone is a lookup of them (:class:`FeatureLookup`: each
image carries its row number in its pixels). Everything after the backbone is
the library's real code: the probe fit, the novelty statistics, and the whole
``suggest_labels`` path (probabilities, features, novelty, selection).
``val_size=0``: with 2 labels per class there is nothing to spare for
validation (the temperature then stays 1; the unknown threshold comes from
cross-fitted training scores).

Prints a Markdown table (mean test accuracy over seeds after each round), the
labels each strategy needs to reach random's final accuracy (linear
interpolation between rounds; saved = random's count minus the strategy's) and
writes the plot.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch
from torch import nn

STRATEGIES = ("random", "uncertainty", "suggested")
FEATURE_SIZE = 32  # px: Lite0's input for these small images
IMAGE_SIDE = 4     # px of the index images the lookup backbone reads


class FeatureLookup(nn.Module):
    """A backbone that returns precomputed features: the row number is written in the first
    pixel of each index image (base 256 over the three channels)."""

    def __init__(self, features: np.ndarray):
        super().__init__()
        self.register_buffer("table", torch.as_tensor(features, dtype=torch.float32))
        # what from_module's adapter normalises a custom module's input with (ImageNet statistics)
        from easytl.models.backbones import IMAGENET_MEAN, IMAGENET_STD
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3))

    def forward(self, x):
        pixel = (x[:, :, 0, 0].float() * self.std + self.mean) * 255.0
        digits = pixel.round().long().clamp(0, 255)
        row = digits[:, 0] * 65536 + digits[:, 1] * 256 + digits[:, 2]
        return self.table[row.clamp(0, len(self.table) - 1)]


def index_images(rows: np.ndarray) -> np.ndarray:
    """uint8 images (n, side, side, 3) whose pixels spell their row numbers."""
    rows = np.asarray(rows, dtype=np.int64)
    rgb = np.stack([rows // 65536, (rows // 256) % 256, rows % 256], axis=1).astype(np.uint8)
    return np.broadcast_to(rgb[:, None, None, :], (len(rows), IMAGE_SIDE, IMAGE_SIDE, 3)).copy()


def load_task(name: str):
    """(images float [0, 1] NHWC, labels)."""
    if name == "textures":
        from easytl import make_textures
        X, y = make_textures(random_state=42)
        return X, np.unique(y, return_inverse=True)[1]
    from sklearn.datasets import load_digits
    digits = load_digits()
    X = np.repeat((digits.images / 16.0).astype(np.float32)[..., None], 3, axis=-1)
    return X, digits.target


def lite0_features(X, memory=None) -> np.ndarray:
    from easytl import FeatureExtractor
    return FeatureExtractor("efficientnet_lite0", image_size=FEATURE_SIZE, mixed_precision="no",
                            memory=memory, verbose=0).fit().transform(X)


def classifier(features: np.ndarray, seed: int):
    from easytl import Phase, TransferClassifier
    return TransferClassifier(FeatureLookup(features), image_size=IMAGE_SIDE,
                              schedule=[Phase(1, 0, probe=True, name="probe")], head="linear",
                              augment=None, val_size=0, mixed_precision="no", random_state=seed,
                              verbose=0, num_workers=0)


def simulate(features, y, pool, test, strategy: str, seed: int, rounds: int, n: int,
             verbose: bool = False) -> list:
    """Test accuracy after each round (rounds + 1 values: the start, then each round)."""
    start = time.perf_counter()
    rng = np.random.default_rng(seed)
    classes = np.unique(y)
    labelled = list(np.concatenate([rng.choice(pool[y[pool] == c], 2, replace=False)
                                    for c in classes]))
    accuracy = []
    for round_ in range(rounds + 1):
        clf = classifier(features, seed).fit(index_images(labelled), y[labelled])
        accuracy.append(float(np.mean(clf.predict(index_images(test)) == y[test])))
        if verbose:
            print(f"    {strategy} round {round_}: {len(labelled)} labels, accuracy "
                  f"{accuracy[-1]:.3f} ({time.perf_counter() - start:.0f} s)", flush=True)
        if round_ == rounds:
            break
        rest = np.setdiff1d(pool, labelled)
        if strategy == "random":
            picked = rng.choice(rest, n, replace=False)
        else:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # fewer known-like images than n: fine here
                found = clf.suggest_labels(index_images(rest), n=n,
                                           diversity=strategy == "suggested")
            picked = rest[found.indices]
        labelled += list(picked)
    return accuracy


def labels_to_reach(counts, curve, target) -> float | None:
    """The label count where ``curve`` first reaches ``target`` (linear between rounds)."""
    for k in range(len(curve)):
        if curve[k] >= target:
            if k == 0:
                return float(counts[0])
            a, b = curve[k - 1], curve[k]
            return float(counts[k - 1] + (counts[k] - counts[k - 1]) * (target - a) / (b - a))
    return None


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", default="digits,textures")
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--per-class", type=int, default=2, help="labels per class per round")
    parser.add_argument("--plot", default=None, help="write the curves as a PNG")
    parser.add_argument("--verbose", action="store_true", help="a line per round")
    parser.add_argument("--threads", type=int, default=None,
                        help="limit BLAS/torch threads (1: the probe 15x faster on a busy 2-core machine)")
    parser.add_argument("--memory", default=None, help="a folder to cache the Lite0 features in")
    args = parser.parse_args(argv)
    from sklearn.model_selection import train_test_split
    if args.threads:  # on a shared machine, one BLAS thread per process avoids oversubscription
        from threadpoolctl import threadpool_limits
        threadpool_limits(args.threads)
        torch.set_num_threads(args.threads)
    results = {}
    for task in args.tasks.split(","):
        X, y = load_task(task)
        start = time.perf_counter()
        features = lite0_features(X, args.memory)
        print(f"{task}: Lite0 features of {len(X)} images in {time.perf_counter() - start:.0f} s",
              flush=True)
        pool, test = train_test_split(np.arange(len(y)), test_size=0.25, stratify=y, random_state=0)
        n = args.per_class * len(np.unique(y))
        counts = [2 * len(np.unique(y)) + n * r for r in range(args.rounds + 1)]
        curves = {s: [] for s in STRATEGIES}
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            for strategy in STRATEGIES:
                curves[strategy].append(simulate(features, y, pool, test, strategy, seed,
                                                 args.rounds, n, args.verbose))
                print(f"  seed {seed} {strategy}: "
                      + " ".join(f"{a:.3f}" for a in curves[strategy][-1]), flush=True)
        results[task] = (counts, {s: np.mean(c, axis=0) for s, c in curves.items()},
                         {s: np.std(c, axis=0) for s, c in curves.items()})
    report(results, args.seeds)
    if args.plot:
        plot(results, args.plot, args.seeds)
        print(f"plot written to {args.plot}")


def report(results, seeds: int) -> None:
    for task, (counts, mean, std) in results.items():
        print(f"\n{task}: mean test accuracy over {seeds} seeds (± std)\n")
        print("| labels | " + " | ".join(STRATEGIES) + " |")
        print("|---|" + "---|" * len(STRATEGIES))
        for k, count in enumerate(counts):
            print(f"| {count} | " + " | ".join(f"{mean[s][k]:.3f} ± {std[s][k]:.3f}"
                                               for s in STRATEGIES) + " |")
        target = mean["random"][-1]
        baseline = labels_to_reach(counts, mean["random"], target)
        print(f"\nlabels needed to reach random's final accuracy {target:.3f}: random "
              f"{baseline:.0f}")
        for s in STRATEGIES[1:]:
            needed = labels_to_reach(counts, mean[s], target)
            print(f"  {s}: " + ("not reached" if needed is None else
                                f"{needed:.0f} ({baseline - needed:.0f} labels saved)"))


def plot(results, path, seeds: int) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, len(results), figsize=(5 * len(results), 3.8), squeeze=False)
    for ax, (task, (counts, mean, std)) in zip(axes[0], results.items()):
        for s, marker in zip(STRATEGIES, "osD"):
            ax.plot(counts, mean[s], marker=marker, label=s)
            ax.fill_between(counts, mean[s] - std[s], mean[s] + std[s], alpha=0.15)
        ax.set_title(f"{task} (mean of {seeds} seeds)")
        ax.set_xlabel("labelled images")
        ax.set_ylabel("test accuracy")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


if __name__ == "__main__":
    main()

"""The adaptive defaults against the notebook's procedures, on every visible task.

    python benchmarks/adaptive.py [--rounds 2] [--seeds 3] [--only digits5,textures]

For each task: ``TransferClassifier()`` with its defaults (easytl), the
notebook's linear probe (frozen EfficientNet-Lite0 at 224 px + LogisticRegression)
and its two-phase fine-tune (224 px, 3 epochs head, then 3 epochs everything),
each run in a fresh process, fit + predict timed. Tasks: the synthetic
textures (300 / 100), scikit-learn digits (1347 / 450) and digits with 5, 10
and 20 training images per class (the rest, ~1,700 images, is the test set;
``--seeds`` draws), and the inspection proxy (:func:`easytl.make_inspection_images`,
800 / 400 gray images of 288 px from disjoint photos; slow: ``--only proxy``).
Accuracy is the mean (± std) over seeds; time is the best of ``--rounds`` runs
of the first draw. Prints a Markdown table and the rule check
(default ≥ probe − 0.01 and ≥ two-phase; time ≤ ¼ of two-phase, and ≤ the probe's
on tasks of more than 500 images).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
TASKS = ["textures", "digits", "digits5", "digits10", "digits20", "proxy"]
SIZES = {"textures": 400, "digits": 1797, "digits5": 1797, "digits10": 1797, "digits20": 1797,
         "proxy": 1200}
PROCEDURES = {  # name: (script, workflow, extra arguments)
    "default": ("easytl_side.py", "default", []),
    "probe": ("notebook_baseline.py", "feature_extraction", []),
    "two_phase": ("notebook_baseline.py", "two_phase", ["--epochs", "3"]),
}


def run(procedure: str, task: str, seed: int) -> dict:
    script, workflow, extra = PROCEDURES[procedure]
    out = subprocess.run([sys.executable, str(HERE / script), workflow, task, "--seed", str(seed),
                          *extra], capture_output=True, text=True, cwd=HERE,
                         env=dict(os.environ, PYTHONPATH=str(HERE)))
    if out.returncode:
        raise RuntimeError(f"{procedure} on {task} failed:\n{out.stderr[-3000:]}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    for line in out.stderr.splitlines():  # what the default chose (easytl side only)
        if line.startswith("{"):
            result["plan"] = json.loads(line)
    return result


def cpu_features() -> str:
    try:
        flags = open("/proc/cpuinfo").read()
    except OSError:
        return "unknown CPU"
    found = [f for f in ("avx2", "avx512f", "avx512_bf16", "amx_bf16") if f" {f}" in flags]
    return ", ".join(found) or "no AVX2"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2, help="timed runs of the first draw")
    parser.add_argument("--seeds", type=int, default=3, help="draws of the k-shot tasks")
    parser.add_argument("--only", help="comma-separated tasks (default: all)")
    parser.add_argument("--procedures", default=",".join(PROCEDURES))
    parser.add_argument("--json", help="also write the raw results here")
    args = parser.parse_args(argv)
    tasks = args.only.split(",") if args.only else TASKS
    procedures = args.procedures.split(",")
    results = {}
    for task in tasks:
        seeds = range(args.seeds) if task.startswith("digits") and task != "digits" else [0]
        for procedure in procedures:
            runs = []
            for seed in seeds:
                for _ in range(args.rounds if seed == 0 else 1):
                    runs.append(dict(run(procedure, task, seed), seed=seed))
                    print(f"{task} {procedure} seed {seed}: {runs[-1]['accuracy']:.4f} "
                          f"{runs[-1]['seconds']:.1f} s {runs[-1].get('plan', '')}",
                          file=sys.stderr, flush=True)
            results[task, procedure] = runs
    if args.json:
        Path(args.json).write_text(json.dumps({f"{t}/{p}": r for (t, p), r in results.items()}))

    def summary(runs):
        by_seed = {}
        for r in runs:
            by_seed.setdefault(r["seed"], r["accuracy"])
        accuracies = list(by_seed.values())
        seconds = min(r["seconds"] for r in runs if r["seed"] == 0)
        return float(np.mean(accuracies)), float(np.std(accuracies)), seconds, len(accuracies)

    print(f"\n{platform.machine()}, {os.cpu_count()} cores ({cpu_features()}), python "
          f"{platform.python_version()}, {time.strftime('%Y-%m-%d')}; fit + predict, best of "
          f"{args.rounds} runs for time\n")
    header = "| task | " + " | ".join(f"{p} acc | {p} s" for p in procedures) + " | checks |"
    print(header)
    print("|---" * (1 + 2 * len(procedures) + 1) + "|")
    for task in tasks:
        cells, stats = [], {}
        for procedure in procedures:
            mean, std, seconds, n = stats[procedure] = summary(results[task, procedure])
            cells += [f"{mean:.3f}" + (f" ± {std:.3f}" if n > 1 else ""), f"{seconds:.1f}"]
        checks = []
        if {"default", "probe", "two_phase"} <= stats.keys():
            d, p, t = stats["default"], stats["probe"], stats["two_phase"]
            checks.append("acc ≥ probe−0.01 " + ("✓" if d[0] >= p[0] - 0.01 else "✗"))
            checks.append("acc ≥ two-phase " + ("✓" if d[0] >= t[0] else "✗"))
            checks.append("time ≤ ¼ two-phase " + ("✓" if d[2] <= t[2] / 4 else "✗"))
            if SIZES[task] > 500:
                checks.append("time ≤ probe " + ("✓" if d[2] <= p[2] else "✗"))
        print(f"| {task} | " + " | ".join(cells) + f" | {', '.join(checks)} |")


if __name__ == "__main__":
    main()

"""Benchmark easytl against the notebook-style loop, one process per run, sides alternating.

    python benchmarks/run.py [--rounds 2] [--epochs 2] [--only two_phase,progressive]

Each job runs ``rounds`` times per side, baseline and easytl alternating, each
run in a fresh process; the table keeps the best time per side and the spread
between a side's best and worst run (these machines are shared: a single run
can be 20% off). Prints a Markdown table plus reference figures.
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

HERE = Path(__file__).resolve().parent

# (label, data, baseline workflow, easytl workflow)
JOBS = [
    ("feature extraction + LogisticRegression", "textures", "feature_extraction", "feature_extraction"),
    ("feature extraction + LogisticRegression", "digits", "feature_extraction", "feature_extraction"),
    ("two-phase fine-tune (head, then all), equal epochs", "textures", "two_phase", "two_phase"),
    ("default progressive vs notebook two-phase, equal total epochs", "textures", "two_phase",
     "progressive"),
    ("predict 2,000 images", "textures", "predict", "predict"),
]


def run(script: str, *args: str) -> dict:
    out = subprocess.run([sys.executable, str(HERE / script), *args], capture_output=True, text=True,
                         cwd=HERE, env=dict(os.environ, PYTHONPATH=str(HERE)))
    if out.returncode:
        raise RuntimeError(f"{script} {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=2, help="epochs per notebook phase")
    parser.add_argument("--only", help="comma-separated easytl workflows or extras; default: all")
    args = parser.parse_args(argv)
    only = None if args.only is None else set(args.only.split(","))
    jobs = [job for job in JOBS if only is None or job[3] in only]
    epochs = ["--epochs", str(args.epochs)]
    results: dict = {}
    baseline_cache: dict = {}
    for round_ in range(args.rounds):
        for label, data, base_wf, ours_wf in jobs:
            key = (base_wf, data, round_)
            if key not in baseline_cache:  # one baseline run serves every job that compares to it
                baseline_cache[key] = run("notebook_baseline.py", base_wf, data, *epochs)
            ours = run("easytl_side.py", ours_wf, data, *epochs)
            entry = results.setdefault((label, data), {"base": [], "ours": []})
            entry["base"].append(baseline_cache[key])
            entry["ours"].append(ours)
            print(f"round {round_ + 1}: {label} / {data}: baseline {baseline_cache[key]['seconds']:.1f} s, "
                  f"easytl {ours['seconds']:.1f} s", file=sys.stderr, flush=True)

    def best(runs):
        times = [r["seconds"] for r in runs]
        return min(times), max(times) / min(times) - 1, runs[times.index(min(times))]["accuracy"]

    def fmt(acc):
        return "–" if acc is None else f"{acc:.3f}"

    print(f"\nMachine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"python {platform.python_version()}; {time.strftime('%Y-%m-%d')}; "
          f"{args.rounds} runs per side, {args.epochs} epochs per notebook phase\n")
    print("| workflow | data | notebook s | easytl s | speed-up | notebook acc | easytl acc "
          "| spread (nb / easytl) |")
    print("|---|---|---|---|---|---|---|---|")
    for (label, data), entry in results.items():
        base_s, base_spread, base_acc = best(entry["base"])
        ours_s, ours_spread, ours_acc = best(entry["ours"])
        print(f"| {label} | {data} | {base_s:.1f} | {ours_s:.1f} | {base_s / ours_s:.1f}x "
              f"| {fmt(base_acc)} | {fmt(ours_acc)} | {base_spread:.0%} / {ours_spread:.0%} |")
    print()
    for extra in ("throughput", "memory", "feature_cosine", "matmul"):
        if only is not None and extra not in only:
            continue
        print(f"{extra}: {json.dumps(run('easytl_side.py', extra))}")


if __name__ == "__main__":
    main()

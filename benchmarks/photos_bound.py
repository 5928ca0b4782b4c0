"""What bounds predicting from camera JPEGs: decoding alone, the model alone, and both.

    python benchmarks/photos_bound.py [--n 120] [--noise 8] [--repeats 2]

Writes ``--n`` 4000 × 3000 JPEGs (benchmarks/photos.py's photos; noise 8 makes
~3.7 MB files, like a camera's), then in one process, alternating, best of
``--repeats``: predict_proba on the same images as a 224 px array (the model
alone); decoding alone (every file decoded at reduced scale and resized to
224 px in easytl's threads); predict_proba on the files as easytl does it (the
next batch decoded while the model runs), with one decoding thread, and with
every file decoded first and predicted after. Prints images/s, CPU ms per image
and the bound 1 / (1/decode + 1/model) that two CPU-bound stages sharing the
cores cannot beat.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from photos import as_arrays, write_photos  # noqa: E402


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--n", type=int, default=120)
    parser.add_argument("--noise", type=float, default=8.0)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    import easytl.data.sources as sources
    from easytl import TransferClassifier
    from easytl.data.decoded import read_files_once
    with tempfile.TemporaryDirectory(prefix="easytl-bound-") as tmp:
        paths = [str(p) for p in write_photos(Path(tmp), args.n, 4000, 3000, args.noise)]
        arrays = as_arrays(paths)
        clf = TransferClassifier(random_state=0, verbose=0, schedule="feature_extraction", epochs=1,
                                 val_size=0).fit(arrays[:8], np.arange(8) % 2)
        clf.predict_proba(arrays[:4])
        clf.predict_proba(paths[:4])
        threads = sources.decode_threads

        def one_thread():
            sources.decode_threads = lambda: 1
            try:
                clf.predict_proba(paths)
            finally:
                sources.decode_threads = threads

        variants = {
            "model alone (arrays)": lambda: clf.predict_proba(arrays),
            "decoding alone": lambda: read_files_once(paths, 224, 2**31),
            "files (easytl)": lambda: clf.predict_proba(paths),
            "files, one decoding thread": one_thread,
            "files, decode all first": lambda: clf.predict_proba(read_files_once(paths, 224, 2**31)[0]),
        }
        best = {name: (float("inf"), 0.0) for name in variants}
        for _ in range(args.repeats):
            for name, run in variants.items():
                wall, cpu = time.perf_counter(), time.process_time()
                run()
                wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
                best[name] = min(best[name], (wall, cpu))
        rate = {name: args.n / wall for name, (wall, _) in best.items()}
        for name, (wall, cpu) in best.items():
            print(f"{name:28s} {rate[name]:6.1f} img/s   {cpu / args.n * 1000:5.1f} ms CPU per image")
        bound = 1 / (1 / rate["decoding alone"] + 1 / rate["model alone (arrays)"])
        print(f"{'bound for files':28s} {bound:6.1f} img/s")


if __name__ == "__main__":
    main()

"""Fit on a folder of many tiny images with a small cache budget; print peak memory as JSON.

Run in its own process by test_memory.py, so that the peak resident set size
(``ru_maxrss``) belongs to this fit alone.
"""

import json
import resource
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest

from conftest import tiny_cnn  # noqa: E402
from easytl import Phase, TransferClassifier  # noqa: E402


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(folder: str) -> None:
    # cache_features=True: this test is about the spill ("auto" skips a spilled cache that a
    # one-epoch phase would read only once)
    clf = TransferClassifier(backbone=tiny_cnn(), image_size=64, schedule=[Phase(1, 1)],
                             batch_size=64, mixed_precision="no", random_state=0, verbose=0,
                             cache_memory="64MB", cache_features=True)
    before = peak_mb()
    clf.fit(folder)
    print(json.dumps({"before_mb": before, "peak_mb": peak_mb(), "cache": clf.history_[0]["cache"],
                      "val_accuracy": clf.history_[0]["val_accuracy"]}))


if __name__ == "__main__":
    main(sys.argv[1])

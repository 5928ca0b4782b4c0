"""Fit on a folder of many tiny images with a small cache budget; print peak memory as JSON.

Run in its own process by test_memory.py, so that the memory measured belongs to this fit
alone: the peak of its anonymous resident memory (RssAnon), sampled while it fits.
"""

import json
import resource
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for conftest

from conftest import tiny_cnn  # noqa: E402
from easytl import Phase, TransferClassifier  # noqa: E402


def anonymous_mb() -> float:
    """The process's own memory now: RssAnon, without the pages of mapped files (a cache
    spilled to disk is such a file; the kernel may keep its pages resident, and they count in
    ru_maxrss: on one machine 270-760 MB of them, varying from run to run)."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("RssAnon:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # not Linux: the peak RSS


class PeakSampler(threading.Thread):
    """The highest anonymous memory seen while it runs, sampled every 10 ms."""

    def __init__(self):
        super().__init__(daemon=True)
        self.peak, self.running = anonymous_mb(), True

    def run(self):
        while self.running:
            self.peak = max(self.peak, anonymous_mb())
            time.sleep(0.01)


def main(folder: str) -> None:
    # cache_features=True: this test is about the spill ("auto" skips a spilled cache that a
    # one-epoch phase would read only once)
    clf = TransferClassifier(backbone=tiny_cnn(), image_size=64, schedule=[Phase(1, 1)],
                             batch_size=64, mixed_precision="no", random_state=0, verbose=0,
                             cache_memory="64MB", cache_features=True)
    before, sampler = anonymous_mb(), PeakSampler()
    sampler.start()
    clf.fit(folder)
    sampler.running = False
    sampler.join()
    print(json.dumps({"before_mb": before, "peak_mb": max(sampler.peak, anonymous_mb()),
                      "cache": clf.history_[0]["cache"],
                      "val_accuracy": clf.history_[0]["val_accuracy"]}))


if __name__ == "__main__":
    main(sys.argv[1])

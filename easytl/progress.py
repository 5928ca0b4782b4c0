"""Progress bars for every stage that can take a while (on stderr, never on stdout).

A bar appears only once its stage has run for :data:`SHOW_AFTER_SECONDS`, so
quick calls stay silent while a long decode, cache build or prediction always
says what it is doing.
"""

from __future__ import annotations

import os
import sys

from tqdm.auto import tqdm

SHOW_AFTER_SECONDS = 2.0


def progress(iterable=None, *, desc: str, total: int | None = None, verbose: int = 1,
             unit: str = "img", enabled: bool = True, delay: float | None = None,
             leave: bool = False):
    """A tqdm bar named for its stage (``"checking 1,347 images"``, ``"predicting"``).

    ``verbose < 1`` or ``enabled=False`` (e.g. not the main process) silences it.
    """
    delay = SHOW_AFTER_SECONDS if delay is None else delay
    return tqdm(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, delay=delay,
                leave=leave, dynamic_ncols=True,
                disable=verbose < 1 or not enabled or not launched_as_main_process())


def launched_as_main_process() -> bool:
    """False in the processes other than rank 0 of a torchrun / accelerate launch (they stay
    quiet, so one bar is shown, not one per process)."""
    return int(os.environ.get("RANK", "0")) == 0

"""Progress bars for every stage that can take a while (on stderr, never on stdout).

A bar appears only once its stage has run for :data:`SHOW_AFTER_SECONDS`, so
quick calls stay silent while a long decode, cache build or prediction always
says what it is doing, even when its first (or only) step is the long part.
"""

from __future__ import annotations

import os
import sys
import threading
import weakref

from tqdm.auto import tqdm

SHOW_AFTER_SECONDS = 2.0
LOG_REFRESH_SECONDS = 30.0  # a bar written to a log file or pipe is redrawn at most this often


def is_a_log(stream) -> bool:
    """A file or pipe rather than a terminal or a notebook (whose streams are not terminals,
    and show bars with or without ipywidgets)."""
    if "ipykernel" in sys.modules:
        return False
    isatty = getattr(stream, "isatty", None)
    return not (isatty is not None and isatty())


def progress(iterable=None, *, desc: str, total: int | None = None, verbose: int = 1,
             unit: str = "img", enabled: bool = True, delay: float | None = None,
             leave: bool = False):
    """A tqdm bar named for its stage (``"checking 1,347 images"``, ``"predicting"``).

    ``verbose < 1`` or ``enabled=False`` (e.g. not the main process) silences it.
    """
    delay = SHOW_AFTER_SECONDS if delay is None else delay
    # In a log every redraw stays (joined by carriage returns): a few lines, not one a second.
    # (tqdm's monitor thread redraws after maxinterval: no sooner than mininterval either)
    every = {"mininterval": LOG_REFRESH_SECONDS, "maxinterval": LOG_REFRESH_SECONDS} \
        if is_a_log(sys.stderr) else {"mininterval": 0.1}
    return _Bar(iterable, desc=desc, total=total, unit=unit, file=sys.stderr, delay=delay,
                leave=leave, dynamic_ncols=True, **every,
                disable=verbose < 1 or not enabled or not launched_as_main_process())


class _Bar(tqdm):
    """tqdm shows a delayed bar only at an update after the delay: a stage whose first step is
    long (one batch of 128 images to predict) stayed silent to its end. A ticker thread shows
    the bar once the delay has passed and refreshes its elapsed time every second until closed."""

    TICK_SECONDS = 1.0

    def __init__(self, *args, **kwargs):
        self._stop, self._ticking = threading.Event(), threading.Lock()
        super().__init__(*args, **kwargs)
        if not self.disable and self.delay > 0:
            # A weak reference: a bar left unclosed (a loop broken early) can still be collected.
            every = max(self.TICK_SECONDS, self.mininterval)
            threading.Thread(target=_tick, args=(weakref.ref(self), self._stop, self._ticking,
                                                 self.delay, every),
                             daemon=True, name="easytl-progress").start()

    def close(self) -> None:
        with self._ticking:
            self._stop.set()
        super().close()


def _tick(ref, stop: threading.Event, ticking: threading.Lock, delay: float, every: float) -> None:
    """Show the bar once ``delay`` has passed, then redraw it whenever ``every`` seconds have
    passed since it was last drawn (by this thread or by an update), until closed."""
    wait, shown = delay, False
    while not stop.wait(wait):
        bar = ref()
        if bar is None:
            return
        with ticking:  # never after close: a cleared bar must not come back
            if stop.is_set():
                return
            now = bar._time()
            if not shown or now - bar.last_print_t >= every:
                bar.refresh()
                bar.last_print_t, bar.last_print_n = now, bar.n  # as tqdm's own redraws do
                shown = True
            wait = max(every - (now - bar.last_print_t), 0.01)
        del bar


def launched_as_main_process() -> bool:
    """False in the processes other than rank 0 of a torchrun / accelerate launch (they stay
    quiet, so one bar is shown, not one per process)."""
    return int(os.environ.get("RANK", "0")) == 0

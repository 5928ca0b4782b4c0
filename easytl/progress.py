"""Progress bars for every stage that can take a while (on stderr, never on stdout).

A bar appears only once its stage has run for :data:`SHOW_AFTER_SECONDS`, so
quick calls stay silent while a long decode, cache build or prediction always
says what it is doing, even when its first (or only) step is the long part.

When stderr is a file or a pipe (a log), where a redrawn bar leaves every draw
behind joined by carriage returns (and a cleared one leaves nothing), a stage
writes whole lines instead: one when it shows, one at most every
:data:`LOG_REFRESH_SECONDS`, and one at its end with the count and the time.
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


def stage(desc: str, verbose: int = 1, enabled: bool = True):
    """A long step with nothing to count (an ONNX conversion, a t-SNE): its name and elapsed
    time, shown and logged as a bar is (``with stage("converting to ONNX", verbose): ...``)."""
    return progress(desc=desc, total=None, unit="", verbose=verbose, enabled=enabled,
                    bar_format="{desc} ({elapsed})")


def progress(iterable=None, *, desc: str, total: int | None = None, verbose: int = 1,
             unit: str = "img", enabled: bool = True, delay: float | None = None,
             leave: bool = False, log_delay: float | None = None, log_end: bool = True,
             bar_format: str | None = None):
    """A tqdm bar named for its stage (``"checking 1,347 images"``, ``"predicting"``).

    ``verbose < 1`` or ``enabled=False`` (e.g. not the main process) silences it.
    In a log (:func:`is_a_log`) it writes lines instead of redrawing: once shown
    (after ``log_delay``, default ``delay``), at most every :data:`LOG_REFRESH_SECONDS`,
    and, with ``log_end``, at the end with the count and the time.
    """
    delay = SHOW_AFTER_SECONDS if delay is None else delay
    log = is_a_log(sys.stderr)
    # In a log: a few lines, not one a second. (tqdm's monitor thread redraws after
    # maxinterval: no sooner than mininterval either)
    every = {"mininterval": LOG_REFRESH_SECONDS, "maxinterval": LOG_REFRESH_SECONDS} \
        if log else {"mininterval": 0.1}
    return _Bar(iterable, desc=desc, total=total, unit=unit, file=sys.stderr,
                delay=delay if not log or log_delay is None else log_delay,
                leave=leave and not log, dynamic_ncols=True, log=log, log_end=log_end,
                bar_format=bar_format, **every,
                disable=verbose < 1 or not enabled or not launched_as_main_process())


class _Bar(tqdm):
    """tqdm shows a delayed bar only at an update after the delay: a stage whose first step is
    long (one batch of 128 images to predict) stayed silent to its end. A ticker thread shows
    the bar once the delay has passed and refreshes its elapsed time every second until closed.
    With ``log``, every draw is a line of its own (see :func:`log_line`)."""

    TICK_SECONDS = 1.0

    def __init__(self, *args, log: bool = False, log_end: bool = True, **kwargs):
        self._stop, self._ticking = threading.Event(), threading.Lock()
        self._log, self._log_end = log, log_end  # before tqdm's first draw (delay 0: in __init__)
        super().__init__(*args, **kwargs)
        if not self.disable and self.delay > 0:
            # A weak reference: a bar left unclosed (a loop broken early) can still be collected.
            every = max(self.TICK_SECONDS, self.mininterval)
            threading.Thread(target=_tick, args=(weakref.ref(self), self._stop, self._ticking,
                                                 self.delay, every),
                             daemon=True, name="easytl-progress").start()

    def display(self, msg=None, pos=None):
        if not self._log:
            return super().display(msg, pos)
        # tqdm clears a bar it does not leave by drawing '' (and then a carriage return when
        # that returns True): a log keeps its lines, and ends with the count and time instead.
        if msg == "" and not self._log_end:
            return False
        if msg is None and self._log_end and self.total and self.n >= self.total:
            return True  # the last update: the end line follows, with the time
        self.fp.write(log_line(self.format_dict, final=msg == "") + "\n")
        self.fp.flush()
        return msg != ""

    def close(self) -> None:
        with self._ticking:
            self._stop.set()
        super().close()


def log_line(stats: dict, final: bool = False) -> str:
    """One line of a stage in a log: ``caching training features: 40/162 img after 12.0 s
    (about 36.6 s left)``; at the end ``caching training features: 162/162 img in 48.3 s``."""
    n, total, elapsed = stats["n"], stats["total"], stats["elapsed"]
    desc = (stats.get("prefix") or "").rstrip(": ")
    if not stats["unit"] and total is None:  # a stage(): nothing counted
        return f"{desc}: {'done in' if final else 'running for'} {_seconds(elapsed)}"
    text = f"{desc}: {n:,}/{total:,} {stats['unit']}" if total else f"{desc}: {n:,} {stats['unit']}"
    if final:
        text += f" in {_seconds(elapsed)}"
    else:
        text += f" after {_seconds(elapsed)}"
        if total and 0 < n < total:
            text += f" (about {_seconds(elapsed * (total - n) / n)} left)"
    return text + (f", {stats['postfix']}" if stats.get("postfix") else "")


def _seconds(seconds: float) -> str:
    """41.2 s, 3 min 05 s."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, rest = divmod(int(round(seconds)), 60)
    return f"{minutes} min {rest:02d} s"


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

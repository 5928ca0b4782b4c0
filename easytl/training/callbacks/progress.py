"""Progress on stderr: a bar per training epoch and one line per finished epoch."""

from __future__ import annotations

import sys
import textwrap

from tqdm.auto import tqdm

from ... import progress as stage_bars
from ...progress import progress
from .base import Callback


class ProgressLog(Callback):
    """The last callback: ``verbose >= 1`` shows a tqdm bar per epoch (running loss) and a
    line per epoch with its row (``*`` marks a new best epoch); only the main process
    prints. Other callbacks' monitored metrics appear in the line too."""

    SHOWN = ("val_loss", "val_accuracy")

    def __init__(self, verbose: int = 1, monitor_name: str | None = None):
        self.verbose, self.monitor_name = verbose, monitor_name
        self.bar, self.loss_sum, self.seen = None, 0.0, 0

    def _enabled(self) -> bool:
        return self.verbose >= 1 and self.trainer.accelerator.is_main_process

    def on_train_begin(self, logs=None) -> None:
        note = self.trainer.plan.note
        if note is not None and self._enabled():
            tqdm.write(note_lines("easytl plan", note), file=sys.stderr)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        t = self.trainer
        self.loss_sum, self.seen = 0.0, 0
        if t.phase.probe:
            return
        # In a log file or pipe the epoch's own line follows at its end: a long epoch adds a line
        # every LOG_REFRESH_SECONDS while it runs, a short one nothing.
        self.bar = progress(total=t.batches_per_epoch, unit="batch", delay=0,
                            desc=f"epoch {epoch} [{t.phase.name} {t.phase_epoch}/{t.phase.epochs}]",
                            enabled=self._enabled(), leave=self.verbose >= 2,
                            log_delay=stage_bars.LOG_REFRESH_SECONDS, log_end=False)

    def on_batch_end(self, batch, logs=None) -> None:
        self.loss_sum += logs["loss"] * logs["size"]
        self.seen += logs["size"]
        self.bar.update()
        self.bar.set_postfix(loss=f"{self.loss_sum / self.seen:.4f}", refresh=False)

    def on_epoch_end(self, epoch, logs) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        if not self._enabled():
            return
        parts = [f"epoch {logs['epoch']:>3} {logs['phase']:<8}",
                 "lr (solved)" if logs["lr"] is None else f"lr {logs['lr']:.2e}",
                 f"loss {logs['train_loss']:.4f}", f"acc {logs['train_accuracy']:.3f}"]
        if logs.get("val_loss") is not None:
            parts += [f"val_loss {logs['val_loss']:.4f}", f"val_acc {logs['val_accuracy']:.3f}"]
        if self.monitor_name not in (None, *self.SHOWN) and logs.get(self.monitor_name) is not None:
            parts.append(f"{self.monitor_name} {logs[self.monitor_name]:.4f}")
        parts.append(f"{logs['seconds']:.1f}s" + (" *" if logs.get("best") else ""))
        tqdm.write("  ".join(parts), file=sys.stderr)
        if logs.get("note") not in (None, self.trainer.plan.note):  # the probe decided something
            tqdm.write(note_lines("easytl after the probe",
                                  _decided(logs["note"], self.trainer.plan.note)), file=sys.stderr)

    def on_train_end(self, logs=None) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None
        # Only a finished epoch leaves weights to keep: before it, fit says the model is untrained.
        if (logs or {}).get("interrupted") and self.trainer.history and self._enabled():
            kept = ("the best weights so far" if logs.get("best_epoch") is not None else
                    "the last finished epoch's weights (no held-out images to pick a best epoch by)")
            tqdm.write(f"interrupted: keeping {kept}", file=sys.stderr)


NOTE_WIDTH = 100  # characters a printed line of a note holds at most


def note_lines(title: str, note: str) -> str:
    """A note (one sentence of clauses joined by "; ", as ``history_`` keeps it) printed as
    short lines: ``title: first clause``, then one indented line per clause, each wrapped
    at :data:`NOTE_WIDTH`."""
    lines = []
    for i, clause in enumerate(part.strip() for part in note.split("; ") if part.strip()):
        lines += textwrap.wrap(clause, NOTE_WIDTH, initial_indent=f"{title}: " if i == 0 else "  ",
                               subsequent_indent="    ", break_on_hyphens=False,
                               break_long_words=False)
    return "\n".join(lines) or f"{title}:"


def _decided(note: str, plan_note: str | None) -> str:
    """What the probe's note adds to the plan's sentence, which was printed when training began."""
    prefix = f"{plan_note}; " if plan_note else None
    return note[len(prefix):] if prefix and note.startswith(prefix) else note

"""The training history: one row per epoch (a dict), and one per batch.

:class:`History` is a list of epoch rows, so ``clf.history_`` stays the plain
list of dicts it always was (and goes into the model file as JSON), while
callbacks write into it through :meth:`History.record`. Per-batch rows live
in :attr:`History.batches` during training and are not saved with the model.
"""

from __future__ import annotations


class History(list):
    """Epoch rows (dicts) in order; ``batches`` holds the current fit's per-batch rows.

    The trainer opens a row with :meth:`new_epoch` and every callback may add
    its own keys with :meth:`record` (the loop's own keys: ``epoch``,
    ``phase``, ``phase_epoch``, ``lr``, ``train_loss``, ``train_accuracy``,
    ``val_loss``, ``val_accuracy``, the monitored metric, ``seconds``).
    """

    def __init__(self, rows=()):
        super().__init__(dict(row) for row in rows)
        self.batches: list[dict] = []

    def new_epoch(self, **row) -> dict:
        self.append(dict(row))
        return self[-1]

    def record(self, key: str, value) -> None:
        """Set ``key`` in the current epoch's row."""
        self[-1][key] = value

    def new_batch(self, **row) -> dict:
        self.batches.append(dict(row))
        return self.batches[-1]

    def column(self, key: str) -> list:
        """``key`` of every epoch row (None where a row lacks it)."""
        return [row.get(key) for row in self]

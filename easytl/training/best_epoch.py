"""The best epoch by the monitored metric: its weights, kept and restored; and early stopping."""

from __future__ import annotations

import copy

from .metrics import Monitor


class BestEpoch:
    """Marks each epoch row ``best`` (strictly better than every epoch before it on the
    monitored validation metric) and keeps that epoch's weights. Without validation data no
    epoch is ``best`` and the last weights stay."""

    def __init__(self, monitor: Monitor):
        self.monitor = monitor
        self.best, self.epoch, self.state = None, None, None

    def update(self, epoch: int, row: dict, model) -> bool:
        improved = self.monitor.better(row.get(self.monitor.name), self.best)
        if improved:
            self.best, self.epoch = row[self.monitor.name], epoch
            self.state = copy.deepcopy(model.state_dict())
        row["best"] = improved
        return improved

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.epoch, "best_state": self.state}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.epoch, self.state = state["best"], state["best_epoch"], state["best_state"]


class EarlyStopping:
    """After ``patience`` epochs of a phase without a new best epoch, end the phase; the
    trainer then goes on from the best weights so far."""

    def __init__(self, patience: int):
        self.patience = patience
        self.since_best = 0

    def begin_phase(self, resuming: bool) -> None:
        if not resuming:
            self.since_best = 0

    def update(self, improved: bool) -> bool:
        """Whether the phase should end now."""
        self.since_best = 0 if improved else self.since_best + 1
        return self.since_best >= self.patience

    def state_dict(self) -> dict:
        return {"since_best": self.since_best}

    def load_state_dict(self, state: dict) -> None:
        self.since_best = state["since_best"]

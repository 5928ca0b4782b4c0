"""Keep the weights of the best epoch by the monitored metric, and restore them at the end."""

from __future__ import annotations

import copy

from ..metrics import Monitor
from .base import Callback


class BestWeights(Callback):
    """Marks each epoch row ``best`` (strictly better than every epoch before it on the
    monitored validation metric), keeps that epoch's weights as ``trainer.best_state`` and
    loads them when training ends, however it ends. Without validation data no epoch is
    ``best`` and the last weights stay."""

    def __init__(self, monitor: Monitor):
        self.monitor = monitor
        self.best = None

    def on_train_begin(self, logs=None) -> None:
        self.best = None
        self.trainer.best_state, self.trainer.best_epoch = None, None

    def on_epoch_end(self, epoch, logs) -> None:
        improved = self.monitor.better(logs.get(self.monitor.name), self.best)
        if improved:
            self.best = logs[self.monitor.name]
            self.trainer.best_epoch = epoch
            self.trainer.best_state = copy.deepcopy(self.trainer.model.state_dict())
        logs["best"] = improved

    def on_train_end(self, logs=None) -> None:
        if self.trainer.best_state is not None:
            self.trainer.model.load_state_dict(self.trainer.best_state)

    def state_dict(self) -> dict:
        t = self.trainer
        return {"best": self.best, "best_epoch": t.best_epoch, "best_state": t.best_state}

    def load_state_dict(self, state: dict) -> None:
        self.best = state["best"]
        self.trainer.best_epoch, self.trainer.best_state = state["best_epoch"], state["best_state"]

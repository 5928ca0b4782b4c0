"""End a phase that has stopped improving, and go on from its best weights."""

from __future__ import annotations

from .base import Callback


class EarlyStopping(Callback):
    """After ``patience`` epochs of a phase without a new best epoch (see
    :class:`~easytl.training.callbacks.BestWeights`), end the phase and load the best weights so far;
    the next phase starts from them."""

    def __init__(self, patience: int):
        self.patience = patience
        self.since_best = 0

    def on_phase_begin(self, phase, logs=None) -> None:
        if self.trainer.resuming is None:
            self.since_best = 0

    def on_epoch_end(self, epoch, logs) -> None:
        self.since_best = 0 if logs.get("best") else self.since_best + 1
        if self.since_best >= self.patience:
            self.trainer.stop_phase = True
            if self.trainer.best_state is not None:
                self.trainer.model.load_state_dict(self.trainer.best_state)

    def state_dict(self) -> dict:
        return {"since_best": self.since_best}

    def load_state_dict(self, state: dict) -> None:
        self.since_best = state["since_best"]

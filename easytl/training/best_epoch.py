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
        self.probe = None  # the probe's epoch, held-out accuracy and weights

    def update(self, epoch: int, row: dict, model, probe: bool = False) -> bool:
        improved = self.monitor.better(row.get(self.monitor.name), self.best)
        if improved:
            self.best, self.epoch = row[self.monitor.name], epoch
            self.state = copy.deepcopy(model.state_dict())
        row["best"] = improved
        # The probe floor (keep_probe_if_better) is for the validation loss: another monitor is
        # a score the user chose, and it picks among the probe and the later epochs itself.
        if probe and row.get("val_accuracy") is not None and self.monitor.name == "val_loss":
            self.probe = {"epoch": epoch, "accuracy": float(row["val_accuracy"]),
                          "state": {k: v.detach().to("cpu", copy=True)
                                    for k, v in model.state_dict().items()}}
        return improved

    def keep_probe_if_better(self, history) -> str | None:
        """The kept model is never worse than the probe on the held-out images by the accuracy
        the user sees: when the best epoch by the monitored metric scores lower, the probe's
        weights are kept instead. Returns what was done, in words (None: nothing)."""
        if self.probe is None or self.epoch is None or self.epoch == self.probe["epoch"]:
            return None
        kept = history[self.epoch - 1].get("val_accuracy")
        if kept is None or kept >= self.probe["accuracy"]:
            return None
        note = (f"the best fine-tuned epoch ({self.epoch}, held-out accuracy {kept:.3f}) scores "
                f"below the probe ({self.probe['accuracy']:.3f}): the probe's weights are kept")
        self.epoch, self.state = self.probe["epoch"], self.probe["state"]
        self.best = history[self.epoch - 1].get(self.monitor.name)
        return note

    def restore(self, model) -> None:
        if self.state is not None:
            model.load_state_dict(self.state)

    def state_dict(self) -> dict:
        return {"best": self.best, "best_epoch": self.epoch, "best_state": self.state,
                "probe": self.probe}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.epoch, self.state = state["best"], state["best_epoch"], state["best_state"]
        self.probe = state.get("probe")


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

"""The learning rate of every optimizer update: warmup, then cosine decay, a constant, or plateau cuts."""

from __future__ import annotations

import math

from .metrics import Monitor

LR_DECAYS = ("cosine", "plateau", None)


def lr_factor(step: int, total: int, warmup: int, decay: str | None) -> float:
    """The fraction of a phase's base LR at optimizer step ``step`` (0-based) of ``total``.

    A pure function of the step, so a checkpoint needs only the step number:
    linear warmup from 1/(warmup+1) to 1 over ``warmup`` steps, then cosine
    decay to 0 over the rest (``"cosine"``), or 1 (``"plateau"``, None).
    """
    if step < warmup:
        start = 1.0 / (warmup + 1)
        return start + (1.0 - start) * step / warmup
    if decay != "cosine":
        return 1.0
    rest = max(1, total - warmup)
    return (1.0 + math.cos(math.pi * (step - warmup) / rest)) / 2.0


class Plateau:
    """Cut the LR by ``factor`` after more than ``patience`` epochs without improvement.

    The rule of ``torch.optim.lr_scheduler.ReduceLROnPlateau`` (relative
    threshold 1e-4, no cooldown), kept as a small state so it composes with the
    warmup factor and survives checkpoints.
    """

    THRESHOLD = 1e-4

    def __init__(self, mode: str = "min", factor: float = 0.1, patience: int = 1):
        self.mode, self.factor, self.patience = mode, factor, patience
        self.best, self.bad_epochs, self.scale = None, 0, 1.0

    def step(self, value: float) -> None:
        if self.best is None or self._better(value):
            self.best, self.bad_epochs = value, 0
        else:
            self.bad_epochs += 1
        if self.bad_epochs > self.patience:
            self.scale *= self.factor
            self.bad_epochs = 0

    def _better(self, value: float) -> bool:
        if self.mode == "min":
            return value < self.best * (1 - self.THRESHOLD) if self.best >= 0 else \
                value < self.best * (1 + self.THRESHOLD)
        return value > self.best * (1 + self.THRESHOLD) if self.best >= 0 else \
            value > self.best * (1 - self.THRESHOLD)

    def state_dict(self) -> dict:
        return {"best": self.best, "bad_epochs": self.bad_epochs, "scale": self.scale,
                "mode": self.mode}

    def load_state_dict(self, state: dict) -> None:
        self.best, self.bad_epochs, self.scale = state["best"], state["bad_epochs"], state["scale"]
        self.mode = state.get("mode", self.mode)


class LRSchedule:
    """Sets every parameter group's LR before each optimizer update.

    ``lr = base × lr_factor(update) × plateau scale``, where the base is the
    group's LR from the phase (head ``Phase.lr``, backbone ``lr ×
    backbone_lr_mult``). It counts optimizer updates, not batches: with
    gradient accumulation, warmup and cosine decay span the phase's updates.
    With ``decay="plateau"`` the monitored metric (the training loss without
    validation data) is checked after each epoch once warmup is over; each
    phase starts afresh.
    """

    def __init__(self, decay: str | None = "cosine", monitor: Monitor | None = None,
                 plateau_factor: float = 0.1, plateau_patience: int = 1):
        if decay not in LR_DECAYS:
            raise ValueError(f"lr_decay must be 'cosine', 'plateau' or None, got {decay!r}.")
        self.decay, self.monitor = decay, monitor
        self.plateau_factor, self.plateau_patience = plateau_factor, plateau_patience
        self.step, self.plateau, self.base, self.optimizer = 0, None, [], None
        self.total = self.warmup = self.updates_per_epoch = 0
        self.use_monitor = False

    def begin_phase(self, optimizer, phase, updates_per_epoch: int, resuming: bool,
                    validated: bool) -> None:
        """``validated``: the fit has validation data, so the plateau rule follows the monitor."""
        self.optimizer = optimizer
        self.updates_per_epoch = updates_per_epoch
        self.total = phase.epochs * updates_per_epoch
        self.warmup = min(int(round(phase.warmup_epochs * updates_per_epoch)), self.total)
        self.base = [group["initial_lr"] if "initial_lr" in group else group["lr"]
                     for group in optimizer.param_groups]
        for group, base in zip(optimizer.param_groups, self.base):
            group["initial_lr"] = base
        self.use_monitor = self.monitor is not None and validated
        if not resuming:
            self.step = 0
            self.plateau = (Plateau(self.monitor.mode if self.use_monitor else "min",
                                    self.plateau_factor, self.plateau_patience)
                            if self.decay == "plateau" else None)
        self._apply()

    def after_update(self) -> None:
        self.step += 1
        self._apply()

    def after_epoch(self, row: dict, phase_epoch: int) -> None:
        if self.plateau is None or self.optimizer is None:
            return
        if phase_epoch * self.updates_per_epoch < self.warmup:
            return
        value = row.get(self.monitor.name) if self.use_monitor else None
        self.plateau.step(value if value is not None else row["train_loss"])
        self._apply()  # a cut applies from the next update on

    def end_phase(self) -> None:
        self.optimizer = None

    def _apply(self) -> None:
        factor = lr_factor(self.step, self.total, self.warmup, self.decay)
        scale = 1.0 if self.plateau is None else self.plateau.scale
        for group, base in zip(self.optimizer.param_groups, self.base):
            group["lr"] = base * factor * scale

    def state_dict(self) -> dict:
        return {"step": self.step, "plateau": None if self.plateau is None else self.plateau.state_dict()}

    def load_state_dict(self, state: dict) -> None:
        self.step = state["step"]
        if state["plateau"] is not None:
            mode = self.monitor.mode if self.monitor is not None else "min"
            self.plateau = Plateau(mode, self.plateau_factor, self.plateau_patience)
            self.plateau.load_state_dict(state["plateau"])
        else:
            self.plateau = None

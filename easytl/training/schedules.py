"""Training schedules: which layer groups train, for how long, at which learning rate.

A schedule is a plain description. It keeps no counters: the trainer walks
its phases and passes epochs and steps in (as timm's schedulers do).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass, replace
from typing import Sequence, Union

TrainableGroups = Union[int, str]


@dataclass(frozen=True)
class Phase:
    """One phase of training.

    Parameters
    ----------
    epochs : int
        Length of the phase. When the estimator's ``epochs`` is set, phases
        share that total in proportion to these values.
    trainable_groups : int or "all", default=0
        0 trains the head only; k also trains the top k backbone layer
        groups; ``"all"`` trains everything.
    lr : float, optional
        Head learning rate; None takes the estimator's ``lr``.
    backbone_lr_mult : float, optional
        Backbone LR = head LR × this; None takes the estimator's value.
    warmup_epochs : float, optional
        Linear warmup at the start of the phase, per step; None takes the estimator's.
    name : str, optional
        Shown in progress bars and ``history_``.
    probe : bool, default=False
        Solve the head instead of training it: a linear probe, i.e. a
        (multinomial, L2-regularised) logistic regression fitted to
        convergence on the frozen backbone's features, copied into a linear
        head. Needs ``trainable_groups=0`` and a linear head; takes one
        ``history_`` row whatever ``epochs`` says. This is the first half of
        LP-FT (Kumar et al., ICLR 2022): fine-tuning then starts from a
        converged head instead of a random one.
    layer_lr_decay : float, optional
        Layer-wise LR decay in (0, 1]: the top trainable backbone layer group
        trains at the backbone LR, each group below it at this factor times the
        LR of the group above (the stem of EfficientNet-Lite0's 8 groups at
        0.8: 0.8^7 = 0.21 of the top's LR), so the generic low layers move
        least. None or 1: one backbone LR. (The default plan does not use it: on
        the inspection proxy 0.8 lost 4 points against one LR.)
    """

    epochs: int
    trainable_groups: TrainableGroups = 0
    lr: float | None = None
    backbone_lr_mult: float | None = None
    warmup_epochs: float | None = None
    name: str | None = None
    probe: bool = False
    layer_lr_decay: float | None = None

    def __post_init__(self):
        if not isinstance(self.epochs, int) or self.epochs < 0:
            raise ValueError(f"Phase epochs must be a non-negative int, got {self.epochs!r}.")
        groups = self.trainable_groups
        if not (groups == "all" or (isinstance(groups, int) and groups >= 0)):
            raise ValueError(f"Phase trainable_groups must be an int >= 0 or 'all', got {groups!r}.")
        for field in ("lr", "backbone_lr_mult", "warmup_epochs"):
            value = getattr(self, field)
            if value is not None and not value >= 0:
                raise ValueError(f"Phase {field} must be >= 0, got {value!r}.")
        decay = self.layer_lr_decay
        if decay is not None and not 0 < decay <= 1:
            raise ValueError(f"Phase layer_lr_decay must be in (0, 1], got {decay!r}.")
        if self.probe and groups != 0:
            raise ValueError("a probe Phase fits the head on frozen features: trainable_groups must be 0.")

    @property
    def head_only(self) -> bool:
        return self.trainable_groups == 0


class Schedule:
    """Base class: subclasses return their phases from :meth:`phases`.

    ``lr`` is the estimator's head learning rate; a subclass may scale it per phase.
    """

    def phases(self, lr: float) -> list[Phase]:
        raise NotImplementedError

    def __repr__(self) -> str:
        fields = ", ".join(f"{k}={v!r}" for k, v in vars(self).items())
        return f"{type(self).__name__}({fields})"


class FeatureExtraction(Schedule):
    """Frozen backbone; only the head trains (the notebook's §2)."""

    def __init__(self, epochs: int = 10):
        self.epochs = epochs

    def phases(self, lr: float) -> list[Phase]:
        return [Phase(self.epochs, 0, lr, name="head")]


class FineTune(Schedule):
    """Everything trains; the backbone at ``backbone_lr_mult`` × the head's LR."""

    def __init__(self, epochs: int = 6, backbone_lr_mult: float | None = None):
        self.epochs = epochs
        self.backbone_lr_mult = backbone_lr_mult

    def phases(self, lr: float) -> list[Phase]:
        return [Phase(self.epochs, "all", lr, self.backbone_lr_mult, name="all")]


class ProgressiveUnfreezing(Schedule):
    """Head only → top groups → everything, each phase at a lower LR (the notebook's recipe).

    With the defaults (``lr=1e-3``, ``backbone_lr_mult=0.1``) the head trains
    alone at 1e-3, then the top ``top_groups`` backbone groups join at 1e-4,
    then every layer trains at 1e-5 (head at 1e-4).

    Parameters
    ----------
    epochs : sequence of 3 ints, default=(4, 4, 2)
        Epochs of the three phases. The last phase is the costly one (a full
        backward pass) and, measured on digits and textures, gained least, so
        it gets the fewest epochs.
    top_groups : int, default=3
        Backbone layer groups unfrozen in the middle phase.
    last_lr_scale : float, default=0.1
        LR of the last phase relative to the first.
    """

    def __init__(self, epochs: Sequence[int] = (4, 4, 2), top_groups: int = 3,
                 last_lr_scale: float = 0.1):
        self.epochs = tuple(epochs)
        self.top_groups = top_groups
        self.last_lr_scale = last_lr_scale

    def phases(self, lr: float) -> list[Phase]:
        if len(self.epochs) != 3:
            raise ValueError(f"ProgressiveUnfreezing takes 3 phase lengths, got {self.epochs!r}.")
        head, top, every = self.epochs
        return [Phase(head, 0, lr, name="head"),
                Phase(top, self.top_groups, lr, name=f"top{self.top_groups}"),
                Phase(every, "all", lr * self.last_lr_scale, name="all")]


SCHEDULES = {"feature_extraction": FeatureExtraction, "fine_tune": FineTune,
             "progressive": ProgressiveUnfreezing}


def split_epochs(weights: Sequence[int], total: int) -> list[int]:
    """Share ``total`` epochs between phases in proportion to ``weights``.

    Every phase gets at least one epoch when ``total`` allows; the rest goes
    by largest remainder, so the result always sums to ``total``.
    """
    n = len(weights)
    floor = 1 if total >= n else 0
    rest = total - floor * n
    weights = list(weights) if sum(weights) > 0 else [1] * n
    shares = [rest * w / sum(weights) for w in weights]
    counts = [floor + int(s) for s in shares]
    order = sorted(range(n), key=lambda i: shares[i] - int(shares[i]), reverse=True)
    for i in order[:total - sum(counts)]:
        counts[i] += 1
    return counts


def resolve_phases(schedule, lr: float, backbone_lr_mult: float, warmup_epochs: float,
                   epochs: int | None = None) -> list[Phase]:
    """Turn the estimator's ``schedule`` and defaults into concrete phases (no None left).

    ``"auto"`` is planned from the data by the estimator when ``epochs`` is None
    (:mod:`easytl.training.adaptive`); with a number of epochs it is ``"progressive"``.
    """
    if schedule == "auto":
        schedule = "progressive"
    if isinstance(schedule, str):
        if schedule not in SCHEDULES:
            raise ValueError(f"unknown schedule {schedule!r}: use one of {', '.join(SCHEDULES)}, "
                             "a Schedule object or a list of Phase.")
        schedule = SCHEDULES[schedule]()
    if isinstance(schedule, Schedule):
        phases = list(schedule.phases(lr))
    elif isinstance(schedule, (list, tuple)) and schedule and all(isinstance(p, Phase) for p in schedule):
        phases = list(schedule)
    else:
        raise TypeError("schedule must be 'feature_extraction', 'fine_tune', 'progressive', "
                        f"a Schedule object or a non-empty list of Phase, not {schedule!r}.")
    if epochs is not None:
        if not isinstance(epochs, numbers.Integral) or isinstance(epochs, bool) or epochs < 1:
            raise ValueError(f"epochs must be a positive int or None, got {epochs!r}.")
        epochs = int(epochs)  # a numpy integer is an epoch count too
        counts = split_epochs([p.epochs for p in phases], epochs)
        phases = [replace(p, epochs=c) for p, c in zip(phases, counts)]
    resolved = [replace(p,
                        lr=lr if p.lr is None else p.lr,
                        backbone_lr_mult=backbone_lr_mult if p.backbone_lr_mult is None
                        else p.backbone_lr_mult,
                        warmup_epochs=warmup_epochs if p.warmup_epochs is None else p.warmup_epochs,
                        name=p.name or f"phase{i + 1}")
                for i, p in enumerate(phases)]
    return [p for p in resolved if p.epochs > 0]

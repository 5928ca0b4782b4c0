"""What each estimator parameter accepts, as one table, checked when ``fit`` starts.

Each entry is a list of alternatives; a value is valid if any alternative
accepts it, and the error names every alternative, e.g. ``lr must be a number
> 0, got -1``. Adding a parameter means adding one line here.
"""

from __future__ import annotations

import numbers
import os
import re
from dataclasses import dataclass
from typing import Any

from .constants import parse_bytes


class Accepts:
    """One alternative: ``ok(value)`` and how to describe it in an error."""

    description = ""

    def ok(self, value) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class Options(Accepts):
    values: tuple

    def ok(self, value) -> bool:
        value = plain(value)  # np.True_ is True, as scikit-learn takes it
        return any(value is v or (type(value) is type(v) and value == v) for v in self.values)

    @property
    def description(self) -> str:
        return ", ".join(repr(v) for v in self.values)


@dataclass(frozen=True)
class Number(Accepts):
    low: float | None = None        # inclusive unless low_open
    high: float | None = None       # inclusive unless high_open
    integer: bool = False
    low_open: bool = False
    high_open: bool = False

    def ok(self, value) -> bool:
        kind = numbers.Integral if self.integer else numbers.Real
        if not isinstance(value, kind) or isinstance(value, bool) or value != value:
            return False
        if self.low is not None and (value <= self.low if self.low_open else value < self.low):
            return False
        return self.high is None or (value < self.high if self.high_open else value <= self.high)

    @property
    def description(self) -> str:
        text = "an integer" if self.integer else "a number"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {_number(self.low)}")
        if self.high is not None:
            bounds.append(f"{'<' if self.high_open else '<='} {_number(self.high)}")
        return text + (" " + " and ".join(bounds) if bounds else "")


def plain(value):
    """A numpy scalar as the Python value it holds (np.bool_ → bool, np.int64 → int); else as is."""
    import numpy as np
    return value.item() if isinstance(value, np.generic) else value


def _number(bound: float) -> str:
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True)
class Kind(Accepts):
    types: tuple
    description: str = ""

    def ok(self, value) -> bool:
        return isinstance(value, self.types)


@dataclass(frozen=True)
class Matches(Accepts):
    pattern: str
    description: str = ""

    def ok(self, value) -> bool:
        return isinstance(value, str) and re.fullmatch(self.pattern, value) is not None


class IsCallable(Accepts):
    description = "a callable"

    def ok(self, value) -> bool:
        return callable(value) and not isinstance(value, str)


class ByteSize(Accepts):
    description = "a byte count or a size such as '500MB' or '2GB'"

    def ok(self, value) -> bool:
        try:
            parse_bytes(value)
        except ValueError:
            return False
        return True


def _module_kind():
    from torch import nn
    return Kind((nn.Module,), "an nn.Module")


def _schedule_kinds():
    from .training.schedules import Phase, Schedule

    class PhaseList(Accepts):
        description = "a list of Phase"

        def ok(self, value) -> bool:
            return isinstance(value, (list, tuple)) and bool(value) and all(
                isinstance(p, Phase) for p in value)
    return [Kind((Schedule,), "a Schedule"), PhaseList()]


PATH = Kind((str, os.PathLike), "a file path")
NONE = Options((None,))
POSITIVE_INT = Number(1, integer=True)
NON_NEGATIVE = Number(0)
POSITIVE = Number(0, low_open=True)
BOOL = Options((False, True))
SEED = Number(0, 2**32 - 1, integer=True)  # numpy's seeds: what every split and shuffle takes

# Arguments of the prediction methods, checked when they are called.
METHOD_ARGUMENTS: dict[str, list[Accepts]] = {
    "n_augment": [POSITIVE_INT],
    "reject_unknown": [BOOL],
    "return_proba": [BOOL],
}
# The estimator parameters that prediction reads: set_params after fit must not slip past.
PREDICT_PARAMETERS = ("predict_batch_size", "num_workers", "device", "mixed_precision", "verbose")


def parameter_table() -> dict[str, list[Accepts]]:
    """Every estimator parameter and its alternatives (built lazily: it names torch types)."""
    from .data.augment import AUGMENT_PRESETS
    from .training.learning_rates import LR_DECAYS
    from .training.callbacks.tracking import TRACKERS
    from .models.device import DEVICES, PRECISIONS
    from .training.metrics import MONITORS, Monitor
    from .training.optimizers import OPTIMIZERS
    from .constants import SCHEDULE_NAMES
    return {
        "backbone": [Kind((str,), "a backbone name"), _module_kind()],
        "weights": [Options(("default", None)), PATH],
        "head": [Options(("auto", "linear", "mlp")), IsCallable()],
        "schedule": [Options(SCHEDULE_NAMES), *_schedule_kinds()],
        "epochs": [POSITIVE_INT, NONE],
        "batch_size": [POSITIVE_INT],
        "lr": [POSITIVE, Options(("auto",))],
        "backbone_lr_mult": [NON_NEGATIVE, Options(("auto",))],
        "warmup_epochs": [NON_NEGATIVE, Options(("auto",))],
        "lr_decay": [Options(LR_DECAYS)],
        "grad_clip": [POSITIVE, NONE],
        "train_bn": [BOOL],
        "image_size": [Options(("auto", None)), POSITIVE_INT],
        "augment": [Options(AUGMENT_PRESETS + (None,)), IsCallable()],
        "val_size": [Options(("auto",)), Number(0, 1, high_open=True), Number(1, integer=True)],
        "early_stopping": [POSITIVE_INT, NONE],
        "monitor": [Options(tuple(MONITORS)), Kind((Monitor,), "a Monitor"), IsCallable()],
        "optimizer": [Options(OPTIMIZERS), IsCallable()],
        "weight_decay": [NON_NEGATIVE],
        "plateau_factor": [Number(0, 1, low_open=True, high_open=True)],
        "plateau_patience": [Number(0, integer=True)],
        "class_weight": [Options((None, "balanced")), Kind((dict,), "a dict {label: weight}")],
        "mixed_precision": [Options(PRECISIONS)],
        "device": [Options(DEVICES), Matches(r"cuda:\d+", "'cuda:N'")],
        "num_workers": [Options(("auto",)), Number(0, integer=True)],
        "random_state": [SEED, NONE],
        "verbose": [Number(0, integer=True), BOOL],
        "callbacks": [NONE, Kind((list, tuple), "a list of callbacks"), IsCallable()],
        "log_with": [NONE, Options(TRACKERS), Kind((list, tuple), f"a list of {TRACKERS}")],
        "logging_dir": [NONE, PATH],
        "cache_features": [Options(("auto", True, False))],
        "cache_views": [POSITIVE_INT],
        "cache_memory": [ByteSize()],
        "cache_dir": [NONE, PATH],
        "predict_batch_size": [POSITIVE_INT],
        "on_bad_image": [Options(("error", "skip"))],
        "calibrate": [BOOL],
        "multi_label": [Options(("auto", True, False))],
        "unknown_rate": [Number(0, 1, low_open=True, high_open=True)],
        "label_smoothing": [Number(0, 1, high_open=True)],
        "mixup": [NONE, POSITIVE],
        "cutmix": [NONE, POSITIVE],
        "ema": [NONE, Number(0, 1, low_open=True, high_open=True)],
        "accumulate": [POSITIVE_INT],
        "unlabeled_label": [NONE, Kind((numbers.Integral, str), "an int or a string label")],
    }


def describe(alternatives: list[Accepts]) -> str:
    texts = [a.description for a in alternatives]
    return texts[0] if len(texts) == 1 else ", ".join(texts[:-1]) + " or " + texts[-1]


def validate_params(params: dict[str, Any], table: dict[str, list[Accepts]] | None = None) -> None:
    """Raise a ValueError naming the first parameter whose value no alternative accepts."""
    table = parameter_table() if table is None else table
    for name, value in params.items():
        alternatives = table.get(name)
        if alternatives is not None and not any(a.ok(value) for a in alternatives):
            raise ValueError(f"{name} must be {describe(alternatives)}; got {value!r}.")


def validate_arguments(**arguments) -> None:
    """Check the arguments of a prediction method (``n_augment``, ``reject_unknown``, ...)."""
    validate_params(arguments, METHOD_ARGUMENTS)


def feature_extractor_table() -> dict[str, list[Accepts]]:
    """The parameters of :class:`~easytl.features.FeatureExtractor` (``memory`` is scikit-learn's)."""
    table = parameter_table()
    return {name: table[name] for name in ("backbone", "weights", "image_size", "batch_size",
                                           "mixed_precision", "device", "num_workers", "verbose")}

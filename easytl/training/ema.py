"""Exponential moving average of the weights: validate, pick and keep the averaged model."""

from __future__ import annotations

import copy

from torch.optim.swa_utils import AveragedModel


def ema_decay(decay: float, updates: int) -> float:
    """The decay of update number ``updates`` (0-based): ``min(decay, (1 + n) / (10 + n))``.

    The warm-up (timm's ``ModelEmaV3``, TensorFlow's ``num_updates``) keeps the
    average from being dominated by the first weights in a short fit: with
    0.999 and no warm-up a 300-step fit would average mostly the starting point.
    """
    return min(decay, (1.0 + updates) / (10.0 + updates))


class WeightEMA:
    """Keeps an exponential moving average of the weights over each phase's optimizer updates
    (``torch.optim.swa_utils.AveragedModel``; buffers too).

    After each epoch's training the averaged weights are swapped in, so
    validation, the best epoch, checkpoints and the model ``fit`` returns are
    the averaged ones; training goes on from the raw weights. The average
    restarts with each phase: the frozen stages and their cached activations
    stay exactly those of the raw weights, and a phase begins from the
    average of the one before it.
    """

    def __init__(self, decay: float):
        self.decay = decay
        self.average: AveragedModel | None = None
        self.raw: dict | None = None

    def _average_fn(self, averaged, current, updates):
        d = ema_decay(self.decay, int(updates))
        return averaged * d + current * (1.0 - d)

    def _new_average(self, model) -> AveragedModel:
        return AveragedModel(model, avg_fn=self._average_fn, use_buffers=True)

    def begin_phase(self, model, resuming: bool) -> None:
        if resuming and self.average is not None:
            return  # restored from the checkpoint: go on with that average
        self.average = self._new_average(model)
        self.raw = None

    def begin_epoch(self, model) -> None:
        if self.raw is not None:  # train on from the raw weights
            model.load_state_dict(self.raw)
            self.raw = None

    def after_update(self, model) -> None:
        self.average.update_parameters(model)

    def before_validation(self, model) -> None:
        if self.average is None or int(self.average.n_averaged) == 0:
            return  # a probe epoch: no update to average
        self.raw = copy.deepcopy(model.state_dict())
        model.load_state_dict(self.average.module.state_dict())

    def end_phase(self) -> None:
        self.raw = None  # the phase's result is its average

    def state_dict(self) -> dict:
        return {"average": None if self.average is None else self.average.state_dict(),
                "raw": self.raw}

    def load_state_dict(self, state: dict, model) -> None:
        self.raw = state["raw"]
        if state["average"] is not None:
            self.average = self._new_average(model)
            self.average.load_state_dict(state["average"])  # n_averaged is one of its buffers

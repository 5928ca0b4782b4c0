"""The callback interface, and the list that calls callbacks in their fixed order."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from ..trainer import Trainer
    from ..schedules import Phase


class Callback:
    """A hook into training. Override what you need; ``self.trainer`` is set at train start.

    Hooks, in the order they fire: ``on_train_begin``, then per phase
    ``on_phase_begin``, per epoch ``on_epoch_begin``, per batch
    ``on_batch_begin``, ``on_after_backward`` (gradients are there, the
    optimizer is about to step: clipping goes here; with gradient accumulation
    only before a real step), ``on_batch_end``, then ``on_validation_begin``
    (the epoch's training is done, validation comes: weight averaging swaps
    here), ``on_epoch_end``, ``on_phase_end`` and ``on_train_end``.

    ``logs`` is the current row: the epoch's row of :class:`~easytl.training.history.History`
    (``trainer.history[-1]``) at epoch end, the batch's row at batch end. Add
    your own columns with ``self.trainer.history.record(key, value)``. Set
    ``self.trainer.stop_training = True`` (or return True from
    :meth:`on_epoch_end`) to stop after the current epoch.

    A callback that must survive a checkpoint keeps its state in
    :meth:`state_dict` / :meth:`load_state_dict`.
    """

    trainer: "Trainer" = None

    def set_trainer(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

    def on_phase_begin(self, phase: "Phase", logs: dict | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_after_backward(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_validation_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> bool | None:
        pass

    def on_phase_end(self, phase: "Phase", logs: dict | None = None) -> None:
        pass

    def on_train_end(self, logs: dict | None = None) -> None:
        pass

    def state_dict(self) -> dict | None:
        """What a checkpoint must keep of this callback (None: nothing)."""
        return None

    def load_state_dict(self, state: dict) -> None:
        pass


class LambdaCallback(Callback):
    """Wrap a plain function ``f(epoch, logs) -> stop?`` as an epoch-end callback."""

    def __init__(self, on_epoch_end):
        self._fn = on_epoch_end

    def on_epoch_end(self, epoch: int, logs: dict):
        return self._fn(epoch, logs)


def as_callbacks(callbacks) -> list[Callback]:
    """The user's ``callbacks`` parameter as Callback objects (functions are wrapped)."""
    if callbacks is None:
        return []
    items = callbacks if isinstance(callbacks, (list, tuple)) else [callbacks]
    out = []
    for item in items:
        if isinstance(item, Callback):
            out.append(item)
        elif callable(item):
            out.append(LambdaCallback(item))
        else:
            raise TypeError(f"callbacks must be Callback objects or functions (epoch, logs); "
                            f"got {type(item).__name__}.")
    return out


class CallbackList:
    """Callbacks in order; :meth:`fire` calls one hook on each of them."""

    def __init__(self, callbacks: list[Callback], trainer: "Trainer"):
        self.callbacks, self.trainer = list(callbacks), trainer
        for callback in self.callbacks:
            callback.set_trainer(trainer)

    def __iter__(self):
        return iter(self.callbacks)

    def fire(self, hook: str, *args) -> None:
        """Call ``hook`` on every callback in order. A callback that returns True stops
        training, and the callbacks after it already see ``trainer.stop_training``."""
        for callback in self.callbacks:
            if getattr(callback, hook)(*args):
                self.trainer.stop_training = True

    def states(self) -> dict:
        """Checkpointable states, keyed by position and class name."""
        out = {}
        for i, callback in enumerate(self.callbacks):
            state = callback.state_dict()
            if state is not None:
                out[f"{i}:{type(callback).__name__}"] = state
        return out

    def load_states(self, states: dict) -> None:
        for i, callback in enumerate(self.callbacks):
            key = f"{i}:{type(callback).__name__}"
            if key in states:
                callback.load_state_dict(states[key])

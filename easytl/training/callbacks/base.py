"""The callback interface: hooks that observe training (and may stop it), in a fixed order."""

from __future__ import annotations


class Callback:
    """A hook into training. Override what you need.

    Hooks, in the order they fire: ``on_train_begin``, then per phase
    ``on_phase_begin``, per epoch ``on_epoch_begin``, per batch
    ``on_batch_begin``, ``on_after_backward`` (gradients are there, the
    optimizer is about to step; with gradient accumulation only before a real
    step), ``on_batch_end``, then ``on_validation_begin`` (the epoch's training
    is done, validation comes), ``on_epoch_end``, ``on_phase_end`` and
    ``on_train_end`` (always: also when training ends by Ctrl-C or an error,
    then ``logs`` holds ``interrupted`` or ``error``).

    Callbacks observe. During a fit ``self.trainer`` is a read-only view of
    the trainer (``model``, ``history``, ``optimizer``, ``phase``, ``epoch``,
    ``plan``, ...); after the fit it is None, so a callback kept by the user
    does not keep the trainer's weights, feature cache or optimizer alive.
    To stop, return True from :meth:`on_epoch_end` or :meth:`on_batch_end`,
    or set ``self.trainer.stop_training = True``. Add your own columns to the
    epoch's row with ``self.trainer.history.record(key, value)``.

    ``logs`` is the current row: the epoch's row of :class:`~easytl.History` at
    epoch end, the batch's row at batch end.

    A callback that must survive a checkpoint keeps its state in
    :meth:`state_dict` / :meth:`load_state_dict`; the state is stored under the
    callback's :attr:`name` (its class name unless set), so names must differ.
    """

    trainer = None
    name: str | None = None

    @property
    def key(self) -> str:
        """The name that keys this callback's checkpoint state."""
        return self.name or type(self).__name__

    def set_trainer(self, trainer) -> None:
        self.trainer = trainer

    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

    def on_phase_begin(self, phase, logs: dict | None = None) -> None:
        pass

    def on_epoch_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_begin(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_after_backward(self, batch: int, logs: dict | None = None) -> None:
        pass

    def on_batch_end(self, batch: int, logs: dict | None = None) -> bool | None:
        pass

    def on_validation_begin(self, epoch: int, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> bool | None:
        pass

    def on_phase_end(self, phase, logs: dict | None = None) -> None:
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
        self.name = f"LambdaCallback[{getattr(on_epoch_end, '__qualname__', 'function')}]"

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


def check_names(callbacks: list[Callback]) -> list[str]:
    """The names of the callbacks that keep a checkpoint state (part of the checkpoint's
    fingerprint); two callbacks with a state must not share a name."""
    names = [c.key for c in callbacks]
    stateful = [c.key for c in callbacks if type(c).state_dict is not Callback.state_dict]
    twice = sorted({n for n in stateful if names.count(n) > 1})
    if twice:
        raise ValueError(f"callbacks named {twice} occur more than once; their checkpoint states "
                         "would mix. Give each a distinct `name` attribute.")
    return stateful


class TrainerView:
    """What a callback sees of the trainer: every attribute to read, and ``stop_training``
    to set. Detached when the fit ends, so it keeps nothing alive."""

    __slots__ = ("_trainer",)

    def __init__(self, trainer):
        object.__setattr__(self, "_trainer", trainer)

    def __getattr__(self, name: str):
        trainer = object.__getattribute__(self, "_trainer")
        if trainer is None:
            raise AttributeError(f"the fit is over: callbacks see the trainer only during fit "
                                 f"(asked for {name!r}); use the estimator's fitted attributes.")
        return getattr(trainer, name)

    def __setattr__(self, name: str, value) -> None:
        if name != "stop_training":
            raise AttributeError(f"callbacks observe: {name!r} cannot be set. Return True from "
                                 "on_epoch_end/on_batch_end or set stop_training to stop.")
        if value:
            self._trainer.stop_training = True

    def detach(self) -> None:
        object.__setattr__(self, "_trainer", None)


class CallbackList:
    """Callbacks in order; :meth:`fire` calls one hook on each of them."""

    def __init__(self, callbacks: list[Callback], trainer):
        self.callbacks, self.trainer = list(callbacks), trainer
        check_names(self.callbacks)
        self.view = TrainerView(trainer)
        for callback in self.callbacks:
            callback.set_trainer(self.view)

    def __iter__(self):
        return iter(self.callbacks)

    def fire(self, hook: str, *args) -> None:
        """Call ``hook`` on every callback in order. A callback that returns True stops
        training, and the callbacks after it already see ``trainer.stop_training``."""
        for callback in self.callbacks:
            if getattr(callback, hook)(*args):
                self.trainer.stop_training = True

    def detach(self) -> None:
        """End of fit: no callback keeps a way to the trainer."""
        self.view.detach()
        for callback in self.callbacks:
            callback.set_trainer(None)

    def states(self) -> dict:
        """Checkpointable states, keyed by callback name."""
        out = {}
        for callback in self.callbacks:
            state = callback.state_dict()
            if state is not None:
                out[callback.key] = state
        return out

    def load_states(self, states: dict) -> None:
        for callback in self.callbacks:
            if callback.key in states:
                callback.load_state_dict(states[callback.key])

"""Callbacks observe training and may stop it; the trainer itself does everything else.

The trainer's own steps, in the order they run around the loop (not callbacks,
not replaceable): phase setup (freezing, feature cache, optimizer), the LR
schedule (per optimizer update), gradient clipping, weight EMA, best-epoch
tracking, early stopping, checkpoints, then the trust statistics after
training. Callbacks fire after the trainer's own step at each point, in this
order:

1. your callbacks, in the order given
2. :class:`Tracking` — when ``log_with`` is set
3. :class:`ProgressLog` — bars and epoch lines, last
"""

from .base import Callback, CallbackList, LambdaCallback, TrainerView, as_callbacks
from .progress import ProgressLog

__all__ = ["Callback", "CallbackList", "LambdaCallback", "ProgressLog", "TrainerView",
           "as_callbacks", "observers"]


def observers(user=(), tracking=None, verbose: int = 1, monitor_name: str | None = None) -> list:
    """The callbacks of a fit, in the documented order."""
    callbacks = list(user)
    if tracking is not None:
        callbacks.append(tracking)
    callbacks.append(ProgressLog(verbose, monitor_name))
    return callbacks

"""Every training behaviour is a callback, in a fixed order around a small loop.

The order (``default_callbacks``), which matters because later callbacks see
what earlier ones decided in the same hook:

1. :class:`PhaseSetup` — freezing, BatchNorm policy, feature cache, optimizer
2. :class:`LRSchedule` — warmup, cosine / constant / plateau, per step
3. :class:`GradientClipping` — when ``grad_clip`` is set
   (then :class:`WeightEMA` when ``ema`` is set: it swaps the averaged weights
   in before validation, so everything after it sees them)
4. :class:`BestWeights` — marks the best epoch, keeps and finally restores its weights
   (and, at train end, :class:`TrustStatistics`: temperature and novelty statistics)
5. your callbacks, in the order given
6. :class:`EarlyStopping` — when ``early_stopping`` is set
7. :class:`Checkpoint` — when ``fit(checkpoint_dir=...)``
8. :class:`Tracking` — when ``log_with`` is set
9. :class:`ProgressLog` — bars and epoch lines, last
"""

from .base import Callback, CallbackList, LambdaCallback, as_callbacks
from .best_weights import BestWeights
from .checkpoint import Checkpoint
from .early_stopping import EarlyStopping
from .ema import WeightEMA
from .grad_clip import GradientClipping
from .lr_schedule import LRSchedule, lr_factor
from .phase_setup import PhaseSetup
from .progress import ProgressLog
from .trust import TrustStatistics

__all__ = ["BestWeights", "Callback", "CallbackList", "Checkpoint", "EarlyStopping",
           "GradientClipping", "LRSchedule", "LambdaCallback", "PhaseSetup", "ProgressLog",
           "TrustStatistics", "WeightEMA", "as_callbacks", "default_callbacks", "lr_factor"]


def default_callbacks(*, phase_setup: PhaseSetup, lr_schedule: LRSchedule, monitor, user=(),
                      grad_clip=None, early_stopping=None, checkpoint=None, tracking=None,
                      trust: TrustStatistics | None = None, ema: WeightEMA | None = None,
                      verbose: int = 1) -> list[Callback]:
    """The built-in callbacks around the user's, in the documented order."""
    callbacks = [phase_setup, lr_schedule]
    if grad_clip is not None:
        callbacks.append(GradientClipping(grad_clip))
    if ema is not None:
        callbacks.append(ema)
    callbacks.append(BestWeights(monitor))
    if trust is not None:
        callbacks.append(trust)
    callbacks += list(user)
    if early_stopping is not None:
        callbacks.append(EarlyStopping(early_stopping))
    if checkpoint is not None:
        callbacks.append(checkpoint)
    if tracking is not None:
        callbacks.append(tracking)
    callbacks.append(ProgressLog(verbose, monitor.name))
    return callbacks

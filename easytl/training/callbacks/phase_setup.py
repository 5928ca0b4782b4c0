"""Phase setup: what trains, BatchNorm's mode, the feature cache and the optimizer of a phase."""

from __future__ import annotations

import time

from ..feeds import CachedFeed, frozen_prefix_length
from ...models.network import freeze_for_phase, set_train_mode
from ..optimizers import make_optimizer
from .base import Callback


class PhaseSetup(Callback):
    """The first callback: prepares each phase before anything else sees it.

    * freezes everything the phase does not train (``Phase.trainable_groups``);
    * caches the output of the frozen lower stages (``cache_features``): once
      per image and augmented view, in RAM up to ``cache_memory`` and on disk
      beyond; a probe phase caches the pooled features and solves the head;
    * creates the phase's optimizer and prepares it with the model (accelerate;
      re-prepared per phase because the trainable parameters changed);
    * at every epoch start, puts frozen layers, and BatchNorm unless
      ``train_bn``, in inference mode.
    """

    def __init__(self, *, train_bn: bool = False, cache_features: bool = True, cache_views: int = 2,
                 cache_memory: float | None = None, cache_dir=None, optimizer="adamw",
                 weight_decay: float = 1e-4):
        self.train_bn = train_bn
        self.cache_features, self.cache_views = cache_features, cache_views
        self.cache_memory, self.cache_dir = cache_memory, cache_dir
        self.optimizer, self.weight_decay = optimizer, weight_decay
        self.generator_at_phase_start = None

    def on_phase_begin(self, phase, logs=None) -> None:
        t = self.trainer
        backbone_params = freeze_for_phase(t.model, phase.trainable_groups)
        if t.resuming is not None and t.generator is not None:
            # The cached views were drawn from the generator as it stood when the phase began.
            resumed_generator = t.generator.get_state()
            t.generator.set_state(self.generator_at_phase_start)
        self.generator_at_phase_start = None if t.generator is None else t.generator.get_state()
        start = time.perf_counter()
        if phase.probe:
            t.train_feed, t.val_feed = self._probe(phase)
            t.optimizer, t.prepared_model = None, t.model
        else:
            t.train_feed, t.val_feed = self._feeds(phase)
            optimizer = make_optimizer(self.optimizer, t.model.head.parameters(), backbone_params,
                                       phase.lr, phase.lr * phase.backbone_lr_mult, self.weight_decay)
            t.prepared_model, t.optimizer = t.accelerator.prepare(t.model, optimizer)
        t.setup_seconds = time.perf_counter() - start  # counted in the phase's first epoch
        if t.resuming is not None:
            if t.optimizer is not None:
                t.optimizer.load_state_dict(t.resuming["optimizer"])
            if t.generator is not None:
                t.generator.set_state(resumed_generator)

    def on_epoch_begin(self, epoch, logs=None) -> None:
        set_train_mode(self.trainer.model, self.train_bn)

    def on_phase_end(self, phase, logs=None) -> None:
        t = self.trainer
        if t.optimizer is not None:
            t.model = t.accelerator.unwrap_model(t.prepared_model, keep_fp32_wrapper=False)
            t.accelerator.free_memory()
        t.optimizer, t.prepared_model = None, None

    def state_dict(self) -> dict:
        return {"generator_at_phase_start": self.generator_at_phase_start}

    def load_state_dict(self, state: dict) -> None:
        self.generator_at_phase_start = state["generator_at_phase_start"]

    # -- feeds -------------------------------------------------------------------------------
    def _cache(self, feed, start: int, views: int, augment: bool, what: str = "training"):
        t = self.trainer
        return CachedFeed.build(t.model, feed, start, views, augment, t.accelerator,
                                self.cache_memory, self.cache_dir, verbose=t.verbose, what=what)

    def _feeds(self, phase):
        """Cached activations of the frozen lower stages when possible, else the image feeds."""
        t = self.trainer
        train_feed, val_feed = t.image_feeds
        start = frozen_prefix_length(t.model.backbone) if self.cache_features else 0
        if start == 0:
            return train_feed, val_feed
        augment = t.preprocess.augment is not None
        views = min(self.cache_views, phase.epochs) if augment else 1
        cached_train = self._cache(train_feed, start, views, augment)
        if cached_train is None:
            return train_feed, val_feed
        if val_feed is None or len(val_feed) == 0:  # (a process may hold no validation image)
            return cached_train, val_feed
        return cached_train, self._cache(val_feed, start, 1, False, "validation") or val_feed

    def _probe(self, phase):
        """Pooled features of every image (all stages frozen), and the probe solved on them."""
        from ..probe import fit_linear_probe
        t = self.trainer
        train_feed, val_feed = t.image_feeds
        everything = len(t.model.backbone.stages)
        train = self._cache(train_feed, everything, 1, False)
        val = (None if val_feed is None or len(val_feed) == 0 else
               self._cache(val_feed, everything, 1, False, "validation"))
        if train is None:
            raise RuntimeError("the linear probe needs the training features, and they could not be "
                               "cached (see the warning above).")
        features, targets = train.all_rows(), train.targets
        if t.accelerator.num_processes > 1:  # one probe on every process's images
            features = t.accelerator.gather(features.to(t.accelerator.device)).cpu()
            targets = t.accelerator.gather(targets.to(t.accelerator.device)).cpu()
        weights = None if t.class_weights is None else t.class_weights.cpu().numpy()
        fit_linear_probe(t.model.head, features.float().numpy(), targets.numpy(), weights)
        return train, val

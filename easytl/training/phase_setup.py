"""Phase setup, a step of the trainer: what trains, the feature cache, the optimizer of a phase."""

from __future__ import annotations

import time
from dataclasses import dataclass

from .feeds import CachedFeed, frozen_prefix_length
from .optimizers import make_optimizer
from ..models.network import freeze_for_phase


@dataclass
class PhaseFeeds:
    """What a phase trains on and validates on, and its optimizer (None for a probe)."""

    train: object
    val: object
    optimizer: object = None
    prepared_model: object = None
    seconds: float = 0.0          # setup time, counted in the phase's first epoch


class PhaseSetup:
    """Prepares each phase:

    * freezes everything the phase does not train (``Phase.trainable_groups``);
    * caches the output of the frozen lower stages (``cache_features``): once
      per image and augmented view, in RAM up to ``cache_memory`` and on disk
      beyond; a probe phase caches the pooled features and solves the head;
    * creates the phase's optimizer and prepares it with the model (accelerate;
      re-prepared per phase because the trainable parameters changed).

    Its only state is the generator's state at the phase start (the cached views
    of a resumed phase are drawn again from it).
    """

    def __init__(self, plan, accelerator, generator, verbose: int):
        self.plan, self.accelerator, self.generator, self.verbose = plan, accelerator, generator, verbose
        self.generator_at_phase_start = None

    def begin(self, model, image_feeds, phase, cache: bool, resuming: dict | None,
              class_weights) -> PhaseFeeds:
        """Set up ``phase`` (``cache``: train on cached activations of the frozen prefix)."""
        backbone_params = freeze_for_phase(model, phase.trainable_groups)
        if resuming is not None and self.generator is not None:
            # The cached views were drawn from the generator as it stood when the phase began.
            resumed_generator = self.generator.get_state()
            self.generator.set_state(self.generator_at_phase_start)
        self.generator_at_phase_start = None if self.generator is None else self.generator.get_state()
        start = time.perf_counter()
        if phase.probe:
            train, val = self._probe(model, image_feeds, class_weights)
            feeds = PhaseFeeds(train, val, None, model)
        else:
            train, val = self._feeds(model, image_feeds, phase, cache)
            optimizer = make_optimizer(self.plan.optimizer, model.head.parameters(), backbone_params,
                                       phase.lr, phase.lr * phase.backbone_lr_mult,
                                       self.plan.weight_decay, phase.layer_lr_decay)
            prepared_model, optimizer = self.accelerator.prepare(model, optimizer)
            feeds = PhaseFeeds(train, val, optimizer, prepared_model)
        feeds.seconds = time.perf_counter() - start
        if resuming is not None:
            if feeds.optimizer is not None:
                feeds.optimizer.load_state_dict(resuming["optimizer"])
            if self.generator is not None:
                self.generator.set_state(resumed_generator)
        return feeds

    def end(self, feeds: PhaseFeeds, model):
        """The plain model back from accelerate's wrapper (the phase's result)."""
        if feeds.optimizer is not None:
            model = self.accelerator.unwrap_model(feeds.prepared_model, keep_fp32_wrapper=False)
            self.accelerator.free_memory()
        return model

    def state_dict(self) -> dict:
        return {"generator_at_phase_start": self.generator_at_phase_start}

    def load_state_dict(self, state: dict) -> None:
        self.generator_at_phase_start = state["generator_at_phase_start"]

    # -- feeds -------------------------------------------------------------------------------
    def _cache(self, model, feed, start: int, views: int, augment: bool, what: str = "training"):
        return CachedFeed.build(model, feed, start, views, augment, self.accelerator,
                                self.plan.cache_memory_bytes, self.plan.cache_dir,
                                verbose=self.verbose, what=what)

    def _feeds(self, model, image_feeds, phase, cache: bool):
        """Cached activations of the frozen lower stages when the plan says so, else images."""
        train_feed, val_feed = image_feeds
        start = frozen_prefix_length(model.backbone) if cache else 0
        if start == 0:
            return train_feed, val_feed
        augment = train_feed.preprocess.augment is not None
        views = min(self.plan.cache_views, phase.epochs) if augment else 1
        cached_train = self._cache(model, train_feed, start, views, augment)
        if cached_train is None:
            return train_feed, val_feed
        if val_feed is None or len(val_feed) == 0:  # (a process may hold no validation image)
            return cached_train, val_feed
        return cached_train, self._cache(model, val_feed, start, 1, False, "validation") or val_feed

    def _probe(self, model, image_feeds, class_weights):
        """Pooled features of every image (all stages frozen), and the probe solved on them."""
        from .probe import fit_linear_probe
        train_feed, val_feed = image_feeds
        everything = len(model.backbone.stages)
        train = self._cache(model, train_feed, everything, 1, False)
        val = (None if val_feed is None or len(val_feed) == 0 else
               self._cache(model, val_feed, everything, 1, False, "validation"))
        if train is None:
            raise RuntimeError("the linear probe needs the training features, and they could not be "
                               "cached (see the warning above).")
        features, targets = train.all_rows(), train.targets
        acc = self.accelerator
        if acc.num_processes > 1:  # one probe on every process's images
            features = acc.gather(features.to(acc.device)).cpu()
            targets = acc.gather(targets.to(acc.device)).cpu()
        weights = None if class_weights is None else class_weights.cpu().numpy()
        fit_linear_probe(model.head, features.float().numpy(), targets.numpy(), weights)
        return train, val

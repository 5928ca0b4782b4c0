"""The training loop: phases -> epochs -> batches, from a FitPlan to a FitResult.

The trainer owns the model, the optimizer, the feeds and the caches, and runs
its own steps at fixed points (phase setup, LR schedule, clipping, weight
EMA, best epoch, early stopping, checkpoints, trust statistics). Callbacks
(:mod:`easytl.training.callbacks`) observe each point and may stop training;
they write nothing into the trainer.
"""

from __future__ import annotations

import contextlib
import copy
import math
import time
import warnings
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch

from .best_epoch import BestEpoch, EarlyStopping
from .callbacks import CallbackList
from .checkpoints import Checkpointing
from .ema import WeightEMA
from .evaluation import Evaluation
from .feeds import ImageFeed
from .history import History
from .learning_rates import LRSchedule
from .mixing import BatchMixer
from .phase_setup import PhaseFeeds, PhaseSetup
from . import decisions
from .schedules import Phase
from .tasks import task_for
from .post_fit_trust import TrustResult, trust_statistics
from ..data.augment import Preprocessor
from ..data.sources import ImageSource
from ..models.depthwise import fp32_depthwise_training
from ..models.network import TransferModel, set_train_mode


def shard_positions(n: int, rank: int, world: int, pad: bool) -> np.ndarray:
    """Positions ``rank, rank + world, ...`` of ``n`` items. With ``pad`` every process gets
    the same count (wrapping around, as DistributedSampler does) so that all take the same
    number of optimizer steps, which DDP's gradient all-reduce requires."""
    if pad:
        per_process = math.ceil(n / world)
        return (np.arange(per_process) * world + rank) % n
    return np.arange(rank, n, world)


@dataclass
class FitResult:
    """What a fit produced (the estimator keeps it as its fitted attributes)."""

    model: TransferModel
    history: History
    best_epoch: int | None
    interrupted: bool
    trust: TrustResult
    phases: tuple = ()       # the phases that ran (after a weak probe: the deeper fine-tuning)
    cache_phases: tuple = ()  # per phase that ran: whether it trained on cached activations
    changes: tuple = ()       # what the decisions after the probe changed (PlanChange)


class Trainer(Evaluation, Checkpointing):
    """Runs a :class:`~easytl.plan.FitPlan` for a :class:`~easytl.models.network.TransferModel`.

    Parameters
    ----------
    plan : FitPlan
        Everything the fit does (phases, batch size, recipes, cache, trust options).
    model, preprocess, accelerator
        The network, the on-device preprocessing, and the accelerate ``Accelerator``.
    callbacks : list of Callback
        Observers, in order (:func:`easytl.training.callbacks.observers`).
    class_weights : tensor, optional
        Weights of the training loss per class.
    generator : torch.Generator
        Shuffling and augmentation draw from it (seeded fits repeat exactly).
    checkpoint_dir : path, optional
        Write ``checkpoint.pt`` there after every epoch.
    """

    def __init__(self, plan, model: TransferModel, preprocess: Preprocessor, accelerator, *,
                 callbacks: Sequence = (), class_weights: torch.Tensor | None = None,
                 generator: torch.Generator | None = None, checkpoint_dir=None):
        self.plan, self.model, self.preprocess, self.accelerator = plan, model, preprocess, accelerator
        self.task = task_for(plan.multi_label)
        self.batch_size, self.accumulate = plan.batch_size, plan.accumulate
        self.class_weights, self.generator = class_weights, generator
        self.monitor, self.verbose, self.checkpoint_dir = plan.monitor, plan.verbose, checkpoint_dir
        self.mixer = (BatchMixer(len(plan.classes), plan.mixup, plan.cutmix)
                      if plan.mixup or plan.cutmix else None)
        self.phase_setup = PhaseSetup(plan, accelerator, generator, plan.verbose)
        self.lr_schedule = LRSchedule(plan.lr_decay, plan.monitor, plan.plateau_factor,
                                      plan.plateau_patience)
        self.best = BestEpoch(plan.monitor)
        self.early_stopping = (None if plan.early_stopping is None
                               else EarlyStopping(plan.early_stopping))
        self.ema = None if plan.ema is None else WeightEMA(plan.ema)
        self.callbacks = CallbackList(list(callbacks), self)
        self.history = History()
        self.stop_training = self.stop_phase = self.interrupted = False
        self.stepped = False  # whether the optimizer stepped on the last batch (accumulation)
        self.epoch = self.phase_index = self.phase_epoch = 0
        self.phase: Phase | None = None
        self.feeds: PhaseFeeds | None = None
        self.image_feeds = None
        self.trust = None  # the calibration and novelty statistics, once training is done
        self.labeled = None  # which training rows carry a given label (None: all of them)
        self._cross_fit = None  # the images the cross-fitted checks score, and their features

    # -- what callbacks read -----------------------------------------------------------------
    @property
    def train_feed(self):
        return None if self.feeds is None else self.feeds.train

    @property
    def val_feed(self):
        return None if self.feeds is None else self.feeds.val

    @property
    def optimizer(self):
        return None if self.feeds is None else self.feeds.optimizer

    @property
    def best_epoch(self) -> int | None:
        return self.best.epoch

    @property
    def batches_per_epoch(self) -> int:
        """Training batches in an epoch of the current phase (the last one may be smaller)."""
        return math.ceil(len(self.train_feed) / self.batch_size)

    @property
    def updates_per_epoch(self) -> int:
        """Optimizer updates in an epoch: one per ``accumulate`` batches (and at the end)."""
        return math.ceil(self.batches_per_epoch / self.accumulate)

    # -- fit --------------------------------------------------------------------------------
    def fit(self, train: ImageSource, train_targets: np.ndarray, val: ImageSource | None = None,
            val_targets: np.ndarray | None = None, *, resume_from: dict | None = None,
            labeled: np.ndarray | None = None) -> FitResult:
        """Train through the plan's phases; return the model with the best epoch's weights.

        ``labeled`` marks the training rows whose label was given (False: pseudo-labeled,
        :mod:`easytl.training.semi_supervised`); the trust statistics use only those.

        Ctrl-C ends training early, keeping the best weights so far (``interrupted``);
        a non-finite loss raises FloatingPointError after restoring the last good
        weights; ``resume_from`` (a loaded checkpoint) continues where it stopped.
        Whatever happens, the callbacks see ``on_train_end`` and the trainer lets go
        of its feeds, caches and kept weights.
        """
        end_logs = {"interrupted": False, "error": None, "best_epoch": None}
        trust = TrustResult()
        self.phases, self.interrupted, self._last_good_state = list(self.plan.phases), False, None
        self.cache_phases, self.changes = list(self.plan.cache_phases), []
        try:
            device = self.accelerator.device
            self.model.to(device).to(memory_format=torch.channels_last)
            weight = None if self.class_weights is None else self.class_weights.to(device)
            self.criterion = self.task.loss(weight, self.plan.label_smoothing)
            self.val_criterion = self.task.loss()
            self.callbacks.fire("on_train_begin", {})
            self.labeled = None if labeled is None or np.all(labeled) else np.asarray(labeled, bool)
            train, train_targets, val, val_targets = self._shard(train, train_targets, val, val_targets)
            self.image_feeds = (
                ImageFeed(train, train_targets, self.preprocess, self.batch_size, device,
                          self.generator, self.plan.num_workers),
                None if val is None else ImageFeed(val, val_targets, self.preprocess, self.batch_size,
                                                   device, None, self.plan.num_workers))
            first_phase = 0 if resume_from is None else self._restore(resume_from)
            self._run_phases(first_phase, resume_from)
            kept_probe = self.best.keep_probe_if_better(self.history)
            if kept_probe is not None:
                self.changes.append(decisions.PlanChange(decisions.KEEP_PROBE, kept_probe))
            self.best.restore(self.model)
            if self.history and not self.interrupted:
                trust = trust_statistics(self, self.plan.calibrate, self.plan.unknown_rate,
                                         self.plan.seed)
            self.trust = trust
            end_logs.update(interrupted=self.interrupted, best_epoch=self.best.epoch)
        except BaseException as exc:
            end_logs.update(error=f"{type(exc).__name__}: {exc}", best_epoch=self.best.epoch)
            if isinstance(exc, FloatingPointError):
                self._drop_unfinished_epoch()
                self.model.load_state_dict(self.best.state or self._last_good_state)
            self._end(end_logs, failing=True)
            raise
        self._end(end_logs, failing=False)
        return self.result(trust)

    def result(self, trust: TrustResult | None = None) -> FitResult:
        """What the fit produced so far (also after an error: the last good weights)."""
        return FitResult(self.model, self.history, self.best.epoch, self.interrupted,
                         trust or TrustResult(), tuple(self.phases),
                         tuple(self.cache_phases[:len(self.phases)]), tuple(self.changes))

    def _end(self, logs: dict, failing: bool) -> None:
        """``on_train_end`` for every callback, then let go of everything. While an error is on
        its way out, a callback failing here is reported as a warning and does not hide it, nor
        keep the callbacks after it from ending (a tracker closing its run)."""
        try:
            if not failing:
                self.callbacks.fire("on_train_end", logs)
                return
            for callback in self.callbacks:
                try:
                    callback.on_train_end(logs)
                except Exception as exc:  # the original error is what the user must see
                    warnings.warn(f"callback {callback.key} failed in on_train_end while training "
                                  f"was ending with an error: {type(exc).__name__}: {exc}",
                                  stacklevel=3)
        finally:
            self._release()

    def _run_phases(self, first_phase: int, resume_from: dict | None) -> None:
        cpu_bf16 = self.accelerator.device.type == "cpu" and self.accelerator.mixed_precision == "bf16"
        try:
            with fp32_depthwise_training(self.model, enabled=cpu_bf16):
                index = first_phase
                while index < len(self.phases):  # (the probe may replace the phases after it)
                    if self.stop_training:
                        break
                    resuming = (resume_from if resume_from is not None and index == first_phase
                                and not resume_from["phase_done"] else None)
                    self._run_phase(index, resuming)
                    index += 1
        except KeyboardInterrupt:
            if self._drop_unfinished_epoch() and self.best.state is None and self._last_good_state:
                # nothing held out picks a best epoch: keep the last finished epoch's weights,
                # not those of the steps the cut-short epoch took
                self.model.load_state_dict(self._last_good_state)
            self.interrupted = True
            if self.history:
                self.history[-1]["interrupted"] = True

    def _release(self) -> None:
        """Let go of everything large: feeds and caches (and their temporary files), the kept
        weights, the optimizer; callbacks lose their view of the trainer."""
        self.callbacks.detach()
        self.feeds = self.image_feeds = None
        self.best.state = self.best.probe = self._last_good_state = self._cross_fit = None
        if self.ema is not None:
            self.ema.average = self.ema.raw = None

    def _drop_unfinished_epoch(self) -> bool:
        """An epoch cut short by an exception leaves no row: history holds finished epochs.
        Returns whether there was one."""
        if self.history and "seconds" not in self.history[-1]:
            self.history.pop()
            return True
        return False

    def _shard(self, train, train_targets, val, val_targets):
        """Data parallel: each process trains on its own equal-sized shard and validates on
        its share of the validation images (which may be none); metrics are summed or
        gathered over processes."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        if world == 1:
            return train, train_targets, val, val_targets
        shard = shard_positions(len(train_targets), rank, world, pad=True)
        train, train_targets = train.subset(shard), np.asarray(train_targets)[shard]
        if self.labeled is not None:
            self.labeled = self.labeled[shard]
        if val is not None:
            shard = shard_positions(len(val_targets), rank, world, pad=False)
            val, val_targets = val.subset(shard), np.asarray(val_targets)[shard]
        return train, train_targets, val, val_targets

    # -- phases and epochs ------------------------------------------------------------------
    def _run_phase(self, index: int, resuming: dict | None) -> None:
        phase = self.phases[index]
        self.phase, self.phase_index, self.stop_phase, self.feeds = phase, index, False, None
        try:
            self.feeds = self.phase_setup.begin(self.model, self.image_feeds, phase,
                                                self.cache_phases[index], resuming, self.class_weights)
            if self.optimizer is not None:
                self.lr_schedule.begin_phase(self.optimizer, phase, self.updates_per_epoch,
                                             resuming is not None, self.plan.n_val > 0)
            if self.ema is not None:
                self.ema.begin_phase(self.model, resuming is not None)
            if self.early_stopping is not None:
                self.early_stopping.begin_phase(resuming is not None)
            self.callbacks.fire("on_phase_begin", phase, {"epoch": self.epoch})
            first = 1 if resuming is None else resuming["phase_epoch"] + 1
            for phase_epoch in range(first, (1 if phase.probe else phase.epochs) + 1):
                self._run_epoch(phase, phase_epoch)
                if self.stop_training or self.stop_phase:
                    break
        finally:
            if self.ema is not None:
                self.ema.end_phase()
            self.lr_schedule.end_phase()
            if self.feeds is not None:
                self.model = self.phase_setup.end(self.feeds, self.model)
                self.feeds.optimizer = self.feeds.prepared_model = None
            self.callbacks.fire("on_phase_end", phase, {"epoch": self.epoch})

    def _run_epoch(self, phase: Phase, phase_epoch: int) -> None:
        self.epoch += 1
        self.phase_epoch = phase_epoch
        start = time.perf_counter()
        row = self.history.new_epoch(epoch=self.epoch, phase=phase.name, phase_epoch=phase_epoch)
        self._last_good_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        set_train_mode(self.model, self.plan.train_bn)
        if self.ema is not None:
            self.ema.begin_epoch(self.model)
        self.callbacks.fire("on_epoch_begin", self.epoch, row)
        if phase.probe:
            train_loss, train_acc = self.evaluate(self.train_feed, self.criterion)
        else:
            train_loss, train_acc = self._train_epoch()
        row.update(lr=None if self.optimizer is None else self.optimizer.optimizer.param_groups[0]["lr"],
                   train_loss=train_loss, train_accuracy=train_acc, val_loss=None,
                   val_accuracy=None, cache=getattr(self.train_feed, "storage", None))
        if self.ema is not None:
            self.ema.before_validation(self.model)
        self.callbacks.fire("on_validation_begin", self.epoch, row)
        if self.plan.n_val > 0:
            row.update(self.validate(self.val_feed, balanced=phase.probe
                                     and self.plan.if_probe_weak is not None))
        row["seconds"] = round(time.perf_counter() - start
                               + (self.feeds.seconds if phase_epoch == 1 else 0.0), 3)
        self._end_epoch(phase, row)

    def _end_epoch(self, phase: Phase, row: dict) -> None:
        """The trainer's epoch-end steps around the callbacks: best epoch (before them: they see
        ``best``), then the callbacks (which may stop), early stopping, the plateau rule, the
        checkpoint (after everything that may stop, so it records that)."""
        improved = self.best.update(self.epoch, row, self.model, probe=phase.probe)
        if phase.probe and self.plan.note is not None:
            row["note"] = self.plan.note
            changes = decisions.take(decisions.after_probe(self.plan), self, row)
            for change in changes:
                self.apply_change(change, row)
            row["decisions"] = [change.record() for change in changes]
        self.callbacks.fire("on_epoch_end", self.epoch, row)
        if self.early_stopping is not None and self.early_stopping.update(improved):
            self.stop_phase = True
            self.best.restore(self.model)
        if self.optimizer is not None:
            self.lr_schedule.after_epoch(row, self.phase_epoch)
        self._write_checkpoint(self.epoch)

    def _train_epoch(self) -> tuple[float, float]:
        acc, feed, model = self.accelerator, self.train_feed, self.feeds.prepared_model
        total_loss, correct, seen = 0.0, 0, 0
        n_batches = self.batches_per_epoch
        for batch, (x, labels) in enumerate(feed.batches(train=True, epoch_in_phase=self.phase_epoch)):
            batch_row = self.history.new_batch(epoch=self.epoch, batch=batch)
            self.callbacks.fire("on_batch_begin", batch, batch_row)
            targets = labels
            if self.mixer is not None:
                x, targets, lam = self.mixer(x, self.task.soft(labels, self.mixer.n_classes),
                                             self.generator)
                batch_row["mix_lambda"] = lam
            # Gradient accumulation: a group of `accumulate` batches (fewer at the end of the
            # epoch) makes one optimizer update on the mean of their losses.
            group_start = batch - batch % self.accumulate
            group = min(self.accumulate, n_batches - group_start)
            self.stepped = batch == group_start + group - 1
            with acc.autocast():
                logits = model(x, start=feed.start)
                loss = self.criterion(logits.float(), targets)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {loss.item()} in epoch {self.epoch} ({self.phase.name}). "
                    "Try a lower lr, grad_clip=1.0, or mixed_precision='no'.")
            if batch == group_start:
                self.optimizer.zero_grad(set_to_none=True)
            # DDP all-reduces gradients only on the group's last backward pass.
            with contextlib.nullcontext() if self.stepped else acc.no_sync(model):
                acc.backward(loss / group)
            if self.stepped:
                if self.plan.grad_clip is not None:  # after backward, before the step
                    params = [p for g in self.optimizer.param_groups for p in g["params"]]
                    acc.clip_grad_norm_(params, self.plan.grad_clip)
                self.callbacks.fire("on_after_backward", batch, batch_row)
                self.optimizer.step()
                self.lr_schedule.after_update()
                if self.ema is not None:
                    self.ema.after_update(self.model)
            n, value = len(labels), loss.item()
            total_loss += value * n
            correct += self.task.correct(logits, labels)
            seen += n
            batch_row.update(loss=value, size=n)
            self.callbacks.fire("on_batch_end", batch, batch_row)
            if self.stop_training:  # a callback may stop within an epoch (the LR finder does)
                break
        total_loss, correct, seen = self._sum_over_processes(total_loss, correct, seen)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def apply_change(self, change, row: dict | None = None) -> None:
        """Apply what a decision after the probe changed (:mod:`easytl.training.decisions`) and,
        unless it is replayed on resume (``row`` None), record it in the probe's row."""
        after = self.phase_index + 1
        if change.stop:
            self.stop_training = True
            del self.phases[after:]  # phases_ lists what ran
        if change.phases is not None:
            self.phases[after:] = list(change.phases)
            self.cache_phases[after:] = list(change.cache_phases)
        if change.augment is not None:
            self._use_augmentation(change.augment)
        self.changes.append(change)
        if row is not None:
            row["note"] = f"{row['note']}; {change.note}" if change.extends_note else change.note
            row.update(change.row)
            if "symmetry_seconds" in change.row:  # the test's time counts in the probe's
                row["seconds"] = round(row["seconds"] + change.row["symmetry_seconds"], 3)

    def _use_augmentation(self, recipe: str) -> None:
        """Train from now on with ``recipe`` (a copy of the preprocessing: prediction's is
        untouched)."""
        train = self.image_feeds[0]
        train.preprocess = copy.copy(train.preprocess)
        train.preprocess.augment = recipe

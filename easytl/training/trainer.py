"""The training loop: phases → epochs → batches, with a hook at every step.

Everything that is a policy rather than the loop itself — freezing and the
feature cache, the LR schedule, clipping, best-epoch tracking, early stopping,
checkpoints, tracking, progress — is a callback (:mod:`easytl.training.callbacks`), run
in a fixed order. The loop forwards, computes the loss, steps the optimizer,
validates and records the numbers in :class:`~easytl.training.history.History`.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Sequence

import numpy as np
import torch

from .callbacks import CallbackList
from ..data.augment import Preprocessor
from ..data.sources import ImageSource
from ..models.depthwise import fp32_depthwise_training
from .feeds import ImageFeed
from .history import History
from .metrics import MONITORS, Monitor
from .mixing import BatchMixer
from ..models.network import TransferModel
from .schedules import Phase
from .tasks import SingleLabel


def shard_positions(n: int, rank: int, world: int, pad: bool) -> np.ndarray:
    """Positions ``rank, rank + world, ...`` of ``n`` items. With ``pad`` every process gets
    the same count (wrapping around, as DistributedSampler does) so that all take the same
    number of optimizer steps, which DDP's gradient all-reduce requires."""
    if pad:
        per_process = math.ceil(n / world)
        return (np.arange(per_process) * world + rank) % n
    return np.arange(rank, n, world)


class Trainer:
    """Runs phases of training for a :class:`~easytl.models.network.TransferModel`.

    Parameters
    ----------
    model, preprocess, accelerator
        The network, the on-device preprocessing, and the accelerate ``Accelerator``.
    callbacks : list of Callback
        In order (see :func:`easytl.training.callbacks.default_callbacks`).
    batch_size : int
    class_weights : tensor, optional
        Weights of the training loss per class.
    monitor : Monitor
        The validation metric every epoch reports besides loss and accuracy.
    generator : torch.Generator, optional
        Shuffling and augmentation draw from it (seeded fits repeat exactly).

    Attributes during and after :meth:`fit`: ``history``, ``best_epoch``,
    ``best_state``, ``stop_training``, ``interrupted``, and, during a phase,
    ``phase``, ``phase_index``, ``phase_epoch``, ``epoch``, ``train_feed``,
    ``val_feed``, ``optimizer``.
    """

    def __init__(self, model: TransferModel, preprocess: Preprocessor, accelerator, *,
                 callbacks: Sequence = (), batch_size: int = 32,
                 class_weights: torch.Tensor | None = None, monitor: Monitor = MONITORS["val_loss"],
                 verbose: int = 1, generator: torch.Generator | None = None, num_workers: int = 0,
                 task=None, label_smoothing: float = 0.0, mixer: BatchMixer | None = None,
                 accumulate: int = 1):
        self.model, self.preprocess, self.accelerator = model, preprocess, accelerator
        self.task = task if task is not None else SingleLabel()
        self.label_smoothing, self.mixer, self.accumulate = label_smoothing, mixer, accumulate
        self.stepped = False  # whether the optimizer stepped on the last batch (accumulation)
        self.batch_size, self.class_weights, self.monitor = batch_size, class_weights, monitor
        self.verbose, self.generator, self.num_workers = verbose, generator, num_workers
        self.callbacks = CallbackList(list(callbacks), self)
        self.history = History()
        self.best_epoch, self.best_state = None, None
        self.stop_training = self.stop_phase = self.interrupted = False
        self.epoch = self.phase_index = self.phase_epoch = 0
        self.phase = self.optimizer = self.prepared_model = self.resuming = None
        self.train_feed = self.val_feed = self.image_feeds = None
        self.setup_seconds = 0.0

    @property
    def batches_per_epoch(self) -> int:
        """Training batches in an epoch of the current phase (the last one may be smaller)."""
        return math.ceil(len(self.train_feed) / self.batch_size)

    # -- fit --------------------------------------------------------------------------------
    def fit(self, phases: Sequence[Phase], train: ImageSource, train_targets: np.ndarray,
            val: ImageSource | None = None, val_targets: np.ndarray | None = None, *,
            resume_from: dict | None = None) -> TransferModel:
        """Train through ``phases``; return the model with the best epoch's weights.

        Ctrl-C ends training early, keeping the best weights so far (``interrupted``);
        a non-finite loss raises FloatingPointError after restoring the last good
        weights; ``resume_from`` (a loaded checkpoint) continues where it stopped.
        """
        device = self.accelerator.device
        self.model.to(device).to(memory_format=torch.channels_last)
        weight = None if self.class_weights is None else self.class_weights.to(device)
        self.criterion = self.task.loss(weight, self.label_smoothing)
        self.val_criterion = self.task.loss()
        self.phases, self.interrupted, self._last_good_state = list(phases), False, None
        self.callbacks.fire("on_train_begin", {})
        train, train_targets, val, val_targets = self._shard(train, train_targets, val, val_targets)
        self.image_feeds = (
            ImageFeed(train, train_targets, self.preprocess, self.batch_size, device, self.generator,
                      self.num_workers),
            None if val is None else ImageFeed(val, val_targets, self.preprocess, self.batch_size,
                                               device, None, self.num_workers))
        first_phase = 0 if resume_from is None else self._restore(resume_from)
        cpu_bf16 = device.type == "cpu" and self.accelerator.mixed_precision == "bf16"
        try:
            with fp32_depthwise_training(self.model, enabled=cpu_bf16):
                for index in range(first_phase, len(self.phases)):
                    if self.stop_training:
                        break
                    resuming = (resume_from if resume_from is not None and index == first_phase
                                and not resume_from["phase_done"] else None)
                    self._run_phase(index, resuming)
        except KeyboardInterrupt:
            self._drop_unfinished_epoch()
            self.interrupted = True
            if self.history:
                self.history[-1]["interrupted"] = True
        except FloatingPointError:
            self._drop_unfinished_epoch()
            self.model.load_state_dict(self.best_state or self._last_good_state)
            raise
        self.callbacks.fire("on_train_end", {"best_epoch": self.best_epoch,
                                             "interrupted": self.interrupted})
        return self.model

    def _drop_unfinished_epoch(self) -> None:
        """An epoch cut short by an exception leaves no row: history holds finished epochs."""
        if self.history and "seconds" not in self.history[-1]:
            self.history.pop()

    def _shard(self, train, train_targets, val, val_targets):
        """Data parallel: each process trains on its own equal-sized shard and validates on
        its share of the validation images; metrics are summed over processes."""
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        if world == 1:
            return train, train_targets, val, val_targets
        shard = shard_positions(len(train_targets), rank, world, pad=True)
        train, train_targets = train.subset(shard), np.asarray(train_targets)[shard]
        if val is not None:
            shard = shard_positions(len(val_targets), rank, world, pad=False)
            val, val_targets = val.subset(shard), np.asarray(val_targets)[shard]
        return train, train_targets, val, val_targets

    def _restore(self, state: dict) -> int:
        """Load a checkpoint's weights, history, RNG and callback states; return the phase
        to continue with."""
        self.model.load_state_dict(state["model"])
        self.history = History(state["history"])
        torch.set_rng_state(state["torch_rng"])
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])
        self.callbacks.load_states(state["callbacks"])
        # A fit a callback stopped stays stopped: resuming only restores it.
        self.stop_training = bool(state.get("stopped", False))
        self.epoch = state["epoch"]
        return state["phase_index"] + (1 if state["phase_done"] else 0)

    # -- phases and epochs ------------------------------------------------------------------
    def _run_phase(self, index: int, resuming: dict | None) -> None:
        phase = self.phases[index]
        self.phase, self.phase_index, self.resuming, self.stop_phase = phase, index, resuming, False
        try:
            self.callbacks.fire("on_phase_begin", phase, {"epoch": self.epoch})
            self.resuming = None
            first = 1 if resuming is None else resuming["phase_epoch"] + 1
            for phase_epoch in range(first, (1 if phase.probe else phase.epochs) + 1):
                self._run_epoch(phase, phase_epoch)
                if self.stop_training or self.stop_phase:
                    break
        finally:
            self.callbacks.fire("on_phase_end", phase, {"epoch": self.epoch})

    def _run_epoch(self, phase: Phase, phase_epoch: int) -> None:
        self.epoch += 1
        self.phase_epoch = phase_epoch
        start = time.perf_counter()
        row = self.history.new_epoch(epoch=self.epoch, phase=phase.name, phase_epoch=phase_epoch)
        self._last_good_state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}
        self.callbacks.fire("on_epoch_begin", self.epoch, row)
        if phase.probe:
            train_loss, train_acc = self.evaluate(self.train_feed, self.criterion)
        else:
            train_loss, train_acc = self._train_epoch()
        row.update(lr=None if self.optimizer is None else self.optimizer.optimizer.param_groups[0]["lr"],
                   train_loss=train_loss, train_accuracy=train_acc, val_loss=None,
                   val_accuracy=None, cache=getattr(self.train_feed, "storage", None))
        self.callbacks.fire("on_validation_begin", self.epoch, row)
        if self.val_feed is not None:
            row.update(self.validate(self.val_feed))
        row["seconds"] = round(time.perf_counter() - start
                               + (self.setup_seconds if phase_epoch == 1 else 0.0), 3)
        self.callbacks.fire("on_epoch_end", self.epoch, row)

    def _train_epoch(self) -> tuple[float, float]:
        acc, feed, model = self.accelerator, self.train_feed, self.prepared_model
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
            # epoch) makes one optimizer step on the mean of their losses.
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
                self.callbacks.fire("on_after_backward", batch, batch_row)
                self.optimizer.step()
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

    # -- evaluation -------------------------------------------------------------------------
    @torch.inference_mode()
    def _outputs(self, feed):
        """Logits (float) and labels of a feed, batch by batch, in inference mode."""
        self.model.eval()
        for x, labels in feed.batches(train=False):
            with self.accelerator.autocast():
                logits = self.model(x, start=feed.start).float()
            yield logits, labels

    def evaluate(self, feed, criterion=None) -> tuple[float, float]:
        """Mean loss and accuracy (no augmentation, inference mode), summed over processes."""
        criterion = criterion or self.val_criterion
        total_loss, correct, seen = 0.0, 0, 0
        for logits, labels in self._outputs(feed):
            total_loss += criterion(logits, labels).item() * len(labels)
            correct += self.task.correct(logits, labels)
            seen += len(labels)
        total_loss, correct, seen = self._sum_over_processes(total_loss, correct, seen)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def validate(self, feed) -> dict:
        """``val_loss``, ``val_accuracy`` and the monitored metric when it is another one."""
        if self.monitor.score is None:
            loss, accuracy = self.evaluate(feed)
            return {"val_loss": loss, "val_accuracy": accuracy}
        losses, probas, labels = [], [], []
        for logits, y in self._outputs(feed):
            losses.append(self.val_criterion(logits, y).item() * len(y))
            probas.append(self.task.proba(logits))
            labels.append(y)
        proba = self._gather(torch.cat(probas)).cpu().numpy()
        y_true = self._gather(torch.cat(labels)).cpu().numpy()
        if self.task.multi_label:
            y_true = (y_true > 0.5).astype(np.int64)
        loss = self._sum_over_processes(sum(losses))[0]
        y_pred = self.task.decide(proba)
        return {"val_loss": loss / max(len(y_true), 1),
                "val_accuracy": self.task.score(y_true, y_pred),
                self.monitor.name: float(self.monitor.score(y_true, y_pred, proba))}

    def _gather(self, tensor: torch.Tensor) -> torch.Tensor:
        if self.accelerator.num_processes == 1:
            return tensor
        return self.accelerator.gather_for_metrics(tensor)

    def _sum_over_processes(self, *values: float) -> list[float]:
        """Sum per-process metrics over all processes (identity in a single process), so that
        every process logs, early-stops and picks the best epoch on the same numbers."""
        if self.accelerator.num_processes == 1:
            return list(values)
        local = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        gathered = self.accelerator.gather_for_metrics(local)
        return gathered.reshape(-1, len(values)).sum(0).tolist()

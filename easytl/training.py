"""The training loop: one loop on accelerate for every schedule.

Per phase it freezes what the phase keeps frozen, keeps BatchNorm in
inference mode where the policy says so, (re)creates and prepares the
optimizer, then runs epochs with warmup, cosine or plateau decay, gradient
clipping, validation, early stopping and best-epoch tracking.
"""

from __future__ import annotations

import copy
import math
import sys
import time
from typing import Sequence

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .data import ImageSource, Preprocessor
from .depthwise import fp32_depthwise_training
from .feeds import CachedFeed, ImageFeed, frozen_prefix_length
from .schedules import Phase


# --------------------------------------------------------------------------- device and precision

def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def resolve_mixed_precision(mixed_precision: str, device_type: str) -> str:
    """``"auto"`` → bf16 where the hardware runs it fast, fp16 on older GPUs, else ``"no"``."""
    choices = ("auto", "no", "bf16", "fp16")
    if mixed_precision not in choices:
        raise ValueError(f"mixed_precision must be one of {choices}, got {mixed_precision!r}.")
    if mixed_precision != "auto":
        if mixed_precision == "fp16" and device_type == "cpu":
            raise ValueError("mixed_precision='fp16' needs a GPU; on a CPU use 'bf16' or 'no'.")
        return mixed_precision
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "bf16" if device_type == "cpu" and cpu_has_fast_bf16() else "no"


def resolve_device(device: str) -> str:
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device not in ("cpu", "cuda") and not str(device).startswith("cuda:"):
        raise ValueError(f"device must be 'auto', 'cpu' or 'cuda', got {device!r}.")
    if str(device).startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is available; use device='auto' or 'cpu'.")
    return device


def make_accelerator(device: str = "auto", mixed_precision: str = "auto"):
    """An ``accelerate.Accelerator`` for this device and precision.

    accelerate keeps its mixed-precision setting in a process-wide singleton
    and refuses a second, different one; estimators in one process may differ,
    so that part of the state (not the distributed part) is reset first.
    """
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    device = resolve_device(device)
    device_type = "cuda" if device.startswith("cuda") else "cpu"
    precision = resolve_mixed_precision(mixed_precision, device_type)
    AcceleratorState._reset_state(reset_partial_state=False)
    return Accelerator(mixed_precision=precision, cpu=device_type == "cpu")


# --------------------------------------------------------------------------- the model

class TransferModel(nn.Module):
    """Backbone + head: ``forward(x) -> logits``; ``features(x) -> pooled features``."""

    def __init__(self, backbone: nn.Module, head: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.head = head

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.backbone.forward_features(x)

    def forward(self, x: torch.Tensor, start: int = 0) -> torch.Tensor:
        """Logits; ``start > 0`` takes cached activations of the first ``start`` stages."""
        return self.head(self.backbone.forward_from(x, start))


def trainable_groups(model: TransferModel, spec) -> list[nn.Module]:
    """The backbone layer groups a phase trains: none, the top k, or all."""
    groups = model.backbone.layer_groups
    if spec == "all":
        return list(groups)
    return list(groups[len(groups) - spec:]) if spec else []


def freeze_for_phase(model: TransferModel, spec) -> list[nn.Parameter]:
    """Set ``requires_grad`` for a phase; return the trainable backbone parameters."""
    model.backbone.requires_grad_(False)
    model.head.requires_grad_(True)
    params = []
    for group in trainable_groups(model, spec):
        group.requires_grad_(True)
        params += [p for p in group.parameters() if p.requires_grad]
    return params


def set_train_mode(model: TransferModel, train_bn: bool) -> None:
    """Training mode, except: frozen layers run fully in inference mode, and BatchNorm
    runs in inference mode everywhere unless ``train_bn`` (the Keras fine-tuning rule).

    A frozen group's statistics therefore never move, and small or shifted
    data cannot wreck the pretrained running statistics.
    """
    model.train()
    for group in model.backbone.layer_groups:
        if not any(p.requires_grad for p in group.parameters()):
            group.eval()
    for module in model.backbone.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            frozen = not any(p.requires_grad for p in module.parameters(recurse=False))
            if frozen or not train_bn:
                module.eval()


# --------------------------------------------------------------------------- callbacks

class Callback:
    """Keras-style hook. Override what you need; ``self.trainer`` is set at train start.

    Set ``self.trainer.stop_training = True`` (or return True from
    :meth:`on_epoch_end`) to stop after the current epoch.
    """

    trainer: "Trainer" = None

    def set_trainer(self, trainer: "Trainer") -> None:
        self.trainer = trainer

    def on_train_begin(self, logs: dict | None = None) -> None:
        pass

    def on_phase_begin(self, phase: Phase, logs: dict | None = None) -> None:
        pass

    def on_epoch_end(self, epoch: int, logs: dict) -> bool | None:
        pass

    def on_train_end(self, logs: dict | None = None) -> None:
        pass


class LambdaCallback(Callback):
    """Wrap a plain function ``f(epoch, logs) -> stop?`` as an epoch-end callback."""

    def __init__(self, on_epoch_end):
        self._fn = on_epoch_end

    def on_epoch_end(self, epoch: int, logs: dict):
        return self._fn(epoch, logs)


def as_callbacks(callbacks) -> list[Callback]:
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


# --------------------------------------------------------------------------- the loop

def shard_positions(n: int, rank: int, world: int, pad: bool) -> np.ndarray:
    """Positions ``rank, rank + world, ...`` of ``n`` items. With ``pad`` every process gets
    the same count (wrapping around, as DistributedSampler does) so that all take the same
    number of optimizer steps, which DDP's gradient all-reduce requires."""
    if pad:
        per_process = math.ceil(n / world)
        return (np.arange(per_process) * world + rank) % n
    return np.arange(rank, n, world)


def _make_step_scheduler(optimizer, steps: int, warmup_steps: int, decay: str | None):
    """Per-step LR schedule: linear warmup, then cosine decay (or constant)."""
    from torch.optim.lr_scheduler import ConstantLR, CosineAnnealingLR, LinearLR, SequentialLR
    rest = max(1, steps - warmup_steps)
    main = (CosineAnnealingLR(optimizer, T_max=rest) if decay == "cosine"
            else ConstantLR(optimizer, factor=1.0, total_iters=0))
    if warmup_steps <= 0:
        return main
    warm = LinearLR(optimizer, start_factor=1.0 / (warmup_steps + 1), end_factor=1.0,
                    total_iters=warmup_steps)
    return SequentialLR(optimizer, [warm, main], milestones=[warmup_steps])


class Trainer:
    """Runs phases of training for a :class:`TransferModel`.

    Parameters are the estimator's; see :class:`easytl.TransferClassifier`.
    Attributes after :meth:`fit`: ``history`` (per-epoch dicts), ``best_epoch``,
    ``stop_training`` (set by callbacks).
    """

    def __init__(self, model: TransferModel, preprocess: Preprocessor, accelerator, *,
                 batch_size: int = 32, grad_clip: float | None = None, train_bn: bool = False,
                 lr_decay: str | None = "cosine", early_stopping: int | None = None,
                 class_weights: torch.Tensor | None = None, callbacks: Sequence[Callback] = (),
                 verbose: int = 1, generator: torch.Generator | None = None, num_workers: int = 0,
                 weight_decay: float = 1e-4, cache_features: bool = True, cache_views: int = 2,
                 cache_memory: float | None = None, cache_dir=None):
        self.model = model
        self.preprocess = preprocess
        self.accelerator = accelerator
        self.batch_size = batch_size
        self.grad_clip = grad_clip
        self.train_bn = train_bn
        self.lr_decay = lr_decay
        self.early_stopping = early_stopping
        self.class_weights = class_weights
        self.callbacks = list(callbacks)
        self.verbose = verbose
        self.generator = generator
        self.num_workers = num_workers
        self.weight_decay = weight_decay
        self.cache_features = cache_features
        self.cache_views = cache_views
        self.cache_memory, self.cache_dir = cache_memory, cache_dir
        self.history: list[dict] = []
        self.best_epoch: int | None = None
        self.stop_training = False
        self.interrupted = False
        self._generator_at_phase_start = None

    # -- public -------------------------------------------------------------------------------
    def fit(self, phases: Sequence[Phase], train: ImageSource, train_targets: np.ndarray,
            val: ImageSource | None = None, val_targets: np.ndarray | None = None, *,
            checkpoint_dir=None, resume_from: dict | None = None,
            fingerprint: dict | None = None) -> TransferModel:
        """Train through ``phases``; return the model with the best epoch's weights.

        Ctrl-C (KeyboardInterrupt) ends training early: the best weights so far
        are kept and ``interrupted`` is set. A non-finite loss raises
        FloatingPointError after restoring the last good weights. With
        ``checkpoint_dir`` a checkpoint is written after every epoch;
        ``resume_from`` (a loaded checkpoint) continues from it.
        """
        device = self.accelerator.device
        self.model.to(device).to(memory_format=torch.channels_last)
        weight = None if self.class_weights is None else self.class_weights.to(device)
        self.criterion = nn.CrossEntropyLoss(weight=weight)
        self.val_criterion = nn.CrossEntropyLoss()
        self._best_loss = math.inf
        self._best_state = None
        self._last_good_state = None
        self.interrupted = False
        self.checkpoint_dir, self.fingerprint = checkpoint_dir, fingerprint
        for cb in self.callbacks:
            cb.set_trainer(self)
            cb.on_train_begin({})
        # Data parallel (several processes): each trains on its own equal-sized shard and
        # validates on its share of the validation images; metrics are summed over processes.
        world, rank = self.accelerator.num_processes, self.accelerator.process_index
        if world > 1:
            shard = shard_positions(len(train_targets), rank, world, pad=True)
            train, train_targets = train.subset(shard), np.asarray(train_targets)[shard]
            if val is not None:
                shard = shard_positions(len(val_targets), rank, world, pad=False)
                val, val_targets = val.subset(shard), np.asarray(val_targets)[shard]
        train_feed = ImageFeed(train, train_targets, self.preprocess, self.batch_size, device,
                               self.generator, self.num_workers)
        val_feed = None if val is None else ImageFeed(val, val_targets, self.preprocess,
                                                      self.batch_size, device, None, self.num_workers)
        epoch, first_phase = 0, 0
        if resume_from is not None:
            epoch, first_phase = self._restore(resume_from)
        cpu_bf16 = device.type == "cpu" and self.accelerator.mixed_precision == "bf16"
        try:
            with fp32_depthwise_training(self.model, enabled=cpu_bf16):
                for index in range(first_phase, len(phases)):
                    if self.stop_training:
                        break
                    resume = resume_from if (resume_from is not None and index == first_phase
                                             and not resume_from["phase_done"]) else None
                    epoch = self._run_phase(phases[index], index, epoch, train_feed, val_feed, resume)
        except KeyboardInterrupt:
            self.interrupted = True
            if self.history:
                self.history[-1]["interrupted"] = True
            if self.verbose >= 1 and self.accelerator.is_main_process:
                tqdm.write("interrupted: keeping the best weights so far", file=sys.stderr)
        except FloatingPointError:
            self.model.load_state_dict(self._best_state or self._last_good_state)
            raise
        if self._best_state is not None:
            self.model.load_state_dict(self._best_state)
        for cb in self.callbacks:
            cb.on_train_end({"best_epoch": self.best_epoch, "interrupted": self.interrupted})
        return self.model

    # -- checkpoints --------------------------------------------------------------------------
    def _checkpoint(self, phase_index, phase_epoch, epoch, phase_done, optimizer, scheduler,
                    plateau, since_best) -> None:
        if self.checkpoint_dir is None or not self.accelerator.is_main_process:
            return
        from .checkpoints import save_checkpoint
        save_checkpoint(self.checkpoint_dir, {
            "fingerprint": self.fingerprint, "phase_index": phase_index,
            "phase_epoch": phase_epoch, "epoch": epoch, "phase_done": phase_done,
            "stopped": self.stop_training,
            "model": self.model.state_dict(),
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "plateau": None if plateau is None else plateau.state_dict(),
            "since_best": since_best, "best_loss": self._best_loss, "best_epoch": self.best_epoch,
            "best_state": self._best_state, "history": self.history,
            "torch_rng": torch.get_rng_state(),
            "generator": None if self.generator is None else self.generator.get_state(),
            "generator_at_phase_start": self._generator_at_phase_start,
        })

    def _restore(self, state: dict) -> tuple[int, int]:
        """Load a checkpoint's weights and bookkeeping; return (epochs done, phase to run)."""
        self.model.load_state_dict(state["model"])
        self.history = [dict(row) for row in state["history"]]
        self._best_loss, self.best_epoch = state["best_loss"], state["best_epoch"]
        self._best_state = state["best_state"]
        torch.set_rng_state(state["torch_rng"])
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])
        # A fit a callback stopped stays stopped: resuming only restores it.
        self.stop_training = bool(state.get("stopped", False))
        return state["epoch"], state["phase_index"] + (1 if state["phase_done"] else 0)

    # -- phases -------------------------------------------------------------------------------
    def _optimizer(self, phase: Phase, backbone_params: list[nn.Parameter]):
        groups = [{"params": list(self.model.head.parameters()), "lr": phase.lr}]
        if backbone_params:
            groups.append({"params": backbone_params, "lr": phase.lr * phase.backbone_lr_mult})
        return torch.optim.AdamW(groups, weight_decay=self.weight_decay)

    def _feeds_for_phase(self, phase: Phase, train_feed: ImageFeed, val_feed: ImageFeed | None):
        """Cached activations of the frozen lower stages when possible, else the image feeds."""
        start = frozen_prefix_length(self.model.backbone) if self.cache_features else 0
        if start == 0:
            return train_feed, val_feed
        augment = self.preprocess.augment is not None
        views = min(self.cache_views, phase.epochs) if augment else 1
        cached_train = CachedFeed.build(self.model, train_feed, start, views, augment,
                                        self.accelerator, self.cache_memory, self.cache_dir,
                                        verbose=self.verbose)
        if cached_train is None:
            return train_feed, val_feed
        if val_feed is None or len(val_feed) == 0:  # (a process may hold no validation image)
            return cached_train, val_feed
        cached_val = CachedFeed.build(self.model, val_feed, start, 1, False, self.accelerator,
                                      self.cache_memory, self.cache_dir, verbose=self.verbose,
                                      what="validation")
        return cached_train, cached_val or val_feed

    def _run_probe(self, phase: Phase, phase_index: int, epoch: int, train_feed: ImageFeed,
                   val_feed: ImageFeed | None) -> int:
        """A probe phase: logistic regression on the frozen features, copied into the head."""
        from .probe import fit_linear_probe
        start = time.perf_counter()
        freeze_for_phase(self.model, 0)
        everything = len(self.model.backbone.stages)  # all stages frozen: the cache is features
        kwargs = dict(accelerator=self.accelerator, budget_bytes=self.cache_memory,
                      directory=self.cache_dir, verbose=self.verbose)
        train = CachedFeed.build(self.model, train_feed, everything, 1, False, **kwargs)
        val = (None if val_feed is None or len(val_feed) == 0 else
               CachedFeed.build(self.model, val_feed, everything, 1, False, what="validation", **kwargs))
        if train is None:
            raise RuntimeError("the linear probe needs the training features, and they could not be "
                               "cached (see the warning above).")
        features, targets = train.all_rows(), train.targets
        if self.accelerator.num_processes > 1:  # one probe on every process's images
            features = self.accelerator.gather(features.to(self.accelerator.device)).cpu()
            targets = self.accelerator.gather(targets.to(self.accelerator.device)).cpu()
        weights = None if self.class_weights is None else self.class_weights.cpu().numpy()
        fit_linear_probe(self.model.head, features.float().numpy(), targets.numpy(), weights)
        for cb in self.callbacks:
            cb.on_phase_begin(phase, {"epoch": epoch})
        epoch += 1
        train_loss, train_acc = self.evaluate(train, criterion=self.criterion)
        row = {"epoch": epoch, "phase": phase.name, "phase_epoch": 1, "lr": None,
               "train_loss": train_loss, "train_accuracy": train_acc,
               "val_loss": None, "val_accuracy": None, "cache": train.storage}
        if val is not None:
            row["val_loss"], row["val_accuracy"] = self.evaluate(val)
        row["seconds"] = round(time.perf_counter() - start, 3)
        self._record_epoch(row)
        self._checkpoint(phase_index, 1, epoch, True, None, None, None, 0)
        return epoch

    def _record_epoch(self, row: dict) -> bool:
        """Track the best epoch by validation loss, log the row, run the epoch-end callbacks.

        Returns whether this epoch improved on the best so far.
        """
        monitored = row["val_loss"]
        improved = monitored is not None and monitored < self._best_loss
        if improved:
            self._best_loss = monitored
            self.best_epoch = row["epoch"]
            self._best_state = copy.deepcopy(self.model.state_dict())
        row["best"] = improved
        self.history.append(row)
        self._log(row)
        for cb in self.callbacks:
            if cb.on_epoch_end(row["epoch"], dict(row)):
                self.stop_training = True
        return improved

    def _run_phase(self, phase: Phase, phase_index: int, epoch: int, train_feed: ImageFeed,
                   val_feed: ImageFeed | None, resume: dict | None = None) -> int:
        if phase.probe:
            return self._run_probe(phase, phase_index, epoch, train_feed, val_feed)
        acc = self.accelerator
        backbone_params = freeze_for_phase(self.model, phase.trainable_groups)
        if resume is not None and self.generator is not None:
            # The cached views were drawn from the generator as it stood when the phase began.
            resumed_generator = self.generator.get_state()
            self.generator.set_state(resume["generator_at_phase_start"])
        self._generator_at_phase_start = None if self.generator is None else self.generator.get_state()
        cache_start = time.perf_counter()
        train, val = self._feeds_for_phase(phase, train_feed, val_feed)
        cache_seconds = time.perf_counter() - cache_start  # counted in the phase's first epoch
        optimizer = self._optimizer(phase, backbone_params)
        # Re-prepared per phase: the set of trainable parameters has changed.
        model, optimizer = acc.prepare(self.model, optimizer)
        steps_per_epoch = math.ceil(len(train) / self.batch_size)
        warmup_steps = min(int(round(phase.warmup_epochs * steps_per_epoch)),
                           phase.epochs * steps_per_epoch)
        scheduler = _make_step_scheduler(optimizer.optimizer, phase.epochs * steps_per_epoch,
                                         warmup_steps, self.lr_decay)
        plateau = (torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer.optimizer, factor=0.1,
                                                              patience=1, eps=0.0)
                   if self.lr_decay == "plateau" else None)
        since_best, first_epoch = 0, 1
        if resume is not None:
            optimizer.load_state_dict(resume["optimizer"])
            scheduler.load_state_dict(resume["scheduler"])
            if plateau is not None:
                plateau.load_state_dict(resume["plateau"])
            if self.generator is not None:
                self.generator.set_state(resumed_generator)
            since_best, first_epoch = resume["since_best"], resume["phase_epoch"] + 1
        for cb in self.callbacks:
            cb.on_phase_begin(phase, {"epoch": epoch})
        try:
            for phase_epoch in range(first_epoch, phase.epochs + 1):
                epoch += 1
                start = time.perf_counter()
                self._last_good_state = {k: v.detach().clone()
                                         for k, v in self.model.state_dict().items()}
                train_loss, train_acc = self._train_epoch(model, optimizer, scheduler, phase, epoch,
                                                          phase_epoch, train)
                row = {"epoch": epoch, "phase": phase.name, "phase_epoch": phase_epoch,
                       "lr": optimizer.optimizer.param_groups[0]["lr"],
                       "train_loss": train_loss, "train_accuracy": train_acc,
                       "val_loss": None, "val_accuracy": None,
                       "cache": getattr(train, "storage", None)}
                if val is not None:
                    row["val_loss"], row["val_accuracy"] = self.evaluate(val)
                row["seconds"] = round(time.perf_counter() - start
                                       + (cache_seconds if phase_epoch == 1 else 0.0), 3)
                if self._record_epoch(row):
                    since_best = 0
                else:
                    since_best += 1
                if plateau is not None and phase_epoch * steps_per_epoch >= warmup_steps:
                    monitored = row["val_loss"]
                    plateau.step(monitored if monitored is not None else train_loss)
                early_stop = self.early_stopping is not None and since_best >= self.early_stopping
                if early_stop and self._best_state is not None:
                    # This phase has stopped improving: go on from its best weights.
                    self.model.load_state_dict(self._best_state)
                self._checkpoint(phase_index, phase_epoch, epoch,
                                 phase_epoch == phase.epochs or early_stop or self.stop_training,
                                 optimizer, scheduler, plateau, since_best)
                if self.stop_training or early_stop:
                    break
        finally:
            self.model = acc.unwrap_model(model, keep_fp32_wrapper=False)
            acc.free_memory()
        return epoch

    def _train_epoch(self, model, optimizer, scheduler, phase, epoch, phase_epoch, feed):
        acc = self.accelerator
        set_train_mode(self.model, self.train_bn)
        total_loss, correct, seen = 0.0, 0, 0
        bar = tqdm(feed.batches(train=True, epoch_in_phase=phase_epoch),
                   total=math.ceil(len(feed) / self.batch_size),
                   desc=f"epoch {epoch} [{phase.name} {phase_epoch}/{phase.epochs}]",
                   disable=self.verbose < 1 or not acc.is_main_process, leave=self.verbose >= 2,
                   file=sys.stderr, dynamic_ncols=True)
        for x, labels in bar:
            with acc.autocast():
                logits = model(x, start=feed.start)
                loss = self.criterion(logits.float(), labels)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss became {loss.item()} in epoch {epoch} ({phase.name}). "
                    "Try a lower lr, grad_clip=1.0, or mixed_precision='no'.")
            optimizer.zero_grad(set_to_none=True)
            acc.backward(loss)
            if self.grad_clip is not None:
                acc.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]],
                                    self.grad_clip)
            optimizer.step()
            scheduler.step()
            n = len(labels)
            total_loss += loss.item() * n
            correct += (logits.argmax(1) == labels).sum().item()
            seen += n
            bar.set_postfix(loss=f"{total_loss / seen:.4f}", refresh=False)
        bar.close()
        total_loss, correct, seen = self._sum_over_processes(total_loss, correct, seen)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    @torch.inference_mode()
    def evaluate(self, feed, criterion=None) -> tuple[float, float]:
        """Mean loss and accuracy on held-out data (no augmentation, inference mode)."""
        criterion = criterion or self.val_criterion
        self.model.eval()
        total_loss, correct, seen = 0.0, 0, 0
        for x, labels in feed.batches(train=False):
            with self.accelerator.autocast():
                logits = self.model(x, start=feed.start).float()
            total_loss += criterion(logits, labels).item() * len(labels)
            correct += (logits.argmax(1) == labels).sum().item()
            seen += len(labels)
        total_loss, correct, seen = self._sum_over_processes(total_loss, correct, seen)
        return total_loss / max(seen, 1), correct / max(seen, 1)

    def _sum_over_processes(self, *values: float) -> list[float]:
        """Sum per-process metrics over all processes (identity in a single process), so that
        every process logs, early-stops and picks the best epoch on the same numbers."""
        if self.accelerator.num_processes == 1:
            return list(values)
        local = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        gathered = self.accelerator.gather_for_metrics(local)
        return gathered.reshape(-1, len(values)).sum(0).tolist()

    def _log(self, row: dict) -> None:
        if self.verbose < 1 or not self.accelerator.is_main_process:
            return
        parts = [f"epoch {row['epoch']:>3} {row['phase']:<8}",
                 "lr (solved)" if row["lr"] is None else f"lr {row['lr']:.2e}",
                 f"loss {row['train_loss']:.4f}", f"acc {row['train_accuracy']:.3f}"]
        if row["val_loss"] is not None:
            parts += [f"val_loss {row['val_loss']:.4f}", f"val_acc {row['val_accuracy']:.3f}"]
        parts.append(f"{row['seconds']:.1f}s" + (" *" if row["best"] else ""))
        tqdm.write("  ".join(parts), file=sys.stderr)

"""What the trainer iterates over: preprocessed images, or cached activations of frozen layers.

While the lowest backbone stages are frozen their output cannot change, so a
phase can compute it once per image (and per augmented view) and train the
remaining stages and the head on that cache. A head-only phase then costs one
backbone pass per view instead of one per epoch, and a phase that trains the
top groups runs forward and backward through those groups alone.
"""

from __future__ import annotations

import tempfile
import warnings

import numpy as np
import torch
from torch import nn
from torch.utils.data import BatchSampler, RandomSampler

from ..data.augment import Preprocessor
from ..data.sources import ImageSource, as_targets, batches
from ..constants import DEFAULT_CACHE_MEMORY, eval_batch_size
from ..models.folding import fold_batchnorm
from ..constants import parse_bytes
from ..progress import progress


def frozen_prefix_length(backbone) -> int:
    """How many leading backbone stages hold no trainable parameter (0 … all stages)."""
    count = 0
    for stage in backbone.stages:
        if any(p.requires_grad for p in stage.parameters()):
            break
        count += 1
    return count


def first_trainable_stage(backbone, trainable_groups) -> int:
    """The index of the first backbone stage a phase training ``trainable_groups`` trains
    (the length of its frozen prefix; every stage when only the head trains)."""
    groups = backbone.layer_groups
    chosen = groups if trainable_groups == "all" else (
        groups[len(groups) - trainable_groups:] if trainable_groups else [])
    chosen = {id(g) for g in chosen}
    return next((i for i, stage in enumerate(backbone.stages) if id(stage) in chosen),
                len(backbone.stages))


def stage_output_bytes(backbone, size: int, bytes_per_value: int) -> list[int]:
    """Bytes per image of each stage's output at ``size`` px (one forward pass of a blank image)."""
    was_training = backbone.training
    backbone.eval()
    out = []
    try:
        with torch.no_grad():
            x = torch.zeros(1, 3, size, size)
            for stage in backbone.stages:
                x = stage(x)
                out.append(int(x[0].numel()) * bytes_per_value)
    finally:
        backbone.train(was_training)
    return out


def worth_caching(choice, phase, augment: bool, cache_views: int, cached_bytes,
                  budget_bytes: int) -> bool:
    """Whether a phase trains on cached activations of its frozen prefix.

    ``True``/``False`` as the user chose. ``"auto"``: yes, unless the cache would
    spill to disk and every cached view would be read only once (epochs <= views):
    writing and reading it then costs more than computing the prefix in the loop.
    A probe phase always caches (the probe is solved on the cached features).
    ``cached_bytes`` is a function giving the size of one view of the cache: it
    runs only when the answer depends on it.
    """
    if phase.probe:
        return True
    if choice != "auto":
        return bool(choice)
    views = min(cache_views, phase.epochs) if augment else 1
    reused = phase.epochs > views
    return reused or cached_bytes() * views <= budget_bytes


class ImageFeed:
    """Batches of images, preprocessed (and augmented when training) on the device."""

    start = 0

    def __init__(self, source: ImageSource, targets, preprocess: Preprocessor, batch_size: int,
                 device, generator=None, num_workers: int = 0):
        self.source, self.targets = source, targets
        self.preprocess, self.batch_size, self.device = preprocess, batch_size, device
        self.generator, self.num_workers = generator, num_workers

    def __len__(self) -> int:
        return len(self.source)

    def batches(self, train: bool, epoch_in_phase: int = 1):
        """Shuffled, augmented batches for training; ordered, plain ones otherwise."""
        return self.ordered(augment=train, shuffle=train)

    def ordered(self, augment: bool = False, shuffle: bool = False):
        size = self.batch_size if shuffle else eval_batch_size(self.batch_size)
        loader = batches(self.source, self.targets, size, shuffle=shuffle, generator=self.generator,
                         num_workers=self.num_workers, pin_memory=self.device.type == "cuda")
        for images, labels in loader:
            images = images.to(self.device, non_blocking=True)
            x = self.preprocess(images, train=augment, generator=self.generator if augment else None)
            yield x, labels.to(self.device, non_blocking=True)


class DiskRows:
    """Rows of one tensor shape and dtype in an anonymous temporary file.

    Appended chunk by chunk, read back by index; the file is deleted when this
    object goes away (or the process ends), and its contents never sit in the
    process's memory beyond the rows of one batch.
    """

    def __init__(self, row_shape, dtype: torch.dtype, directory=None):
        self.row_shape, self.dtype = tuple(row_shape), dtype
        self.row_bytes = int(np.prod(self.row_shape)) * torch.tensor([], dtype=dtype).element_size()
        self.file = tempfile.TemporaryFile(prefix="easytl-cache-", dir=directory)
        self.rows = 0

    def append(self, chunk: torch.Tensor) -> None:
        self.file.seek(self.rows * self.row_bytes)
        self.file.write(chunk.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
        self.rows += len(chunk)

    def __len__(self) -> int:
        return self.rows

    def __getitem__(self, index: torch.Tensor) -> torch.Tensor:
        out = torch.empty((len(index),) + self.row_shape, dtype=self.dtype)
        raw = out.view(torch.uint8).reshape(len(index), -1).numpy()
        for i, row in enumerate(index.tolist()):
            self.file.seek(row * self.row_bytes)
            self.file.readinto(raw[i])
        return out


class CachedFeed:
    """Activations of the first ``start`` backbone stages, computed once per view.

    Parameters
    ----------
    views : list of tensors
        One tensor (n, ...) per cached (augmented) view; training epoch e of a
        phase uses view (e - 1) mod len(views).
    """

    def __init__(self, views: list[torch.Tensor], targets, start: int, batch_size: int, device,
                 generator=None):
        self.views, self.start = views, start
        self.targets = as_targets(targets)
        self.batch_size, self.device, self.generator = batch_size, device, generator

    @property
    def storage(self) -> str:
        """Where the cached activations live: "ram" or "disk"."""
        return "disk" if isinstance(self.views[0], DiskRows) else "ram"

    def __len__(self) -> int:
        return len(self.targets)

    def all_rows(self, view: int = 0) -> torch.Tensor:
        """Every cached row of one view, on the CPU (the features a probe is fitted on)."""
        rows = self.views[view]
        return rows[torch.arange(len(self.targets))].cpu() if isinstance(rows, DiskRows) else rows.cpu()

    def batches(self, train: bool, epoch_in_phase: int = 1):
        view = self.views[(epoch_in_phase - 1) % len(self.views)] if train else self.views[0]
        n = len(self.targets)
        # The same sampler as the image loader, so a seeded run sees the same batch order.
        order = RandomSampler(range(n), generator=self.generator) if train else range(n)
        size = self.batch_size if train else eval_batch_size(self.batch_size)
        for indices in BatchSampler(order, int(size), drop_last=False):  # int: numpy's too
            index = torch.as_tensor(indices, dtype=torch.long)
            x = view[index].to(self.device, non_blocking=True)
            if x.dim() == 4:
                x = x.contiguous(memory_format=torch.channels_last)
            yield x, self.targets[index].to(self.device)

    @classmethod
    def build(cls, model, image_feed: ImageFeed, start: int, n_views: int, augment: bool,
              accelerator, budget_bytes: float | None = None, directory=None, verbose: int = 0,
              what: str = "training"):
        """Run the first ``start`` stages over the images once per view.

        A cache larger than ``budget_bytes`` (default :data:`~easytl.constants.DEFAULT_CACHE_MEMORY`)
        is written to a temporary file in ``directory`` (default: the system's
        temporary folder) instead of RAM. Returns None (and the caller keeps the
        image feed) only if that file cannot be written.
        """
        budget_bytes = parse_bytes(DEFAULT_CACHE_MEMORY) if budget_bytes is None else budget_bytes
        backbone = model.backbone
        was_training = backbone.training
        backbone.eval()  # frozen stages always run in inference mode
        views, prefix = [], None
        try:
            with torch.no_grad():
                for view in range(n_views):
                    rows, filled = None, 0
                    views_note = f" (view {view + 1}/{n_views})" if n_views > 1 else ""
                    bar = progress(total=len(image_feed), verbose=verbose,
                                   enabled=accelerator.is_main_process,
                                   desc=f"caching {what} features{views_note}")
                    for x, _ in image_feed.ordered(augment=augment):
                        if prefix is None:  # the frozen stages, BatchNorm folded in for speed
                            # (a new Sequential is in training mode, and fold_batchnorm folds
                            # only a module in inference mode)
                            prefix = fold_batchnorm(nn.Sequential(*backbone.stages[:start]).eval(),
                                                    x[:2])
                        with accelerator.autocast():
                            out = prefix(x)
                        if rows is None:  # the first batch tells the size of the whole cache
                            total = out[0].numel() * out.element_size() * len(image_feed) * n_views
                            on_disk = total > budget_bytes
                            rows = (DiskRows(out.shape[1:], out.dtype, directory) if on_disk else
                                    torch.empty((len(image_feed),) + tuple(out.shape[1:]),
                                                dtype=out.dtype, device=out.device))
                        if on_disk:
                            rows.append(out)
                        else:  # filled in place: no second copy, as concatenating would make
                            rows[filled:filled + len(out)] = out
                        filled += len(out)
                        bar.update(len(out))
                    bar.close()
                    views.append(rows)
        except OSError as exc:  # e.g. no space left for the spilled cache
            warnings.warn(f"feature cache not written ({exc}); recomputing activations every epoch",
                          stacklevel=2)
            return None
        finally:
            backbone.train(was_training)
        return cls(views, image_feed.targets, start, image_feed.batch_size, image_feed.device,
                   image_feed.generator)

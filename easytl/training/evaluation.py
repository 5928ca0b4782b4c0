"""What the trainer measures: losses, accuracy and the monitored metric on a feed, in
inference mode, summed or gathered over processes (a mixin of
:class:`~easytl.training.trainer.Trainer`, which provides ``model``, ``accelerator``,
``task``, ``monitor``, ``plan``, ``val_criterion`` and ``image_feeds``)."""

from __future__ import annotations

import numpy as np
import torch

from .metrics import balanced_accuracy

# The cross-fitted probe of the symmetry test on few images (cross_fitted_losses). At the main
# probe's C (1.0) a probe on 60-200 images separates them and its log-loss on the held-out fold
# is dominated by a few confident mistakes (the mirror task: 0.5 nats *worse* than the class
# frequencies at 51% accuracy); C = 0.01 and a tenth of the class frequencies mixed into its
# probabilities keep the loss a measure of what it knows (mirror task: 0.37 nats known, the
# mirror +1.09 +- 0.08; 200 digits: 1.70 known, +0.10 +- 0.03; textures: 1.29, +0.00).
CROSS_FIT_C = 0.01
CROSS_FIT_PRIOR_MIX = 0.1
CROSS_FIT_MAX_IMAGES = 2000  # a stratified sample beyond it (val_size=0 on large data)


class Evaluation:
    """Evaluation methods of the trainer."""

    @torch.inference_mode()
    def _outputs(self, feed, transform=None):
        """Logits (float) and labels of a feed, batch by batch, in inference mode (each batch
        through ``transform`` first, if given)."""
        self.model.eval()
        for x, labels in ([] if feed is None else feed.batches(train=False)):
            if transform is not None:
                x = transform(x)
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

    def held_out_losses(self, transform=None) -> tuple[np.ndarray, np.ndarray]:
        """Log-loss and label of each held-out image (of every process, in rank order), plain
        or under ``transform``."""
        losses, labels = [], []
        for logits, y in self._outputs(self.image_feeds[1], transform):
            losses.append(torch.nn.functional.cross_entropy(logits, y, reduction="none"))
            labels.append(y)
        device = self.accelerator.device
        losses = torch.cat(losses) if losses else torch.zeros(0, device=device)
        labels = torch.cat(labels) if labels else torch.zeros(0, dtype=torch.long, device=device)
        return self.gather(losses).cpu().numpy(), self.gather(labels).cpu().numpy()

    def validate(self, feed, balanced: bool = False) -> dict:
        """``val_loss``, ``val_accuracy`` and the monitored metric when it is another one
        (``balanced``: and ``val_balanced_accuracy``). Every process takes part, also one
        without a validation image of its own."""
        if self.monitor.score is None and not balanced:
            loss, accuracy = self.evaluate(feed)
            return {"val_loss": loss, "val_accuracy": accuracy}
        losses, probas, labels = [], [], []
        for logits, y in self._outputs(feed):
            losses.append(self.val_criterion(logits, y).item() * len(y))
            probas.append(self.task.proba(logits))
            labels.append(y)
        n_classes, device = len(self.plan.classes), self.accelerator.device
        proba = torch.cat(probas) if probas else torch.zeros((0, n_classes), device=device)
        y_all = torch.cat(labels) if labels else (
            torch.zeros((0, n_classes), device=device) if self.task.multi_label
            else torch.zeros(0, dtype=torch.long, device=device))
        proba, y_true = self.gather(proba).cpu().numpy(), self.gather(y_all).cpu().numpy()
        if self.task.multi_label:
            y_true = (y_true > 0.5).astype(np.int64)
        loss = self._sum_over_processes(sum(losses))[0]
        y_pred = self.task.decide(proba)
        scores = {"val_loss": loss / max(len(y_true), 1),
                  "val_accuracy": self.task.score(y_true, y_pred)}
        if self.monitor.score is not None:
            scores[self.monitor.name] = float(self.monitor.score(y_true, y_pred, proba))
        if balanced and "val_balanced_accuracy" not in scores:  # (unless it is the monitor)
            scores["val_balanced_accuracy"] = balanced_accuracy(y_true, y_pred, quiet=True)
        return scores

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Rows of every process in rank order; the processes may hold different numbers of
        rows, none included (accelerate's gather needs equal shapes: pad, gather, trim)."""
        acc = self.accelerator
        if acc.num_processes == 1:
            return tensor
        tensor = tensor.to(acc.device)
        sizes = acc.gather(torch.tensor([len(tensor)], device=acc.device)).tolist()
        most = max(sizes)
        if most == 0:
            return tensor
        padded = torch.zeros((most,) + tuple(tensor.shape[1:]), dtype=tensor.dtype, device=acc.device)
        padded[:len(tensor)] = tensor
        gathered = acc.gather(padded).reshape((len(sizes), most) + tuple(tensor.shape[1:]))
        return torch.cat([gathered[rank, :size] for rank, size in enumerate(sizes)])

    def _sum_over_processes(self, *values: float) -> list[float]:
        """Sum per-process metrics over all processes (identity in a single process), so that
        every process logs, early-stops and picks the best epoch on the same numbers."""
        if self.accelerator.num_processes == 1:
            return list(values)
        local = torch.tensor(values, dtype=torch.float64, device=self.accelerator.device)
        gathered = self.accelerator.gather(local)
        return gathered.reshape(-1, len(values)).sum(0).tolist()

    def cross_fitted_probe_is_perfect(self, seed: int = 0) -> bool:
        """Whether a probe fitted on 4 of 5 folds of the training images classifies every
        image of the fifth right, for every fold (single-label; False for a class of one)."""
        from .semi_supervised import probe_is_perfect
        _, features, labels = self._cross_fit_images(seed)
        return probe_is_perfect(features, labels, len(self.plan.classes), seed)

    def _cross_fit_images(self, seed: int):
        """The training images the cross-fitted checks score: those with a given label (not
        pseudo-labeled), at most :data:`CROSS_FIT_MAX_IMAGES` of them (a stratified sample),
        as (feed, plain pooled features, labels), computed once per fit."""
        if self._cross_fit is not None:
            return self._cross_fit
        from .feeds import ImageFeed
        feed = self.image_feeds[0]
        targets = np.asarray(feed.targets)
        rows = np.arange(len(targets)) if self.labeled is None else np.flatnonzero(self.labeled)
        if len(rows) > CROSS_FIT_MAX_IMAGES:
            from sklearn.model_selection import train_test_split
            counts = np.unique(targets[rows], return_counts=True)[1]
            # (a class of one cannot be stratified; the checks then decline anyway)
            rows = train_test_split(rows, train_size=CROSS_FIT_MAX_IMAGES, random_state=seed,
                                    stratify=targets[rows] if counts.min() > 1 else None)[0]
        if len(rows) < len(targets):
            feed = ImageFeed(feed.source.subset(rows), targets[rows], feed.preprocess,
                             feed.batch_size, feed.device, None, feed.num_workers)
        self._cross_fit = (feed, *self._pooled_features(feed))
        return self._cross_fit

    @torch.inference_mode()
    def _pooled_features(self, feed, transform=None) -> tuple[np.ndarray, np.ndarray]:
        """The frozen backbone's pooled features of a feed's plain images, each batch through
        ``transform`` first if given (of every process), and their labels."""
        self.model.eval()
        features, labels = [], []
        for x, y in ([] if feed is None else feed.batches(train=False)):
            if transform is not None:
                x = transform(x)
            with self.accelerator.autocast():
                features.append(self.model.features(x).float())
            labels.append(y)
        return (self.gather(torch.cat(features)).cpu().numpy(),
                self.gather(torch.cat(labels)).cpu().numpy())

    def cross_fitted_losses(self, transforms: dict, seed: int = 0):
        """Per-image log-loss of the training images under a probe that never saw them (5-fold
        cross-fitting on the frozen features), upright and under each transform: the symmetry
        test's evidence when too few images are held out. Returns (upright, {name: losses},
        labels); (None, None, labels) when a class has fewer than 2 training images."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.model_selection import StratifiedKFold
        from threadpoolctl import threadpool_limits
        feed, upright_x, labels = self._cross_fit_images(seed)
        counts = np.bincount(labels)
        if counts[counts > 0].min() < 2:
            return None, None, labels
        moved = {name: self._pooled_features(feed, t)[0] for name, t in transforms.items()}
        upright = np.zeros(len(labels))
        losses = {name: np.zeros(len(labels)) for name in transforms}
        folds = StratifiedKFold(min(5, int(counts[counts > 0].min())), shuffle=True,
                                random_state=seed)
        rows = np.arange(len(labels))
        with threadpool_limits(limits=1, user_api="blas"):  # small fits; spinning BLAS threads hurt
            for fit_rows, test_rows in folds.split(rows, labels):
                probe = LogisticRegression(C=CROSS_FIT_C, max_iter=2000).fit(upright_x[fit_rows],
                                                                             labels[fit_rows])
                # (stratified folds, no more than the smallest class has: every class is fitted)
                column = np.searchsorted(probe.classes_, labels[test_rows])

                def loss(x):
                    p = probe.predict_proba(x[test_rows])[np.arange(len(test_rows)), column]
                    return -np.log((1 - CROSS_FIT_PRIOR_MIX) * p
                                   + CROSS_FIT_PRIOR_MIX / len(probe.classes_))
                upright[test_rows] = loss(upright_x)
                for name in transforms:
                    losses[name][test_rows] = loss(moved[name])
        return upright, losses, labels

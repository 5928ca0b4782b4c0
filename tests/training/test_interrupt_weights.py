"""Ctrl-C in the middle of an epoch keeps whole epochs' weights, also with nothing held out."""

import warnings

import torch

from easytl import Callback, Phase, TransferClassifier

from conftest import tiny_kwargs


class Snapshot(Callback):
    """Keeps the weights at the end of epoch 1, then presses Ctrl-C after batch 2 of epoch 2."""

    def __init__(self):
        self.after_first = None

    def on_epoch_end(self, epoch, logs):
        if epoch == 1:
            self.after_first = {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}

    def on_batch_end(self, batch, logs):
        if self.trainer.epoch == 2 and batch == 2:
            raise KeyboardInterrupt


def test_an_interrupted_epoch_leaves_the_last_finished_epochs_weights_without_validation(textures):
    X, y = textures
    snapshot = Snapshot()
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(3, "all")], epochs=None, val_size=0,
                                           batch_size=8, callbacks=[snapshot]))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        clf.fit(X, y)
    assert clf.interrupted_ and len(clf.history_) == 1 and clf.best_epoch_ is None
    kept = clf.model_.state_dict()
    for key, value in snapshot.after_first.items():
        assert torch.equal(kept[key].cpu(), value.cpu()), key

"""Training faults: Ctrl-C, checkpoints and resume, a non-finite loss, out of memory in inference."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.base import clone

from easytl import Callback, Phase, TransferClassifier
from easytl.training.callbacks import LambdaCallback
from easytl.models.inference import in_chunks, run_model

from conftest import InterruptAt, tiny_cnn, tiny_kwargs

# Head only (on cached features, two augmented views), the top layer group, then everything.
SCHEDULE = [Phase(3, 0), Phase(2, 1), Phase(1, "all")]


class Snapshots(Callback):
    """Keeps the weights at the end of every epoch."""

    def __init__(self):
        self.states = {}

    def on_epoch_end(self, epoch, logs):
        self.states[epoch] = {k: v.detach().clone() for k, v in self.trainer.model.state_dict().items()}


def assert_same_weights(a, b):
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)


def test_ctrl_c_keeps_the_best_weights_and_a_usable_estimator(textures, tmp_path):
    X, y = textures
    snapshots = Snapshots()
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(5, "all")], epochs=None,
                                           callbacks=[snapshots, InterruptAt(3)]))
    with pytest.warns(UserWarning, match="interrupted after 3 epochs"):
        clf.fit(X, y)
    assert clf.interrupted_ and len(clf.history_) == 3
    assert clf.history_[-1]["interrupted"] is True
    assert clf.best_epoch_ in (1, 2, 3)
    assert_same_weights(clf.model_.state_dict(), snapshots.states[clf.best_epoch_])
    assert clf.predict(X[:4]).shape == (4,)
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=tiny_cnn())
    assert loaded.interrupted_
    np.testing.assert_array_equal(loaded.predict(X), clf.predict(X))


# Ctrl-C in epoch 3 resumes from epoch 2's checkpoint, inside the head-only phase: its cached
# augmented views must be rebuilt exactly. In epoch 5 it resumes inside the second phase.
@pytest.mark.slow  # a few seconds: keeps the fast subset under 5 min
@pytest.mark.parametrize("stop_in_epoch", [3, 5])
def test_resume_from_a_checkpoint_ends_with_the_uninterrupted_weights(textures, tmp_path,
                                                                      stop_in_epoch):
    X, y = textures
    kwargs = tiny_kwargs(schedule=SCHEDULE, epochs=None, head="mlp")  # dropout draws from the RNG
    full = TransferClassifier(**kwargs).fit(X, y, checkpoint_dir=tmp_path / "full")
    stopped = TransferClassifier(**kwargs, callbacks=[InterruptAt(stop_in_epoch)])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        stopped.fit(X, y, checkpoint_dir=tmp_path / "run")
    assert stopped.interrupted_ and len(stopped.history_) == stop_in_epoch
    resumed = clone(stopped).set_params(callbacks=None)
    resumed.fit(X, y, checkpoint_dir=tmp_path / "run", resume=True)
    assert not resumed.interrupted_
    assert_same_weights(resumed.model_.state_dict(), full.model_.state_dict())
    drop = ("seconds",)
    assert ([{k: v for k, v in r.items() if k not in drop} for r in resumed.history_]
            == [{k: v for k, v in r.items() if k not in drop} for r in full.history_])
    assert resumed.best_epoch_ == full.best_epoch_


def test_resume_refuses_another_fits_checkpoint_and_needs_a_folder(textures, tmp_path):
    X, y = textures
    kwargs = tiny_kwargs(schedule=[Phase(1, "all")], epochs=None)
    TransferClassifier(**kwargs).fit(X, y, checkpoint_dir=tmp_path)
    other = TransferClassifier(**dict(kwargs, lr=0.5))
    with pytest.raises(ValueError, match="different fit .*(lr|options)"):
        other.fit(X, y, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="different fit .*n_train"):
        TransferClassifier(**kwargs).fit(X[:60], y[:60], checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="resume=True needs checkpoint_dir"):
        TransferClassifier(**kwargs).fit(X, y, resume=True)
    (tmp_path / "checkpoint.pt").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="cannot resume from"):
        TransferClassifier(**kwargs).fit(X, y, checkpoint_dir=tmp_path, resume=True)


def test_resume_without_a_checkpoint_starts_afresh(textures, tmp_path):
    X, y = textures
    kwargs = tiny_kwargs(schedule=[Phase(2, "all")], epochs=None)
    fresh = TransferClassifier(**kwargs).fit(X, y)
    resumed = TransferClassifier(**kwargs).fit(X, y, checkpoint_dir=tmp_path / "new", resume=True)
    assert_same_weights(resumed.model_.state_dict(), fresh.model_.state_dict())
    assert (tmp_path / "new" / "checkpoint.pt").is_file()


def test_a_non_finite_loss_stops_with_advice_and_restores_the_last_good_weights(textures):
    X, y = textures
    calls = {"n": 0}

    def poison(x):  # augmentation that turns the 7th training batch (epoch 2) into NaN
        calls["n"] += 1
        return x * float("nan") if calls["n"] == 7 else x

    snapshots = Snapshots()
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(3, "all")], epochs=None, val_size=0,
                                           augment=poison, callbacks=[snapshots]))
    with pytest.raises(FloatingPointError, match=r"epoch 2 .*lower lr.*grad_clip"):
        clf.fit(X, y)  # 64 training images in batches of 16: batch 7 is in epoch 2
    assert list(snapshots.states) == [1]
    assert_same_weights(clf.model_.state_dict(), snapshots.states[1])
    assert all(torch.isfinite(v).all() for v in clf.model_.state_dict().values() if v.is_floating_point())
    assert np.isfinite(clf.predict_proba(X[:4])).all()


def test_out_of_memory_in_inference_halves_the_batch_and_retries():
    sizes = []

    def forward(images):
        sizes.append(len(images))
        if len(images) > 3:
            raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
        return images.float().sum(dim=(1, 2, 3), keepdim=False)[:, None].numpy()

    images = torch.arange(10 * 2 * 2 * 3, dtype=torch.uint8).reshape(10, 3, 2, 2)
    with pytest.warns(UserWarning, match="out of GPU memory: predicting in batches of 4"):
        outputs, chunk = in_chunks(forward, images, 8)
    assert sizes == [8, 4, 2, 2, 2, 2, 2]
    assert chunk == 2
    np.testing.assert_array_equal(np.concatenate(outputs)[:, 0], images.float().sum(dim=(1, 2, 3)).numpy())

    def always_oom(images):
        raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")

    with pytest.raises(RuntimeError, match="even for one image"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        in_chunks(always_oom, images, 4)


def test_run_model_recovers_from_out_of_memory_with_the_same_outputs(textures):
    X, _ = textures

    class FlakyNet(torch.nn.Module):
        """Pretends a batch over 8 images does not fit in memory."""

        def forward(self, x):
            if len(x) > 8:
                raise torch.cuda.OutOfMemoryError("CUDA out of memory (simulated)")
            return x.mean(dim=(2, 3))

    config = {"mean": (0.5, 0.5, 0.5), "std": (0.25, 0.25, 0.25)}
    kwargs = dict(image_size=32, data_config=config, mixed_precision="no", device="cpu")
    with pytest.warns(UserWarning, match="out of GPU memory"):
        got = run_model(FlakyNet(), X, lambda m, x: m(x), batch_size=32, **kwargs)
    expected = run_model(torch.nn.Identity(), X, lambda m, x: x.mean(dim=(2, 3)), batch_size=32,
                         **kwargs)
    np.testing.assert_array_equal(got, expected)


def test_resuming_a_fit_that_a_callback_stopped_trains_no_further(textures, tmp_path):
    X, y = textures
    kwargs = tiny_kwargs(schedule=SCHEDULE, epochs=None)
    stop_at_2 = LambdaCallback(lambda epoch, logs: epoch == 2)
    stopped = TransferClassifier(**kwargs, callbacks=[stop_at_2]).fit(X, y, checkpoint_dir=tmp_path)
    assert len(stopped.history_) == 2
    resumed = TransferClassifier(**kwargs).fit(X, y, checkpoint_dir=tmp_path, resume=True)
    assert len(resumed.history_) == 2
    assert_same_weights(resumed.model_.state_dict(), stopped.model_.state_dict())

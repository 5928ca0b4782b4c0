"""Every option resolved once (FitPlan), callbacks that only observe, and the defects a code
review found in the coupling between estimator, trainer and callbacks (issue 21)."""

import gc
import weakref

import numpy as np
import pytest
import torch

from easytl import Callback, Phase, TransferClassifier
from easytl.training.checkpoints import load_checkpoint

from conftest import InterruptAt, tiny_kwargs

TWO_PHASES = [Phase(2, 0, name="head"), Phase(2, "all", name="all")]


class Keeper(Callback):
    """A user callback the user keeps after fit."""

    def on_epoch_end(self, epoch, logs):
        self.seen_model = self.trainer.model is not None


def test_a_kept_callback_does_not_keep_the_trainer_alive(textures):
    keeper = Keeper()
    clf = TransferClassifier(**tiny_kwargs(schedule=TWO_PHASES, epochs=None, callbacks=[keeper]))
    clf.fit(*textures)
    assert keeper.seen_model and keeper.trainer is None
    # nothing of the fit (trainer, feature cache, kept best weights) is reachable from it
    assert not [o for o in gc.get_referrers(keeper) if type(o).__name__ == "Trainer"]


class Boom(Callback):
    def __init__(self):
        self.ended = None

    def on_epoch_end(self, epoch, logs):
        if epoch == 2:
            raise RuntimeError("boom")

    def on_train_end(self, logs=None):
        self.ended = dict(logs)


def test_any_error_still_ends_training_and_releases_everything(textures):
    boom = Boom()
    clf = TransferClassifier(**tiny_kwargs(schedule=TWO_PHASES, epochs=None, callbacks=[boom]))
    with pytest.raises(RuntimeError, match="boom"):
        clf.fit(*textures)
    assert boom.ended["error"] == "RuntimeError: boom" and not boom.ended["interrupted"]
    assert boom.trainer is None


def test_mlflow_run_is_ended_after_an_error(textures, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    kwargs = tiny_kwargs(schedule=TWO_PHASES, epochs=None, log_with="mlflow", logging_dir=tmp_path)
    with pytest.raises(RuntimeError, match="boom"):
        TransferClassifier(**kwargs, callbacks=[Boom()]).fit(*textures)
    assert mlflow.active_run() is None
    TransferClassifier(**kwargs).fit(*textures)  # the next fit starts its own run


def test_callbacks_observe_and_cannot_write_into_the_trainer(textures):
    class Meddler(Callback):
        def on_phase_begin(self, phase, logs=None):
            self.trainer.optimizer = None

    with pytest.raises(AttributeError, match="callbacks observe"):
        TransferClassifier(**tiny_kwargs(schedule=TWO_PHASES, epochs=None,
                                         callbacks=[Meddler()])).fit(*textures)


class Counter(Callback):
    """A callback with a checkpoint state."""

    def __init__(self, name=None):
        self.count = 0
        if name:
            self.name = name

    def on_epoch_end(self, epoch, logs):
        self.count += 1

    def state_dict(self):
        return {"count": self.count}

    def load_state_dict(self, state):
        self.count = state["count"]


def test_callback_state_is_keyed_by_name_not_position(textures, tmp_path):
    kwargs = tiny_kwargs(schedule=[Phase(5, 0, name="head")], epochs=None, head="mlp", lr=0.05,
                         val_size=0.3, early_stopping=3)
    counter = Counter()
    with pytest.warns(UserWarning, match="interrupted"):
        TransferClassifier(**kwargs, callbacks=[counter, InterruptAt(2)]).fit(
            *textures, checkpoint_dir=tmp_path)
    state = load_checkpoint(tmp_path)
    assert state["callbacks"] == {"Counter": {"count": 1}}
    assert state["parts"]["early_stopping"] == {"since_best": 0}
    # An observer without state added in front: the Counter's and EarlyStopping's states still
    # arrive (by position the Counter's was dropped before).
    resumed_counter = Counter()
    TransferClassifier(**kwargs, callbacks=[Keeper(), resumed_counter]).fit(
        *textures, checkpoint_dir=tmp_path, resume=True)
    assert resumed_counter.count == 1 + (5 - 1)


def test_two_stateful_callbacks_need_distinct_names(textures):
    with pytest.raises(ValueError, match="distinct `name`"):
        TransferClassifier(**tiny_kwargs(callbacks=[Counter(), Counter()])).fit(*textures)
    TransferClassifier(**tiny_kwargs(schedule=[Phase(1, 0)], epochs=None,
                                     callbacks=[Counter("a"), Counter("b")])).fit(*textures)


def test_checkpoint_of_another_backbone_or_callback_set_is_refused(textures, tmp_path):
    kwargs = tiny_kwargs(schedule=TWO_PHASES, epochs=None)
    with pytest.warns(UserWarning, match="interrupted"):
        TransferClassifier(**kwargs, callbacks=[InterruptAt(2)]).fit(*textures, checkpoint_dir=tmp_path)
    wider = torch.nn.Sequential(torch.nn.Conv2d(3, 12, 3, stride=2, padding=1), torch.nn.ReLU())
    other = dict(kwargs, backbone=wider)
    with pytest.raises(ValueError, match="different fit .*backbone"):
        TransferClassifier(**other).fit(*textures, checkpoint_dir=tmp_path, resume=True)
    with pytest.raises(ValueError, match="different fit .*callbacks"):
        TransferClassifier(**kwargs, callbacks=[Counter()]).fit(
            *textures, checkpoint_dir=tmp_path, resume=True)


def test_unseeded_lr_auto_resumes_without_sweeping_again(textures, tmp_path, monkeypatch):
    kwargs = tiny_kwargs(schedule=TWO_PHASES, epochs=None, lr="auto", random_state=None)
    with pytest.warns(UserWarning, match="interrupted"):
        first = TransferClassifier(**kwargs, callbacks=[InterruptAt(2)]).fit(
            *textures, checkpoint_dir=tmp_path)
    monkeypatch.setattr(TransferClassifier, "lr_find",
                        lambda *a, **k: pytest.fail("lr='auto' swept again on resume"))
    resumed = TransferClassifier(**kwargs).fit(*textures, checkpoint_dir=tmp_path, resume=True)
    assert resumed.lr_ == first.lr_ and len(resumed.history_) == 4


def test_options_are_checked_before_any_image_is_read(tmp_path):
    never = tmp_path / "missing-folder"  # reading it would fail: the option error comes first
    with pytest.raises(ValueError, match="head='mlp' cannot be used here: schedule='auto' starts"):
        TransferClassifier(head="mlp").fit(str(never))
    with pytest.raises(ValueError, match="early_stopping needs validation data"):
        TransferClassifier(early_stopping=2, val_size=0).fit(str(never))


def test_early_stopping_without_a_hold_out_from_the_auto_split_fails_before_training(textures):
    X, y = textures  # few-shot: the default plan holds nothing out
    with pytest.raises(ValueError, match="early_stopping needs validation data"):
        TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, head="auto", val_size="auto",
                                         early_stopping=2)).fit(X, y)


def test_the_lr_schedule_counts_optimizer_updates_not_batches(textures):
    lrs = []

    class Spy(Callback):
        def on_after_backward(self, batch, logs=None):
            lrs.append(self.trainer.optimizer.param_groups[0]["lr"])

    X, y = textures  # 64 training images at batch 8: 8 batches, 4 updates with accumulate=2
    TransferClassifier(**tiny_kwargs(schedule=[Phase(2, 0, lr=0.01, warmup_epochs=1)], epochs=None,
                                     batch_size=8, accumulate=2, val_size=0.2,
                                     callbacks=[Spy()])).fit(X, y)
    assert len(lrs) == 8  # 2 epochs x 4 updates
    # warmup over the first epoch's 4 updates (1/5 ... 4/5 of the LR), then cosine over the
    # second epoch's 4: counted in batches, warmup would take all 8 updates.
    np.testing.assert_allclose(lrs[:4], [0.01 * f for f in (0.2, 0.4, 0.6, 0.8)], rtol=1e-6)
    assert lrs[4] == pytest.approx(0.01) and lrs[-1] < 0.01 * 0.2


def test_cache_features_auto_skips_a_cache_that_would_spill_and_be_read_once(textures):
    X, y = textures
    phase = [Phase(1, 0, name="head")]  # one epoch: each cached view would be read once
    tiny_budget = dict(schedule=phase, epochs=None, head="mlp", cache_memory=1, val_size=0)
    auto = TransferClassifier(**tiny_kwargs(**tiny_budget, cache_features="auto")).fit(X, y)
    forced = TransferClassifier(**tiny_kwargs(**tiny_budget, cache_features=True)).fit(X, y)
    assert auto.plan_["cache_phases"] == [False] and auto.history_[0]["cache"] is None
    assert forced.plan_["cache_phases"] == [True] and forced.history_[0]["cache"] == "disk"
    reused = TransferClassifier(**tiny_kwargs(**dict(tiny_budget, schedule=[Phase(3, 0)]),
                                              augment=None)).fit(X, y)
    assert reused.history_[0]["cache"] == "disk"  # one view read 3 times: worth writing


def test_the_plan_is_recorded_and_explains_the_fit(textures, tmp_path):
    clf = TransferClassifier(**tiny_kwargs(schedule=TWO_PHASES, epochs=None)).fit(*textures)
    plan = clf.plan_
    assert [p["name"] for p in plan["phases"]] == ["head", "all"]
    assert plan["phases"][1]["backbone_lr_mult"] == 0.1 and plan["image_size"] == clf.image_size_
    assert plan["n_train"] + plan["n_val"] == len(textures[1])
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=clf.backbone)
    assert loaded.plan_ == plan


def test_a_fit_changes_no_parameter_and_the_estimator_clones(textures):
    from sklearn.base import clone
    clf = TransferClassifier(**tiny_kwargs(schedule=TWO_PHASES, epochs=None))
    before = {k: v for k, v in clf.get_params().items() if k != "backbone"}
    clf.fit(*textures)
    after = {k: v for k, v in clf.get_params().items() if k != "backbone"}
    assert before == after and clone(clf).get_params()["warmup_epochs"] == "auto"
    assert torch.is_tensor(next(iter(clf.model_.state_dict().values())))


def test_released_trainer_frees_the_fit(textures):
    """After fit, the only strong reference to the trained network is the estimator's."""
    clf = TransferClassifier(**tiny_kwargs(schedule=TWO_PHASES, epochs=None, ema=0.9)).fit(*textures)
    model = weakref.ref(clf.model_)
    del clf
    gc.collect()
    assert model() is None


def test_multi_label_plan_length_counts_images_not_label_occurrences():
    from types import SimpleNamespace

    from easytl import make_texture_mosaics
    from easytl.data.labels import read_labels
    from easytl.plan import DataFacts, make_plan
    X, y = make_texture_mosaics(n_images=40, size=32, random_state=0)
    occurrences = sum(len(labels) for labels in y)
    assert occurrences > 1.5 * len(y)  # ~2 labels per image
    clf = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, head="auto",
                                           val_size="auto", batch_size=8)).fit(X, y)
    assert clf.plan_["n_train"] + clf.plan_["n_val"] == 40
    # The plan as fit makes it, for a backbone pretrained at 224 px fed 32 px images (so the
    # compute budget does not bind): 40 images at batch 8 are 5 updates an epoch, stretched to
    # 60 updates = 12 epochs; counting label occurrences (before) gave 6.
    info = read_labels(y, "auto")
    facts = DataFacts(tuple(info.classes.tolist()), tuple(info.counts()), True)
    backbone = SimpleNamespace(data_config={"input_size": 224}, name="test", stages=[],
                               layer_groups=[])
    params = TransferClassifier(image_size=32, batch_size=8).get_params()
    plan = make_plan(params, facts, seed=0, lr=1e-3, backbone=backbone, n_train=40, n_val=0,
                     val_size=0.0)
    assert plan.phases[1].epochs == 12


def test_the_default_plan_says_what_it_decided(textures, capsys):
    clf = TransferClassifier(**tiny_kwargs(schedule="auto", epochs=None, head="auto",
                                           val_size="auto", verbose=1)).fit(*textures)
    err = capsys.readouterr().err
    from easytl.training.callbacks.progress import note_lines  # its clauses, one a line
    assert note_lines("easytl plan", clf.plan_["note"]) in err and "a linear probe" in clf.plan_["note"]
    # the probe's row says what the plan said, or what a decision after the probe replaced it
    # with (20 textures per class: the probe is perfect in cross-fitting, fine-tuning is skipped)
    stops = [d["note"] for d in clf.plan_["decisions"] if d["stop"]]
    assert clf.history_[0]["note"] == (stops[0] if stops else clf.plan_["note"])


def test_early_stopping_with_x_val_and_val_size_0_is_fine(textures):
    X, y = textures
    held = np.arange(len(y)) % 4 == 0
    clf = TransferClassifier(**tiny_kwargs(schedule=[Phase(2, 0)], epochs=None, val_size=0,
                                           early_stopping=1)).fit(X[~held], y[~held],
                                                                  X_val=X[held], y_val=y[held])
    assert clf.plan_["n_val"] == 20


def test_a_probe_phase_in_a_phase_list_gets_a_linear_head_or_an_early_error(textures):
    schedule = [Phase(1, 0, probe=True), Phase(1, "all")]
    clf = TransferClassifier(**tiny_kwargs(schedule=schedule, epochs=None, head="auto")).fit(*textures)
    assert clf.plan_["head"] == "linear"
    with pytest.raises(ValueError, match="head='mlp' cannot be used here"):
        TransferClassifier(**tiny_kwargs(schedule=schedule, epochs=None, head="mlp")).fit(*textures)


def test_a_callback_failing_at_train_end_does_not_hide_the_error_or_skip_the_others(textures):
    class BadEnd(Callback):
        name = "bad_end"

        def on_train_end(self, logs=None):
            raise ValueError("cannot end")

    boom = Boom()
    with pytest.warns(UserWarning, match="bad_end failed in on_train_end"):
        with pytest.raises(RuntimeError, match="boom"):
            TransferClassifier(**tiny_kwargs(schedule=TWO_PHASES, epochs=None,
                                             callbacks=[BadEnd(), boom])).fit(*textures)
    assert boom.ended["error"] == "RuntimeError: boom"

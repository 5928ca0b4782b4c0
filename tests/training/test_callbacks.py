"""The callback loop: hooks, History, monitor, optimizer choice, trackers, device choice."""

import csv
import inspect

import numpy as np
import pytest
import torch

from easytl import Callback, Monitor, Phase, TransferClassifier
from easytl.params import parameter_table

from conftest import tiny_kwargs

SCHEDULE = [Phase(2, 0, name="head"), Phase(1, "all", name="all")]


class Recorder(Callback):
    """Records every hook call in order."""

    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name.startswith("on_"):
            calls = object.__getattribute__(self, "calls")
            return lambda *args: calls.append(name)
        return object.__getattribute__(self, name)


def test_every_hook_fires_in_order(textures):
    X, y = textures  # 64 training images, batch 16: 4 batches an epoch
    recorder = Recorder()
    TransferClassifier(**tiny_kwargs(schedule=SCHEDULE, epochs=None, val_size=0.2,
                                     callbacks=[recorder])).fit(X, y)
    batch = ["on_batch_begin", "on_after_backward", "on_batch_end"]
    epoch = ["on_epoch_begin"] + batch * 4 + ["on_validation_begin", "on_epoch_end"]
    assert recorder.calls == (["on_train_begin", "on_phase_begin"] + epoch * 2 + ["on_phase_end",
                              "on_phase_begin"] + epoch + ["on_phase_end", "on_train_end"])


class MeanWeight(Callback):
    """The README's example: log a custom metric per epoch."""

    def on_epoch_end(self, epoch, logs):
        head = self.trainer.model.head
        self.trainer.history.record("head_weight_norm", float(head[0].weight.norm()))


def test_callbacks_add_history_columns_and_batches_are_recorded(textures, tmp_path):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(schedule=SCHEDULE, epochs=None,
                                           callbacks=[MeanWeight()])).fit(X, y)
    norms = [row["head_weight_norm"] for row in clf.history_]
    assert len(norms) == 3 and all(n > 0 for n in norms) and norms[0] != norms[-1]
    assert len(clf.history_.batches) == 3 * 4
    assert {"epoch", "batch", "loss", "size"} <= set(clf.history_.batches[0])
    loaded = TransferClassifier.load(clf.save(tmp_path / "m.easytl"), backbone=clf.backbone)
    assert loaded.history_.column("head_weight_norm") == norms and loaded.history_.batches == []


# lr=0.05 with 30% held out: the validation loss rises now and then (as in tests/reference)
NOISY = dict(schedule="progressive", epochs=None, head="mlp", lr=0.05, val_size=0.3)


class Snapshots(Callback):
    def __init__(self):
        self.states = {}

    def on_epoch_end(self, epoch, logs):
        self.states[epoch] = {k: v.clone() for k, v in self.trainer.model.state_dict().items()}


def test_monitor_picks_the_best_epoch_by_its_own_metric(textures):
    X, y = textures
    by_loss, by_balanced = Snapshots(), Snapshots()
    loss = TransferClassifier(**tiny_kwargs(**NOISY, callbacks=[by_loss])).fit(X, y)
    balanced = TransferClassifier(**tiny_kwargs(**NOISY, monitor="val_balanced_accuracy",
                                                callbacks=[by_balanced])).fit(X, y)
    losses = loss.history_.column("val_loss")
    scores = balanced.history_.column("val_balanced_accuracy")
    assert loss.best_epoch_ == int(np.argmin(losses)) + 1
    assert balanced.best_epoch_ == int(np.argmax(scores)) + 1  # the first epoch at the best score
    assert balanced.best_epoch_ != loss.best_epoch_
    for clf, snaps in ((loss, by_loss), (balanced, by_balanced)):
        for key, value in clf.model_.state_dict().items():
            torch.testing.assert_close(value, snaps.states[clf.best_epoch_][key], rtol=0, atol=0)


def test_a_callable_monitor_with_its_mode(textures):
    X, y = textures
    calls = []

    def errors(y_true, y_pred, proba):
        calls.append(len(y_true))
        return float((y_true != y_pred).sum())

    clf = TransferClassifier(**tiny_kwargs(**NOISY, monitor=Monitor(errors, mode="min"))).fit(X, y)
    column = clf.history_.column("val_errors")
    assert len(calls) == 10 and set(calls) == {24}  # every epoch, on the 24 held-out images
    assert clf.best_epoch_ == int(np.argmin(column)) + 1
    with pytest.raises(ValueError, match="monitor must be .val_loss., .val_accuracy., .val_balanced"):
        TransferClassifier(**tiny_kwargs(monitor="val_auc")).fit(X, y)


def test_early_stopping_and_plateau_follow_the_monitor(textures):
    X, y = textures
    clf = TransferClassifier(**tiny_kwargs(**NOISY, monitor="val_accuracy", early_stopping=1)).fit(X, y)
    accuracy = clf.history_.column("val_accuracy")
    for phase in ("head", "top3"):  # a phase ends one epoch after its last new best accuracy
        rows = [r for r in clf.history_ if r["phase"] == phase]
        if len(rows) < {"head": 4, "top3": 4}[phase]:
            assert not rows[-1]["best"]
    assert clf.best_epoch_ == int(np.argmax(accuracy)) + 1
    plateau = TransferClassifier(**tiny_kwargs(
        schedule=[Phase(6, 0, name="head")], epochs=None, head="mlp", lr=0.05, val_size=0.3,
        lr_decay="plateau", monitor="val_accuracy", plateau_patience=0, plateau_factor=0.5)).fit(X, y)
    rows = plateau.history_
    for before, after in zip(rows, rows[1:]):  # accuracy did not rise -> the next epoch's LR halves
        expected = before["lr"] * (1.0 if before["best"] else 0.5)
        assert after["lr"] == pytest.approx(expected)
    assert rows[-1]["lr"] < rows[0]["lr"]


def test_optimizer_choice_and_weight_decay(textures):
    X, y = textures
    seen = []

    class Inspect(Callback):
        def on_phase_begin(self, phase, logs=None):
            optimizer = self.trainer.optimizer.optimizer
            seen.append((type(optimizer).__name__, optimizer.param_groups[0]["weight_decay"],
                         optimizer.param_groups[0].get("momentum")))

    TransferClassifier(**tiny_kwargs(epochs=2, schedule=[Phase(1, 0)], optimizer="sgd",
                                     weight_decay=0.01, callbacks=[Inspect()])).fit(X, y)
    assert seen == [("SGD", 0.01, 0.9)]
    made = []

    def rmsprop(groups):
        made.append([g["lr"] for g in groups])
        return torch.optim.RMSprop(groups)
    TransferClassifier(**tiny_kwargs(schedule=[Phase(1, "all", lr=0.01, backbone_lr_mult=0.5)],
                                     epochs=None, optimizer=rmsprop, callbacks=[Inspect()])).fit(X, y)
    assert made == [[0.01, 0.005]] and seen[-1][0] == "RMSprop"
    with pytest.raises(ValueError, match="optimizer must be 'adamw', 'sgd' or a callable"):
        TransferClassifier(**tiny_kwargs(optimizer="adam")).fit(X, y)


def test_parameters_are_keyword_only_and_all_validated_from_one_table():
    names = TransferClassifier._get_param_names()
    assert set(parameter_table()) == set(names)
    signature = inspect.signature(TransferClassifier.__init__)
    kinds = {p.name: p.kind for p in signature.parameters.values() if p.name != "self"}
    assert kinds.pop("backbone") == inspect.Parameter.POSITIONAL_OR_KEYWORD
    assert set(kinds.values()) == {inspect.Parameter.KEYWORD_ONLY}
    with pytest.raises(TypeError):
        TransferClassifier("efficientnet_lite0", "default")


@pytest.mark.parametrize("kwargs, message", [
    (dict(lr=-1), "lr must be a number > 0 or 'auto'; got -1"),
    (dict(batch_size=2.5), "batch_size must be an integer >= 1; got 2.5"),
    (dict(val_size=1.5), "val_size must be 'auto', a number >= 0 and < 1 or an integer >= 1"),
    (dict(log_with="wandb"), "log_with must be None, 'tensorboard', 'mlflow', 'csv'"),
    (dict(device="tpu"), "device must be 'auto', 'cpu', 'cuda', 'mps' or 'cuda:N'"),
    (dict(plateau_factor=1.0), "plateau_factor must be a number > 0 and < 1"),
])
def test_bad_values_name_what_is_accepted(textures, kwargs, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(".", r"\.")):
        TransferClassifier(**tiny_kwargs(**kwargs)).fit(*textures)


def history_series(clf, key):
    return {row["epoch"]: row[key] for row in clf.history_ if row.get(key) is not None}


def test_tensorboard_scalars_equal_the_history(textures, tmp_path):
    pytest.importorskip("tensorboard", reason="tensorboard is the tracking extra")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    clf = TransferClassifier(**tiny_kwargs(schedule=SCHEDULE, epochs=None, log_with="tensorboard",
                                           logging_dir=tmp_path)).fit(*textures)
    events = EventAccumulator(str(next(tmp_path.rglob("events.out.tfevents.*")).parent))
    events.Reload()
    for key in ("train_loss", "val_loss", "val_accuracy", "lr"):
        logged = {e.step: e.value for e in events.Scalars(key)}
        assert logged == pytest.approx(history_series(clf, key), rel=1e-6)
    assert events.Scalars("final/best_epoch")[0].value == clf.best_epoch_


def test_mlflow_run_holds_params_and_metrics(textures, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow", reason="mlflow is the tracking extra")
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    clf = TransferClassifier(**tiny_kwargs(schedule=SCHEDULE, epochs=None, log_with="mlflow",
                                           logging_dir=tmp_path)).fit(*textures)
    client = mlflow.tracking.MlflowClient((tmp_path / "mlruns").resolve().as_uri())
    runs = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert len(runs) == 1
    run = runs[0]
    assert run.data.params["lr"] == "0.01" and run.data.params["batch_size"] == "16"
    for key in ("train_loss", "val_loss"):
        logged = {m.step: m.value for m in client.get_metric_history(run.info.run_id, key)}
        assert logged == pytest.approx(history_series(clf, key), rel=1e-6)


def test_csv_log_equals_the_history(textures, tmp_path):
    clf = TransferClassifier(**tiny_kwargs(schedule=SCHEDULE, epochs=None, log_with=["csv"],
                                           logging_dir=tmp_path)).fit(*textures)
    with open(tmp_path / "easytl" / "metrics.csv") as f:
        rows = [r for r in csv.DictReader(f) if r["train_loss"]]
    assert [int(r["step"]) for r in rows] == [row["epoch"] for row in clf.history_]
    assert [float(r["val_loss"]) for r in rows] == pytest.approx(clf.history_.column("val_loss"))
    with open(tmp_path / "easytl" / "params.csv") as f:
        params = dict(csv.reader(f))
    assert params["schedule"].startswith("[Phase(") and params["batch_size"] == "16"


def test_device_auto_picks_apple_mps_when_present(monkeypatch):
    import easytl.models.device as device
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(device, "mps_available", lambda: True)
    assert device.resolve_device("auto") == "mps" and device.resolve_device("mps") == "mps"
    monkeypatch.setattr(device, "mps_supports_bf16", lambda: True)
    assert device.resolve_mixed_precision("auto", "mps") == "bf16"
    monkeypatch.setattr(device, "mps_supports_bf16", lambda: False)
    assert device.resolve_mixed_precision("auto", "mps") == "no"  # fp32 on older macOS
    monkeypatch.setattr(device, "mps_available", lambda: False)
    assert device.resolve_device("auto") == "cpu"
    with pytest.raises(ValueError, match="Metal backend is not available"):
        device.resolve_device("mps")


def test_names_are_defined_once():
    from easytl import cli, constants, export
    from easytl.models import backbones
    from easytl.training import schedules
    assert set(schedules.SCHEDULES) | {"auto"} == set(constants.SCHEDULE_NAMES)
    assert cli.DEFAULT_BACKBONE is backbones.DEFAULT_BACKBONE is constants.DEFAULT_BACKBONE
    assert export.EXPORT_FORMATS is constants.EXPORT_FORMATS
    assert TransferClassifier().cache_memory == constants.DEFAULT_CACHE_MEMORY

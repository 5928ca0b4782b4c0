"""Experiment tracking through accelerate's trackers: TensorBoard, MLflow, or a CSV file.

The estimator's parameters are logged once, every epoch's numeric columns of
``history_`` (losses, accuracies, the monitored metric, the LR) at step =
epoch, and a final report (best epoch and its validation metrics). Only the
main process logs (accelerate's trackers run there).
"""

from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path

from accelerate.tracking import GeneralTracker, MLflowTracker

from ...io import atomic_file
from .base import Callback

TRACKERS = ("tensorboard", "mlflow", "csv")
PROJECT = "easytl"


def tracker_specs(log_with, logging_dir) -> list:
    """``log_with`` as accelerate expects it: names, and a :class:`CSVTracker` for "csv"."""
    names = [log_with] if isinstance(log_with, str) else list(log_with)
    unknown = [n for n in names if n not in TRACKERS]
    if unknown:
        raise ValueError(f"log_with takes {', '.join(TRACKERS)} or a list of them; got {unknown}.")
    directory = Path(logging_dir or "easytl_logs")
    specs = [CSVTracker(PROJECT, directory) if n == "csv" else n for n in names]
    if "mlflow" in names and "MLFLOW_TRACKING_URI" not in os.environ:
        # No tracking server configured: a local store beside the other logs, used only while
        # the tracker works (the process's MLflow URI and environment stay as they are).
        uri = (directory / "mlruns").resolve().as_uri()
        specs = [LocalMLflowTracker(PROJECT, uri) if n == "mlflow" else n for n in specs]
    return specs


class CSVTracker(GeneralTracker):
    """A minimal accelerate tracker: ``<logging_dir>/<project>/metrics.csv``, one row per
    step, one column per logged key, and ``params.csv`` (the last fit's).

    Rows are appended to what the file holds, so a second fit or a resumed one in the
    same folder adds to the earlier rows; a key not yet among the columns rewrites the
    file from its own rows with the new column added, so nothing is lost either way.
    """

    name = "csv"
    requires_logging_directory = True

    def __init__(self, run_name: str, logging_dir):
        super().__init__()
        self.directory = Path(logging_dir) / run_name

    @property
    def tracker(self):
        return self.directory

    def start(self):
        self.directory.mkdir(parents=True, exist_ok=True)

    def store_init_configuration(self, values: dict):
        self.start()
        with open(self.directory / "params.csv", "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["param", "value"])
            writer.writerows(sorted(values.items()))

    def log(self, values: dict, step=None, **kwargs):
        self.start()
        path = self.directory / "metrics.csv"
        row = {"step": step, **values}
        columns = []
        if path.is_file():
            with open(path, newline="") as f:
                columns = next(csv.reader(f), [])
        if columns and set(row) <= set(columns):
            with open(path, "a", newline="") as f:
                csv.DictWriter(f, fieldnames=columns).writerow(row)
            return
        rows = []
        if columns:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        columns = ["step"] + sorted(set(columns) | set(row) - {"step"})
        with atomic_file(path) as tmp, open(tmp, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=columns)
            writer.writeheader()
            writer.writerows(rows + [row])


class Tracking(Callback):
    """Logs to the trackers the accelerator was created with (``log_with``)."""

    def __init__(self, params: dict, monitor_name: str = "val_loss"):
        self.params, self.monitor_name = params, monitor_name

    def on_train_begin(self, logs=None) -> None:
        config = {k: v if isinstance(v, (bool, int, float, str)) or v is None else str(v)
                  for k, v in self.params.items()}
        self.trainer.accelerator.init_trackers(PROJECT, config=config)

    def on_epoch_end(self, epoch, logs) -> None:
        values = {k: float(v) for k, v in logs.items()
                  if isinstance(v, (int, float)) and not isinstance(v, bool) and k != "epoch"}
        self.trainer.accelerator.log(values, step=epoch)

    def on_train_end(self, logs=None) -> None:
        t = self.trainer
        report = {"final/best_epoch": float(t.best_epoch) if t.best_epoch is not None else -1.0,
                  "final/epochs": float(len(t.history))}
        best = next((row for row in t.history if row["epoch"] == t.best_epoch), None)
        for key in ("val_loss", "val_accuracy", self.monitor_name):
            if best is not None and isinstance(best.get(key), (int, float)):
                report[f"final/{key}"] = float(best[key])
        t.accelerator.log(report, step=len(t.history) + 1)
        t.accelerator.end_training()


@contextlib.contextmanager
def _mlflow_store(uri: str):
    """MLflow's tracking URI set to ``uri`` for the block, then put back with the environment.

    ``mlflow.set_tracking_uri`` is process-wide and writes ``MLFLOW_TRACKING_URI``
    into the environment; MLflow keeps its plain-file store in maintenance mode
    and asks for explicit consent (``MLFLOW_ALLOW_FILE_STORE``) to use it.
    """
    import mlflow
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_ALLOW_FILE_STORE")
    saved = {name: os.environ.get(name) for name in names}
    os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")
    mlflow.set_tracking_uri(uri)
    try:
        yield
    finally:
        mlflow.set_tracking_uri(saved["MLFLOW_TRACKING_URI"])  # None: unset again
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


class LocalMLflowTracker(MLflowTracker):
    """accelerate's MLflow tracker writing to a local store (``uri``) when no tracking server
    is configured, with that store set only while it starts, logs and finishes."""

    def __init__(self, experiment_name: str, uri: str):
        super().__init__(experiment_name)
        self.uri = uri

    def start(self):
        with _mlflow_store(self.uri):
            super().start()

    def store_init_configuration(self, values: dict):
        with _mlflow_store(self.uri):
            super().store_init_configuration(values)

    def log(self, values: dict, step=None, **kwargs):
        with _mlflow_store(self.uri):
            super().log(values, step=step, **kwargs)

    def finish(self):
        with _mlflow_store(self.uri):
            super().finish()

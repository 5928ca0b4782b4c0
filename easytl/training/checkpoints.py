"""Training checkpoints: everything needed to continue a fit exactly where it stopped.

A checkpoint holds the model, optimizer and scheduler states, the position in
the schedule, the best weights so far, the history and the random-number
states, written atomically after every epoch. It is a ``torch.save`` file read
back with ``weights_only=True``, PyTorch's restricted unpickler that admits
only tensors and plain containers, so loading one cannot run code.
"""

from __future__ import annotations

from pathlib import Path

import torch

from . import decisions
from .history import History
from ..io import atomic_file

FORMAT = "easytl-checkpoint"
VERSION = 2  # 2: the trainer's parts and callbacks keyed by name (the FitPlan trainer)
FILENAME = "checkpoint.pt"


def checkpoint_path(directory) -> Path:
    return Path(directory) / FILENAME


def save_checkpoint(directory, state: dict) -> Path:
    """Write ``state`` to ``directory/checkpoint.pt``, replacing the previous one atomically."""
    path = checkpoint_path(directory)
    with atomic_file(path) as tmp:
        torch.save(dict(state, format=FORMAT, version=VERSION), tmp)
    return path


def load_checkpoint(directory) -> dict | None:
    """The checkpoint in ``directory``, or None if there is none."""
    path = checkpoint_path(directory)
    if not path.is_file():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a truncated file, or one holding more than tensors and containers
        raise ValueError(f"cannot resume from {path}: {type(exc).__name__}: {exc}. Delete it to "
                         "start afresh.") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("version") != VERSION:
        raise ValueError(f"{path} is not an easytl checkpoint of version {VERSION}.")
    return state


def check_fingerprint(directory, state: dict, fingerprint: dict) -> None:
    """Refuse a checkpoint written by a fit on other data, classes, schedule or seed."""
    stored = state.get("fingerprint") or {}
    differ = sorted(k for k in set(fingerprint) | set(stored) if fingerprint.get(k) != stored.get(k))
    if differ:
        raise ValueError(f"{checkpoint_path(directory)} was written by a different fit (differs in: "
                         f"{', '.join(differ)}); resume with the same data and parameters, or use "
                         "another checkpoint_dir.")


def checkpoint_to_resume(checkpoint_dir, resume: bool):
    """The checkpoint a ``fit(resume=True)`` continues from (None: start afresh)."""
    if not resume:
        return None
    if checkpoint_dir is None:
        raise ValueError("resume=True needs checkpoint_dir: the folder fit wrote checkpoints to.")
    return load_checkpoint(checkpoint_dir)


class Checkpointing:
    """The trainer's checkpoints: what is written after every epoch, and how a fit resumes
    from it (a mixin of :class:`~easytl.training.trainer.Trainer`)."""

    def _parts(self) -> dict:
        """The trainer's own stateful steps, by name."""
        parts = {"phase_setup": self.phase_setup, "lr_schedule": self.lr_schedule,
                 "best_epoch": self.best}
        if self.early_stopping is not None:
            parts["early_stopping"] = self.early_stopping
        return parts

    def _write_checkpoint(self, epoch: int) -> None:
        if self.checkpoint_dir is None or not self.accelerator.is_main_process:
            return
        last = 1 if self.phase.probe else self.phase.epochs
        save_checkpoint(self.checkpoint_dir, {
            "fingerprint": self.plan.fingerprint(), "phase_index": self.phase_index,
            "phase_epoch": self.phase_epoch, "epoch": epoch,
            "phase_done": self.phase_epoch == last or self.stop_phase or self.stop_training,
            "stopped": self.stop_training, "model": self.model.state_dict(),
            "optimizer": None if self.optimizer is None else self.optimizer.state_dict(),
            "parts": {name: part.state_dict() for name, part in self._parts().items()},
            "ema": None if self.ema is None else self.ema.state_dict(),
            "callbacks": self.callbacks.states(), "history": [dict(row) for row in self.history],
            "torch_rng": torch.get_rng_state(),
            "generator": None if self.generator is None else self.generator.get_state(),
        })

    def _restore(self, state: dict) -> int:
        """Load a checkpoint's weights, history, RNG and every state; return the phase to
        continue with."""
        self.model.load_state_dict(state["model"])
        self.history = History(state["history"])
        torch.set_rng_state(state["torch_rng"])
        if self.generator is not None and state["generator"] is not None:
            self.generator.set_state(state["generator"])
        for name, part in self._parts().items():
            if name in state["parts"]:
                part.load_state_dict(state["parts"][name])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"], self.model)
        self.callbacks.load_states(state["callbacks"])
        # A fit a callback stopped stays stopped: resuming only restores it.
        self.stop_training = bool(state.get("stopped", False))
        self.epoch = state["epoch"]
        records = [r for row in self.history for r in row.get("decisions", ())]
        if records:  # what the probe decided, applied again
            self.phase_index = next(i for i, p in enumerate(self.phases) if p.probe)
            for change in decisions.replay(self.plan, records):
                self.apply_change(change)
        return state["phase_index"] + (1 if state["phase_done"] else 0)

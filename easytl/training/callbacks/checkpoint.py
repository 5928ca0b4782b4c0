"""Write a checkpoint after every epoch, so an interrupted fit can continue exactly."""

from __future__ import annotations

import torch

from ..checkpoints import save_checkpoint
from .base import Callback


class Checkpoint(Callback):
    """After every epoch (on the main process), atomically write ``directory/checkpoint.pt``:
    weights, optimizer, the position in the schedule, every callback's state (best weights,
    LR step, early-stopping count, ...), the history and the random-number states.

    It runs after the callbacks that may stop the phase or the fit, so it records that.
    """

    def __init__(self, directory, fingerprint: dict | None):
        self.directory, self.fingerprint = directory, fingerprint

    def on_epoch_end(self, epoch, logs) -> None:
        t = self.trainer
        if not t.accelerator.is_main_process:
            return
        last = 1 if t.phase.probe else t.phase.epochs
        save_checkpoint(self.directory, {
            "fingerprint": self.fingerprint, "phase_index": t.phase_index,
            "phase_epoch": t.phase_epoch, "epoch": epoch,
            "phase_done": t.phase_epoch == last or t.stop_phase or t.stop_training,
            "stopped": t.stop_training, "model": t.model.state_dict(),
            "optimizer": None if t.optimizer is None else t.optimizer.state_dict(),
            "callbacks": t.callbacks.states(), "history": [dict(row) for row in t.history],
            "torch_rng": torch.get_rng_state(),
            "generator": None if t.generator is None else t.generator.get_state(),
        })

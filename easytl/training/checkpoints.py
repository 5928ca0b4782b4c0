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

"""Where the model runs and in which precision: one decision, used by training and inference.

``device="auto"`` takes a CUDA GPU, else Apple's Metal GPU (``mps``), else the
CPU. ``mixed_precision="auto"`` takes bf16 where the hardware runs it fast
(CUDA GPUs that support it, CPUs with AVX512-BF16 or AMX, Apple GPUs on macOS
14 or later), fp16 on older CUDA GPUs, and fp32 everywhere else.
"""

from __future__ import annotations

import contextlib
import os

import torch

DEVICES = ("auto", "cpu", "cuda", "mps")
PRECISIONS = ("auto", "no", "bf16", "fp16")


def cpu_has_fast_bf16() -> bool:
    """True on CPUs with native bf16 matrix instructions (AVX512-BF16 or AMX)."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return " avx512_bf16" in flags or " amx_bf16" in flags


def mps_available() -> bool:
    """Apple's Metal GPU backend is built into this torch and usable here."""
    backend = getattr(torch.backends, "mps", None)
    return bool(backend is not None and backend.is_available())


def mps_supports_bf16() -> bool:
    """bf16 on Metal needs macOS 14 (Sonoma) or later."""
    backend = getattr(torch.backends, "mps", None)
    check = getattr(backend, "is_macos_or_newer", None)
    return bool(check is not None and check(14, 0))


def resolve_device(device: str) -> str:
    """``"auto"`` → "cuda", "mps" or "cpu"; an explicit choice is checked to be available."""
    device = str(device)
    if device == "auto":
        if torch.cuda.is_available():
            return "cuda"
        return "mps" if mps_available() else "cpu"
    if device not in DEVICES and not device.startswith("cuda:"):
        raise ValueError(f"device must be one of {DEVICES} or 'cuda:N', got {device!r}.")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError("device='cuda' but no CUDA GPU is available; use device='auto' or 'cpu'.")
    if device == "mps" and not mps_available():
        raise ValueError("device='mps' but Apple's Metal backend is not available here; use "
                         "device='auto' or 'cpu'.")
    return device


def device_type(device: str) -> str:
    return "cuda" if device.startswith("cuda") else device


def resolve_mixed_precision(mixed_precision: str, device_type: str) -> str:
    """``"auto"`` → the fastest precision the hardware runs well; explicit choices are checked."""
    if mixed_precision not in PRECISIONS:
        raise ValueError(f"mixed_precision must be one of {PRECISIONS}, got {mixed_precision!r}.")
    if mixed_precision != "auto":
        if mixed_precision == "fp16" and device_type == "cpu":
            raise ValueError("mixed_precision='fp16' needs a GPU; on a CPU use 'bf16' or 'no'.")
        return mixed_precision
    if device_type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if device_type == "mps":
        return "bf16" if mps_supports_bf16() else "no"
    return "bf16" if cpu_has_fast_bf16() else "no"


AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def inference_setup(device: str = "auto", mixed_precision: str = "auto"):
    """Where inference runs and its autocast context, without an ``Accelerator``: creating one
    resets accelerate's process-wide state (see :func:`_forget_previous_precision`), which a
    fit or a prediction in another thread relies on.

    Returns ``(torch.device, autocast)``, where ``autocast()`` makes a fresh context
    manager (``torch.autocast`` at the resolved precision; a no-op for fp32). The
    device is the one accelerate would pick: a launcher's ``LOCAL_RANK`` GPU, else
    the current one.
    """
    resolved = resolve_device(device)
    kind = device_type(resolved)
    precision = resolve_mixed_precision(mixed_precision, kind)
    if resolved == "cuda":
        index = os.environ.get("LOCAL_RANK")
        where = torch.device("cuda", int(index) if index is not None else torch.cuda.current_device())
    else:
        where = torch.device(resolved)
    dtype = AUTOCAST_DTYPES.get(precision)

    def autocast():
        if dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=kind, dtype=dtype)

    return where, autocast


def make_accelerator(device: str = "auto", mixed_precision: str = "auto", log_with=None,
                     logging_dir=None):
    """An ``accelerate.Accelerator`` for this device and precision (and experiment trackers).

    accelerate picks CUDA, then MPS, unless told ``cpu=True``; so the CPU is
    forced exactly when the resolved device is the CPU.
    """
    from accelerate import Accelerator

    resolved = resolve_device(device)
    kind = device_type(resolved)
    precision = resolve_mixed_precision(mixed_precision, kind)
    _forget_previous_precision()
    return Accelerator(mixed_precision=precision, cpu=kind == "cpu", log_with=log_with,
                       project_dir=None if logging_dir is None else str(logging_dir))


def _forget_previous_precision() -> None:
    """Let this process create an Accelerator with another precision than the last one.

    accelerate keeps the mixed-precision setting in a process-wide singleton and
    refuses a second, different one, while estimators in one process may differ
    (a bf16 fit, then an fp32 check). Only the accelerator part of that state
    is dropped; the distributed part (process group, rank) stays. This is the
    one place easytl touches accelerate's private state; ``_reset_state`` has
    kept this signature since accelerate 0.20.
    """
    from accelerate.state import AcceleratorState
    AcceleratorState._reset_state(reset_partial_state=False)

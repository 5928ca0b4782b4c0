"""Model files: one safetensors file whose header carries a JSON manifest.

Loading reads tensors and JSON only, so a model file can never run code
(unlike a pickle). Writing goes to a temporary file that replaces the target
only once complete, so an interrupted save leaves the previous file intact.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch

FORMAT = "easytl-model"
FORMAT_VERSION = 1
_MANIFEST_KEY = "easytl_manifest"


class ModelFileError(ValueError):
    """A model file is unreadable, corrupted, of another version, or not an easytl model."""


def tensors_checksum(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 over names, dtypes, shapes and bytes of the tensors, in name order."""
    digest = hashlib.sha256()
    for name in sorted(tensors):
        tensor = tensors[name].detach().cpu().contiguous().reshape(-1)
        digest.update(f"{name}|{tensor.dtype}|{tuple(tensor.shape)}|".encode())
        digest.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return digest.hexdigest()


def check_writable(path) -> Path:
    """Fail early, with a clear message, if a file cannot be written at ``path``.

    Called before work whose result would otherwise be lost (training, then saving).
    """
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"{path} is a directory: give a file path to write, e.g. "
                                f"{path / 'model.easytl'}")
    parent = path.parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent  # the first folder that exists: the rest will be created
    if not parent.is_dir() or not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(f"cannot write {path}: {parent} is not a writable folder.")
    # Permission bits do not tell everything (root, /proc, read-only mounts, full disks):
    # create and remove the kind of temporary file the write will use.
    try:
        fd, probe = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=parent)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise PermissionError(f"cannot write {path}: creating a file in {parent} failed "
                              f"({exc.strerror or exc}).") from None
    if path.exists() and not os.access(path, os.W_OK):
        raise PermissionError(f"cannot write {path}: the file is read-only.")
    return path


def _umask_at_import() -> int:
    # The one portable way to read the umask sets it; done once, while this module is imported.
    umask = os.umask(0o022)
    os.umask(umask)
    return umask


_UMASK_AT_IMPORT = _umask_at_import()


def current_umask() -> int:
    """The process's umask, read without changing it (``/proc/self/status`` on Linux 4.7+;
    elsewhere the umask when easytl was imported).

    Setting and restoring it, the only portable way to read it, would give files
    that another thread creates meanwhile the wrong mode.
    """
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    return _UMASK_AT_IMPORT


def _new_file_mode(path: Path) -> int:
    """The mode ``open(path, "w")`` would give: the existing file's, else 0o666 less the umask."""
    if path.exists():
        return path.stat().st_mode & 0o7777
    return 0o666 & ~current_umask()


@contextlib.contextmanager
def atomic_file(path):
    """Yield a temporary path beside ``path`` to write; once the block succeeds it is flushed
    to disk and renamed over ``path``, and if the block fails it is removed, so ``path`` is
    always either the previous file or the complete new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        yield tmp
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.chmod(tmp, _new_file_mode(path))  # mkstemp makes 0600 files; keep the usual mode
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def save_model_file(path, manifest: dict, tensors: dict[str, torch.Tensor]) -> Path:
    """Write ``tensors`` and ``manifest`` to ``path`` atomically."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in tensors.items()}
    manifest = dict(manifest, format=FORMAT, format_version=FORMAT_VERSION,
                    checksum=tensors_checksum(tensors))
    metadata = {_MANIFEST_KEY: json.dumps(manifest)}
    with atomic_file(path) as tmp:
        save_file(tensors, tmp, metadata=metadata)
    return path


def load_model_file(path) -> tuple[dict, dict[str, torch.Tensor]]:
    """Read and verify a model file; return ``(manifest, tensors)``."""
    from safetensors import safe_open

    path = Path(path)
    if path.is_dir():
        raise ModelFileError(f"{path} is a directory, not a model file (model files are written "
                             "by TransferClassifier.save or 'easytl fit --out').")
    if not path.is_file():
        raise FileNotFoundError(f"model file not found: {path}")
    with open(path, "rb") as f:
        head = f.read(9)
    # torch.save writes a zip archive (since torch 1.6) or, older, a bare pickle (protocol 2+);
    # a safetensors file starts with its header's length (8 bytes), then the JSON header's "{"
    if head[8:9] != b"{" and (head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"):
        raise ModelFileError(f"{path} is a PyTorch pickle (torch.save), which easytl never loads: "
                             "unpickling can run code. Load it with torch yourself if you trust it; "
                             "easytl model files are written by TransferClassifier.save.")
    try:
        with safe_open(str(path), framework="pt") as f:
            metadata = f.metadata() or {}
            tensors = {name: f.get_tensor(name) for name in f.keys()}
    except Exception as exc:  # safetensors raises its own error types
        raise ModelFileError(f"{path} is not a readable easytl model file ({type(exc).__name__}: "
                             f"{exc}). Model files are written by TransferClassifier.save.") from None
    if _MANIFEST_KEY not in metadata:
        raise ModelFileError(f"{path} is a safetensors file but not an easytl model (no manifest).")
    try:
        manifest = json.loads(metadata[_MANIFEST_KEY])
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{path} has a corrupted manifest: {exc}") from None
    if manifest.get("format") != FORMAT:
        raise ModelFileError(f"{path} is not an easytl model file.")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise ModelFileError(f"{path} has model-file version {manifest.get('format_version')}; "
                             f"this easytl reads version {FORMAT_VERSION}. Upgrade easytl.")
    if tensors_checksum(tensors) != manifest.get("checksum"):
        raise ModelFileError(f"{path} is corrupted: its tensors do not match the stored checksum.")
    return manifest, tensors

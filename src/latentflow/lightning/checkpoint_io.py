"""Crash-safe checkpoint files: a checkpoint path holds either the old or the new checkpoint.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file lives
in the system temp directory; committing it is a ``shutil.move``, which across file systems is a
copy, so a crash during that copy leaves a truncated ``last.ckpt``. ``AtomicCheckpointIO`` writes
the bytes to a temporary file next to the target, ``fsync``s it, renames it over the target with
``os.replace`` (atomic on POSIX within a directory) and ``fsync``s the directory, so the rename
itself survives a power loss.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

TMP_PREFIX = ".tmp-"


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (a full disk, a quota, permissions); the file it
    would have replaced is intact."""


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save(obj, path)``, all or nothing (see the module docstring)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f"{TMP_PREFIX}{path.name}.", dir=path.parent)
    except OSError as err:
        raise _write_error(path, err) from None
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(obj, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(err, OSError) or "write" in str(err).lower():
            raise _write_error(path, err) from None
        raise
    _fsync_dir(path.parent)


def _write_error(path: Path, err: BaseException) -> CheckpointWriteError:
    reason = getattr(err, "strerror", None) or str(err).splitlines()[0]
    kept = f"the previous {path.name} is intact" if path.exists() else "no earlier file existed"
    return CheckpointWriteError(f"could not write the checkpoint {path} ({reason}); {kept}")


def _fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # e.g. platforms without directory file descriptors
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


class AtomicCheckpointIO(TorchCheckpointIO):
    """``TorchCheckpointIO`` whose saves are atomic on local file systems.

    Remote URLs (``s3://`` ...) fall back to Lightning's own transaction-based save. Loading
    and removal are Lightning's.
    """

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        if "://" in str(path) and not str(path).startswith("file://"):
            super().save_checkpoint(checkpoint, path)
            return
        atomic_torch_save(checkpoint, str(path).removeprefix("file://"))

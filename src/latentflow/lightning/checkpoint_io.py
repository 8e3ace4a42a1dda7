"""Crash-safe checkpoint files, and the one way latentflow opens one.

Writing: a checkpoint path holds either the old or the new checkpoint.

Lightning's ``TorchCheckpointIO`` writes through an fsspec transaction whose temporary file lives
in the system temp directory; committing it is a ``shutil.move``, which across file systems is a
copy, so a crash during that copy leaves a truncated ``last.ckpt``. ``AtomicCheckpointIO`` writes
the bytes to a temporary file next to the target, ``fsync``s it, renames it over the target with
``os.replace`` (atomic on POSIX within a directory) and ``fsync``s the directory, so the rename
itself survives a power loss.

Reading: ``load_checkpoint_file`` is the only place a checkpoint is unpickled. It runs
``torch.load(weights_only=True)``: tensors and plain containers (dict, list, str, numbers) load,
any other Python object is refused (``UnsafeCheckpointError``, naming the global it would have
called) before anything in the file runs. latentflow's checkpoints hold nothing else, and
``AtomicCheckpointIO.load_checkpoint`` (Lightning's resume and ``trainer.validate(ckpt_path=)``)
goes through it too.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from lightning_fabric.plugins.io.torch_io import TorchCheckpointIO

TMP_PREFIX = ".tmp-"


class UnsafeCheckpointError(ValueError):
    """A checkpoint that needs more than tensors and plain containers to load: refused unread."""


class CheckpointReadError(ValueError):
    """A checkpoint file that cannot be read (empty, truncated, not a checkpoint)."""


def load_checkpoint_file(path: str | os.PathLike[str], map_location: Any = "cpu") -> Any:
    """The unpickled checkpoint at ``path``, with nothing in it executed (module docstring).

    Raises ``UnsafeCheckpointError`` naming the offending global(s), ``CheckpointReadError`` for
    a file that is not a readable checkpoint, and ``OSError`` as ``open`` does."""
    import pickle

    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as err:
        names = _unsafe_globals(path, err)
        if names:
            raise UnsafeCheckpointError(
                f"{path} asks to run code while loading ({', '.join(names)}): refused, nothing "
                "in it was executed. A latentflow checkpoint holds only tensors and plain "
                "containers; open one from its author only, and re-save it with latentflow"
            ) from None
        raise CheckpointReadError(_first_line(err)) from None
    except (OSError, MemoryError):
        raise
    except Exception as err:  # torch raises many types for a file that is not a checkpoint
        raise CheckpointReadError(_first_line(err)) from None


def _unsafe_globals(path: Any, err: BaseException) -> list[str]:
    """The globals a refused pickle names, read without running it (torch's own scanner)."""
    try:
        names = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    except Exception:  # not a zip checkpoint: fall back to what the refusal said
        names = []
    if not names:
        import re

        found = re.search(r"(?:GLOBAL|global) ([\w.]+)", str(err))
        names = [found.group(1)] if found else []
    return sorted(set(names))


def _first_line(err: BaseException) -> str:
    return str(err).splitlines()[0][:160] if str(err) else type(err).__name__


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
    and removal are Lightning's. ``seconds_writing`` adds up the wall time of every save (read
    by ``PhaseTimer``).
    """

    seconds_writing: float = 0.0

    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: Any, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None:
            raise TypeError("AtomicCheckpointIO.save_checkpoint takes no storage_options")
        start = time.perf_counter()
        try:
            if "://" in str(path) and not str(path).startswith("file://"):
                super().save_checkpoint(checkpoint, path)
            else:
                atomic_torch_save(checkpoint, str(path).removeprefix("file://"))
        finally:
            self.seconds_writing += time.perf_counter() - start

    def load_checkpoint(
        self, path: Any, map_location: Any | None = None, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's resume and ``trainer.validate/test(ckpt_path=...)``: always the safe
        loader, whatever ``weights_only`` Lightning passes (remote URLs as Lightning loads them,
        also with ``weights_only=True``)."""
        map_location = map_location or (lambda storage, loc: storage)  # Lightning's default
        if "://" in str(path) and not str(path).startswith("file://"):
            return super().load_checkpoint(path, map_location=map_location, weights_only=True)
        return load_checkpoint_file(str(path).removeprefix("file://"), map_location)

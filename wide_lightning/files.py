"""Files a run leaves (checkpoints, ``summary.json``, ``atlas.npz``) appear whole or not at all.

Each is written to a temporary name in its own folder and renamed over the final name only when
complete (a rename within one file system is atomic). When the write fails, the partial file is
removed; a full disk ends in one sentence that names the folder and how much space the file needed.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH


class DiskFull(OSError):
    """No space left for a file the run writes: which folder, and how much space the file needed."""

    def __str__(self) -> str:
        return str(self.strerror)


def _megabytes(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


@contextmanager
def atomic_path(path: str | os.PathLike, needed_bytes: Callable[[], int | None] | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without error.

    ``needed_bytes`` estimates the file's size, for the message when the disk is full (otherwise:
    the bytes written before it filled, as a lower bound).
    """
    final = Path(path)
    final.parent.mkdir(parents=True, exist_ok=True)
    temporary = final.with_name(f".{final.name}.partial-{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, final)
    except BaseException as error:
        written = temporary.stat().st_size if temporary.exists() else 0
        temporary.unlink(missing_ok=True)
        if isinstance(error, OSError) and error.errno == errno.ENOSPC:
            estimate = needed_bytes() if needed_bytes is not None else None
            needed = f"about {_megabytes(estimate)}" if estimate else f"more than the {_megabytes(written)} written"
            raise DiskFull(errno.ENOSPC, f"no space left on the disk of {final.parent} for {final.name}: it needs "
                                         f"{needed}; free some space (or write elsewhere) and run again. "
                                         f"The partial file was removed.") from None
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """``Path.write_text``, atomically."""
    with atomic_path(path, needed_bytes=lambda: len(text.encode())) as temporary:
        temporary.write_text(text)


def tensor_bytes(obj: Any) -> int:
    """The bytes of the tensors in a nested checkpoint (most of its size on disk)."""
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, dict):
        return sum(tensor_bytes(v) for v in obj.values())
    if isinstance(obj, (list, tuple)):
        return sum(tensor_bytes(v) for v in obj)
    return 0


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` for local files, each checkpoint written whole or not at all.

    Lightning's own save serializes into memory first (twice the checkpoint in RAM; a width-2048
    CIFAR-10 net's is 2.9 GB) and, on a full disk, could leave a truncated file under the final name;
    this one streams to a temporary file beside it and renames. Remote paths (``s3://``...) go to
    the parent class.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path: _PATH, storage_options: Any | None = None) -> None:
        if storage_options is not None or "://" in str(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_path(path, needed_bytes=lambda: tensor_bytes(checkpoint)) as temporary:
            torch.save(checkpoint, temporary)


def use_atomic_checkpoints(trainer: Any) -> None:
    """Give ``trainer`` an ``AtomicCheckpointIO`` unless it was given a checkpoint IO of its own."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()

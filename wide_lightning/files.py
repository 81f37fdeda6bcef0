"""Files a run leaves (checkpoints, ``summary.json``, ``atlas.npz``) appear whole or not at all, and the
folders a run reads and writes are refused in one sentence when it cannot use them.

Each file is written to a temporary name in its own folder and renamed over the final name only when
complete (a rename within one file system is atomic). When the write fails, the partial file is
removed; a full disk ends in one sentence that names the folder, how much space the file needed and
how much is free. A full disk is recognized however it is reported: ``ENOSPC`` (or ``EDQUOT``, a
quota), torch's zip writer's own words for a short write (``[enforce fail at inline_container.cc:672]
. unexpected pos 422464 vs 422356``, ``file write failed``), or any failed write on a disk that
``shutil.disk_usage`` finds (nearly) full. A folder the permissions deny ends in one sentence naming it
and the fix (``NoAccess``).

``SpaceReserve`` keeps room for the run record on a disk that fills during the run (``record.py``).
"""

from __future__ import annotations

import atexit
import errno
import os
import re
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.fabric.utilities.types import _PATH


class DiskFull(OSError):
    """No space left for a file the run writes: which folder, how much space the file needed and how much is free."""

    def __str__(self) -> str:
        return str(self.strerror)


class NoAccess(PermissionError, ValueError):
    """A folder or file of the run that the permissions (or a read-only file system) deny: which, and the fix.

    A ``ValueError`` too, as a refused option is: the folder is one the person gave (or the default
    they left), so the commands end in this one sentence, exit 2, like any other refused value.
    """

    def __str__(self) -> str:
        return str(self.strerror)


#: The errors a full disk (or a used-up quota) gives a write.
EDQUOT = getattr(errno, "EDQUOT", -1)  # not on every platform
FULL_ERRNOS = frozenset({errno.ENOSPC, EDQUOT})
#: What torch's zip writer (``torch.save``) raises instead of ``ENOSPC`` when a write comes up short.
TORCH_SHORT_WRITE = re.compile(r"unexpected pos \d+ vs \d+|file write failed|failed writing file")
#: A disk with less free space than this when a write failed is taken to be full.
NEARLY_FULL_BYTES = 1 << 20
#: The errors of a folder that the permissions or a read-only file system deny.
DENIED_ERRNOS = frozenset({errno.EACCES, errno.EPERM, errno.EROFS})


def is_remote(path: Any) -> bool:
    """A path with a scheme (``s3://...``): fsspec's to write, with no local folder to check or reserve."""
    return "://" in str(path)


def human_bytes(n: float) -> str:
    """``31.2 GiB``, ``3.8 MiB``, ``512 bytes``: binary units, one decimal below 100, none above."""
    if n < 1024:
        return f"{n:.0f} bytes"
    unit, scale = next((u, z) for u, z in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)) if n >= z)
    value = n / scale
    return f"{value:.1f} {unit}" if value < 100 else f"{value:,.0f} {unit}"


def free_bytes(folder: str | os.PathLike) -> int | None:
    """The space the current user may still write on the disk of ``folder`` (``None`` if it cannot be asked)."""
    try:
        return shutil.disk_usage(folder).free
    except OSError:
        return None


def is_disk_full(error: BaseException, free_at_failure: int | None) -> bool:
    """Whether ``error``, raised by a write, means that the disk (or the quota) is full; ``free_at_failure``: the
    space free on that disk when it was raised (``free_bytes``), before anything was cleaned up."""
    if not isinstance(error, (OSError, RuntimeError)):
        return False  # e.g. an object that cannot be pickled: not the disk
    if isinstance(error, OSError) and error.errno is not None:
        if error.errno in FULL_ERRNOS:
            return True
        if error.errno in DENIED_ERRNOS:
            return False
    if isinstance(error, RuntimeError) and TORCH_SHORT_WRITE.search(str(error)):
        return True
    return free_at_failure is not None and free_at_failure < NEARLY_FULL_BYTES


def disk_full_error(folder: str | os.PathLike, name: str, needed: str, free: int | None, quota: str = "",
                    removed: bool = True) -> DiskFull:
    """The one sentence of a full disk: the folder, the file, the space it needs, the space free (``quota``: why
    that does not count), what to do (``removed``: and that the partial file is gone)."""
    space = f"it needs {needed}" if free is None else f"it needs {needed} with {human_bytes(free)} free"
    if quota:
        space += f" ({quota})"
    return DiskFull(errno.ENOSPC, f"no space left on the disk of {folder} for {name}: {space}; free some space "
                                  f"(or write elsewhere) and run again." + (" The partial file was removed." if removed
                                                                           else ""))


def _remove_partial(temporary: Path) -> int:
    """Remove a partial file and return its size. Truncated first: the writer that failed (torch's) may still hold
    the file open until its exception is collected, and an unlinked but open file keeps its blocks; truncating
    frees them now, for the run record that is written next."""
    try:
        written = temporary.stat().st_size
    except OSError:
        return 0
    try:
        os.truncate(temporary, 0)
    except OSError:
        pass
    temporary.unlink(missing_ok=True)
    return written


def _failed_write(error: BaseException, temporary: Path, folder: Path, name: str,
                  needed_bytes: Callable[[], int | None] | None, removed: bool = True) -> BaseException | None:
    """Remove the partial ``temporary``; the one-sentence error that ``error`` (raised writing ``name`` in
    ``folder``) means, if it is a full disk or a denied folder (``None``: raise ``error`` itself)."""
    free_at_failure = free_bytes(folder) if isinstance(error, (OSError, RuntimeError)) else None
    written = _remove_partial(temporary)
    if is_disk_full(error, free_at_failure):
        estimate = needed_bytes() if needed_bytes is not None else None
        needed = f"about {human_bytes(estimate)}" if estimate else f"more than the {human_bytes(written)} written"
        free = free_bytes(folder)  # with the partial file gone: the space there is to start from
        quota = "your disk quota there is used up" if isinstance(error, OSError) and error.errno == EDQUOT \
            else "the disk has room: your quota there is probably used up" if free is not None and estimate and \
            free > 1.5 * estimate + NEARLY_FULL_BYTES else ""
        return disk_full_error(folder, name, needed, free, quota, removed)
    if isinstance(error, OSError) and error.errno in DENIED_ERRNOS:
        return NoAccess(error.errno, f"cannot write {name} in {folder} ({error.strerror}); make the folder writable "
                                     f"(chmod u+w {folder}) or write elsewhere, and run again.")
    return None


@contextmanager
def atomic_path(path: str | os.PathLike, needed_bytes: Callable[[], int | None] | None = None) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed to ``path`` when the block ends without error.

    ``needed_bytes`` estimates the file's size, for the message when the disk is full (otherwise:
    the bytes written before it filled, as a lower bound).
    """
    final = Path(path)
    make_folder(final.parent)
    prefix = f".{final.name}.partial-{socket.gethostname()}-"
    remove_left_by_dead_processes(final.parent, prefix)  # a write that a kill -9 cut short
    temporary = final.with_name(f"{prefix}{os.getpid()}")
    try:
        yield temporary
        os.replace(temporary, final)
    except BaseException as error:
        explained = _failed_write(error, temporary, final.parent, final.name, needed_bytes)
        if explained is not None:
            raise explained from None
        raise


def write_text(path: str | os.PathLike, text: str) -> None:
    """``Path.write_text``, atomically."""
    with atomic_path(path, needed_bytes=lambda: len(text.encode())) as temporary:
        temporary.write_text(text)


# -- the folders of a run --------------------------------------------------------------------------------


def _create(folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)


def _probe_write(folder: Path) -> None:
    """Create and remove a file in ``folder``: write access as the run will meet it (``os.access`` misjudges
    ACLs, read-only mounts and network file systems)."""
    probe = folder / f".write-test-{socket.gethostname()}-{os.getpid()}"
    probe.touch()
    probe.unlink()


def _probe_read(folder: Path) -> None:
    """List ``folder`` (read access) and look up a name in it (search access)."""
    with os.scandir(folder) as entries:
        next(entries, None)
    (folder / ".").stat()


def _elsewhere(flag: str | None) -> str:
    return f"give another folder with {flag}=DIR" if flag else "write elsewhere"


def make_folder(folder: str | os.PathLike, what: str = "the folder", flag: str | None = None, after: str = "") -> Path:
    """``folder``, created if need be. One that the permissions deny is refused in one sentence (``NoAccess``) naming
    the folder that blocks it, the fix, and ``flag`` (the option that names another)."""
    folder = Path(folder)
    try:
        _create(folder)
    except OSError as error:
        if error.errno not in DENIED_ERRNOS:
            raise
        blocking = Path(error.filename).parent if error.filename else folder.parent
        fix = _elsewhere(flag) if error.errno == errno.EROFS else \
            f"make {blocking} writable (chmod u+w {blocking}) or {_elsewhere(flag)}"
        raise NoAccess(error.errno, f"cannot create {what} {folder} ({error.strerror} in {blocking}); {fix}{after}.") \
            from None
    return folder


def check_writable_folder(folder: str | os.PathLike, what: str, flag: str | None, after: str = "") -> Path:
    """``folder``, created if need be and written to once; one that cannot be is refused in one sentence naming it, the
    fix and ``flag`` (the option that names another), followed by ``after``."""
    folder = make_folder(folder, what, flag, after)
    try:
        _probe_write(folder)
    except OSError as error:
        if error.errno not in DENIED_ERRNOS:
            raise
        fix = _elsewhere(flag) if error.errno == errno.EROFS else \
            f"make it writable (chmod u+w {folder}) or {_elsewhere(flag)}"
        raise NoAccess(error.errno, f"cannot write in {what} {folder} ({error.strerror}); {fix}{after}.") from None
    return folder


def check_readable_folder(folder: str | os.PathLike, what: str, flag: str | None, alternative: str = "") -> None:
    """Refuse, in one sentence naming it and the fix, a folder that exists but cannot be listed or searched (a missing
    one is left to whoever reads it, to say what should be there). ``flag`` (and ``alternative``) name another."""
    folder = Path(folder)
    try:
        _probe_read(folder)
    except (FileNotFoundError, NotADirectoryError):
        return
    except OSError as error:
        if error.errno not in DENIED_ERRNOS:
            raise
        elsewhere = f"point {flag}=DIR{alternative} at a readable copy" if flag else "use a readable copy"
        raise NoAccess(error.errno, f"cannot read {what} {folder} ({error.strerror}); give yourself read access "
                                    f"(chmod -R u+rX {folder}) or {elsewhere}.") from None


class SpaceReserve:
    """Room kept on a disk for small files written last (the run record), in a hidden file made at the start.

    ``keep`` writes ``nbytes`` of real data (not a sparse or compressible file, which would hold no blocks) to
    ``.<name>.space-<host>-<pid>``; ``release`` deletes it just before the files it kept room for are written.
    A disk that fills during the run then still has that room. Files left by processes killed on this host
    (``kill -9``) are removed by the next ``keep`` in the folder.
    """

    def __init__(self, folder: str | os.PathLike, name: str, nbytes: int) -> None:
        self.folder, self.name, self.nbytes = Path(folder), name, nbytes
        self.path = self.folder / f".{name}.space-{socket.gethostname()}-{os.getpid()}"
        self._at_exit = False

    def keep(self) -> None:
        """Make the reserve; a disk without the room, or a folder that cannot be written, is refused in one sentence."""
        self._remove_stale()
        if not self._at_exit:  # a run that ends by a path that never releases it still leaves nothing behind
            atexit.register(self.release)
            self._at_exit = True
        try:
            with open(self.path, "wb") as handle:
                handle.write(os.urandom(self.nbytes))
                handle.flush()
                os.fsync(handle.fileno())  # allocated now, also where blocks are allocated at write-back
        except BaseException as error:
            explained = _failed_write(error, self.path, self.folder, self.name, lambda: self.nbytes, removed=False)
            if explained is not None:
                raise explained from None
            raise

    def check_room(self) -> None:
        """Refuse, in one sentence, a disk that has not even the room to keep (before anything writes to it)."""
        free = free_bytes(self.folder)
        if free is not None and free < self.nbytes:
            raise disk_full_error(self.folder, self.name, human_bytes(self.nbytes), free, removed=False)

    def release(self) -> None:
        _remove_partial(self.path)

    def _remove_stale(self) -> None:
        remove_left_by_dead_processes(self.folder, f".{self.name}.space-{socket.gethostname()}-")


def remove_left_by_dead_processes(folder: Path, prefix: str) -> None:
    """Remove the files ``<prefix><pid>`` in ``folder`` whose process (of this host: the prefix names it) is gone:
    what a ``kill -9`` left behind."""
    try:
        candidates = [p for p in folder.iterdir() if p.name.startswith(prefix)]
    except OSError:
        return
    for path in candidates:
        pid = path.name[len(prefix):]
        if pid.isdigit() and int(pid) != os.getpid() and not process_alive(int(pid)):
            path.unlink(missing_ok=True)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` of this host is running."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # e.g. another user's process: alive
        return True
    return True


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
        if storage_options is not None or is_remote(path):
            super().save_checkpoint(checkpoint, path, storage_options)
            return
        with atomic_path(path, needed_bytes=lambda: tensor_bytes(checkpoint)) as temporary:
            torch.save(checkpoint, temporary)


def use_atomic_checkpoints(trainer: Any) -> None:
    """Give ``trainer`` an ``AtomicCheckpointIO`` unless it was given a checkpoint IO of its own."""
    if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
        trainer.strategy.checkpoint_io = AtomicCheckpointIO()

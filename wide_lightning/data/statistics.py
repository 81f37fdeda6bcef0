"""Normalization statistics and pad value computed from a dataset's training split, cached beside the data.

For a dataset without published values (EMNIST's splits, SVHN's pad value, any ``ImageFolder``),
``TrainingStatistics`` supplies the ``mean``, ``std`` and ``pad_value`` that the rest of the package
reads (``ImageDataModule.normalize``, the atlas):

* ``mean``/``std``: per channel, over every pixel of the official training split (before the
  validation hold-out, as published statistics are), pixels in [0, 1], population std. A channel
  without variation gets std 1 rather than a division by zero.
* ``pad_value``: the mean of the training images' border pixels (the outermost ring, all
  channels), in [0, 1], rounded to 2 decimals: the colour that surrounds the images, so padding
  adds no edge. For dark-background digits it is ~0, MNIST's value; datasets with a known value
  (MNIST-like 0, CIFAR 1 as in the paper's Appendix B.1) set it as a class attribute instead.

They are computed once, when the training split is first read, and kept in
``<dataset folder>/wide_lightning_stats.json``: one entry per key ``"<dataset> train <C>x<H>x<W>
sha256:<fingerprint>"``, where the fingerprint hashes the training files' names and contents, so that
changed files are measured again, even a file replaced by another of the same size (or with its old
modification time, as ``cp -p``, ``rsync -a`` and ``tar`` keep it). Hashing reads every training
file once per run (MNIST's 47 MB: about 60 ms with a warm page cache, which the run's own reading of
the split warms anyway); it is far cheaper than decoding the images again. Entries written before
(keyed by names and sizes, without ``sha256:``) never match and are measured again.
An unwritable folder only costs recomputing them on the next run.
A subclass that sets ``mean``, ``std`` and ``pad_value`` as class attributes computes nothing.
"""

from __future__ import annotations

import hashlib
import inspect
import json
from abc import abstractmethod
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from lightning.pytorch.utilities import rank_zero_warn

from wide_lightning.data.base import DatasetFileError
from wide_lightning.files import write_text

STATS_FILE = "wide_lightning_stats.json"


@dataclass(frozen=True)
class PixelStatistics:
    """Per-channel ``mean``/``std`` of pixels in [0, 1], the mean ``border`` pixel value and the image count."""

    mean: tuple[float, ...]
    std: tuple[float, ...]
    border: float
    images: int

    @classmethod
    def from_json(cls, entry: dict) -> PixelStatistics:
        return cls(tuple(float(v) for v in entry["mean"]), tuple(float(v) for v in entry["std"]),
                   float(entry["border"]), int(entry["images"]))


def pixel_statistics(images: torch.Tensor, chunk: int = 2048) -> PixelStatistics:
    """Exact statistics of ``uint8 [N, C, H, W]`` images (integer sums, in chunks to bound memory)."""
    n, channels, height, width = images.shape
    if n == 0:
        raise DatasetFileError("the training split has no images: nothing to compute its mean and std from.")
    ring = torch.ones(height, width, dtype=torch.bool)
    ring[1:-1, 1:-1] = False
    total = torch.zeros(channels, dtype=torch.int64)
    squares = torch.zeros(channels, dtype=torch.int64)
    border = 0
    for start in range(0, n, chunk):
        x = images[start : start + chunk].to(torch.int64)
        total += x.sum((0, 2, 3))
        squares += (x * x).sum((0, 2, 3))
        border += int(x[..., ring].sum())
    count = n * height * width
    mean = total.double() / count / 255
    var = (squares.double() / count / 255**2 - mean**2).clamp_min(0)
    std = [float(s) if s > 0 else 1.0 for s in var.sqrt()]
    return PixelStatistics(tuple(float(m) for m in mean), tuple(std),
                           border / (n * channels * int(ring.sum())) / 255, n)


#: Bytes read at a time while hashing a file: memory stays bounded for files of any size.
HASH_CHUNK = 1 << 20
#: Marks keys of content fingerprints: no key of the earlier fingerprint (names and sizes only) has it.
FINGERPRINT_KIND = "sha256"


def file_sha256(path: Path, buffer: bytearray) -> str:
    """The SHA-256 of ``path``'s contents, read through ``buffer`` (one for all files: thousands of small images
    would otherwise each allocate one)."""
    digest = hashlib.sha256()
    view = memoryview(buffer)
    try:
        with open(path, "rb", buffering=0) as handle:
            while read := handle.readinto(buffer):
                digest.update(view[:read])
    except OSError as error:
        raise DatasetFileError(f"{path}: cannot be read to check its cached statistics ({error}).") from error
    return digest.hexdigest()


def fingerprint(root: Path, paths: Iterable[Path]) -> str:
    """A hash of the files' paths (relative to ``root``) and contents: changes when any training file does,
    also when a file is replaced by another of the same size. A missing file counts as missing, not as an error:
    reading the split says what is missing."""
    digest = hashlib.sha256()
    buffer = bytearray(HASH_CHUNK)
    for path in sorted(paths):
        content = file_sha256(path, buffer) if path.is_file() else "missing"
        digest.update(f"{path.relative_to(root).as_posix()}\0{content}\n".encode())
    return digest.hexdigest()


def cached_statistics(directory: Path, key: str, compute: Callable[[], PixelStatistics]) -> PixelStatistics:
    """The entry ``key`` of ``directory/wide_lightning_stats.json``, else ``compute()`` and store it there."""
    path = directory / STATS_FILE
    entries: dict = {}
    if path.is_file():
        try:
            entries = json.loads(path.read_text())
            return PixelStatistics.from_json(entries[key])
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            entries = entries if isinstance(entries, dict) else {}
    statistics = compute()
    entries[key] = asdict(statistics)
    try:
        write_text(path, json.dumps(entries, indent=1, sort_keys=True) + "\n")
    except OSError as error:
        rank_zero_warn(f"could not cache the dataset statistics in {path} ({error}); they are computed again next run.")
    return statistics


class TrainingStatistics:
    """Mixin for an ``ImageDataModule``: ``mean``, ``std`` and ``pad_value`` from the training split (module doc).

    Subclasses implement ``read_split`` (what ``load_split`` is elsewhere) and ``statistics_source``.
    """

    @abstractmethod
    def read_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """The official ``"train"`` or ``"test"`` split: ``uint8 [N, C, H, W]`` images and named labels."""

    @abstractmethod
    def statistics_source(self) -> tuple[Path, str, list[Path]]:
        """Where the cache file goes, the dataset's name in its keys, and the training split's files."""

    def load_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, labels = self.read_split(split)
        if split == "train" and self._computes_statistics() and "_pixel_statistics" not in self.__dict__:
            self._statistics(images)  # measured on the images just read: no second read
        return images, labels

    def _computes_statistics(self) -> bool:
        return any(isinstance(inspect.getattr_static(self, name), property) for name in ("mean", "std", "pad_value"))

    def _statistics(self, images: torch.Tensor | None = None) -> PixelStatistics:
        if "_pixel_statistics" not in self.__dict__:
            directory, name, files = self.statistics_source()
            shape = "x".join(str(d) for d in self.input_shape)
            key = f"{name} train {shape} {FINGERPRINT_KIND}:{fingerprint(directory, files)[:16]}"
            self.__dict__["_pixel_statistics"] = cached_statistics(
                directory, key, lambda: pixel_statistics(images if images is not None else self.read_split("train")[0]))
        return self.__dict__["_pixel_statistics"]

    @property
    def statistics(self) -> PixelStatistics:
        """The training split's statistics (read from the cache, or measured once)."""
        return self._statistics()

    @property
    def mean(self) -> tuple[float, ...]:
        return self.statistics.mean

    @property
    def std(self) -> tuple[float, ...]:
        return self.statistics.std

    @property
    def pad_value(self) -> float:
        return round(self.statistics.border, 2)

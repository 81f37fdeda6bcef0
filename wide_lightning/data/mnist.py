"""MNIST (Section 4.1) and translated MNIST (Section 4.2, 5.1), read from the official IDX files.

Files live in ``<data_dir>/MNIST/raw/`` (torchvision's layout), uncompressed or as the official
``.gz``; ``../shared/datasets`` on our machines is such a folder. We read IDX ourselves rather than
through ``torchvision.datasets.MNIST`` so that ``.gz`` files work in place and a truncated or corrupt
file is a clear error instead of an assertion; downloads use torchvision's mirrors.
"""

from __future__ import annotations

import gzip
import hashlib
import zlib
from pathlib import Path

import numpy as np
import torch

from wide_lightning.data.base import (DatasetFileError, ImageDataModule, LabelledImages, denied, earlier_name,
                                      missing_files_error)

_FILES = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
# md5 of the *uncompressed* official files (the .gz we ship offline was recompressed).
_OFFICIAL = {
    "train-images-idx3-ubyte": (60000, "6bbc9ace898e44ae57da46a324031adb"),
    "train-labels-idx1-ubyte": (60000, "a25bea736e30d166cdddb491f175f624"),
    "t10k-images-idx3-ubyte": (10000, "2646ac647ad5339dbf082846283269ea"),
    "t10k-labels-idx1-ubyte": (10000, "27ae3e4e09519cfbb04c329615203637"),
}
_HOW = (
    "Download the four MNIST files (e.g. with torchvision.datasets.MNIST(DIR, download=True)) or, "
    "offline on our machines, use ../shared/datasets (or unpack it with ../shared/datasets/unpack_mnist.sh DIR)."
)


def read_idx(path: Path, check_md5: bool = True) -> np.ndarray:
    """Read an IDX file (optionally ``.gz``) into a ``uint8`` array, failing clearly on bad input.

    A file with the official number of items must also match the official md5 (of the
    uncompressed bytes), so a damaged real file is never loaded silently.
    """
    try:
        if path.suffix == ".gz":
            with gzip.open(path, "rb") as handle:
                raw = handle.read()
        else:
            raw = path.read_bytes()
    except PermissionError as error:
        raise denied(path, error) from None
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetFileError(f"{path}: cannot be read ({error}); the file is truncated or corrupt. Replace it.") from error
    if len(raw) < 8 or raw[0] != 0 or raw[1] != 0 or raw[2] != 0x08 or raw[3] not in (1, 3):
        raise DatasetFileError(f"{path}: not an IDX file of unsigned bytes (bad header {raw[:4].hex()}). Replace it.")
    ndim = raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int.from_bytes(raw[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    expected = header + int(np.prod(dims))
    if len(raw) != expected:
        raise DatasetFileError(
            f"{path}: header says shape {dims} ({expected} bytes) but the file holds {len(raw)} bytes; "
            f"it is truncated or corrupt. Replace it."
        )
    name = path.name.removesuffix(".gz")
    if check_md5 and name in _OFFICIAL and dims[0] == _OFFICIAL[name][0]:
        if hashlib.md5(raw).hexdigest() != _OFFICIAL[name][1]:
            raise DatasetFileError(
                f"{path}: has the official size but not the official md5 {_OFFICIAL[name][1]}; it is corrupt. Replace it."
            )
    return np.frombuffer(raw, dtype=np.uint8, offset=header).reshape(dims)


def _find(raw_dir: Path, name: str) -> Path | None:
    try:
        for candidate in (raw_dir / name, raw_dir / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    except PermissionError as error:  # a sub-folder without search access
        raise denied(raw_dir, error) from None
    return None


def load_mnist_split(data_dir: Path, split: str, check_md5: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """Official ``"train"`` (60,000) or ``"test"`` (10,000) split as ``uint8 [N, 1, 28, 28]`` and labels."""
    raw_dir = data_dir / "MNIST" / "raw"
    names = _FILES[split]
    paths = [_find(raw_dir, name) for name in names]
    if any(path is None for path in paths):  # name every missing file of both splits, not just this one's
        missing = [f"{name}[.gz]" for part in _FILES.values() for name in part if _find(raw_dir, name) is None]
        raise missing_files_error("MNIST", raw_dir, missing, _HOW)
    images = read_idx(paths[0], check_md5)
    labels = read_idx(paths[1], check_md5)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or labels.ndim != 1:
        raise DatasetFileError(f"MNIST {split}: images {images.shape} / labels {labels.shape} are not 28x28 digits.")
    if len(images) != len(labels):
        raise DatasetFileError(f"MNIST {split}: {len(images)} images but {len(labels)} labels in {raw_dir}.")
    if labels.max(initial=0) > 9:
        raise DatasetFileError(f"MNIST {split}: label {labels.max()} outside 0..9 in {paths[1]}.")
    return torch.from_numpy(images.copy()).unsqueeze(1), torch.from_numpy(labels.astype(np.int64))


def download_mnist(data_dir: Path) -> None:
    """Fetch missing files from torchvision's mirrors; failures are left for ``load_split`` to report."""
    from torchvision.datasets import MNIST as TorchvisionMNIST
    from torchvision.datasets.utils import download_url

    raw_dir = data_dir / "MNIST" / "raw"
    for filename, md5 in TorchvisionMNIST.resources:
        if _find(raw_dir, filename.removesuffix(".gz")) is not None:
            continue
        for mirror in TorchvisionMNIST.mirrors:
            try:
                download_url(f"{mirror}{filename}", root=str(raw_dir), filename=filename, md5=md5)
                break
            except Exception:  # offline or a dead mirror: try the next, then let setup explain
                continue


class MNISTDataModule(ImageDataModule):
    """MNIST: 50,000 training images, 10,000 held out from the official training split, the official 10,000 test."""

    name = "MNIST"
    input_shape = (1, 28, 28)
    pad_value = 0.0
    mean = (0.1307,)
    std = (0.3081,)
    targets = ("digit",)

    def __init__(self, *args, val_size: int = 10_000, **kwargs) -> None:
        super().__init__(*args, val_size=val_size, **kwargs)

    @property
    def num_classes(self) -> int:
        return 10

    def fetch(self) -> None:
        download_mnist(self.data_dir)

    def load_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, digits = load_mnist_split(self.data_dir, split)
        return images, {"digit": digits}


def roll_all_shifts(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Every image rolled cyclically along the width by each of its ``W`` offsets.

    Returns ``(rolled [N*W, C, H, W], shift [N*W], source [N*W])`` ordered image-major, so that
    ``rolled[k] == images[source[k]].roll(shift[k], dims=-1)``.
    """
    n, channels, height, width = images.shape
    shifts = torch.arange(width)
    # torch.roll by s: out[..., j] = in[..., (j - s) % W]
    columns = (torch.arange(width).view(1, width) - shifts.view(width, 1)) % width  # [shift, column]
    rolled = images[..., columns].permute(0, 3, 1, 2, 4)  # [N, shift, C, H, W]
    return (
        rolled.reshape(n * width, channels, height, width),
        shifts.repeat(n),
        torch.arange(n).repeat_interleave(width),
    )


class TranslatedMNISTDataModule(ImageDataModule):
    """Translated MNIST (Section 4.2): seeded subsets of digits, each rolled horizontally by all 28 offsets.

    Training: ``train_digits`` = floor(50000/28) = 1,785 digits of the official training split ->
    49,980 images. Validation: ``val_digits`` other training digits (default 357 -> 9,996 images).
    Test: ``test_digits`` digits of the official test split rolled the same way (357 -> 9,996, near
    the paper's 10,000), or with ``shifted_test=False`` the unshifted official test set (shift 0),
    which Section 4.2 describes. Every sample carries ``digit``, ``shift`` and ``source`` (its index
    in the official split); ``target`` selects ``"shift"`` (28 classes, the original task of Section
    5.1) or ``"digit"`` (10 classes, the new task).
    """

    name = "TranslatedMNIST"
    input_shape = (1, 28, 28)
    pad_value = 0.0
    mean = MNISTDataModule.mean
    std = MNISTDataModule.std
    targets = ("shift", "digit")
    label_periods = {"shift": 28}

    def __init__(
        self,
        *args,
        train_digits: int = 50_000 // 28,
        val_digits: int = 357,
        test_digits: int = 357,
        shifted_test: bool = True,
        **kwargs,
    ) -> None:
        kwargs.setdefault("val_size", 0)  # the held-out set is built from val_digits below
        super().__init__(*args, **kwargs)
        for name, value in (("train_digits", train_digits), ("test_digits", test_digits)):
            if value < 1:
                raise ValueError(f"{name} must be positive, got {value}.")
        if val_digits < 0:
            raise ValueError(f"val_digits must be >= 0, got {val_digits}.")
        self.train_digits, self.val_digits, self.test_digits = train_digits, val_digits, test_digits
        self.shifted_test = shifted_test

    @property
    def num_classes(self) -> int:
        return 28 if self.target == "shift" else 10

    def fetch(self) -> None:
        download_mnist(self.data_dir)

    def _pick(self, available: int, split: str) -> list[torch.Tensor]:
        """Seeded, disjoint digit subsets of an official split: [train, val] or [test]."""
        counts = [self.train_digits, self.val_digits] if split == "train" else [self.test_digits]
        if sum(counts) > available:
            raise ValueError(
                f"TranslatedMNIST needs {sum(counts)} digits of the official {split} split but it has {available}; "
                f"lower train_digits/val_digits/test_digits."
            )
        order = torch.randperm(available, generator=torch.Generator().manual_seed(self.seed))
        return [part.sort().values for part in order[: sum(counts)].split(counts)]

    def load_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        images, digits = load_mnist_split(self.data_dir, split)
        if split == "test" and not self.shifted_test:
            zeros = torch.zeros_like(digits)
            return images, {"digit": digits, "shift": zeros, "source": torch.arange(len(digits))}
        chosen = torch.cat(self._pick(len(images), split))  # training digits first, then validation digits
        rolled, shift, source = roll_all_shifts(images[chosen])
        source = chosen[source]
        return rolled, {"digit": digits[source], "shift": shift, "source": source}

    def split_train(self, train: LabelledImages) -> dict[str, LabelledImages]:
        # Train and val hold disjoint digits: the first train_digits*28 rows are the training digits.
        if self.val_digits == 0:
            return {"train": train}
        cut = self.train_digits * self.input_shape[-1]
        return {"train": train.subset(torch.arange(cut)), "val": train.subset(torch.arange(cut, len(train)))}


# the earlier names, kept so that every config and checkpoint written with them still loads
MNIST = earlier_name(MNISTDataModule, "MNIST")
TranslatedMNIST = earlier_name(TranslatedMNISTDataModule, "TranslatedMNIST")

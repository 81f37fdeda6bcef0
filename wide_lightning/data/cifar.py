"""CIFAR-10 (Section 4.3) and the 3-coarse-class CIFAR-100 subset (Section 5.2), read from the official pickles.

Files live in ``<data_dir>/cifar-10-batches-py/`` and ``<data_dir>/cifar-100-python/`` (what the
official ``cifar-10-python.tar.gz`` / ``cifar-100-python.tar.gz`` unpack to; a lone archive in
``data_dir`` is unpacked on first use). We read the pickles ourselves: torchvision's CIFAR100 drops
the coarse labels, and its md5 check rejects the small fake files the tests write.
"""

from __future__ import annotations

import math
import pickle
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from wide_lightning.data.base import (DatasetFileError, ImageDataModule, denied, earlier_name, md5_of,
                                      missing_files_error)

CIFAR10_URL = "https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz"
CIFAR100_URL = "https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz"
# md5 of the official files (as torchvision lists them); checked when a file has the official size.
_OFFICIAL_MD5 = {
    "data_batch_1": "c99cafc152244af753f735de768cd75f",
    "data_batch_2": "d4bba439e000b95fd0a9bffe97cbabec",
    "data_batch_3": "54ebc095f3ab1f0389bbae665268c751",
    "data_batch_4": "634d18415352ddfa80567beed471001a",
    "data_batch_5": "482c414d41f54cd18b22e5b47cb7c3cb",
    "test_batch": "40351d587109b95175f43aff81a1287e",
    "train": "16019d7e3df5f24257cddd939b257f8d",
    "test": "f0ef6b0ae62326f3e7ffdfab6717acfc",
}
_OFFICIAL_ROWS = {"data_batch_1": 10000, "data_batch_2": 10000, "data_batch_3": 10000, "data_batch_4": 10000,
                  "data_batch_5": 10000, "test_batch": 10000, "train": 50000, "test": 10000}


def read_cifar_pickle(path: Path, label_keys: tuple[str, ...]) -> dict[str, np.ndarray]:
    """One official batch pickle -> ``{"data": uint8 [N, 3, 32, 32], <label>: int64 [N], ...}``, failing clearly."""
    try:
        with open(path, "rb") as handle:
            entry: dict[Any, Any] = pickle.load(handle, encoding="latin1")
    except PermissionError as error:
        raise denied(path, error) from None
    except (OSError, EOFError, pickle.UnpicklingError, ValueError, TypeError) as error:
        raise DatasetFileError(f"{path}: cannot be unpickled ({error!r}); it is truncated or corrupt. Replace it.") from error
    if not isinstance(entry, dict):
        raise DatasetFileError(f"{path}: expected a pickled dict (the official CIFAR format), got {type(entry).__name__}.")
    entry = {k.decode() if isinstance(k, bytes) else k: v for k, v in entry.items()}
    missing = [key for key in ("data", *label_keys) if key not in entry]
    if missing:
        raise DatasetFileError(f"{path}: missing keys {missing} of the official CIFAR format (has {sorted(entry)}).")
    data = np.asarray(entry["data"])
    if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3 * 32 * 32:
        raise DatasetFileError(f"{path}: 'data' is {data.dtype} {data.shape}, expected uint8 [N, 3072].")
    rows = _OFFICIAL_ROWS.get(path.name)
    if rows == len(data) and md5_of(path) != _OFFICIAL_MD5[path.name]:
        raise DatasetFileError(f"{path}: has the official size but not the official md5; it is corrupt. Replace it.")
    out = {"data": data.reshape(-1, 3, 32, 32)}
    for key in label_keys:
        labels = np.asarray(entry[key], dtype=np.int64)
        if labels.shape != (len(data),):
            raise DatasetFileError(f"{path}: {len(labels)} {key!r} for {len(data)} images.")
        out[key] = labels
    return out


def _ensure_extracted(data_dir: Path, folder: str, archive: str, files: list[str], dataset: str, url: str, download: bool) -> Path:
    root = data_dir / folder
    if all((root / name).is_file() for name in files):
        return root
    tar = data_dir / archive
    if not tar.is_file() and download:
        try:
            from torchvision.datasets.utils import download_url

            download_url(url, root=str(data_dir), filename=archive)
        except Exception:  # offline: explained below
            pass
    if tar.is_file():
        try:
            with tarfile.open(tar, "r:gz") as handle:
                handle.extractall(data_dir, filter="data")
        except (tarfile.TarError, OSError, EOFError) as error:
            raise DatasetFileError(f"{tar}: cannot be unpacked ({error}); it is truncated or corrupt. Download it again.") from error
    try:
        missing = [name for name in files if not (root / name).is_file()]
    except PermissionError as error:  # a sub-folder without search access
        raise denied(root, error) from None
    if missing:
        raise missing_files_error(
            dataset, root, missing,
            f"Download {url} and unpack it in {data_dir.resolve()} (or place the archive there; it is unpacked on first use).",
        )
    return root


def random_affine_flip(x: torch.Tensor, max_shift: float, max_angle: float, flip: bool, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample random shift (fraction of size), rotation (radians) and horizontal flip of a batch.

    Bilinear sampling with edge replication: Keras' ImageDataGenerator defaults (``fill_mode='nearest'``),
    the tool of the paper's time; the paper does not name its fill. One ``grid_sample`` for the batch.
    """
    n = x.shape[0]
    kw = {"device": x.device, "dtype": x.dtype}

    def uniform(low: float, high: float) -> torch.Tensor:
        return torch.rand(n, generator=generator, device=x.device, dtype=x.dtype) * (high - low) + low

    angle = uniform(-max_angle, max_angle)
    sign = torch.ones(n, **kw)
    if flip:
        sign = torch.where(torch.rand(n, generator=generator, device=x.device) < 0.5, -sign, sign)
    # affine_grid works in [-1, 1] coordinates, so a shift of s * size is 2 * s.
    tx, ty = uniform(-2 * max_shift, 2 * max_shift), uniform(-2 * max_shift, 2 * max_shift)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.stack([torch.stack([cos * sign, -sin, tx], 1), torch.stack([sin * sign, cos, ty], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)


class CIFAR10DataModule(ImageDataModule):
    """CIFAR-10: all 50,000 training images (the paper's protocol; ``val_size=0`` validates on test), 10,000 test.

    Training augmentation (Appendix B.2): shifts up to 10% both ways, rotations up to pi/6, horizontal flips.
    """

    name = "CIFAR10"
    input_shape = (3, 32, 32)
    pad_value = 1.0
    mean = (0.4914, 0.4822, 0.4465)
    std = (0.2470, 0.2435, 0.2616)
    targets = ("label",)
    _train_files = [f"data_batch_{i}" for i in range(1, 6)]

    def __init__(self, *args, augment: bool = True, max_shift: float = 0.1, max_rotation: float = math.pi / 6,
                 horizontal_flip: bool = True, **kwargs) -> None:
        super().__init__(*args, augment=augment, **kwargs)
        self.max_shift = max_shift
        self.max_rotation = max_rotation
        self.horizontal_flip = horizontal_flip

    @property
    def num_classes(self) -> int:
        return 10

    def _root(self) -> Path:
        return _ensure_extracted(self.data_dir, "cifar-10-batches-py", "cifar-10-python.tar.gz",
                                 [*self._train_files, "test_batch"], self.name, CIFAR10_URL, self.download)

    def fetch(self) -> None:
        self._root()

    def load_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        root = self._root()
        files = self._train_files if split == "train" else ["test_batch"]
        parts = [read_cifar_pickle(root / name, ("labels",)) for name in files]
        labels = np.concatenate([p["labels"] for p in parts])
        if labels.size and (labels.min() < 0 or labels.max() > 9):
            raise DatasetFileError(f"CIFAR10 {split}: labels outside 0..9 in {root}.")
        images = torch.from_numpy(np.concatenate([p["data"] for p in parts]))
        return images, {"label": torch.from_numpy(labels)}

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return random_affine_flip(x, self.max_shift, self.max_rotation, self.horizontal_flip, generator)


class CIFAR100CoarseDataModule(ImageDataModule):
    """The images of CIFAR-100's first 3 coarse classes (aquatic mammals, fish, flowers), Section 5.2.

    7,500 training and 1,500 test images. ``target="coarse"`` (3 classes, the original task) or
    ``"fine"`` (the 15 fine classes, relabelled 0..14 in order of (coarse, fine) label, so that
    ``fine // 5 == coarse``). The paper states no augmentation for CIFAR-100, so none by default.
    """

    name = "CIFAR100Coarse"
    input_shape = (3, 32, 32)
    pad_value = 1.0
    mean = (0.5071, 0.4865, 0.4409)
    std = (0.2673, 0.2564, 0.2762)
    targets = ("coarse", "fine")

    def __init__(self, *args, coarse_classes: tuple[int, ...] = (0, 1, 2), max_shift: float = 0.1,
                 max_rotation: float = math.pi / 6, horizontal_flip: bool = True, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        coarse_classes = tuple(int(c) for c in coarse_classes)
        if not coarse_classes or len(set(coarse_classes)) != len(coarse_classes) or not all(0 <= c < 20 for c in coarse_classes):
            raise ValueError(f"coarse_classes must be distinct labels in 0..19, got {coarse_classes}.")
        self.coarse_classes = coarse_classes
        self.max_shift = max_shift
        self.max_rotation = max_rotation
        self.horizontal_flip = horizontal_flip
        self.fine_classes: list[int] = []  # official fine labels kept, in relabelled order; set by setup

    @property
    def num_classes(self) -> int:
        return len(self.coarse_classes) if self.target == "coarse" else 5 * len(self.coarse_classes)

    def _root(self) -> Path:
        return _ensure_extracted(self.data_dir, "cifar-100-python", "cifar-100-python.tar.gz",
                                 ["train", "test"], self.name, CIFAR100_URL, self.download)

    def fetch(self) -> None:
        self._root()

    def load_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        path = self._root() / split
        entry = read_cifar_pickle(path, ("fine_labels", "coarse_labels"))
        coarse, fine = entry["coarse_labels"], entry["fine_labels"]
        keep = np.isin(coarse, self.coarse_classes)
        coarse_to_new = {c: i for i, c in enumerate(self.coarse_classes)}
        pairs = sorted({(coarse_to_new[int(c)], int(f)) for c, f in zip(coarse[keep], fine[keep])})
        if split == "train":
            per_coarse = {c: sum(1 for pc, _ in pairs if pc == coarse_to_new[c]) for c in self.coarse_classes}
            if any(count != 5 for count in per_coarse.values()):
                raise DatasetFileError(
                    f"{path}: each CIFAR-100 coarse class has 5 fine classes, found {per_coarse}; the file is corrupt."
                )
            self.fine_classes = [f for _, f in pairs]
        unknown = {f for _, f in pairs} - set(self.fine_classes)
        if unknown:
            raise DatasetFileError(f"{path}: fine labels {sorted(unknown)} are not in the training split's classes.")
        fine_to_new = {f: i for i, f in enumerate(self.fine_classes)}
        labels = {
            "coarse": torch.tensor([coarse_to_new[int(c)] for c in coarse[keep]], dtype=torch.long),
            "fine": torch.tensor([fine_to_new[int(f)] for f in fine[keep]], dtype=torch.long),
        }
        return torch.from_numpy(entry["data"][keep]), labels

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        return random_affine_flip(x, self.max_shift, self.max_rotation, self.horizontal_flip, generator)


# the earlier names, kept so that every config and checkpoint written with them still loads
CIFAR10 = earlier_name(CIFAR10DataModule, "CIFAR10")
CIFAR100Coarse = earlier_name(CIFAR100CoarseDataModule, "CIFAR100Coarse")

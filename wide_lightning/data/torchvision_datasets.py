"""torchvision's classification datasets as DataModules, read through ``torchvision.datasets`` and offline-safe.

``TorchvisionClassification`` builds ``torchvision.datasets.<X>(root, ..., download=False)`` and turns
its ``.data`` and ``.targets`` (or ``.labels``) into ``uint8 [N, C, H, W]`` images and ``{"label": ...}``;
the subclasses only say where the files are and how to convert. The files, in torchvision's layout:

* ``FashionMNIST``, ``KMNIST``: ``<data_dir>/<FashionMNIST|KMNIST>/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte``
* ``EMNIST``: ``<data_dir>/EMNIST/raw/emnist-<split>-{train,test}-{images-idx3,labels-idx1}-ubyte``
* ``SVHN``: ``<data_dir>/SVHN/{train,test}_32x32.mat``
* ``TorchvisionCIFAR10``: ``<data_dir>/cifar-10-batches-py/`` (our ``CIFAR10``'s files, plus ``batches.meta``)
* ``TorchvisionCIFAR100``: ``<data_dir>/cifar-100-python/{train,test,meta}`` (the 100 fine labels)

An IDX file present only as the official ``.gz`` is unpacked beside it (as torchvision's download
does); a lone CIFAR archive in ``data_dir`` is unpacked on first use. ``download=True`` fetches
missing files through torchvision when the network allows; offline, a missing file is a
``DatasetFileError`` that names it, not torchvision's "Dataset not found". torchvision checks the
md5 of the CIFAR and SVHN files against its tables (``train_list``, ``split_list``...): a file
that fails is named with the md5 expected. It only checks that the MNIST-like files exist; a
damaged one is diagnosed by our IDX reader.

Normalization: the published statistics where well known (sources below); EMNIST's are measured on
its training split and cached (``statistics.py``). Pad value: 0 for the dark-background characters
(as MNIST), 1 for CIFAR (the paper's Appendix B.1), SVHN's training split's mean border pixel.
"""

from __future__ import annotations

import gzip
import shutil
import zlib
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch

from wide_lightning.data.base import DatasetFileError, ImageDataModule, md5_of, missing_files_error, earlier_name
from wide_lightning.data.cifar import CIFAR10DataModule, CIFAR100CoarseDataModule, _ensure_extracted
from wide_lightning.data.mnist import read_idx
from wide_lightning.data.statistics import TrainingStatistics
from wide_lightning.files import atomic_path


class TorchvisionClassification(TrainingStatistics, ImageDataModule):
    """Base of the DataModules on ``torchvision.datasets.<torchvision_class>``; the files live under ``root``.

    Validation: ``val_size`` training examples held out by ``seed`` (default 0: validate on test).
    No training augmentation.
    """

    torchvision_class: ClassVar[str]
    #: The folder under ``data_dir`` given to torchvision as its ``root``.
    root_folder: ClassVar[str] = ""
    class_count: ClassVar[int] = 10

    @property
    def num_classes(self) -> int:
        return self.class_count

    @property
    def root(self) -> Path:
        return self.data_dir / self.root_folder

    # -- what subclasses say -----------------------------------------------------------------------

    def split_files(self, split: str) -> list[str]:
        """The files of ``split``, relative to ``root``."""
        raise NotImplementedError

    def required_files(self, split: str) -> list[str]:
        """Every file torchvision wants before it loads ``split`` (some check both splits)."""
        return self.split_files(split)

    def checksums(self) -> dict[str, str]:
        """md5 of the files torchvision verifies, from its own tables (read each time: tests patch them)."""
        return {}

    def torchvision_arguments(self, split: str) -> dict[str, Any]:
        return {"train": split == "train"}

    def convert(self, dataset: Any) -> tuple[Any, Any]:
        """torchvision's dataset -> images ``[N, C, H, W]`` (array or tensor) and integer labels."""
        return dataset.data.unsqueeze(1), dataset.targets

    # -- reading -----------------------------------------------------------------------------------

    def _dataset_class(self) -> Any:
        import torchvision.datasets

        return getattr(torchvision.datasets, self.torchvision_class)

    def _missing(self, names: list[str]) -> list[str]:
        return [name for name in names if not (self.root / name).is_file()]

    def fetch(self) -> None:
        for split in ("train", "test"):
            if self._missing(self.required_files(split)):
                try:
                    self._dataset_class()(str(self.root), download=True, **self.torchvision_arguments(split))
                except Exception:  # offline or a dead mirror: read_split explains what is missing
                    pass

    def ensure_files(self, split: str) -> None:
        """Download missing files if allowed; a ``DatasetFileError`` naming every missing file if still missing."""
        if self._missing(self.required_files(split)) and self.download:
            self.fetch()
        if self._missing(self.required_files(split)):
            every = list(dict.fromkeys(self.required_files("train") + self.required_files("test")))
            how = (f"With --data.init_args.download=true torchvision.datasets.{self.torchvision_class} fetches them "
                   f"when the network allows; offline, copy the official files there.")
            raise missing_files_error(self.name, self.root, self._missing(every), how)

    def read_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        self.ensure_files(split)
        try:
            dataset = self._dataset_class()(str(self.root), download=False, **self.torchvision_arguments(split))
            images, labels = self.convert(dataset)
        except DatasetFileError:
            raise
        except Exception as error:  # torchvision's RuntimeError, assertions, scipy's and pickle's errors
            raise self._diagnose(split, error) from error
        images = torch.as_tensor(images).contiguous()
        labels = torch.as_tensor(labels).to(torch.int64).reshape(-1)
        where = f"{self.name} {split} ({', '.join(self.split_files(split))} in {self.root.resolve()})"
        if images.dtype != torch.uint8 or images.ndim != 4 or tuple(images.shape[1:]) != tuple(self.input_shape):
            raise DatasetFileError(f"{where}: images are {images.dtype} {tuple(images.shape)}, expected uint8 "
                                   f"[N, {', '.join(map(str, self.input_shape))}]. Replace the files.")
        if len(labels) != len(images):
            raise DatasetFileError(f"{where}: {len(images)} images but {len(labels)} labels. Replace the files.")
        if len(labels) and (labels.min() < 0 or labels.max() >= self.num_classes):
            raise DatasetFileError(f"{where}: labels {int(labels.min())}..{int(labels.max())} are outside "
                                   f"0..{self.num_classes - 1}. Replace the files.")
        return images, {"label": labels}

    def _diagnose(self, split: str, error: Exception) -> DatasetFileError:
        """Which file made torchvision fail, and why, in one sentence."""
        for name, md5 in self.checksums().items():
            path = self.root / name
            if path.is_file() and (actual := md5_of(path)) != md5:
                return DatasetFileError(
                    f"{path}: md5 {actual} is not the official {md5} that torchvision checks; the file is truncated or "
                    f"corrupt. Delete it and download it again (--data.init_args.download=true), or replace it.")
        for name in self.split_files(split):
            if name.endswith("-ubyte"):
                try:
                    read_idx(self.root / name, check_md5=False)
                except DatasetFileError as damaged:
                    return damaged
        return DatasetFileError(
            f"{self.name} {split}: torchvision.datasets.{self.torchvision_class} cannot read "
            f"{', '.join(self.split_files(split))} in {self.root.resolve()} ({error!r}); they are damaged or not "
            f"in the official format. Replace them.")

    def statistics_source(self) -> tuple[Path, str, list[Path]]:
        return self.root, self.name, [self.root / name for name in self.split_files("train")]


def _unpack_gz(packed: Path, target: Path) -> None:
    try:
        with gzip.open(packed, "rb") as source, atomic_path(target) as temporary, open(temporary, "wb") as out:
            shutil.copyfileobj(source, out)
    except (OSError, EOFError, zlib.error) as error:
        raise DatasetFileError(f"{packed}: cannot be unpacked to {target.name} ({error}); it is truncated or corrupt "
                               f"(or the folder is read-only). Replace it, or unpack it yourself.") from error


class _IDXClassification(TorchvisionClassification):
    """The MNIST-like datasets: 28x28 greyscale IDX files in ``<data_dir>/<torchvision_class>/raw``."""

    input_shape = (1, 28, 28)
    pad_value = 0.0  # dark background, as MNIST (Appendix B.1)

    def split_files(self, split: str) -> list[str]:
        prefix = "train" if split == "train" else "t10k"
        return [f"{self.torchvision_class}/raw/{prefix}-{kind}-ubyte" for kind in ("images-idx3", "labels-idx1")]

    def required_files(self, split: str) -> list[str]:
        return self.split_files("train") + self.split_files("test")  # torchvision's MNIST checks all four

    def statistics_source(self) -> tuple[Path, str, list[Path]]:
        folder = self.root / self.torchvision_class  # the cache beside raw/, not loose in data_dir
        return folder, self.name, [self.root / name for name in self.split_files("train")]

    def ensure_files(self, split: str) -> None:
        for name in self.required_files(split):
            path = self.root / name
            packed = path.with_name(path.name + ".gz")
            if not path.is_file() and packed.is_file():
                _unpack_gz(packed, path)
        super().ensure_files(split)


class FashionMNISTDataModule(_IDXClassification):
    """Fashion-MNIST: 60,000 training and 10,000 test 28x28 greyscale images of 10 kinds of clothing."""

    name = "FashionMNIST"
    torchvision_class = "FashionMNIST"
    # Pixel statistics of the 60,000 training images (72.94/255 and 90.02/255), as commonly used with
    # Normalize (e.g. github.com/chatflip/CalculationMeanStd); not given in the dataset's paper.
    mean = (0.2860,)
    std = (0.3530,)


class KMNISTDataModule(_IDXClassification):
    """Kuzushiji-MNIST: 60,000 training and 10,000 test 28x28 greyscale cursive Japanese characters, 10 classes."""

    name = "KMNIST"
    torchvision_class = "KMNIST"
    # Pixel statistics of the 60,000 training images as commonly cited with the rois-codh/kmnist benchmarks.
    mean = (0.1918,)
    std = (0.3483,)


class EMNISTDataModule(_IDXClassification):
    """EMNIST, one of its six splits (``split``): 28x28 greyscale handwritten characters.

    Classes: byclass 62, bymerge 47, balanced 47 (the default), letters 26, digits 10, mnist 10.
    ``letters`` is labelled 1..26 in the files; here 0..25 (``a``..``z``), so no class is empty.
    The files store every image transposed (the NIST conversion wrote columns first) and torchvision
    returns them as stored; ``upright=True`` (default) transposes them back, so that characters read
    as MNIST's digits do (what the atlas shows); ``False`` keeps torchvision's orientation.
    Mean and std: measured on the split's training images and cached (no published values per split).
    """

    torchvision_class = "EMNIST"
    SPLITS: ClassVar[dict[str, int]] = {"byclass": 62, "bymerge": 47, "balanced": 47, "letters": 26, "digits": 10,
                                        "mnist": 10}

    def __init__(self, *args: Any,
                 split: Literal["byclass", "bymerge", "balanced", "letters", "digits", "mnist"] = "balanced",
                 upright: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if split not in self.SPLITS:
            raise ValueError(f"EMNIST split must be one of {list(self.SPLITS)}, got {split!r}.")
        self.split = split
        self.upright = upright
        self.name = f"EMNIST-{split}"

    @property
    def num_classes(self) -> int:
        return self.SPLITS[self.split]

    def split_files(self, split: str) -> list[str]:
        prefix = f"emnist-{self.split}-{'train' if split == 'train' else 'test'}"
        return [f"EMNIST/raw/{prefix}-{kind}-ubyte" for kind in ("images-idx3", "labels-idx1")]

    def required_files(self, split: str) -> list[str]:
        return self.split_files(split)

    def torchvision_arguments(self, split: str) -> dict[str, Any]:
        return {"split": self.split, "train": split == "train"}

    def convert(self, dataset: Any) -> tuple[Any, Any]:
        images = dataset.data.unsqueeze(1)
        return images.transpose(-1, -2) if self.upright else images, dataset.targets - int(self.split == "letters")


class SVHNDataModule(TorchvisionClassification):
    """SVHN (cropped digits): 73,257 training and 26,032 test 32x32 colour images; ``extra`` is not used.

    The files label the digit 0 as 10; torchvision (and so this class) labels it 0.
    """

    name = "SVHN"
    torchvision_class = "SVHN"
    root_folder = "SVHN"
    input_shape = (3, 32, 32)
    # Pixel statistics of the 73,257 training images, as commonly used (e.g. PatrickZH/DeepCore, datasets/svhn.py).
    mean = (0.4377, 0.4438, 0.4728)
    std = (0.1980, 0.2010, 0.1970)
    # pad_value: the training split's mean border pixel (statistics.py), no published convention

    def split_files(self, split: str) -> list[str]:
        return [self._dataset_class().split_list[split][1]]

    def checksums(self) -> dict[str, str]:
        table = self._dataset_class().split_list
        return {table[split][1]: table[split][2] for split in ("train", "test")}

    def torchvision_arguments(self, split: str) -> dict[str, Any]:
        return {"split": split}

    def convert(self, dataset: Any) -> tuple[Any, Any]:
        return dataset.data, dataset.labels


class TorchvisionCIFAR10DataModule(TorchvisionClassification):
    """CIFAR-10 through ``torchvision.datasets.CIFAR10`` (50,000 training, 10,000 test images), no augmentation.

    ``CIFAR10`` is the paper's version (its augmentation, its own reader); this one is torchvision's.
    """

    name = "TorchvisionCIFAR10"
    torchvision_class = "CIFAR10"
    input_shape = (3, 32, 32)
    pad_value = 1.0  # the paper's CIFAR value (Appendix B.1)
    mean, std = CIFAR10DataModule.mean, CIFAR10DataModule.std  # the published CIFAR-10 statistics

    def _tables(self) -> tuple[str, list, list, dict]:
        cls = self._dataset_class()
        return cls.base_folder, cls.train_list, cls.test_list, cls.meta

    def split_files(self, split: str) -> list[str]:
        folder, train, test, _ = self._tables()
        return [f"{folder}/{name}" for name, _ in (train if split == "train" else test)]

    def required_files(self, split: str) -> list[str]:
        folder, _, _, meta = self._tables()
        return self.split_files("train") + self.split_files("test") + [f"{folder}/{meta['filename']}"]

    def checksums(self) -> dict[str, str]:
        folder, train, test, meta = self._tables()
        return {**{f"{folder}/{name}": md5 for name, md5 in train + test}, f"{folder}/{meta['filename']}": meta["md5"]}

    def ensure_files(self, split: str) -> None:
        cls, folder = self._dataset_class(), self._tables()[0]
        _ensure_extracted(self.data_dir, folder, cls.filename, [n.split("/", 1)[1] for n in self.required_files(split)],
                          self.name, cls.url, self.download)

    def fetch(self) -> None:
        self.ensure_files("train")

    def convert(self, dataset: Any) -> tuple[Any, Any]:
        return dataset.data.transpose(0, 3, 1, 2), dataset.targets  # torchvision keeps CIFAR as [N, H, W, C]


class TorchvisionCIFAR100DataModule(TorchvisionCIFAR10DataModule):
    """CIFAR-100 through ``torchvision.datasets.CIFAR100``: its 100 fine labels (``CIFAR100Coarse``: the paper's subset)."""

    name = "TorchvisionCIFAR100"
    torchvision_class = "CIFAR100"
    class_count = 100
    mean, std = CIFAR100CoarseDataModule.mean, CIFAR100CoarseDataModule.std  # the published statistics of all 50,000 training images


# the earlier names, kept so that every config and checkpoint written with them still loads
FashionMNIST = earlier_name(FashionMNISTDataModule, "FashionMNIST")
KMNIST = earlier_name(KMNISTDataModule, "KMNIST")
EMNIST = earlier_name(EMNISTDataModule, "EMNIST")
SVHN = earlier_name(SVHNDataModule, "SVHN")
TorchvisionCIFAR10 = earlier_name(TorchvisionCIFAR10DataModule, "TorchvisionCIFAR10")
TorchvisionCIFAR100 = earlier_name(TorchvisionCIFAR100DataModule, "TorchvisionCIFAR100")

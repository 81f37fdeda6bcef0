"""Any folder of images with one sub-folder per class, as a DataModule (``ImageFolder``).

Two layouts, told apart by the folder's contents:

* ``<folder>/train/<class>/...`` and ``<folder>/test/<class>/...``: the split as given. The classes are
  the sub-folders of ``train``; ``test`` may lack a class but not add one.
* ``<folder>/<class>/...``: ``test_size`` of each class's images (at least one, never all) are held
  out as the test split, drawn by ``test_seed``; a separate seed from ``seed``, so that runs of other
  seeds (a sweep) share one test set.

Classes are the sub-folder names, sorted (label k = the k-th name), as ``torchvision.datasets.ImageFolder``.
Images are the files with a usual image extension (``IMAGE_EXTENSIONS``) anywhere below a class
folder; other files, and hidden ones, are ignored. Each is read with PIL, converted to RGB
(``channels=3``) or greyscale (``channels=1``; ``None``: 1 when every image is greyscale), resized
to ``image_size`` (the aspect ratio is not kept; PIL's antialiased bilinear filter) and stored as
``uint8``. ``input_shape`` and ``num_classes`` come from the folder: the CLI reads them before
``setup``, which lists the folder (and, with ``channels=None``, opens each image's header), once.
Mean, std and pad value are measured on the training split and cached in the folder (``statistics.py``).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
from PIL import Image

from wide_lightning.data.base import DATA_ENV, DatasetFileError, ImageDataModule, earlier_name
from wide_lightning.data.statistics import TrainingStatistics

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".ppm", ".pgm", ".tif", ".tiff", ".webp")
_GREY_BANDS = {"1", "L", "I", "F", "A"}
_HOW = (f"Give the folder with --data.init_args.folder=DIR (absolute, or inside --data.data_dir=DIR or the "
        f"environment variable {DATA_ENV}=DIR).")


@dataclass(frozen=True)
class FolderSplits:
    """The classes and each split's ``(file, label)`` pairs; ``held_out``: the test split was drawn from one folder."""

    classes: tuple[str, ...]
    train: list[tuple[Path, int]]
    test: list[tuple[Path, int]]
    held_out: bool


def _sub_folders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))


def _images_below(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
                  and not any(part.startswith(".") for part in p.relative_to(folder).parts))


def _class_images(folder: Path) -> dict[str, list[Path]]:
    """``{class: images}`` of ``folder``'s class sub-folders; an error for no class folder or an empty one."""
    classes = {p.name: _images_below(p) for p in _sub_folders(folder)}
    if not classes:
        loose = len(_images_below(folder))
        raise DatasetFileError(f"ImageFolder: {folder.resolve()} has no class sub-folders"
                               + (f" (it holds {loose} images directly; move them into one sub-folder per class)" if loose else "")
                               + f". Expected {folder}/<class>/<images>. {_HOW}")
    for name, images in classes.items():
        if not images:
            raise DatasetFileError(f"ImageFolder: class folder {(folder / name).resolve()} holds no images "
                                   f"({' '.join(IMAGE_EXTENSIONS)}). Add some, or remove the folder.")
    return classes


def _open_error(path: Path, error: Exception) -> DatasetFileError:
    return DatasetFileError(f"ImageFolder: {path.resolve()} cannot be read as an image ({error}); it is truncated, "
                            f"corrupt or not an image. Replace or remove it.")


def read_images(paths: list[Path], size: tuple[int, int], channels: int) -> torch.Tensor:
    """The images at ``paths`` as ``uint8 [N, channels, H, W]``, each converted and resized to ``size = (H, W)``."""
    height, width = size
    out = np.empty((len(paths), height, width, channels), dtype=np.uint8)
    for k, path in enumerate(paths):
        try:
            with Image.open(path) as image:
                image = image.convert("L" if channels == 1 else "RGB")
                out[k] = np.asarray(image.resize((width, height), Image.Resampling.BILINEAR)).reshape(height, width, channels)
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
            raise _open_error(path, error) from error
    return torch.from_numpy(out).permute(0, 3, 1, 2).contiguous()


class ImageFolderDataModule(TrainingStatistics, ImageDataModule):
    """A folder of class sub-folders of images (module doc for the layouts).

    Args:
        folder: the image folder; a relative path is taken inside ``data_dir`` (``$WIDE_LIGHTNING_DATA``,
            else ``./data``); ``None``: ``data_dir`` itself.
        image_size: ``H`` (square) or ``(H, W)`` every image is resized to.
        channels: 3 (RGB, default) or 1 (greyscale); ``None`` detects: 1 if every image is greyscale.
        test_size: the fraction of each class held out as the test split when there is no ``test/`` folder.
        test_seed: draws that test split.
        (the rest: ``ImageDataModule``; ``val_size`` images of the training split are held out by ``seed``.)
    """

    name = "ImageFolder"

    def __init__(self, *args: Any, folder: str | Path | None = None, image_size: int | tuple[int, int] = 32,
                 channels: Literal[1, 3] | None = 3, test_size: float = 0.2, test_seed: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        size = (image_size, image_size) if isinstance(image_size, int) else tuple(image_size)
        if len(size) != 2 or not all(isinstance(s, int) and s > 0 for s in size):
            raise ValueError(f"image_size must be a positive int or (height, width), got {image_size!r}.")
        if channels not in (1, 3, None):
            raise ValueError(f"channels must be 1 (greyscale), 3 (RGB) or None (detect), got {channels!r}.")
        if not 0 < test_size < 1:
            raise ValueError(f"test_size is the fraction of each class held out for testing, in (0, 1); got {test_size}.")
        self.folder = folder
        self.image_size = size
        self.channels = channels
        self.test_size, self.test_seed = test_size, test_seed

    @property
    def root(self) -> Path:
        folder = Path(self.folder).expanduser() if self.folder is not None else Path()
        return folder if folder.is_absolute() else self.data_dir / folder

    @property
    def splits(self) -> FolderSplits:
        """The folder's classes and files, listed once."""
        if "_folder_splits" not in self.__dict__:
            self.__dict__["_folder_splits"] = self._scan()
        return self.__dict__["_folder_splits"]

    @property
    def classes(self) -> tuple[str, ...]:
        return self.splits.classes

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def input_shape(self) -> tuple[int, int, int]:
        if "_channels" not in self.__dict__:
            self.__dict__["_channels"] = self.channels or self._detect_channels()
        return (self.__dict__["_channels"], *self.image_size)

    def _scan(self) -> FolderSplits:
        root = self.root
        if not root.is_dir():
            what = "is a file, not a folder" if root.exists() else "does not exist"
            raise DatasetFileError(f"ImageFolder: {root.resolve()} {what}; it should hold one sub-folder of images per "
                                   f"class (or train/ and test/, each with one per class). {_HOW}")
        names = {p.name for p in _sub_folders(root)}
        if names & {"train", "test"}:
            if not {"train", "test"} <= names:
                have, lack = ("train", "test") if "train" in names else ("test", "train")
                raise DatasetFileError(f"ImageFolder: {root.resolve()} has {have}/ but no {lack}/: give both "
                                       f"train/<class>/ and test/<class>/, or only class folders (a test split is "
                                       f"then held out).")
            train, test = _class_images(root / "train"), _class_images(root / "test")
            extra = sorted(set(test) - set(train))
            if extra:
                raise DatasetFileError(f"ImageFolder: {(root / 'test').resolve()} has classes {extra} that "
                                       f"{(root / 'train').resolve()} lacks; the classes are the training folders.")
            classes = tuple(train)
            return FolderSplits(classes, self._pairs(train, classes), self._pairs(test, classes), held_out=False)
        every = _class_images(root)
        classes = tuple(every)
        generator = torch.Generator().manual_seed(self.test_seed)
        train: dict[str, list[Path]] = {}
        test: dict[str, list[Path]] = {}
        for name, files in every.items():
            if len(files) < 2:
                raise DatasetFileError(f"ImageFolder: class folder {(root / name).resolve()} has 1 image; holding out "
                                       f"a test split needs at least 2 per class (or give train/ and test/ folders).")
            count = min(len(files) - 1, max(1, round(self.test_size * len(files))))
            order = torch.randperm(len(files), generator=generator).tolist()
            test[name] = sorted(files[k] for k in order[:count])
            train[name] = sorted(files[k] for k in order[count:])
        return FolderSplits(classes, self._pairs(train, classes), self._pairs(test, classes), held_out=True)

    @staticmethod
    def _pairs(images: dict[str, list[Path]], classes: tuple[str, ...]) -> list[tuple[Path, int]]:
        return [(path, classes.index(name)) for name, paths in images.items() for path in paths]

    def _detect_channels(self) -> int:
        for path, _ in self.splits.train + self.splits.test:
            try:
                with Image.open(path) as image:
                    bands = set(image.getbands())
            except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as error:
                raise _open_error(path, error) from error
            if not bands <= _GREY_BANDS:
                return 3
        return 1

    def read_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        pairs = self.splits.train if split == "train" else self.splits.test
        images = read_images([path for path, _ in pairs], self.image_size, self.input_shape[0])
        return images, {"label": torch.tensor([label for _, label in pairs], dtype=torch.long)}

    def statistics_source(self) -> tuple[Path, str, list[Path]]:
        return self.root, self.name, [path for path, _ in self.splits.train]


# the earlier names, kept so that every config and checkpoint written with them still loads
ImageFolder = earlier_name(ImageFolderDataModule, "ImageFolder")

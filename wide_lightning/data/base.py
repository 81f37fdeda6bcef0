"""The shared DataModule: where data lives, how it is split, and how a batch becomes network input.

Subclasses only read files and build labels (``load_split``). Everything else is here:

* Datasets are held whole as ``uint8`` tensors ``[N, C, H, W]`` with named label tensors. These
  datasets are tens of megabytes, so they can live on a GPU later; nothing per-sample happens on the
  CPU.
* A batch leaves the loader as ``uint8`` and is turned into float input by ``batch_transform``
  (scale to [0, 1], augment when training, normalize) in ``on_after_batch_transfer``, i.e. on the
  device, in whole batches. Atlases call ``batch_transform(..., train=False)`` themselves.
* Train/val splits are a seeded permutation, so they are identical on every rank and every run.
* Where the batches come from is ``placement``: a ``DataLoader`` over host tensors (the CPU default),
  or the whole split resident on the device (``data/resident.py``; the default on a CUDA device when
  the data fit).
* ``batch_size`` is the global batch, the paper's 128, whatever the number of processes: under DDP
  each of ``N`` processes draws ``batch_size / N`` examples per step, so the paper's learning rates
  keep their meaning. A batch size that ``N`` does not divide is refused.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, Literal, Sequence

import torch
from lightning.pytorch import LightningDataModule
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torch.utils.data import DataLoader, Dataset

from wide_lightning.data.resident import (
    RESIDENT_MEMORY_FRACTION,
    DeviceBatches,
    DeviceMemoryError,
    EpochOrder,
    EpochSampler,
    free_device_memory,
    resident_bytes,
)

DATA_ENV = "WIDE_LIGHTNING_DATA"
Batch = tuple[torch.Tensor, torch.Tensor]


class DatasetFileError(RuntimeError):
    """A dataset file is missing, truncated or corrupt; the message says which and how to fix it."""


def default_data_dir() -> Path:
    """``$WIDE_LIGHTNING_DATA`` if set, else ``./data``."""
    return Path(os.environ.get(DATA_ENV) or "data")


def md5_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def denied(path: Path, error: PermissionError) -> DatasetFileError:
    """A dataset file or folder the permissions deny: the fix is access, not a new file."""
    return DatasetFileError(f"cannot read {path} ({error.strerror or 'Permission denied'}); give yourself read access "
                            f"(chmod -R u+rX {path}) or point --data.data_dir=DIR (or {DATA_ENV}=DIR) at a readable "
                            f"copy.")


def missing_files_error(dataset: str, directory: Path, files: Sequence[str], how: str) -> DatasetFileError:
    return DatasetFileError(
        f"{dataset}: missing {', '.join(files)} in {directory.resolve()}. {how} "
        f"Point the loader at the folder that holds them with --data.data_dir=DIR "
        f"or the environment variable {DATA_ENV}=DIR."
    )


class LabelledImages(Dataset):
    """``uint8`` images ``[N, C, H, W]`` with named integer labels; yields ``(image, labels[target])``.

    ``__getitems__`` lets the DataLoader fetch a whole batch with one indexing operation instead of
    ``batch_size`` calls and a collate.
    """

    def __init__(self, images: torch.Tensor, labels: dict[str, torch.Tensor], target: str) -> None:
        if images.dtype != torch.uint8 or images.ndim != 4:
            raise ValueError(f"images must be uint8 [N, C, H, W], got {images.dtype} {tuple(images.shape)}.")
        if target not in labels:
            raise ValueError(f"target {target!r} is not one of the labels {sorted(labels)}.")
        for name, values in labels.items():
            if len(values) != len(images):
                raise ValueError(f"label {name!r} has {len(values)} entries for {len(images)} images.")
        self.images = images
        self.labels = labels
        self.target = target

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> Batch:
        return self.images[index], self.labels[self.target][index]

    def __getitems__(self, indices: list[int]) -> Batch:
        index = torch.as_tensor(indices, dtype=torch.long)
        return self.images[index], self.labels[self.target][index]

    def subset(self, index: torch.Tensor) -> "LabelledImages":
        return LabelledImages(self.images[index], {k: v[index] for k, v in self.labels.items()}, self.target)


def _collate_prefetched(batch: Any) -> Any:
    # ``LabelledImages.__getitems__`` already returns stacked tensors.
    if isinstance(batch, tuple) and all(isinstance(t, torch.Tensor) for t in batch):
        return batch
    return torch.utils.data.default_collate(batch)


def dataset_of(class_path: str) -> str:
    """The dataset a DataModule's class (path) names: ``wide_lightning.data.mnist.MNISTDataModule`` and its
    earlier name ``wide_lightning.MNIST`` are both ``MNIST``."""
    return class_path.rpartition(".")[2].removesuffix("DataModule")


def earlier_name(cls: type, name: str) -> type:
    """``cls`` under the ``name`` it had before DataModules said they are DataModules: a subclass that adds
    nothing, defined in ``cls``'s module, so that configs (``class_path: wide_lightning.MNIST``, ``--data
    MNIST``) and checkpoints (``wide_lightning.data.mnist.MNIST``) written with it still load."""
    return type(name, (cls,), {"__module__": cls.__module__, "__qualname__": name,
                               "__doc__": f"The earlier name of :class:`{cls.__name__}`, the same DataModule."})


class ImageDataModule(LightningDataModule, ABC):
    """Base for every dataset of the paper.

    Args:
        data_dir: folder that holds the dataset's files (default ``$WIDE_LIGHTNING_DATA``, else ``./data``).
        batch_size: global batch size (the paper: 128), split evenly over the DDP processes.
        val_size: number of training examples held out for validation, drawn by ``seed``. ``0`` keeps
            the whole training split for training (the paper's CIFAR protocol) and validates on the
            test split; the docs say so wherever a config does it.
        test_each_epoch: also evaluate the test split after every epoch (logged as ``test/*``), the
            protocol of the paper's probes, which report the best test accuracy.
        seed: seeds the train/val split (and subsets in subclasses).
        download: fetch missing files when the network allows it.
        num_workers: DataLoader workers. The data are in memory and batches are one indexing
            operation, so 0 is the fast default.
        augment: apply the dataset's training augmentation (if it has one).
        placement: where batches come from. ``"device"``: every split resident on the training
            device, shuffled and batched there (an error if it does not fit in half the free device
            memory). ``"loader"``: a ``DataLoader`` over host memory, batches copied per step.
            ``"auto"`` (default): ``"device"`` on a CUDA device when the split fits, else ``"loader"``
            (the fallback is logged).
        shuffle_seed: seed of the batch orders (epoch ``e`` from ``(seed, e)``, on both paths in one
            process; Lightning's DistributedSampler under DDP); default: the run's ``seed_everything``.
        input_scaling: what the network sees. ``"dataset"`` (default): pixels standardized by the
            dataset's published mean and std. ``"none"``: pixels in [0, 1]. The paper does not say;
            the atlas and the probes read the scaling of the run they come from.
    """

    #: The dataset's name, as run records, W&B and figure titles show it.
    name: str = "dataset"
    input_shape: tuple[int, int, int]
    #: Pixel value in [0, 1] that atlas transforms pad with (Appendix B.1: 0 for MNIST, 1 for CIFAR).
    pad_value: float
    #: Per-channel normalization applied after augmentation (the paper is silent; standard values).
    mean: tuple[float, ...]
    std: tuple[float, ...]
    #: The label that ``target`` selects when not given.
    targets: tuple[str, ...] = ("label",)
    #: Cyclic labels and their period (translated MNIST's shift wraps around after 28), for atlas numbers.
    label_periods: dict[str, int] = {}

    def __init__(
        self,
        data_dir: str | Path | None = None,
        batch_size: int = 128,
        val_size: int = 0,
        test_each_epoch: bool = False,
        seed: int = 0,
        download: bool = True,
        num_workers: int = 0,
        augment: bool = False,
        target: str | None = None,
        placement: Literal["auto", "device", "loader"] = "auto",
        shuffle_seed: int | None = None,
        input_scaling: Literal["dataset", "none"] = "dataset",
    ) -> None:
        super().__init__()
        if input_scaling not in ("dataset", "none"):
            raise ValueError(f"input_scaling must be 'dataset' (the dataset's mean and std) or 'none' (pixels in "
                             f"[0, 1]), got {input_scaling!r}.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        if placement not in ("auto", "device", "loader"):
            raise ValueError(f"placement must be 'auto', 'device' or 'loader', got {placement!r}.")
        if val_size < 0:
            raise ValueError(f"val_size must be >= 0, got {val_size}.")
        target = target or self.targets[0]
        if target not in self.targets:
            raise ValueError(f"{type(self).__name__}: target {target!r} is not one of {list(self.targets)}.")
        self.data_dir = Path(data_dir) if data_dir is not None else default_data_dir()
        self.batch_size = batch_size
        self.val_size = val_size
        self.test_each_epoch = test_each_epoch
        self.seed = seed
        self.download = download
        self.num_workers = num_workers
        self.augment = augment
        self.target = target
        self.placement = placement
        self.shuffle_seed = shuffle_seed
        self.input_scaling = input_scaling
        #: Set by a task that trains several models at once: one training batch order per seed.
        self.stacked_seeds: list[int] | None = None
        self.save_hyperparameters()
        self._splits: dict[str, LabelledImages] = {}
        self._resident: dict[tuple[str, str], tuple[torch.Tensor, torch.Tensor]] = {}

    # -- what subclasses provide ------------------------------------------------------------------

    @abstractmethod
    def load_split(self, split: str) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Read the official ``"train"`` or ``"test"`` split: ``uint8 [N, C, H, W]`` images and named labels."""

    @property
    @abstractmethod
    def num_classes(self) -> int:
        """Number of classes of the selected ``target``."""

    def fetch(self) -> None:
        """Download missing files if possible; subclasses that can download override this."""

    def augment_batch(self, x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """Training augmentation of a float batch in [0, 1], drawn from ``generator``; identity unless a
        subclass has one."""
        return x

    # -- Lightning hooks -------------------------------------------------------------------------

    def prepare_data(self) -> None:
        if self.download:
            self.fetch()

    def setup(self, stage: str | None = None) -> None:
        self.process_batch_size  # refuse a batch size the processes cannot share, before any loading
        if self._splits:
            return
        if self.data_dir.is_file():
            raise DatasetFileError(
                f"{self.name}: data_dir {self.data_dir.resolve()} is a file, not a folder. Point "
                f"--data.data_dir=DIR or the environment variable {DATA_ENV}=DIR at the folder that holds the dataset."
            )
        train = LabelledImages(*self.load_split("train"), target=self.target)
        test = LabelledImages(*self.load_split("test"), target=self.target)
        self._check_shape(train)
        self._check_shape(test)
        self._splits = {**self.split_train(train), "test": test}
        examples = len(self._splits["train"])
        if self.batch_size > examples:  # legal, but every epoch would be one batch: most likely a typo
            rank_zero_warn(f"{self.name}: batch_size={self.batch_size} is larger than the training split ({examples} "
                           f"examples), so every epoch is a single step; the paper's batch is 128.")

    def split_train(self, train: LabelledImages) -> dict[str, LabelledImages]:
        """Hold out ``val_size`` examples by a seeded permutation; ``val_size=0`` validates on test."""
        if self.val_size == 0:
            return {"train": train}
        if self.val_size >= len(train):
            raise ValueError(
                f"val_size={self.val_size} leaves no training data: the training split has {len(train)} "
                f"examples. Choose val_size < {len(train)}."
            )
        order = torch.randperm(len(train), generator=torch.Generator().manual_seed(self.seed))
        return {"train": train.subset(order[self.val_size:]), "val": train.subset(order[: self.val_size])}

    def _check_shape(self, split: LabelledImages) -> None:
        if tuple(split.images.shape[1:]) != tuple(self.input_shape):
            raise DatasetFileError(
                f"{self.name}: images in {self.data_dir} have shape {tuple(split.images.shape[1:])}, "
                f"expected {self.input_shape}."
            )

    def dataset(self, split: str) -> LabelledImages:
        """The ``"train"``, ``"val"`` or ``"test"`` split (``"val"`` is the test split when ``val_size=0``)."""
        self.setup()
        if split == "val" and "val" not in self._splits:
            split = "test"
        if split not in self._splits:
            raise KeyError(f"unknown split {split!r}; expected one of train, val, test.")
        return self._splits[split]

    # -- batches ---------------------------------------------------------------------------------

    @property
    def world_size(self) -> int:
        trainer = self.trainer
        return trainer.world_size if trainer is not None else 1

    @property
    def process_batch_size(self) -> int:
        """This process's share of the global ``batch_size``."""
        world = self.world_size
        if self.batch_size % world:
            raise ValueError(
                f"batch_size={self.batch_size} is the global batch and must split evenly over the {world} "
                f"processes of this run; choose a multiple of {world} (e.g. "
                f"{self.batch_size - self.batch_size % world or world}) or a device count that divides {self.batch_size}."
            )
        return self.batch_size // world

    def _device(self) -> torch.device | None:
        trainer = self.trainer
        return trainer.strategy.root_device if trainer is not None else None

    def _batches(self, split: str, shuffle: bool) -> DataLoader | DeviceBatches:
        dataset = self.dataset(split)
        seeds = self.stacked_seeds if (shuffle and self.stacked_seeds) else None
        device = self._device()
        if self._resident_on(device, dataset, split, stacked=seeds is not None):
            assert device is not None
            key = (split, str(device))
            if key not in self._resident:
                self._resident[key] = (dataset.images.to(device), dataset.labels[self.target].to(device))
            images, target = self._resident[key]
            trainer = self.trainer
            order = EpochOrder(len(dataset), seeds if seeds is not None else self._order_seed(), shuffle=shuffle,
                               rank=trainer.global_rank if trainer is not None else 0, world_size=self.world_size)
            return DeviceBatches(images, target, self.process_batch_size, order)
        # one process: shuffle by (seed, epoch) as the resident path does (exact resume); several: Lightning
        # puts its DistributedSampler in place of shuffle=True, which is seeded by (seed, epoch) too
        sampler = EpochSampler(EpochOrder(len(dataset), self._order_seed())) if shuffle and self.world_size == 1 else None
        return DataLoader(
            dataset,
            batch_size=self.process_batch_size,
            shuffle=shuffle if sampler is None else None,
            sampler=sampler,
            num_workers=self.num_workers,
            collate_fn=_collate_prefetched,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def _resident_on(self, device: torch.device | None, dataset: LabelledImages, split: str, stacked: bool) -> bool:
        """Whether ``split`` is served from ``device`` memory; the one place that decides it."""
        if stacked and self.placement == "loader":
            raise ValueError(
                "a stack of models (StackedMLPClassifier) draws one batch order per model from the resident data "
                "path; set --data.init_args.placement=auto (or device)."
            )
        if device is None or self.placement == "loader":
            return False
        if self.placement == "auto" and device.type != "cuda" and not stacked:
            return False  # on the CPU a DataLoader over host tensors is the plain path
        needed = resident_bytes(dataset.images, {self.target: dataset.labels[self.target]})
        free = free_device_memory(device)
        if free is None or needed <= RESIDENT_MEMORY_FRACTION * free:
            return True
        message = (f"{self.name} {split} split needs {needed / 2**20:.1f} MiB on {device} but only "
                   f"{free / 2**20:.1f} MiB are free (the resident path takes at most "
                   f"{RESIDENT_MEMORY_FRACTION:.0%} of it)")
        if self.placement == "device" or stacked:
            raise DeviceMemoryError(f"{message}. Use --data.init_args.placement=loader to stream batches from host "
                                    f"memory, or free device memory.")
        rank_zero_warn(f"{message}: falling back to placement='loader' for this split.")
        return False

    def _order_seed(self) -> int:
        if self.shuffle_seed is not None:
            return self.shuffle_seed
        return int(os.environ.get("PL_GLOBAL_SEED", torch.initial_seed() % 2**31))

    def train_dataloader(self) -> DataLoader | DeviceBatches:
        batches = self._batches("train", shuffle=True)
        rank_zero_info(f"{self.name}: training batches from "
                       f"{'device memory' if isinstance(batches, DeviceBatches) else 'a DataLoader over host memory'}"
                       f" ({self.process_batch_size} per process x {self.world_size} processes)")
        return batches

    def val_dataloader(self) -> Any:
        loaders = [self._batches("val", shuffle=False)]
        if self.test_each_epoch:
            loaders.append(self.test_dataloader())
        return loaders if len(loaders) > 1 else loaders[0]

    def test_dataloader(self) -> DataLoader | DeviceBatches:
        return self._batches("test", shuffle=False)

    @property
    def val_split_names(self) -> list[str]:
        """Names under which the validation loop's loaders are logged, in order."""
        return ["val", "test"] if self.test_each_epoch else ["val"]

    def batch_transform(self, x: torch.Tensor, train: bool) -> torch.Tensor:
        """``uint8`` batch ``[..., C, H, W]`` -> float network input: scale to [0, 1], augment if ``train``, normalize."""
        x = x.float().div_(255.0)
        if train and self.augment:
            lead = x.shape[:-3]  # a stack of models' batches [S, B, C, H, W] is augmented as one batch
            x = self.augment_batch(x.reshape(-1, *x.shape[-3:]), self._augment_generator(x.device))
            x = x.reshape(*lead, *x.shape[-3:])
        return self.normalize(x)

    def _augment_generator(self, device: torch.device) -> torch.Generator:
        """The augmentation's random stream for the current epoch: seeded by (seed, epoch), not drawn from the
        global stream, so that a resumed run augments its next epoch as the straight run does."""
        trainer = self.trainer
        epoch = trainer.current_epoch if trainer is not None else 0
        key = (str(device), epoch)
        cached = self.__dict__.get("_augment_stream")
        if cached is None or cached[0] != key:
            # offset from the batch order's streams (order_generator) so that the two are not the same numbers
            seed = (self._order_seed() * 1_000_003 + epoch + 2**40) % 2**63
            cached = (key, torch.Generator(device=device).manual_seed(seed))
            self.__dict__["_augment_stream"] = cached
        return cached[1]

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        """Pixels in [0, 1] -> what the network was trained on (atlas icons and probes go through this too):
        standardized by the dataset's mean and std, or unchanged with ``input_scaling="none"``."""
        if self.input_scaling == "none":
            return x
        # Cached per device: ``torch.tensor(list, device="cuda")`` copies from pageable host memory, which
        # waits for the GPU, so building these every step kept the CPU from running ahead of it.
        key = (x.device, x.dtype)
        cache = self.__dict__.setdefault("_normalize_cache", {})
        if key not in cache:
            cache[key] = (torch.tensor(self.mean, device=x.device, dtype=x.dtype).view(-1, 1, 1),
                          torch.tensor(self.std, device=x.device, dtype=x.dtype).view(-1, 1, 1))
        mean, std = cache[key]
        return (x - mean) / std

    def on_after_batch_transfer(self, batch: Batch, dataloader_idx: int) -> Batch:
        images, target = batch
        training = self.trainer is not None and self.trainer.training
        return self.batch_transform(images, train=training), target

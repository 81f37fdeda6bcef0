"""DataModules of the paper's datasets, torchvision's classification datasets and any image folder, all on one
base (``ImageDataModule``). The names before ``...DataModule`` (``MNIST``, ``CIFAR10``, ...) stay importable, so
that configs and checkpoints written with them still load."""

from wide_lightning.data.base import DATA_ENV, DatasetFileError, ImageDataModule, LabelledImages, dataset_of
from wide_lightning.data.cifar import CIFAR10, CIFAR10DataModule, CIFAR100Coarse, CIFAR100CoarseDataModule
from wide_lightning.data.image_folder import ImageFolder, ImageFolderDataModule
from wide_lightning.data.mnist import MNIST, MNISTDataModule, TranslatedMNIST, TranslatedMNISTDataModule
from wide_lightning.data.resident import DeviceBatches, DeviceMemoryError, EpochOrder
from wide_lightning.data.torchvision_datasets import (
    EMNIST,
    KMNIST,
    SVHN,
    EMNISTDataModule,
    FashionMNIST,
    FashionMNISTDataModule,
    KMNISTDataModule,
    SVHNDataModule,
    TorchvisionCIFAR10,
    TorchvisionCIFAR10DataModule,
    TorchvisionCIFAR100,
    TorchvisionCIFAR100DataModule,
    TorchvisionClassification,
)

#: The DataModules, each by the name that says what it is.
DATAMODULES = [
    "CIFAR10DataModule",
    "CIFAR100CoarseDataModule",
    "EMNISTDataModule",
    "FashionMNISTDataModule",
    "ImageFolderDataModule",
    "KMNISTDataModule",
    "MNISTDataModule",
    "SVHNDataModule",
    "TorchvisionCIFAR10DataModule",
    "TorchvisionCIFAR100DataModule",
    "TranslatedMNISTDataModule",
]
#: Their earlier names.
EARLIER_NAMES = [name.removesuffix("DataModule") for name in DATAMODULES]

__all__ = DATAMODULES + EARLIER_NAMES + [
    "DATA_ENV",
    "DatasetFileError",
    "DeviceBatches",
    "DeviceMemoryError",
    "EpochOrder",
    "ImageDataModule",
    "LabelledImages",
    "TorchvisionClassification",
    "dataset_of",
]

"""DataModules of the paper's datasets, all on one base (``ImageDataModule``)."""

from wide_lightning.data.base import DATA_ENV, DatasetFileError, ImageDataModule, LabelledImages
from wide_lightning.data.cifar import CIFAR10, CIFAR100Coarse
from wide_lightning.data.mnist import MNIST, TranslatedMNIST
from wide_lightning.data.resident import DeviceBatches, DeviceMemoryError, EpochOrder

__all__ = [
    "CIFAR10",
    "CIFAR100Coarse",
    "DATA_ENV",
    "DatasetFileError",
    "DeviceBatches",
    "DeviceMemoryError",
    "EpochOrder",
    "ImageDataModule",
    "LabelledImages",
    "MNIST",
    "TranslatedMNIST",
]

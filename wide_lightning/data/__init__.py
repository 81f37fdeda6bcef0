"""DataModules of the paper's datasets, all on one base (``ImageDataModule``)."""

from wide_lightning.data.base import DATA_ENV, DatasetFileError, ImageDataModule, LabelledImages
from wide_lightning.data.cifar import CIFAR10, CIFAR100Coarse
from wide_lightning.data.mnist import MNIST, TranslatedMNIST

__all__ = [
    "CIFAR10",
    "CIFAR100Coarse",
    "DATA_ENV",
    "DatasetFileError",
    "ImageDataModule",
    "LabelledImages",
    "MNIST",
    "TranslatedMNIST",
]

"""DataModules of the paper's datasets, torchvision's classification datasets and any image folder, all on one
base (``ImageDataModule``)."""

from wide_lightning.data.base import DATA_ENV, DatasetFileError, ImageDataModule, LabelledImages
from wide_lightning.data.cifar import CIFAR10, CIFAR100Coarse
from wide_lightning.data.image_folder import ImageFolder
from wide_lightning.data.mnist import MNIST, TranslatedMNIST
from wide_lightning.data.resident import DeviceBatches, DeviceMemoryError, EpochOrder
from wide_lightning.data.torchvision_datasets import (
    EMNIST,
    KMNIST,
    SVHN,
    FashionMNIST,
    TorchvisionCIFAR10,
    TorchvisionCIFAR100,
    TorchvisionClassification,
)

__all__ = [
    "CIFAR10",
    "CIFAR100Coarse",
    "DATA_ENV",
    "DatasetFileError",
    "DeviceBatches",
    "DeviceMemoryError",
    "EMNIST",
    "EpochOrder",
    "FashionMNIST",
    "ImageDataModule",
    "ImageFolder",
    "KMNIST",
    "LabelledImages",
    "MNIST",
    "SVHN",
    "TorchvisionCIFAR10",
    "TorchvisionCIFAR100",
    "TorchvisionClassification",
    "TranslatedMNIST",
]

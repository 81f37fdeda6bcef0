"""wide_lightning: train networks of different widths, look inside them, and measure how their features transfer.

A LightningCLI toolkit for "Wider Networks Learn Better Features" (Gilboa & Gur-Ari, 2019).
"""

from wide_lightning.data import (
    CIFAR10,
    EMNIST,
    KMNIST,
    MNIST,
    SVHN,
    CIFAR100Coarse,
    FashionMNIST,
    ImageDataModule,
    ImageFolder,
    TorchvisionCIFAR10,
    TorchvisionCIFAR100,
    TranslatedMNIST,
)
from wide_lightning.tasks import (
    ConvClassifier,
    LinearProbe,
    MLPClassifier,
    RawInputLinear,
    StackedLinearProbe,
    StackedMLPClassifier,
    TorchvisionClassifier,
)

__version__ = "0.1.0"

__all__ = [
    "CIFAR10",
    "CIFAR100Coarse",
    "ConvClassifier",
    "EMNIST",
    "FashionMNIST",
    "ImageDataModule",
    "ImageFolder",
    "KMNIST",
    "LinearProbe",
    "MLPClassifier",
    "MNIST",
    "RawInputLinear",
    "SVHN",
    "StackedLinearProbe",
    "StackedMLPClassifier",
    "TorchvisionCIFAR10",
    "TorchvisionCIFAR100",
    "TorchvisionClassifier",
    "TranslatedMNIST",
]

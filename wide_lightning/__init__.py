"""wide_lightning: train networks of different widths, look inside them, and measure how their features transfer.

A LightningCLI toolkit for "Wider Networks Learn Better Features" (Gilboa & Gur-Ari, 2019).
"""

from wide_lightning.data import CIFAR10, MNIST, CIFAR100Coarse, ImageDataModule, TranslatedMNIST
from wide_lightning.tasks import (
    ConvClassifier,
    LinearProbe,
    MLPClassifier,
    RawInputLinear,
    StackedLinearProbe,
    StackedMLPClassifier,
)

__version__ = "0.1.0"

__all__ = [
    "CIFAR10",
    "CIFAR100Coarse",
    "ConvClassifier",
    "ImageDataModule",
    "LinearProbe",
    "MLPClassifier",
    "MNIST",
    "RawInputLinear",
    "StackedLinearProbe",
    "StackedMLPClassifier",
    "TranslatedMNIST",
]

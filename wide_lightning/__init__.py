"""wide_lightning: train networks of different widths, look inside them, and measure how their features transfer.

A LightningCLI toolkit for "Wider Networks Learn Better Features" (Gilboa & Gur-Ari, 2019).
"""

from wide_lightning.data import *  # noqa: F403  (the DataModules and their earlier names: ``class_path: wide_lightning.X``)
from wide_lightning.data import DATAMODULES, EARLIER_NAMES, ImageDataModule
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

__all__ = DATAMODULES + EARLIER_NAMES + [
    "ConvClassifier",
    "ImageDataModule",
    "LinearProbe",
    "MLPClassifier",
    "RawInputLinear",
    "StackedLinearProbe",
    "StackedMLPClassifier",
    "TorchvisionClassifier",
]

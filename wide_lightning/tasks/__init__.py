"""LightningModules: base training, the linear probe, the raw-input baseline, and their stacked (many-seed) forms."""

from wide_lightning.tasks.backbone import load_backbone_task, load_network
from wide_lightning.tasks.base import ClassificationTask, Diverged, resolve_lr
from wide_lightning.tasks.classifier import ConvClassifier, MLPClassifier, TorchvisionClassifier
from wide_lightning.tasks.probe import LinearProbe, ProbeNet, RawInputLinear
from wide_lightning.tasks.stacked import StackedLinearProbe, StackedMLPClassifier

__all__ = [
    "ClassificationTask",
    "ConvClassifier",
    "Diverged",
    "LinearProbe",
    "MLPClassifier",
    "ProbeNet",
    "RawInputLinear",
    "StackedLinearProbe",
    "StackedMLPClassifier",
    "TorchvisionClassifier",
    "load_backbone_task",
    "load_network",
    "resolve_lr",
]

"""LightningModules: base training, the linear probe, the raw-input baseline, and their stacked (many-seed) forms."""

from wide_lightning.tasks.base import CHECKPOINT_KEY, ClassificationTask, Diverged, resolve_lr
from wide_lightning.tasks.classifier import ConvClassifier, MLPClassifier, TorchvisionClassifier
from wide_lightning.tasks.probe import (
    CheckpointKindError,
    LinearProbe,
    ProbeNet,
    RawInputLinear,
    load_backbone_task,
    load_checkpoint_dict,
)
from wide_lightning.tasks.stacked import StackedLinearProbe, StackedMLPClassifier

__all__ = [
    "CHECKPOINT_KEY",
    "CheckpointKindError",
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
    "load_checkpoint_dict",
    "resolve_lr",
]

"""Fine-tuning the last layer on a new task (Section 5), and the raw-input linear baseline (Figure 4, dashed)."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities.seed import isolate_rng
from torch import nn

from wide_lightning.nets import PixelLinear, init_head_
from wide_lightning.tasks.base import CHECKPOINT_KEY, ClassificationTask, LearningRate, init_arguments


class CheckpointKindError(ValueError):
    """A checkpoint that is missing, unreadable, or not of the kind asked for."""


def load_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointKindError(f"checkpoint {path} does not exist; pass the .ckpt file a `wide-lightning fit` run wrote.")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointKindError(f"checkpoint {path} cannot be read ({error!r}); it is truncated or not a checkpoint.") from error
    if not isinstance(checkpoint, dict) or CHECKPOINT_KEY not in checkpoint:
        raise CheckpointKindError(
            f"{path} is not a wide_lightning checkpoint (no {CHECKPOINT_KEY!r} entry); expected a checkpoint "
            f"written by `wide-lightning fit` with a ConvClassifier or MLPClassifier model."
        )
    return checkpoint


def load_backbone_task(path: str | Path, purpose: str = "a linear probe") -> ClassificationTask:
    """The base-training task saved in ``path`` (a ConvClassifier or MLPClassifier), in eval mode on the CPU.

    ``purpose`` names what needs it in the error for a checkpoint of another kind.
    """
    checkpoint = load_checkpoint_dict(path)
    marker = checkpoint[CHECKPOINT_KEY]
    module_name, _, class_name = marker["task"].rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name, None)
    if cls is None or not issubclass(cls, ClassificationTask):
        raise CheckpointKindError(f"{path} names task {marker['task']!r}, which wide_lightning does not know.")
    if not marker.get("is_backbone", False):
        backbone = (checkpoint.get("hyper_parameters") or {}).get("backbone_checkpoint")
        hint = f" Its frozen backbone is {backbone}: use that." if backbone else ""
        raise CheckpointKindError(
            f"{path} is a {class_name} checkpoint; {purpose} needs a base-training checkpoint "
            f"(ConvClassifier or MLPClassifier), such as runs/<dataset>/<config>/checkpoints/last.ckpt.{hint}"
        )
    task = cls.load_from_checkpoint(path, map_location="cpu", weights_only=False)
    task.training_data = marker.get("datamodule")  # the DataModule it was trained on, as recorded
    return task.eval()


def input_scaling_of(training_data: dict[str, Any] | None) -> str:
    """The ``input_scaling`` a recorded DataModule used (checkpoints from before the option: ``dataset``)."""
    return ((training_data or {}).get("init_args") or {}).get("input_scaling") or "dataset"


def check_probe_scaling(training_data: dict[str, Any] | None, datamodule: Any, path: str | Path) -> None:
    """A probe must feed its frozen backbone inputs scaled as in the backbone's training."""
    trained, given = input_scaling_of(training_data), getattr(datamodule, "input_scaling", "dataset")
    if trained != given:
        raise ValueError(
            f"the backbone in {path} was trained on inputs with input_scaling={trained!r}, but the probe's data "
            f"use {given!r}; set --data.init_args.input_scaling={trained} so the frozen features see what they "
            f"were trained on."
        )


def check_probe_input(backbone: ClassificationTask, input_shape: tuple[int, ...], path: str | Path) -> None:
    """A probe's data must have the input shape its backbone was trained on (the class count may differ)."""
    if tuple(backbone.net.input_shape) != tuple(input_shape):
        raise ValueError(
            f"the backbone in {path} takes inputs of shape {tuple(backbone.net.input_shape)}, "
            f"but the data give {tuple(input_shape)}; probe it on data of the dataset it was trained on."
        )


def with_backbone_facts(facts: dict[str, Any], backbone_hparams: dict[str, Any]) -> dict[str, Any]:
    """A probe's summary: its own facts, the backbone's hyper-parameters, and the backbone's depth (Figure 4's x)."""
    facts.update({f"backbone/{k}": v for k, v in backbone_hparams.items()})
    facts["depth"] = backbone_hparams.get("depth")
    return facts


def probe_head(width: int, num_classes: int, seed: int | None) -> nn.Linear:
    """A fresh head with the paper's last-layer initialization, drawn from ``seed`` if given.

    A seeded head does not depend on what consumed the global random stream before it (the base
    training of a transfer run, the number of DDP processes), and is the head a stack's member of
    that seed gets (``StackedLinearProbe``).
    """
    head = nn.Linear(width, num_classes)
    if seed is None:
        init_head_(head)
    else:
        with isolate_rng():
            torch.manual_seed(seed)
            init_head_(head)
    return head


class ProbeNet(nn.Module):
    """Frozen ``features`` under a fresh trainable ``head``."""

    def __init__(self, features: nn.Module, head: nn.Linear, input_shape: tuple[int, ...]) -> None:
        super().__init__()
        self.features = features.requires_grad_(False).eval()
        self.head = head
        self.width = head.in_features
        self.input_shape = tuple(input_shape)

    def train(self, mode: bool = True) -> "ProbeNet":
        super().train(mode)
        self.features.eval()  # frozen means frozen: no dropout, no batch-norm updates, ever
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            h = self.features(x)
        return self.head(h)


class LinearProbe(ClassificationTask):
    """A fresh linear head on the frozen features of a trained classifier (Section 5).

    Args:
        backbone_checkpoint: the base-training ``.ckpt`` to take the features from (its own
            argument, not ``--ckpt_path``, which resumes *this* run).
        num_classes, input_shape: linked from the DataModule (the new task); the class count may differ
            from the backbone's, the input shape may not.
        lr: learning rate of the head (the paper uses the base-training rate; it is silent on probes).
        momentum: SGD momentum.
        head_seed: draw the head's initialization from this seed (a transfer run passes its
            ``seed_everything``); ``None`` draws it from the global random stream.

    Use a DataModule with ``test_each_epoch: true``: the paper reports the best test accuracy over
    fine-tuning epochs, logged here as ``test/acc_best``.
    """

    def __init__(
        self,
        backbone_checkpoint: str,
        num_classes: int,
        input_shape: tuple[int, int, int],
        lr: LearningRate = 0.01,
        momentum: float = 0.9,
        head_seed: int | None = None,
    ) -> None:
        super().__init__(num_classes, lr, momentum)
        self.save_hyperparameters()
        backbone = load_backbone_task(backbone_checkpoint)
        check_probe_input(backbone, input_shape, backbone_checkpoint)
        head = probe_head(backbone.net.width, num_classes, head_seed)
        self.net = ProbeNet(backbone.net.features, head, input_shape)
        self.backbone_hparams = init_arguments(backbone)
        self.backbone_data = backbone.training_data
        self.lr

    def setup(self, stage: str) -> None:
        if self._trainer is not None and self.trainer.datamodule is not None:
            check_probe_scaling(self.backbone_data, self.trainer.datamodule, self.hparams.backbone_checkpoint)

    def summary(self) -> dict[str, Any]:
        return with_backbone_facts(super().summary(), self.backbone_hparams)


class RawInputLinear(ClassificationTask):
    """A linear classifier on the raw pixels: the dashed reference line of Figure 4."""

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        lr: LearningRate = 0.01,
        momentum: float = 0.9,
    ) -> None:
        super().__init__(num_classes, lr, momentum)
        self.save_hyperparameters()
        self.net = PixelLinear(input_shape, num_classes)
        self.lr

"""Fine-tuning the last layer on a new task (Section 5), and the raw-input linear baseline (Figure 4, dashed)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch.utilities import rank_zero_warn
from lightning.pytorch.utilities.seed import isolate_rng
from torch import nn

from wide_lightning.activations import layer_reader
from wide_lightning.data.base import dataset_of
from wide_lightning.nets import PixelLinear, init_head_
from wide_lightning.checkpoints import init_arguments
from wide_lightning.parameterization import init_ntk_
from wide_lightning.tasks.backbone import load_network, untrained_copy
from wide_lightning.tasks.base import ClassificationTask


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


#: How a probe head's weights scale with the width of the features it reads: ``standard`` (the paper's
#: ``nn.Linear``) or ``ntk`` (weights N(0, 1), the output scaled by 1/sqrt(width)). The two start as the
#: same function; a step of one rate moves an ``ntk`` head's logits alike at every width (a standard
#: head's step grows with ||features||^2). Measured on the lazy-limit transfer, the standard head at one
#: rate did as well or better at every width (docs/lazy_limit.md#learning-rates).
PROBE_HEADS = ("standard", "ntk")


def check_probe_head(value: Any) -> str:
    if value not in PROBE_HEADS:
        raise ValueError(f"head_parameterization must be 'standard' or 'ntk', got {value!r}: a probe head is one "
                         f"linear layer on frozen features, with no base width for a μP readout.")
    return value


def probe_head(width: int, num_classes: int, seed: int | None, parameterization: str = "standard") -> nn.Linear:
    """A fresh head with the paper's last-layer initialization, drawn from ``seed`` if given.

    A seeded head does not depend on what consumed the global random stream before it (the base
    training of a transfer run, the number of DDP processes), and is the head a stack's member of
    that seed gets (``StackedLinearProbe``). An ``ntk`` head's effective weights are the ``standard``
    head's of the same seed.
    """
    init = init_head_ if check_probe_head(parameterization) == "standard" else (lambda head: init_ntk_(head, head))
    head = nn.Linear(width, num_classes)
    if seed is None:
        init(head)
    else:
        with isolate_rng():
            torch.manual_seed(seed)
            init(head)
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
    """A fresh linear head on the frozen features of a trained network (Section 5), at any layer.

    Args:
        backbone_checkpoint: the base-training ``.ckpt`` to take the features from (its own
            argument, not ``--ckpt_path``, which resumes *this* run); with ``backbone_model``, that
            module's checkpoint (or ``None`` with ``backbone_weights``).
        num_classes, input_shape: linked from the DataModule (the new task); the class count may differ
            from the backbone's, the input shape may not.
        lr: learning rate of the head (the paper uses the base-training rate; it is silent on probes).
        momentum: SGD momentum.
        head_seed: draw the head's initialization from this seed (a transfer run passes its
            ``seed_everything``); ``None`` draws it from the global random stream.
        head_parameterization: ``standard`` (the paper's head) or ``ntk`` (the same function at
            initialization, its output scaled by 1/sqrt(width); compared on the lazy-limit transfer in
            ``docs/lazy_limit.md#learning-rates``).
        untrained_seed: freeze the backbone's architecture initialized afresh from this seed instead of its
            trained weights: the untrained control, the floor that training's features are measured against (a
            transfer run's ``probe.control: untrained`` passes its own seed, so the features are its ``h_0``).
        layer: the frozen layer, by its module path in the backbone (``features``: our networks'
            penultimate layer, the paper's; e.g. ``net.features.3``, ``layer4``).
        pool: how a convolutional layer ``[B, C, H, W]`` becomes the head's input: ``mean`` (global
            average pooling, ``C`` values; the default), ``flatten`` (every position, ``C*H*W``) or
            ``centre`` (the centre position). Vector layers are taken as they are.
        backbone_model: a backbone that is not ours, by its dotted path: a LightningModule class (loaded
            from ``backbone_checkpoint``) or a function or class building an ``nn.Module``
            (``torchvision.models.resnet18``); see ``tasks/backbone.py``.
        backbone_weights: with a torchvision ``backbone_model``: a weights name (``DEFAULT``) or a state-dict file.

    Use a DataModule with ``test_each_epoch: true``: the paper reports the best test accuracy over
    fine-tuning epochs, logged here as ``test/acc_best``. A backbone trained on another dataset than
    the probe's is allowed (it is a transfer) and said in the log and the summary.
    """

    def __init__(
        self,
        backbone_checkpoint: str | None,
        num_classes: int,
        input_shape: tuple[int, int, int],
        head_seed: int | None = None,
        head_parameterization: Literal["standard", "ntk"] = "standard",
        untrained_seed: int | None = None,
        layer: str = "features",
        pool: Literal["mean", "flatten", "centre"] = "mean",
        backbone_model: str | None = None,
        backbone_weights: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, input_shape, **kwargs)

    def configure_network(self) -> ProbeNet:
        h = self.hparams
        check_probe_head(h.head_parameterization)
        if h.pool not in ("mean", "flatten", "centre"):
            raise ValueError(f"pool must be 'mean', 'flatten' or 'centre', got {h.pool!r}.")
        backbone = load_network(h.backbone_checkpoint, h.backbone_model, h.backbone_weights)
        if h.backbone_model is None:
            check_probe_input(backbone, h.input_shape, h.backbone_checkpoint)
        if h.untrained_seed is not None:
            if not isinstance(backbone, ClassificationTask):
                raise ValueError(f"untrained_seed re-initializes one of our networks; {h.backbone_model} is read as given.")
            with isolate_rng():
                backbone = untrained_copy(backbone, h.untrained_seed)
        features = layer_reader(backbone, h.layer, position=h.pool)
        with torch.no_grad():
            width = features.eval()(torch.zeros(2, *h.input_shape)).shape[1]
        self.backbone_hparams = init_arguments(backbone) if isinstance(backbone, ClassificationTask) else {}
        self.backbone_data = getattr(backbone, "training_data", None)
        self.backbone_name = h.backbone_checkpoint or h.backbone_model
        return ProbeNet(features, probe_head(width, h.num_classes, h.head_seed, h.head_parameterization),
                        h.input_shape)

    def setup(self, stage: str) -> None:
        if self._trainer is not None and self.trainer.datamodule is not None:
            datamodule = self.trainer.datamodule
            check_probe_scaling(self.backbone_data, datamodule, self.backbone_name)
            trained_on = (self.backbone_data or {}).get("class_path")
            probed_on = f"{type(datamodule).__module__}.{type(datamodule).__qualname__}"
            if trained_on is not None and dataset_of(trained_on) != dataset_of(probed_on):
                rank_zero_warn(f"transfer across datasets: the backbone {self.backbone_name} was trained on "
                               f"{dataset_of(trained_on)}, the probe trains on {dataset_of(probed_on)}.")
            self.datasets = {"backbone_dataset": trained_on or "unknown", "probe_dataset": probed_on}

    def facts(self) -> dict[str, Any]:
        facts = with_backbone_facts(super().facts(), self.backbone_hparams)
        facts.update(getattr(self, "datasets", {}), layer=self.hparams.layer)
        return facts


class RawInputLinear(ClassificationTask):
    """A linear classifier on the raw pixels: the dashed reference line of Figure 4."""

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, input_shape, **kwargs)

    def configure_network(self) -> PixelLinear:
        return PixelLinear(self.hparams.input_shape, self.hparams.num_classes)

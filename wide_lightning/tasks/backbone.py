"""Which trained network a probe or an atlas reads: our checkpoints, someone else's LightningModule, a torchvision model.

``load_backbone_task`` reads a checkpoint of ``wide-lightning fit`` (it records its task and DataModule);
``load_network`` also builds networks that are not ours, by their dotted class or function path.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import LightningModule
from torch import nn

from wide_lightning.tasks.base import CHECKPOINT_KEY, ClassificationTask


class CheckpointKindError(ValueError):
    """A checkpoint that is missing, unreadable, or not of the kind asked for."""


def read_checkpoint(path: str | Path) -> Any:
    """The contents of a checkpoint file, with one sentence for a missing or unreadable one."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointKindError(f"checkpoint {path} does not exist; pass the .ckpt file a `wide-lightning fit` run wrote.")
    try:
        return torch.load(path, map_location="cpu", weights_only=False)
    except Exception as error:
        raise CheckpointKindError(f"checkpoint {path} cannot be read ({error!r}); it is truncated or not a checkpoint.") from error


def load_checkpoint_dict(path: str | Path) -> dict[str, Any]:
    """A checkpoint written by ``wide-lightning fit`` (it carries our marker), else a clear error."""
    checkpoint = read_checkpoint(path)
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


def import_object(path: str) -> object:
    """The object a dotted path names (``torchvision.models.resnet18``, ``my_package.MyModule``)."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"--model {path!r} names nothing importable ({error}); give a class or function by its "
                         f"full dotted path, e.g. torchvision.models.resnet18 or my_package.MyLightningModule.") from None


def load_network(checkpoint: str | None, model: str | None = None, weights: str | None = None,
                 purpose: str = "a linear probe") -> nn.Module:
    """The network a probe or an atlas (``purpose``, for the errors) reads, in eval mode on the CPU.

    Without ``model``: a ``wide-lightning fit`` checkpoint (its task). With ``model``: a LightningModule
    class (loaded from ``checkpoint``), or a class or function that builds an ``nn.Module`` (a torchvision
    model): ``weights`` is then a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``; downloaded
    once into ``$TORCH_HOME``) or a file holding a state dict; a ``checkpoint`` gives its ``state_dict``.
    """
    if model is None:
        if checkpoint is None:
            raise ValueError("name the network: --checkpoint X.ckpt (a `wide-lightning fit` checkpoint), or "
                             "--model <class path> with --checkpoint or --weights for a network of your own.")
        return load_backbone_task(checkpoint, purpose=purpose)
    target = import_object(model)
    if isinstance(target, type) and issubclass(target, LightningModule):
        if checkpoint is None:
            raise ValueError(f"--model {model} is a LightningModule: give its --checkpoint.")
        read_checkpoint(checkpoint)
        return target.load_from_checkpoint(checkpoint, map_location="cpu", weights_only=False).eval()
    if not callable(target):
        raise ValueError(f"--model {model} is a {type(target).__name__}, not a class or function that builds a network.")
    named_weights = weights is not None and not Path(weights).exists()
    network = target(weights=weights) if named_weights else target()
    if not isinstance(network, nn.Module):
        raise ValueError(f"--model {model} built a {type(network).__name__}, not a torch.nn.Module.")
    state = None
    if weights is not None and not named_weights:
        state = torch.load(weights, map_location="cpu", weights_only=True)
    elif checkpoint is not None:
        loaded = read_checkpoint(checkpoint)
        state = loaded.get("state_dict", loaded) if isinstance(loaded, dict) else None
        if state is None:
            raise CheckpointKindError(f"{checkpoint} holds a {type(loaded).__name__}, not a state dict for {model}.")
    if state is not None:
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            raise ValueError(f"the weights in {weights or checkpoint} do not fit {model}: {str(error).splitlines()[0]}") from None
    return network.eval()

"""Which trained network a probe or an atlas reads: our checkpoints, someone else's LightningModule, a torchvision model.

``load_backbone_task`` builds the task of a ``wide-lightning fit`` checkpoint (it records its task and
DataModule); ``load_network`` also builds networks that are not ours, by their dotted class or
function path. Both take a path or a ``CheckpointRecord`` already read (``wide_lightning/checkpoints.py``).
"""

from __future__ import annotations

from pathlib import Path

import torch
from lightning.pytorch import LightningModule
from torch import nn

from wide_lightning.checkpoints import CheckpointKindError, CheckpointRecord, construct, import_object, read_checkpoint
from wide_lightning.tasks.base import ClassificationTask

Checkpoint = str | Path | CheckpointRecord


def as_record(checkpoint: Checkpoint) -> CheckpointRecord:
    return checkpoint if isinstance(checkpoint, CheckpointRecord) else read_checkpoint(checkpoint)


def load_backbone_task(checkpoint: Checkpoint, purpose: str = "a linear probe") -> ClassificationTask:
    """The base-training task saved in ``checkpoint`` (a ConvClassifier or MLPClassifier), in eval mode on the CPU.

    ``purpose`` names what needs it in the error for a checkpoint of another kind.
    """
    record = as_record(checkpoint).require_ours()
    cls = record.task_class()
    if not issubclass(cls, ClassificationTask):
        raise CheckpointKindError(f"{record.path} names task {record.task!r}, which wide_lightning does not know.")
    if not record.is_backbone:
        backbone = record.hyper_parameters.get("backbone_checkpoint")
        hint = f" Its frozen backbone is {backbone}: use that." if backbone else ""
        raise CheckpointKindError(
            f"{record.path} is a {record.task_name} checkpoint; {purpose} needs a base-training checkpoint "
            f"(ConvClassifier or MLPClassifier), such as runs/<dataset>/<config>/checkpoints/last.ckpt.{hint}"
        )
    task = record.build(cls)
    task.training_data = record.datamodule  # the DataModule it was trained on, as recorded
    return task


def untrained_copy(task: ClassificationTask, seed: int) -> ClassificationTask:
    """The untrained control (Appendix A.1): ``task``'s architecture initialized afresh from ``seed``, in eval mode,
    with none of its trained weights (nor a torchvision network's pretrained ones). Seeds the global stream:
    wrap it in ``isolate_rng`` where the caller's stream must not change."""
    hyper_parameters = dict(task.hparams)
    if hyper_parameters.get("weights") is not None:  # a TorchvisionClassifier from ImageNet weights: untrained means random
        hyper_parameters["weights"] = None
    torch.manual_seed(seed)
    fresh = construct(type(task), hyper_parameters).eval()
    fresh.training_data = getattr(task, "training_data", None)
    return fresh


def load_network(checkpoint: Checkpoint | None, model: str | None = None, weights: str | None = None,
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
        return as_record(checkpoint).build(target)
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
        record = as_record(checkpoint)
        state = record.state_dict if "state_dict" in record.contents else record.contents
        if "object" in record.contents and len(record.contents) == 1:
            raise CheckpointKindError(f"{record.path} holds a {type(record.contents['object']).__name__}, "
                                      f"not a state dict for {model}.")
    if state is not None:
        try:
            network.load_state_dict(state)
        except RuntimeError as error:
            source = weights or as_record(checkpoint).path
            raise ValueError(f"the weights in {source} do not fit {model}: {str(error).splitlines()[0]}") from None
    return network.eval()

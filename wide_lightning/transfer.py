"""The probe phase of a transfer run (one point of Figure 4, Section 5): after base training, a fresh
linear head on the frozen features for a new target, logging into the same W&B run under ``probe/``."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Literal

from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from wide_lightning.checkpoints import CHECKPOINT_DEFAULTS, BestAndLastCheckpoint, init_arguments
from wide_lightning.files import use_atomic_checkpoints
from wide_lightning.loggers import PrefixedLogger
from wide_lightning.record import scalars
from wide_lightning.speed import STEP_LEVERS
from wide_lightning.tasks.probe import LinearProbe
from wide_lightning.tasks.stacked import StackedLinearProbe, StackedTask

#: The base Trainer's settings the probe's Trainer does not take: it has its own callbacks and checkpoints,
#: and logs through the base run's loggers (prefixed).
NOT_FOR_THE_PROBE = ("callbacks", "logger", "enable_checkpointing")


@dataclass
class ProbeSpec:
    """The new task of a transfer run (Section 5); no ``target``, no probe.

    Args:
        target: the DataModule's label for the new task (``digit`` for translated MNIST, ``fine``
            for CIFAR-100 coarse).
        lr: the probe head's learning rate (default: the base run's resolved rate).
        max_epochs: probe epochs (default: the base run's).
        backbone: which base checkpoint the probe freezes: ``last`` (the network at the end of
            training, default) or ``best`` (best validation accuracy).
        head_parameterization: the probe head's, ``standard`` (the paper's) or ``ntk`` (one learning
            rate for features of any width; ``LinearProbe``).
        control: ``untrained``: a second probe, of the same network at its initialization (the run's seed, so
            its features are the run's own starting point), logged under ``probe_untrained/``: the floor that
            the trained features are measured against, as the atlas's ``--control untrained``.
    """

    target: str | None = None
    lr: float | None = None
    max_epochs: int | None = None
    backbone: Literal["last", "best"] = "last"
    head_parameterization: Literal["standard", "ntk"] = "standard"
    control: Literal["none", "untrained"] = "none"


def check_probe_spec(spec: ProbeSpec, model_class_path: str | None) -> None:
    """Refuse, before training, a probe the base model cannot take."""
    stacked = (model_class_path or "").rpartition(".")[2].startswith("Stacked")
    if spec.target is None or not stacked:
        return
    for name, usual in (("head_parameterization", "standard"), ("control", "none")):
        value = getattr(spec, name)
        if value != usual:
            raise ValueError(f"probe.{name}={value!r} is not available to a stacked model ({model_class_path}), whose "
                             f"probes read each member's trained network with a standard head; train its networks as "
                             f"separate runs, or set probe.{name} to {usual!r}.")


def backbone_checkpoint(spec: ProbeSpec, trainer: Trainer) -> str:
    """The base checkpoint the probe freezes (under ``fast_dev_run``, which saves none: the weights at hand)."""
    callback = trainer.checkpoint_callback
    backbone = (callback.last_model_path if spec.backbone == "last" else callback.best_model_path) if callback else ""
    if trainer.fast_dev_run:
        backbone = os.path.join(callback.dirpath if callback else trainer.default_root_dir, "fast_dev_run.ckpt")
        trainer.save_checkpoint(backbone)
    if not backbone or not os.path.exists(backbone):
        raise RuntimeError(f"the transfer run has no {spec.backbone} checkpoint to probe ({backbone!r}).")
    return backbone


def run_probe(spec: ProbeSpec, trainer: Trainer, model: LightningModule, datamodule: LightningDataModule,
              trainer_settings: dict[str, Any], seed: Any, untrained: bool = False) -> dict[str, Any]:
    """Train the probe for ``spec.target`` on the frozen features ``trainer`` just trained; its record.

    ``trainer_settings`` are the base Trainer's arguments as LightningCLI instantiated them: the probe
    trains on the same devices, precision and limits, with ``spec.max_epochs`` if given. ``untrained``: the
    control, the same network as the run's seed initialized it (``probe_untrained/``, ``checkpoints/probe_untrained``).
    """
    section = "probe_untrained" if untrained else "probe"
    backbone = backbone_checkpoint(spec, trainer)  # the untrained control: its architecture
    data = type(datamodule)(**{**init_arguments(datamodule), "target": spec.target, "test_each_epoch": True})
    kwargs = dict(num_classes=data.num_classes, input_shape=tuple(data.input_shape),
                  lr=spec.lr if spec.lr is not None else model.lr, momentum=model.momentum)
    if isinstance(model, StackedTask):  # each member's head is seeded with the member's seed
        probe = StackedLinearProbe(backbone, **kwargs)
    else:  # the run's seed, not whatever base training left in the random stream
        seed = seed if type(seed) is int else None
        probe = LinearProbe(backbone, **kwargs, head_seed=seed, head_parameterization=spec.head_parameterization,
                            untrained_seed=(seed or 0) if untrained else None)
    settings = {k: v for k, v in trainer_settings.items() if k not in NOT_FOR_THE_PROBE}
    if spec.max_epochs is not None:
        settings["max_epochs"] = spec.max_epochs
    callback = trainer.checkpoint_callback
    checkpoint = BestAndLastCheckpoint(dirpath=os.path.join(callback.dirpath, section), **CHECKPOINT_DEFAULTS)
    loggers = [PrefixedLogger(logger, f"{section}/") for logger in trainer.loggers]
    levers = [c for c in trainer.callbacks if isinstance(c, STEP_LEVERS)]  # the probe trains as fast
    probe_trainer = Trainer(**settings, callbacks=[checkpoint, *levers], logger=loggers or False)
    use_atomic_checkpoints(probe_trainer)
    network = "the untrained network of" if untrained else "the frozen features of"
    rank_zero_info(f"transfer: linear probe for target {spec.target!r} on {network} {backbone}")
    probe_trainer.fit(probe, datamodule=data)
    return {
        "target": spec.target, "backbone_checkpoint": backbone, "checkpoint": checkpoint.best_model_path,
        "lr": probe.lr, "max_epochs": probe_trainer.max_epochs, "head_parameterization": spec.head_parameterization,
        **scalars(probe_trainer.callback_metrics),
    }

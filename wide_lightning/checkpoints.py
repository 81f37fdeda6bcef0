"""Checkpoints: what ``fit`` writes into each one, and the one reader every consumer uses.

Writing: ``BestAndLastCheckpoint`` keeps the best epochs by the monitored metric and ``last.ckpt``
at the end of every epoch; ``marker`` is the ``wide_lightning`` entry a task adds to each checkpoint
(its task class, the DataModule it trained on and where the files were, its W&B run, a stack's seeds).

Reading: ``read_checkpoint(path)`` loads a file once (memory-mapped: a large network's weights are
not copied into memory until used) into a ``CheckpointRecord``, which resume, the probe, the atlas
command and stacked backbones all read: its task, hyper-parameters, data, W&B run, seeds and
parameterization, and ``build()`` for the module with its weights.
"""

from __future__ import annotations

import glob
import importlib
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.core.mixins.hparams_mixin import _given_hyperparameters_context

from wide_lightning.data.base import DATA_ENV, dataset_of
from wide_lightning.run_folder import RUN_FILE

#: The checkpoint key that marks a wide_lightning checkpoint and names its task class.
CHECKPOINT_KEY = "wide_lightning"


class CheckpointKindError(ValueError):
    """A checkpoint that is missing, unreadable, or not of the kind asked for."""


def class_path(obj: Any) -> str:
    """``module.QualName`` of an object's class (what a checkpoint records and ``import_object`` reads)."""
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


def import_object(path: str, flag: str = "--model") -> Any:
    """The object a dotted path names (``torchvision.models.resnet18``, ``my_package.MyModule``)."""
    module_name, _, name = path.rpartition(".")
    try:
        return getattr(importlib.import_module(module_name), name)
    except (ImportError, AttributeError, ValueError) as error:
        raise ValueError(f"{flag} {path!r} names nothing importable ({error}); give a class or function by its "
                         f"full dotted path, e.g. torchvision.models.resnet18 or my_package.MyLightningModule.") from None


def init_arguments(module: Any) -> dict[str, Any]:
    """A module's saved init arguments without the private entries LightningCLI adds (``_class_path``...)."""
    return {k: v for k, v in dict(getattr(module, "hparams", {})).items() if not k.startswith("_")}


def construct(cls: type, hyper_parameters: dict[str, Any]) -> LightningModule:
    """``cls`` built from saved hyper-parameters, which it records as its own.

    As Lightning's own loading does: not the hyper-parameters of an instantiation around it (a LightningCLI
    ``fit``, or a probe building its backbone, or that backbone's untrained copy, inside its ``__init__``).
    """
    parameters = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind == p.VAR_KEYWORD for p in parameters.values())
    arguments = {k: v for k, v in hyper_parameters.items() if not k.startswith("_") and (takes_any or k in parameters)}
    saved = {k: v for k, v in hyper_parameters.items() if k != "_instantiator"}
    with _given_hyperparameters_context(hparams=saved, instantiator=hyper_parameters.get("_instantiator")):
        return cls(**arguments)


def marker(task: LightningModule, datamodule: Any, wandb_run_id: str | None, **extra: Any) -> dict[str, Any]:
    """The ``wide_lightning`` entry of a checkpoint of ``task`` (``extra``: a stack's ``stacked_seeds``)."""
    entry: dict[str, Any] = {"task": class_path(task), "is_backbone": bool(getattr(task, "is_backbone", False))}
    if datamodule is not None:  # lets `wide-lightning-atlas` rebuild the data from the checkpoint alone
        entry["datamodule"] = {"class_path": class_path(datamodule), "init_args": init_arguments(datamodule),
                               # where the files were, however they were found (flag, variable, ./data)
                               "data_dir": str(Path(datamodule.data_dir).resolve())}
    if wandb_run_id is not None:  # a resumed run continues this W&B run
        entry["wandb_run_id"] = wandb_run_id
    entry.update(extra)
    return entry


@dataclass(frozen=True)
class CheckpointRecord:
    """One checkpoint file, read once: what every consumer needs to know of it."""

    path: Path
    contents: dict[str, Any]

    @property
    def marker(self) -> dict[str, Any] | None:
        return self.contents.get(CHECKPOINT_KEY)

    @property
    def is_ours(self) -> bool:
        """Written by ``wide-lightning fit`` (it carries the marker)."""
        return isinstance(self.marker, dict)

    @property
    def task(self) -> str | None:
        """The task's class path (``wide_lightning.tasks.classifier.ConvClassifier``)."""
        return (self.marker or {}).get("task")

    @property
    def task_name(self) -> str:
        return (self.task or "an unknown task").rpartition(".")[2]

    @property
    def is_backbone(self) -> bool:
        return bool((self.marker or {}).get("is_backbone", False))

    @property
    def hyper_parameters(self) -> dict[str, Any]:
        """As saved, LightningCLI's private entries (``_class_path``) included."""
        return dict(self.contents.get("hyper_parameters") or {})

    @property
    def parameterization(self) -> str:
        """How the network's weights scale with width (checkpoints from before the option: ``standard``)."""
        return self.hyper_parameters.get("parameterization", "standard")

    @property
    def datamodule(self) -> dict[str, Any] | None:
        """The DataModule the task trained on: ``class_path``, ``init_args`` and ``data_dir``."""
        return (self.marker or {}).get("datamodule")

    @property
    def epochs_done(self) -> int | None:
        """The epochs trained, Lightning's own count (``epoch_progress.current.processed``, what its fit loop
        compares with ``max_epochs``)."""
        progress = ((self.contents.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}
        return (progress.get("current") or {}).get("processed")

    @property
    def wandb_run_id(self) -> str | None:
        return (self.marker or {}).get("wandb_run_id")

    @property
    def seeds(self) -> list[int] | None:
        """A stack's members' seeds (``None`` for a single network)."""
        return (self.marker or {}).get("stacked_seeds")

    @property
    def state_dict(self) -> dict[str, torch.Tensor] | None:
        state = self.contents.get("state_dict")
        return state if isinstance(state, dict) else None

    def require_ours(self) -> "CheckpointRecord":
        if not self.is_ours:
            raise CheckpointKindError(
                f"{self.path} is not a wide_lightning checkpoint (no {CHECKPOINT_KEY!r} entry); expected a checkpoint "
                f"written by `wide-lightning fit` with a ConvClassifier or MLPClassifier model.")
        return self

    def task_class(self) -> type:
        cls = import_object(self.task, flag="the checkpoint's task") if self.task else None
        if not isinstance(cls, type) or not issubclass(cls, LightningModule):
            raise CheckpointKindError(f"{self.path} names task {self.task!r}, which wide_lightning does not know.")
        return cls

    def build(self, cls: type | None = None) -> LightningModule:
        """The LightningModule saved here (``cls``, default the recorded task), with its weights, in eval mode.

        What ``cls.load_from_checkpoint(path)`` does, from the contents already read: the module built
        from its saved hyper-parameters, ``on_load_checkpoint``, then the weights, strictly.
        """
        module = construct(cls or self.task_class(), self.hyper_parameters)
        module.on_load_checkpoint(self.contents)
        if self.state_dict is None:
            raise CheckpointKindError(f"{self.path} holds no state_dict: it is not a LightningModule checkpoint.")
        module.load_state_dict(self.state_dict)
        return module.eval()

    def build_datamodule(self, data_dir: str | None = None, log: Callable[[str], None] = print) -> Any:
        """The DataModule the task trained on (``build_datamodule``)."""
        return build_datamodule(self.require_ours().datamodule, self.path, data_dir, log)


def build_datamodule(recorded: dict[str, Any] | None, path: str | Path, data_dir: str | None = None,
                     log: Callable[[str], None] = print) -> Any:
    """The DataModule a checkpoint at ``path`` recorded, reading its files from ``data_dir`` if given, else from
    ``$WIDE_LIGHTNING_DATA`` if set (what the errors about missing files advise), else from the folder the run
    used (recorded) while it still holds them, else from ``./data``. Says which folder it reads."""
    if recorded is None:
        raise CheckpointKindError(f"{path} does not record its DataModule; name it, e.g. --data MNIST --data_dir DIR.")
    cls = import_object(recorded["class_path"], flag="the checkpoint's DataModule")
    init_args = dict(recorded["init_args"])
    used = recorded.get("data_dir")
    if data_dir is not None:
        init_args["data_dir"] = data_dir
    elif os.environ.get(DATA_ENV):
        init_args["data_dir"] = os.environ[DATA_ENV]
    elif used and Path(used).is_dir() and any(Path(used).iterdir()):
        init_args["data_dir"] = used
    datamodule = cls(**init_args)
    log(f"atlas: {dataset_of(recorded['class_path'])} from {Path(datamodule.data_dir).resolve()}")
    return datamodule


def find_checkpoint(path: str | Path) -> Path:
    """``path``, or where it is now that each run has its own folder: ``<root>/checkpoints/last.ckpt`` (what configs
    and commands name) is ``<root>/<run>/checkpoints/last.ckpt`` of the one run under ``<root>`` that has it.
    Several runs that have it are named, for the person to choose."""
    path = Path(path)
    if path.exists() or path.parent.name != "checkpoints":
        return path
    root = path.parent.parent
    found = sorted(p for p in root.glob(f"*/checkpoints/{glob.escape(path.name)}") if (p.parents[1] / RUN_FILE).is_file())
    if len(found) > 1:
        raise CheckpointKindError(f"{path} is in {len(found)} runs' folders under {root}: "
                                  f"{', '.join(str(p) for p in found)}; give the one you mean.")
    return found[0] if found else path


def read_checkpoint(path: str | Path, name: str = "checkpoint",
                    advice: str = "it is truncated or not a checkpoint: pass a .ckpt that `wide-lightning fit` wrote."
                    ) -> CheckpointRecord:
    """The checkpoint at ``path`` (``find_checkpoint``), read once; ``name`` and ``advice`` word the error for a
    missing or unreadable file."""
    path = find_checkpoint(path)
    if not path.is_file():
        raise CheckpointKindError(f"{name} {path} does not exist; pass the .ckpt file a `wide-lightning fit` run wrote.")
    try:
        contents = torch.load(path, map_location="cpu", weights_only=False, mmap=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same sentence
        first = str(error).splitlines()[0] if str(error) else ""
        raise CheckpointKindError(f"{name} {path} cannot be read as a checkpoint ({type(error).__name__}: {first}); "
                                  f"{advice}") from error
    return CheckpointRecord(path, contents if isinstance(contents, dict) else {"object": contents})


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` always holds the latest epoch, as ``save_last=True`` promises.

    Since Lightning 2.6, ``save_last=True`` rewrites ``last.ckpt`` only at a step where a top-k
    checkpoint is saved too; with ``save_top_k=1`` it is then a copy of the best epoch so far. A run
    resumed with ``--ckpt_path last`` would silently repeat the epochs after the best one, and a
    transfer run probing its ``last`` backbone would read the best one. This subclass writes
    ``last.ckpt`` at every point where Lightning considers saving (each validation end or training
    epoch end) when the parent did not. With Lightning < 2.6 the parent already does, and this adds
    nothing.

    ``fast_dev_run`` saves no checkpoint at all, as Lightning documents: Lightning 2.6's
    ``on_train_end`` writes ``last.ckpt`` even then (for the CIFAR-10 width-2048 net, 2.9 GB per
    smoke run), so that hook is skipped under ``fast_dev_run``.
    """

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A run folder that was moved or copied resumes whole: the checkpoint's paths in the folder it is in now.

        Lightning keeps only ``best_model_path`` (the old folder's file) when the folder changed, so a moved
        run would test a file that is not there, or one in the folder it was copied from.
        """
        old = state_dict.get("dirpath")
        if old and self.dirpath and os.path.normpath(old) != os.path.normpath(self.dirpath):
            def here(path: Any) -> Any:
                return os.path.join(self.dirpath, os.path.relpath(path, old)) if isinstance(path, str) and path else path

            keys = ("best_model_path", "kth_best_model_path", "last_model_path")
            paths = [state_dict.get(k) for k in keys] + list(state_dict.get("best_k_models") or {})
            if all(os.path.isfile(here(p)) for p in paths if isinstance(p, str) and p):
                state_dict = {**state_dict, "dirpath": self.dirpath, **{k: here(state_dict.get(k)) for k in keys},
                              "best_k_models": {here(p): v for p, v in (state_dict.get("best_k_models") or {}).items()}}
        super().load_state_dict(state_dict)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        due = self._last_due(trainer, at_train_epoch_end=True)
        super().on_train_epoch_end(trainer, pl_module)
        if due:
            self._write_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        due = self._last_due(trainer, at_train_epoch_end=False)
        super().on_validation_end(trainer, pl_module)
        if due:
            self._write_last(trainer)

    def _last_due(self, trainer: Trainer, at_train_epoch_end: bool) -> bool:
        # the parent's own condition for considering a save in this hook, read before it saves anything
        return (bool(self.save_last) and not self._should_skip_saving_checkpoint(trainer)
                and self._should_save_on_train_epoch_end(trainer) == at_train_epoch_end)

    def _write_last(self, trainer: Trainer) -> None:
        if self._last_global_step_saved != trainer.global_step:  # the parent saved nothing at this step
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))


#: How every checkpoint of a run is named and chosen (the CLI's defaults for ``--checkpoint.*``).
CHECKPOINT_DEFAULTS = {
    "monitor": "val/acc",
    "mode": "max",
    "save_last": True,
    "filename": "epoch{epoch:03d}-val_acc{val/acc:.4f}",
    "auto_insert_metric_name": False,
}

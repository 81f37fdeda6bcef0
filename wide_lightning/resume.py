"""``fit --ckpt_path``: resume exactly the run the config describes, or refuse.

LightningCLI reads the checkpoint's hyper-parameters and lets them override the config: a width-20
checkpoint given to the width-2048 config silently trains a width-20 network into the width-2048
run's folder. Here the checkpoint must describe the same run as the resolved config (model class
and arguments, DataModule class and the arguments that change what is learned); each difference
is named, with the two ways out. ``last`` is resolved the way Lightning does (the newest
``last*.ckpt`` of the run's checkpoint folder) so that the check sees the file Lightning will load.

Only what was asked is recorded as finished: a fit whose settings train nothing (``max_epochs=0``,
``limit_train_batches=0``...) and a resume whose checkpoint has already trained what ``max_epochs``
(or ``max_steps``) asks for are refused before anything is built or written, since either would
test a network nobody trained in this run and record it as a finished run.
"""

from __future__ import annotations

import glob
import os
import sys
from pathlib import Path
from typing import Any

from wide_lightning.checkpoints import CheckpointRecord, read_checkpoint
from wide_lightning.data.base import dataset_of

#: DataModule arguments that say where and how fast the data is read, not what is learned.
DATA_LOCATION_ARGUMENTS = frozenset({"data_dir", "download", "num_workers", "placement"})


#: Model arguments the CLI fills from the DataModule when it builds the model (unset in the config).
LINKED_FROM_DATA = frozenset({"num_classes", "input_shape"})


class ResumeMismatch(ValueError):
    """The checkpoint to resume was trained with other hyper-parameters than the config asks for."""


class NothingToTrain(ValueError):
    """A fit that would train nothing, and so test an untrained (or an already tested) network as its result."""


def check_trains_something(config: Any) -> None:
    """Refuse a fit config whose settings train nothing, naming the setting and the fix."""
    trainer = config.trainer
    for flag in ("max_epochs", "max_steps"):
        if trainer.get(flag) == 0:
            raise NothingToTrain(f"--trainer.{flag}=0 trains nothing (the run would test an untrained network and call "
                                 f"it finished); give --trainer.{flag} a positive number.")
    limit = trainer.get("limit_train_batches")
    # fast_dev_run and overfit_batches set the training batches themselves, whatever the limit says
    if limit is not None and limit == 0 and not trainer.get("fast_dev_run") and not trainer.get("overfit_batches"):
        raise NothingToTrain(f"--trainer.limit_train_batches={limit:g} trains nothing (no training batch: the run "
                             f"would test an untrained network and call it finished); give a positive number of "
                             f"batches (e.g. --trainer.limit_train_batches=4), a fraction of each epoch (e.g. 0.5), "
                             f"or leave it out to train on every batch.")
    probe = config.get("probe")
    if probe is not None and probe.get("target") is not None and probe.get("max_epochs") == 0:
        raise NothingToTrain("--probe.max_epochs=0 trains no probe (the run would test an untrained probe head and "
                             "call it finished); give --probe.max_epochs a positive number, or leave it out for the "
                             "base run's epochs.")


def _count(count: int, what: str) -> str:
    return f"{count} {what}{'' if count == 1 else 's'}"


def check_something_left(record: CheckpointRecord, trainer: Any) -> None:
    """Refuse to resume ``record`` when the config's ``max_epochs`` or ``max_steps`` leave nothing to train.

    Lightning stops such a fit at once (``max_epochs=... reached``), then the run would test the
    checkpoint's network again and record it as a new finished run with the smaller ``max_epochs``.
    The epochs done are Lightning's own count (``epoch_progress.current.processed``, what its fit
    loop compares with ``max_epochs``); the steps done, the checkpoint's ``global_step``.
    """
    if trainer.get("fast_dev_run"):
        return
    contents = record.contents
    progress = ((contents.get("loops") or {}).get("fit_loop") or {}).get("epoch_progress") or {}
    epochs_done = (progress.get("current") or {}).get("processed")
    steps_done = contents.get("global_step")
    max_steps = trainer.get("max_steps")
    max_steps = -1 if max_steps is None else max_steps
    max_epochs = trainer.get("max_epochs")
    given = max_epochs is not None
    if max_epochs is None:  # Lightning's default
        max_epochs = 1000 if max_steps == -1 and trainer.get("max_time") is None else -1
    if isinstance(epochs_done, int) and max_epochs != -1 and epochs_done >= max_epochs:
        setting = f"--trainer.max_epochs={max_epochs}" + ("" if given else " (the default)")
        raise NothingToTrain(f"--ckpt_path {record.path} has already trained {_count(epochs_done, 'epoch')}, so "
                             f"{setting} leaves nothing to train; give --trainer.max_epochs={epochs_done + 1} or more "
                             f"to train on (or leave out --ckpt_path to start a new run).")
    if isinstance(steps_done, int) and max_steps != -1 and steps_done >= max_steps:
        raise NothingToTrain(f"--ckpt_path {record.path} has already trained {_count(steps_done, 'step')}, so "
                             f"--trainer.max_steps={max_steps} leaves nothing to train; give --trainer.max_steps="
                             f"{steps_done + 1} or more to train on (or leave out --ckpt_path to start a new run).")


def newest_last_checkpoint(directory: str | os.PathLike) -> str | None:
    """The newest ``last*.ckpt`` in ``directory`` (Lightning's choice for ``ckpt_path="last"``)."""
    candidates = glob.glob(os.path.join(glob.escape(str(directory)), "last*.ckpt"))
    return max(candidates, key=os.path.getmtime) if candidates else None


def _plain(value: Any) -> Any:
    """Namespaces, tuples and paths as dicts, lists and strings, so that a config and a checkpoint compare."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _short(class_path: str) -> str:
    """A class's name without its module (a DataModule's earlier name is the same DataModule: ``dataset_of``)."""
    return dataset_of(class_path)


def _differences(section: str, recorded: dict[str, Any], wanted: dict[str, Any], skip: frozenset[str]) -> list[str]:
    lines = []
    for key in sorted(set(recorded) & set(wanted) - skip):
        if key.startswith("_"):
            continue
        if _plain(recorded[key]) != _plain(wanted[key]):
            lines.append(f"{section}.init_args.{key}: checkpoint {_plain(recorded[key])!r}, config {_plain(wanted[key])!r}")
    return lines


def resume_conflicts(record: CheckpointRecord, model: Any, data: Any) -> list[str]:
    """What differs between a checkpoint and the resolved config's ``model`` and ``data`` sections."""
    lines = []
    hparams = record.hyper_parameters
    model = _plain(model) or {}
    recorded_class = hparams.get("_class_path")
    if recorded_class and model.get("class_path") and _short(recorded_class) != _short(model["class_path"]):
        lines.append(f"model.class_path: checkpoint {recorded_class!r}, config {model['class_path']!r}")
    else:
        lines += _differences("model", hparams, model.get("init_args") or {}, LINKED_FROM_DATA)
    marker = record.datamodule
    data = _plain(data) or {}
    if marker and data.get("class_path"):
        recorded_class = marker["class_path"]
        if _short(recorded_class) != _short(data["class_path"]):
            lines.append(f"data.class_path: checkpoint {recorded_class!r}, config {data['class_path']!r}")
        else:
            lines += _differences("data", marker.get("init_args") or {}, data.get("init_args") or {},
                                  DATA_LOCATION_ARGUMENTS)
    return lines


def check_resumable(record: CheckpointRecord, model: Any, data: Any) -> None:
    """Refuse to resume ``record`` under a config that describes another run, naming each difference."""
    conflicts = resume_conflicts(record, model, data)
    if conflicts:
        raise ResumeMismatch(
            f"--ckpt_path {record.path} was trained with other settings than this config asks for: "
            + "; ".join(conflicts)
            + ". Either change the config (or the flags) to the checkpoint's values to resume it, or leave out "
              "--ckpt_path to start this run fresh."
        )


def resolve_resume(config: Any) -> None:
    """``config.ckpt_path`` made the file to resume, checked against ``config``; its W&B run continued.

    ``last`` with nothing to resume says so in one line and starts fresh (so a scheduler may requeue
    the same command); a checkpoint that has already trained what the config asks for is refused.
    """
    ckpt_path = config.get("ckpt_path")
    if not ckpt_path or ckpt_path in ("best", "hpc", "registry"):
        return
    if ckpt_path == "last":
        directory = config.checkpoint.dirpath if config.get("checkpoint") is not None else None
        found = newest_last_checkpoint(directory) if directory else None
        if found is None:
            print(f"--ckpt_path last: nothing to resume in {directory or '(no checkpoint folder)'}; "
                  f"training from the start.", file=sys.stderr)
            config.ckpt_path = None
            return
        ckpt_path = config.ckpt_path = found
    elif not os.path.isfile(ckpt_path):
        raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such file. Give a .ckpt that `fit` wrote, `last` "
                                f"for this run's newest, or leave it out to start fresh.")
    record = read_checkpoint(ckpt_path, name="--ckpt_path",
                             advice="point it at a .ckpt that `fit` wrote, or leave it out to start fresh.")
    check_resumable(record, config.model, config.data)
    check_something_left(record, config.trainer)
    logger = config.trainer.logger
    init_args = getattr(logger, "init_args", None)
    if record.wandb_run_id and init_args is not None and init_args.get("id") is None \
            and str(getattr(logger, "class_path", "")).endswith("WandbLogger"):
        init_args.id = record.wandb_run_id  # Lightning's WandbLogger resumes with resume="allow": the same W&B run

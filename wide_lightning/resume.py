"""Where a ``fit`` runs, and ``fit --ckpt_path``: resume exactly the run the config describes, or refuse.

``place_run`` gives the run its folder (``run_folder.py``): a fresh fit whose folder already holds
that run is refused (resume it, or name another run); ``--ckpt_path last`` resumes the newest
``last*.ckpt`` of this run's own folder, never another run's; a checkpoint file given by path is
resumed in the run folder it is in, wherever that folder has moved.

LightningCLI reads the checkpoint's hyper-parameters and lets them override the config: a width-20
checkpoint given to the width-2048 config silently trains a width-20 network into the width-2048
run's folder. Here the checkpoint must describe the same run as the resolved config: every setting
the result depends on (``run_settings``: seed, model, data, the Trainer's result-changing settings,
the probe) is compared and each difference named, with the two ways out. Only the length may grow
(more ``max_epochs``), and the record says so (``resumed``).

Only what was asked is recorded as finished: a fit whose settings train nothing (``max_epochs=0``,
``limit_train_batches=0``...) and a resume whose checkpoint has already trained what ``max_epochs``
(or ``max_steps``) asks for are refused before anything is built or written, since either would
test a network nobody trained in this run and record it as a finished run.
"""

from __future__ import annotations

import glob
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lightning.pytorch.plugins.environments import SLURMEnvironment

from wide_lightning.checkpoints import CheckpointRecord, find_checkpoint, read_checkpoint
from wide_lightning.data.base import dataset_of
from wide_lightning.run_folder import (DATA_LOCATION_ARGUMENTS, LINKED_FROM_DATA, RUN_KEY, holds_a_run,
                                       in_run_folder, is_worker_process, plain, read_run_file, run_folder_of, run_name,
                                       run_settings, runs_in, setting_differences)


class ResumeMismatch(ValueError):
    """The checkpoint to resume was trained with other hyper-parameters than the config asks for."""


class RunExists(ValueError):
    """A fresh fit whose run folder already holds that run's results."""


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
    The epochs done are Lightning's own count (``CheckpointRecord.epochs_done``); the steps done, the
    checkpoint's ``global_step``.
    """
    if trainer.get("fast_dev_run"):
        return
    epochs_done = record.epochs_done
    steps_done = record.contents.get("global_step")
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


def newest_hpc_checkpoint(folder: Path) -> str | None:
    """The ``hpc_ckpt_<n>.ckpt`` Lightning resumes under SLURM (the highest ``n`` in the run folder)."""
    versions = [(int(p.stem.removeprefix("hpc_ckpt_")), p) for p in folder.glob("hpc_ckpt_*.ckpt")
                if p.stem.removeprefix("hpc_ckpt_").isdigit()]
    return str(max(versions)[1]) if versions else None


def _differences(section: str, recorded: dict[str, Any], wanted: dict[str, Any], skip: frozenset[str]) -> list[str]:
    lines = []
    for key in sorted(set(recorded) & set(wanted) - skip):
        if key.startswith("_"):
            continue
        if plain(recorded[key]) != plain(wanted[key]):
            lines.append(f"{section}.init_args.{key}: checkpoint {plain(recorded[key])!r}, config {plain(wanted[key])!r}")
    return lines


def _hyper_parameter_conflicts(record: CheckpointRecord, model: Any, data: Any) -> list[str]:
    """What differs between the model and DataModule a checkpoint recorded and the config's (every checkpoint
    has these, those written before run settings were recorded too)."""
    lines = []
    hparams = record.hyper_parameters
    model = plain(model) or {}
    recorded_class = hparams.get("_class_path")
    if recorded_class and model.get("class_path") and dataset_of(recorded_class) != dataset_of(model["class_path"]):
        lines.append(f"model.class_path: checkpoint {recorded_class!r}, config {model['class_path']!r}")
    else:
        lines += _differences("model", hparams, model.get("init_args") or {}, LINKED_FROM_DATA)
    marker = record.datamodule
    data = plain(data) or {}
    if marker and data.get("class_path"):
        recorded_class = marker["class_path"]
        if dataset_of(recorded_class) != dataset_of(data["class_path"]):
            lines.append(f"data.class_path: checkpoint {recorded_class!r}, config {data['class_path']!r}")
        else:
            lines += _differences("data", marker.get("init_args") or {}, data.get("init_args") or {},
                                  DATA_LOCATION_ARGUMENTS)
    return lines


def resume_conflicts(record: CheckpointRecord, config: Any) -> list[str]:
    """What differs between a checkpoint and the resolved ``fit`` config: every setting the result depends on
    where the checkpoint recorded them (``RUN_KEY``), else its model's and DataModule's arguments."""
    recorded = (record.contents.get(RUN_KEY) or {}).get("settings")
    if isinstance(recorded, dict):
        return setting_differences(recorded, run_settings(config))
    return _hyper_parameter_conflicts(record, config.model, config.data)


def check_resumable(record: CheckpointRecord, config: Any) -> None:
    """Refuse to resume ``record`` under a config that describes another run, naming each difference."""
    conflicts = resume_conflicts(record, config)
    if conflicts:
        raise ResumeMismatch(
            f"--ckpt_path {record.path} was trained with other settings than this config asks for: "
            + "; ".join(conflicts)
            + ". Either change the config (or the flags) to the checkpoint's values to resume it, or leave out "
              "--ckpt_path to start this run fresh."
        )


@dataclass
class Placement:
    """Where a ``fit`` runs, and what it resumes."""

    folder: Path
    name: str
    settings: dict[str, Any]
    resumed: dict[str, Any] | None = field(default=None)


def sweep_run_id() -> str | None:
    """The W&B run a sweep agent started this process for (each point of a sweep is its own run)."""
    return os.environ.get("WANDB_RUN_ID") if os.environ.get("WANDB_SWEEP_ID") else None


def _other_run(folder: Path, settings: dict[str, Any]) -> str:
    """Another run of the root, as the line about it names it: how its settings differ from this command's."""
    recorded = read_run_file(folder).get("settings")
    if not isinstance(recorded, dict):
        return f"{folder.name} (settings unknown)"
    differs = [d.split(":")[0] for d in setting_differences(recorded, settings)]
    if differs:
        return f"{folder.name} (differs in {', '.join(differs)})"
    return f"{folder.name} (the same settings: resume it with --run_name {folder.name})"


def _nothing_to_resume(folder: Path, settings: dict[str, Any]) -> str:
    line = f"--ckpt_path last: nothing to resume in {folder}; training from the start."
    others = [f for f in runs_in(folder.parent) if f != folder]
    if others:
        line += (f" Other runs in {folder.parent}: {', '.join(_other_run(f, settings) for f in others[:5])}"
                 f"{' ...' if len(others) > 5 else ''}.")
    if any(folder.parent.glob("checkpoints/last*.ckpt")):
        line += (f" {folder.parent / 'checkpoints'} holds checkpoints of runs from before each run had its own folder: "
                 f"resume one with --ckpt_path FILE.")
    return line


def place_run(config: Any) -> Placement:
    """The run folder of a resolved ``fit`` config, set as its ``trainer.default_root_dir`` (and the checkpoint
    folder inside it); ``config.ckpt_path`` made the file to resume, checked against ``config``, its W&B run
    continued.

    ``last`` with nothing to resume in the run's folder says so in one line (naming the other runs of the
    root) and starts fresh, so a scheduler may requeue the same command; a fresh fit whose folder holds the
    run already, and a checkpoint that has already trained what the config asks for, are refused.
    """
    settings = run_settings(config)
    root = Path(config.trainer.default_root_dir or ".")
    name = config.get("run_name") or sweep_run_id() or run_name(settings)
    folder = root / name
    ckpt_path = config.get("ckpt_path")
    worker = is_worker_process()  # the first process has checked and chosen; the others follow
    if ckpt_path == "last":
        found = newest_last_checkpoint(folder / "checkpoints")
        if found is None and not worker:
            print(_nothing_to_resume(folder, settings), file=sys.stderr)
        config.ckpt_path = ckpt_path = found
    elif ckpt_path and ckpt_path not in ("best", "hpc", "registry"):
        ckpt_path = config.ckpt_path = str(find_checkpoint(ckpt_path))  # <root>/checkpoints/... of one run
        if not os.path.isfile(ckpt_path):
            raise FileNotFoundError(f"--ckpt_path {ckpt_path}: no such file. Give a .ckpt that `fit` wrote, `last` "
                                    f"for this run's newest, or leave it out to start fresh.")
        folder = run_folder_of(ckpt_path) or folder
        name = read_run_file(folder).get("name", name)
    elif not ckpt_path and not worker:
        # SLURM's requeue runs the same command again, and Lightning resumes the run folder's newest hpc_ckpt itself
        requeued = newest_hpc_checkpoint(folder) if SLURMEnvironment.detect() else None
        if requeued is None and holds_a_run(folder):
            raise RunExists(f"{folder} already holds this run (the same settings); resume it with --ckpt_path last, "
                            f"or start another beside it with --run_name NAME (or move that folder away).")
        ckpt_path = requeued
    placement = Placement(folder, name, settings)
    if ckpt_path and ckpt_path not in ("best", "hpc", "registry"):
        record = read_checkpoint(ckpt_path, name="--ckpt_path" if config.get("ckpt_path") else "SLURM's requeue of",
                                 advice="point it at a .ckpt that `fit` wrote, or leave it out to start fresh.")
        check_resumable(record, config)
        check_something_left(record, config.trainer)
        placement.resumed = resumed_facts(record, folder, config.trainer)
        logger = config.trainer.logger
        init_args = getattr(logger, "init_args", None)
        if record.wandb_run_id and init_args is not None and init_args.get("id") is None \
                and str(getattr(logger, "class_path", "")).endswith("WandbLogger"):
            init_args.id = record.wandb_run_id  # Lightning's WandbLogger resumes with resume="allow": the same W&B run
    config.trainer.default_root_dir = str(folder)
    if config.get("checkpoint") is not None and config.checkpoint.dirpath is None:
        config.checkpoint.dirpath = str(folder / "checkpoints")
    return placement


def resumed_facts(record: CheckpointRecord, folder: Path, trainer: Any) -> dict[str, Any]:
    """What the record says of a resume: the checkpoint, what it had trained, and the length asked before and now."""
    asked = record.contents.get(RUN_KEY) or {}
    facts: dict[str, Any] = {"checkpoint": in_run_folder(record.path, folder), "epochs_done": record.epochs_done,
                             "steps_done": record.contents.get("global_step")}
    for flag in ("max_epochs", "max_steps"):
        if flag in asked and asked[flag] != trainer.get(flag) and trainer.get(flag) is not None:
            facts[flag] = {"before": asked[flag], "now": trainer.get(flag)}
    return facts

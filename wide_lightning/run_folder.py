"""Each run its own folder: what identifies a run, where it lives, and that one ``fit`` at a time writes there.

A run is what its result depends on (``run_settings``): the seed, the model, the data (not where
its files are), the Trainer settings that change what is learned or which epoch is reported, the
checkpoint's choice of the best epoch, and the probe of a transfer run. Its folder is
``<trainer.default_root_dir>/<name>``, the name ``seed<S>-<8 hex digits of the settings' hash>``
(under a W&B sweep agent, the W&B run's id; ``--run_name`` gives any other), so a seed scan into one
root, two configs sharing a root, and a requeued job each find their own folder, and the same
command finds its run again (``--ckpt_path last``). ``run.json`` in the folder names the settings;
every checkpoint carries them too (``RUN_KEY``), which is what a resume compares.

Everything a run writes goes in its folder (checkpoints, ``summary.json``, ``config.yaml``, the
atlas, W&B's files), and the paths the record keeps are relative to it, so a moved or copied run
folder resumes (``--ckpt_path <folder>/checkpoints/last.ckpt``) and reports. A lock file (``.lock``:
host, process, SLURM job) keeps a second ``fit`` of the same run out while the first one runs.
"""

from __future__ import annotations

import atexit
import hashlib
import json
import os
import socket
import time
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer

from wide_lightning.data.base import dataset_of
from wide_lightning.files import process_alive, write_text

#: The file in a run folder that names the run and its settings.
RUN_FILE = "run.json"
#: The file that says which process is writing into a run folder.
LOCK_FILE = ".lock"
#: The checkpoint key that holds the run's name and settings.
RUN_KEY = "wide_lightning_run"
#: The sections of a run's ``summary.json`` that hold its metrics: the base training, the probe of its
#: trained network, and the probe of the same network untrained (``probe.control: untrained``).
METRIC_SECTIONS = ("base", "probe", "probe_untrained")

#: DataModule arguments that say where and how fast the data is read, not what is learned.
DATA_LOCATION_ARGUMENTS = frozenset({"data_dir", "download", "num_workers", "placement"})
#: Model arguments the CLI fills from the DataModule when it builds the model (unset in the config).
LINKED_FROM_DATA = frozenset({"num_classes", "input_shape"})
#: Trainer settings that change what a run learns or which epoch it reports. The others say where it
#: runs, how fast and how loudly, or how long (``max_epochs``, which a resume may raise: ``resume.py``).
RESULT_TRAINER_SETTINGS = ("accumulate_grad_batches", "check_val_every_n_epoch", "deterministic",
                           "gradient_clip_algorithm", "gradient_clip_val", "limit_train_batches",
                           "limit_val_batches", "overfit_batches", "precision", "val_check_interval")


def plain(value: Any) -> Any:
    """Namespaces, tuples and paths as dicts, lists and strings, so that a config and a checkpoint compare."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _section(section: Any, skip: frozenset[str], name_of: Any = lambda path: path.rpartition(".")[2]
             ) -> dict[str, Any] | None:
    section = plain(section)
    if not isinstance(section, dict) or not section.get("class_path"):
        return section
    init_args = {k: v for k, v in (section.get("init_args") or {}).items() if k not in skip and not k.startswith("_")}
    # a class by its name alone: a module moved or re-exported (wide_lightning.MLPClassifier) is the same class
    return {"class": name_of(section["class_path"]), "init_args": init_args}


def run_settings(config: Any) -> dict[str, Any]:
    """The settings of a resolved ``fit`` config that its result depends on (what identifies the run)."""
    trainer = plain(config.trainer)
    probe = plain(config.get("probe")) or {}
    checkpoint = plain(config.get("checkpoint")) or {}
    return {
        "seed": config.get("seed_everything"),
        "model": _section(config.model, LINKED_FROM_DATA),
        "data": _section(config.data, DATA_LOCATION_ARGUMENTS, dataset_of),
        "trainer": {k: trainer.get(k) for k in RESULT_TRAINER_SETTINGS},
        "checkpoint": {k: checkpoint.get(k) for k in ("monitor", "mode")},
        "probe": probe if probe.get("target") is not None else None,
    }


def run_name(settings: dict[str, Any]) -> str:
    """``seed<S>-<hash>`` (a stack: ``seeds<S1>-<S2>...-<hash>``): readable where runs differ by seed, distinct
    wherever any setting differs."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:8]
    seeds = ((settings.get("model") or {}).get("init_args") or {}).get("seeds")
    label = f"seeds{'-'.join(map(str, seeds))}" if isinstance(seeds, list) else f"seed{settings.get('seed')}"
    return f"{label}-{digest}"


def flat(settings: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"model": {"init_args": {"lr": 0.1}}}`` -> ``{"model.init_args.lr": 0.1}`` (lists stay whole)."""
    out: dict[str, Any] = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def setting_differences(recorded: dict[str, Any], wanted: dict[str, Any]) -> list[str]:
    """``key: checkpoint A, config B`` for each setting both name and give different values."""
    recorded, wanted = flat(recorded), flat(wanted)
    return [f"{key}: checkpoint {recorded[key]!r}, config {wanted[key]!r}"
            for key in sorted(set(recorded) & set(wanted)) if recorded[key] != wanted[key]]


def holds_a_run(folder: Path) -> bool:
    """Whether a run has written its results into ``folder`` (a checkpoint or a record)."""
    return any(folder.glob("checkpoints/*.ckpt")) or any(folder.glob("summary*.json"))


def run_folder_of(checkpoint: str | os.PathLike) -> Path | None:
    """The run folder a checkpoint file is in (``<run>/checkpoints/`` or ``<run>/checkpoints/probe/``), if any."""
    for folder in list(Path(checkpoint).resolve().parents)[1:3]:
        if (folder / RUN_FILE).is_file():
            return folder
    return None


def in_run_folder(path: str | os.PathLike, folder: str | os.PathLike) -> str:
    """``path`` relative to the run ``folder`` when it is inside it (what a record keeps, so that a moved folder's
    record still holds), else absolute."""
    try:
        return str(Path(path).resolve().relative_to(Path(folder).resolve()))
    except ValueError:
        return str(Path(path).resolve())


def read_run_file(folder: Path) -> dict[str, Any]:
    try:
        return json.loads((folder / RUN_FILE).read_text())
    except (OSError, ValueError):
        return {}


def runs_in(root: Path) -> list[Path]:
    """The run folders directly under ``root`` that hold a run."""
    if not root.is_dir():
        return []
    return sorted(f for f in root.iterdir() if (f / RUN_FILE).is_file() and holds_a_run(f))


def write_run_file(folder: Path, name: str, settings: dict[str, Any]) -> None:
    """``run.json``: the run's name and settings (written once: a resume finds it as it was)."""
    if not (folder / RUN_FILE).is_file():
        folder.mkdir(parents=True, exist_ok=True)
        write_text(folder / RUN_FILE, json.dumps({"name": name, "settings": settings}, indent=2, default=str))


def is_worker_process() -> bool:
    """A process of a multi-process run other than the first: it writes into the folder the first one chose."""
    return any(os.environ.get(key, "0") not in ("", "0") for key in ("LOCAL_RANK", "NODE_RANK", "RANK"))


class RunFolderInUse(RuntimeError):
    """Another ``fit`` is writing into this run folder."""


class RunLock:
    """``<run folder>/.lock`` while a ``fit`` writes there: a second fit of the same run is refused.

    A lock left by a process that is gone (same host, its pid not running) or by an earlier
    allocation of the same SLURM job (a requeue) is taken over.
    """

    def __init__(self, folder: Path) -> None:
        self.path = folder / LOCK_FILE
        self.held = False

    def facts(self) -> dict[str, Any]:
        return {"host": socket.gethostname(), "pid": os.getpid(), "slurm_job_id": os.environ.get("SLURM_JOB_ID"),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}

    def _stale(self, holder: dict[str, Any]) -> bool:
        mine = self.facts()
        if holder.get("slurm_job_id") and holder.get("slurm_job_id") == mine["slurm_job_id"]:
            return True  # the same job, requeued
        if holder.get("host") == mine["host"]:
            pid = holder.get("pid")
            return pid == mine["pid"] or not isinstance(pid, int) or not process_alive(pid)
        return False

    def claim(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        text = json.dumps(self.facts())
        for _ in range(2):
            try:
                descriptor = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                try:
                    holder = json.loads(self.path.read_text() or "{}")
                except (OSError, ValueError):
                    holder = {}
                if not self._stale(holder):
                    raise RunFolderInUse(
                        f"{self.path.parent} is in use by another fit (pid {holder.get('pid')} on "
                        f"{holder.get('host')}, started {holder.get('started')}); wait for it to end, or give this fit "
                        f"a folder of its own with --run_name NAME. If that fit is no longer running, delete "
                        f"{self.path}.") from None
                self.path.unlink(missing_ok=True)
                continue
            with os.fdopen(descriptor, "w") as handle:
                handle.write(text)
            self.held = True
            atexit.register(self.release)  # also when the CLI was built without running it
            return

    def release(self) -> None:
        if self.held:
            self.path.unlink(missing_ok=True)
            self.held = False


class RunIdentity(Callback):
    """Writes the run's name and settings, and the length it was asked for, into every checkpoint (``RUN_KEY``)."""

    def __init__(self, name: str, settings: dict[str, Any]) -> None:
        self.name, self.settings = name, settings

    def on_save_checkpoint(self, trainer: Trainer, pl_module: LightningModule, checkpoint: dict[str, Any]) -> None:
        checkpoint[RUN_KEY] = {"name": self.name, "settings": self.settings,
                               "max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps}

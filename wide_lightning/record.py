"""The run record: ``summary.json``, what one ``fit`` was and what it gave, and the closing lines it prints.

Every ``fit`` that started training ends here, finished or not, by one path (``RunRecord.close``):
the record (one per member of a stack) written into the run directory, the W&B run given it and
finished, then the closing lines (where the checkpoints, the atlas, the W&B run and the record
are; how to resume). An unfinished run's record says why (``interrupted``, ``diverged``,
``failed``) and the command that goes on. ``wide-lightning-report`` reads these records.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info

from wide_lightning.callbacks import ActivationAtlas
from wide_lightning.data.base import DATA_ENV, dataset_of
from wide_lightning.files import SpaceReserve, check_readable_folder, check_writable_folder, is_remote, write_text
from wide_lightning.interruption import Interrupted, entered, received, received_during
from wide_lightning.loggers import finish_wandb_run, unused_path
from wide_lightning.run_folder import METRIC_SECTIONS, in_run_folder
from wide_lightning.tasks.base import Diverged
from wide_lightning.tasks.stacked import StackedTask


def check_data_folders(datamodule: Any) -> None:
    """Refuse, in one sentence, a data folder that exists but cannot be read (before anything is built from it)."""
    folders = [getattr(datamodule, "data_dir", None)]
    root = getattr(type(datamodule), "root", None)
    if isinstance(root, property):  # the dataset's own folder inside data_dir (an image folder, torchvision's)
        try:
            folders.append(datamodule.root)
        except Exception:  # noqa: BLE001 (the data module says what is wrong with its settings when it loads)
            pass
    for folder in dict.fromkeys(f for f in folders if f is not None and not is_remote(f)):
        check_readable_folder(folder, "the data folder", "--data.data_dir", f" (or {DATA_ENV}=DIR)")


def scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items())}


def signal_of(error: BaseException) -> int | None:
    """The signal that ended the run: the one an ``Interrupted`` carries, or the last one received."""
    return error.signum if isinstance(error, Interrupted) else received()


def resume_command(args: list[str]) -> str:
    """The command of ``args`` again, resuming from the run's newest ``last.ckpt``."""
    kept, skip = [], False
    for arg in args:
        if skip:
            skip = False
        elif arg == "--ckpt_path":
            skip = True
        elif not arg.startswith("--ckpt_path="):
            kept.append(arg)
    return shlex.join(["wide-lightning", *kept, "--ckpt_path", "last"])


#: The room kept for each record file (one per network): a record is 1-3 KB, a stack's a few KB more.
RECORD_ROOM_BYTES = 64 * 1024


class FollowTheStage(Callback):
    """Tells ``interruption`` what the run is doing, so that the record of a signal says where it arrived."""

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        entered("training")

    def on_validation_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        entered("validation")

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        entered("training")

    def on_test_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        entered("test")


class KeepRoomForTheRecord(Callback):
    """From the start of ``fit``, keeps room on the disk of the run folder for the record written at its end.

    A disk that fills during training (a checkpoint that does not fit) must still take ``summary.json``,
    the record that says the run failed and why. Two ways were open: write the record early and rewrite
    it in place at the end, or keep room for it in a file of its own. The record is written once, whole
    (``write_text``: a temporary file renamed), so that a write that fails half-way never damages an
    earlier record and ``wide-lightning-report`` never reads a record of a run still going; so the room
    is kept in a hidden file (``SpaceReserve``), made here and deleted by ``RunRecord`` just before the
    record is written. ``setup`` of ``fit`` only (not ``validate``/``test``, which write no record), on
    the process that writes the record.
    """

    def __init__(self, reserve: SpaceReserve) -> None:
        self.reserve = reserve

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit" and trainer.is_global_zero:
            self.reserve.keep()


class RunRecord:
    """The record of one ``fit`` of ``model`` on ``datamodule`` by ``trainer``, from the resolved ``config``.

    Made when the trainer is built, before anything is read or trained: the data folder must be readable and
    the run folder (``trainer.default_root_dir``, created here) writable, each refused in one sentence if not,
    and room is kept for the record from the start of ``fit`` (``KeepRoomForTheRecord``).
    """

    def __init__(self, trainer: Trainer, model: LightningModule, datamodule: LightningDataModule, config: Any,
                 args: list[str], resumed: dict[str, Any] | None = None) -> None:
        self.trainer, self.model, self.datamodule, self.config, self.args = trainer, model, datamodule, config, args
        self.resumed = resumed
        self.closed = False
        check_data_folders(datamodule)
        root = trainer.default_root_dir
        self.reserve: SpaceReserve | None = None
        if root is not None and not is_remote(root):
            check_writable_folder(root, "the run folder", "--trainer.default_root_dir",
                                  "; nothing was trained, and no summary.json was written (it goes in that folder)")
            members = len(getattr(model, "member_names", None) or [model])
            self.reserve = SpaceReserve(root, "summary.json", RECORD_ROOM_BYTES * members)
            self.reserve.check_room()  # a disk full from the start: refused before W&B or anything else writes
            trainer.callbacks.append(KeepRoomForTheRecord(self.reserve))
        trainer.callbacks.append(FollowTheStage())

    def release_room(self) -> None:
        if self.reserve is not None:
            self.reserve.release()

    def in_run_folder(self, path: str) -> str:
        """``path`` relative to the run folder (so that a moved folder's record still holds), if it is inside it."""
        return path if not path or is_remote(path) else in_run_folder(path, self.trainer.default_root_dir)

    def found(self, path: str) -> str:
        """A path the record holds, as a path from here (it is relative to the run folder)."""
        return path if not path or is_remote(path) else os.path.join(self.trainer.default_root_dir, path)

    def describe(self, fit_metrics: dict[str, float], test_metrics: dict[str, float]) -> dict[str, Any]:
        """The record of the run as it stands: what it was, its metrics, its checkpoints, which weights each step read."""
        model, data, trainer = self.model, self.datamodule, self.trainer
        facts = model.facts()
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        last = callback.last_model_path if callback is not None else ""
        # a save that failed (a full disk) has already named its file: the record names only files there are
        best, last = (self.in_run_folder(path) if is_remote(path) or os.path.exists(path) else "" for path in (best, last))
        weights = {"test": {"reads": "best", "checkpoint": best} if best else {"reads": "last epoch", "checkpoint": last}}
        if any(isinstance(c, ActivationAtlas) for c in trainer.callbacks):  # it runs on the weights at the end of fit
            weights["atlas"] = {"reads": "last epoch", "checkpoint": last}
        return {
            "kind": "fit",
            "status": "finished",
            "model": type(model).__name__,
            "dataset": dataset_of(type(data).__name__),
            "target": data.target,
            "width": facts["width"],
            "depth": facts.get("depth"),
            **({"conv_channels": facts["conv_channels"]} if "conv_channels" in facts else {}),
            "parameters": facts["parameters"],
            "lr": facts["lr_resolved"],
            "parameterization": facts["parameterization"],
            # a stack's members have their own seeds (its per-member records carry them)
            "seed": None if isinstance(model, StackedTask) else self.config.get("seed_everything"),
            "max_epochs": trainer.max_epochs,
            **({"resumed": self.resumed} if self.resumed else {}),
            "config": [str(c) for c in (self.config.get("config") or [])],
            "base": {**fit_metrics, **scalars(test_metrics)},
            "checkpoints": {"best": best, "last": last},
            "weights": weights,
            "wandb": self.wandb_facts(),
        }

    def with_probe(self, record: dict[str, Any], probe: dict[str, Any], section: str = "probe") -> None:
        """Add a probe's record under ``section`` (``probe``, or ``probe_untrained`` for the untrained control)."""
        probe = {**probe, **{k: self.in_run_folder(probe[k]) for k in ("checkpoint", "backbone_checkpoint")
                             if isinstance(probe.get(k), str)}}
        record.update({"kind": "transfer", section: probe})
        if section == "probe_untrained":  # the checkpoint gives the architecture only
            record["weights"][section] = {"reads": "untrained", "checkpoint": probe["backbone_checkpoint"],
                                          "weights": "initialized afresh from the run's seed (none of the checkpoint's)"}
        else:
            record["weights"][section] = {"reads": self.config.probe.backbone, "checkpoint": probe["backbone_checkpoint"]}

    def unfinished(self, record: dict[str, Any], error: BaseException) -> None:
        """Mark ``record`` as the run that ``error`` stopped: why, and how to go on."""
        signum = signal_of(error)
        if signum is not None:
            record["status"] = "interrupted"
            record["interrupted"] = {"signal": signal.Signals(signum).name, "epoch": self.trainer.current_epoch,
                                     "during": received_during() or "training", "resume": resume_command(self.args)}
            if any(isinstance(c, ActivationAtlas) and c.interrupted for c in self.trainer.callbacks):
                # training had finished: only the figures are missing
                record["interrupted"].update(during="atlas", resume=shlex.join(
                    ["wide-lightning-atlas", "--checkpoint", self.found(record["checkpoints"]["last"])]))
        elif isinstance(error, Diverged):
            record["status"] = "diverged"
            record["error"] = str(error)
        else:
            record["status"] = "failed"
            record["error"] = f"{type(error).__name__}: {error}"

    def close_unfinished(self, error: BaseException) -> None:
        """The record of a fit that ``error`` stopped before ``after_fit`` closed it (if training had started)."""
        started = signal_of(error) is not None or isinstance(error, Diverged) or self.trainer.global_step > 0
        if self.closed or not started or not self.trainer.is_global_zero:
            self.release_room()
            return
        record = self.describe(scalars(self.trainer.callback_metrics), {})
        self.unfinished(record, error)
        try:
            self.close(record)
        except OSError as failure:  # e.g. the disk that filled: the first error is the one to see
            print(f"(the summary could not be written: {failure})", file=sys.stderr)

    def close(self, record: dict[str, Any]) -> None:
        """Write the record (one per member of a stack), give it to the W&B run and finish that, print the closing lines."""
        self.closed = True
        self.release_room()  # the room kept for the record, for the record
        if self.trainer.is_global_zero:
            for member in self.member_records(record):
                self.write(member)
                record.setdefault("summary_files", []).append(member["summary_file"])
        finish_wandb_run(self.trainer, record)
        if self.trainer.is_global_zero:  # last, after W&B's own closing lines, so that it stays on screen
            rank_zero_info(self.closing_lines(record))

    def wandb_facts(self) -> dict[str, Any] | None:
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                run_dir = getattr(run, "dir", None)
                if isinstance(run_dir, str):
                    return {"id": getattr(run, "id", None), "project": getattr(run, "project", None),
                            "url": getattr(run, "url", None), "dir": os.path.dirname(run_dir)}
        return None

    def member_records(self, record: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per trained network: the run's own, or one per member of a stack, each with its own
        seed, depth, width and parameter count and its own metrics (those under its ``member_names`` prefix)."""
        if not isinstance(self.model, StackedTask):
            return [record]
        sections = {name: values for name in METRIC_SECTIONS if isinstance(values := record.get(name), dict)}
        members = self.model.member_facts()
        prefixes = tuple(f"{m['name']}/" for m in members)
        # the stack's averages over members (metric names without a member prefix), kept with every member
        means = {name: {k: v for k, v in values.items() if "/" in k and not k.startswith(prefixes)}
                 for name, values in sections.items()}
        stack = {"seeds": list(self.model.seeds), "means": means}
        if self.model.depths is not None:
            stack["depths"] = list(self.model.depths)
        records = []
        for member in members:
            prefix = f"{member['name']}/"
            one = {**record, "seed": member["seed"], "depth": member["depth"], "width": member["width"],
                   "parameters": member["parameters"], "member_of_stack": {**stack, "name": member["name"]}}
            for name, values in sections.items():
                # facts (no "/") and this member's own metrics
                one[name] = {**{k: v for k, v in values.items() if "/" not in k},
                             **{k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}}
            records.append(one)
        return records

    def write(self, record: dict[str, Any]) -> None:
        root = Path(self.trainer.default_root_dir)
        name = "summary.json"
        if "member_of_stack" in record:  # seed<S> -> -seed<S>.json; depth<L>/seed<S> -> -depth<L>-seed<S>.json
            name = name.replace(".json", f"-{record['member_of_stack']['name'].replace('/', '-')}.json")
        path = unused_path(root / name)
        write_text(path, json.dumps(record, indent=2, default=str))
        record["summary_file"] = str(path)

    def closing_lines(self, record: dict[str, Any]) -> str:
        lines = [f"best checkpoint: {self.found(record['checkpoints']['best']) or '(none saved)'}"]
        last = self.found(record["checkpoints"]["last"])
        interrupted = record.get("interrupted")
        if interrupted and interrupted["during"] == "atlas":
            lines.insert(0, f"interrupted by {interrupted['signal']} while rendering the atlas (training had finished, "
                            f"the checkpoints are kept); render it with:\n  {interrupted['resume']}")
        elif interrupted:
            saved = f"the finished epochs are in {last}" if last and os.path.exists(last) else "no epoch had finished"
            lines.insert(0, f"interrupted by {interrupted['signal']} in epoch {interrupted['epoch']} ({saved}); "
                            f"resume with:\n  {interrupted['resume']}")
        elif last and os.path.exists(last):
            lines.append(f"last checkpoint: {last} (resume with --ckpt_path last)")
        if record.get("status") == "diverged":
            lines.insert(0, f"diverged: {record['error']}")
        for section, what in (("probe", "probe"), ("probe_untrained", "probe of the untrained network")):
            if section in record:
                probe = record[section]
                lines.append(f"{what} ({probe['target']}): best test accuracy {probe.get('test/acc_best', float('nan')):.4f}, "
                             f"checkpoint {self.found(probe['checkpoint'])}")
        atlases = [c.directory for c in self.trainer.callbacks if isinstance(c, ActivationAtlas) and c.directory]
        lines += [f"atlas: {directory}" for directory in atlases]
        wandb_facts = record.get("wandb")
        if wandb_facts:
            lines.append(f"W&B run: {wandb_facts['url'] or 'offline; upload with `wandb sync ' + wandb_facts['dir'] + '`'}")
        files = record.get("summary_files") or []
        lines.append(f"summary: {files[0]}" if len(files) == 1 else f"summaries (one per member of the stack): {', '.join(files)}")
        return "\n".join(lines)

"""``wide-lightning`` / ``python -m wide_lightning``: one LightningCLI in subclass mode.

``fit`` trains, then tests the best checkpoint in the same command. If the config has a ``probe``
section with a ``target`` (a transfer run, one point of Figure 4), it then trains a linear probe on
the frozen features for that new target, logging into the same W&B run under ``probe/``. Every
``fit`` ends by writing ``summary.json`` (width, depth, parameter count, seed, test accuracies,
checkpoints, W&B run) into its run directory: what ``wide-lightning-report`` reads.

Each run's checkpoints go to ``<trainer.default_root_dir>/checkpoints`` (every config names its
own root; under a W&B sweep agent, ``checkpoints/<run id>``), so ``fit --ckpt_path last`` finds the
newest ``last*.ckpt`` of that run and resumes it.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities import rank_zero_info

import wide_lightning.data  # noqa: F401  (so YAML may name classes by their short names)
import wide_lightning.tasks  # noqa: F401
from wide_lightning.callbacks import ActivationAtlas
from wide_lightning.checkpointing import BestAndLastCheckpoint
from wide_lightning.data.base import ImageDataModule
from wide_lightning.files import use_atomic_checkpoints, write_text
from wide_lightning.interruption import Interrupted, exit_code_of, received, signals_recorded
from wide_lightning.loggers import PrefixedLogger, RunConfigSaver, unused_path
from wide_lightning.resume import check_resumable, load_for_checking, newest_last_checkpoint
from wide_lightning.speed import STEP_LEVERS
from wide_lightning.tasks.base import CHECKPOINT_KEY, ClassificationTask, Diverged, init_arguments
from wide_lightning.tasks.probe import LinearProbe
from wide_lightning.tasks.stacked import StackedLinearProbe, StackedTask

CHECKPOINT_DEFAULTS = {
    "checkpoint.monitor": "val/acc",
    "checkpoint.mode": "max",
    "checkpoint.save_last": True,
    "checkpoint.filename": "epoch{epoch:03d}-val_acc{val/acc:.4f}",
    "checkpoint.auto_insert_metric_name": False,
}


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
    """

    target: str | None = None
    lr: float | None = None
    max_epochs: int | None = None
    backbone: Literal["last", "best"] = "last"


def check_devices(accelerator: Any, devices: Any) -> None:
    """Refuse more GPUs than the machine has, naming the flag and the fix, before anything is built."""
    if not isinstance(accelerator, str) or accelerator not in ("gpu", "cuda", "auto"):
        return
    if not torch.cuda.is_available():
        if accelerator != "auto":
            raise ValueError(f"--trainer.accelerator={accelerator} but this machine has no CUDA device; "
                             f"use --trainer.accelerator=cpu (or auto).")
        return
    wanted = int(devices) if isinstance(devices, int) or (isinstance(devices, str) and devices.isdigit()) else None
    available = torch.cuda.device_count()
    if wanted is not None and wanted > available:
        raise ValueError(f"--trainer.devices={wanted} but this machine has {available} CUDA device(s); "
                         f"use --trainer.devices={available} (or -1 for all), or run on more nodes with "
                         f"--trainer.num_nodes.")


def _scalars(metrics: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in sorted(metrics.items())}


class WideLightningCLI(LightningCLI):
    """Links the DataModule's ``num_classes`` and ``input_shape`` into the model; test, probe and summary after ``fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)
        parser.add_class_arguments(ProbeSpec, "probe")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")

    def __init__(self, *args: Any, args_for_resume: list[str] | None = None, **kwargs: Any) -> None:
        self.args_for_resume = args_for_resume
        self.summary_written = False
        super().__init__(*args, **kwargs)

    def _subconfig(self) -> Any:
        # from the config, not ``self.subcommand``: ``_parse_ckpt_path`` runs before that is set
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    @staticmethod
    def _set_checkpoint_dir(config: Any) -> None:
        if config.get("checkpoint") is not None and config.checkpoint.dirpath is None:
            # a sweep agent runs many points from one config: give each run its own folder
            run_id = os.environ.get("WANDB_RUN_ID") if os.environ.get("WANDB_SWEEP_ID") else None
            root = config.trainer.default_root_dir or "."
            config.checkpoint.dirpath = os.path.join(root, "checkpoints", *([run_id] if run_id else []))

    def _parse_ckpt_path(self) -> None:
        """Resume exactly (``resume.py``): instead of LightningCLI's silent override of the config by the
        checkpoint's hyper-parameters, refuse a checkpoint of another run; say in one line when ``last``
        finds nothing to resume (the run starts fresh, so a scheduler may requeue the same command);
        continue the checkpoint's W&B run."""
        if self.config.get("subcommand") != "fit":
            return super()._parse_ckpt_path()
        config = self._subconfig()
        ckpt_path = config.get("ckpt_path")
        if not ckpt_path or ckpt_path in ("best", "hpc", "registry"):
            return
        self._set_checkpoint_dir(config)
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
        checkpoint = load_for_checking(ckpt_path)
        check_resumable(ckpt_path, checkpoint, config.model, config.data)
        run_id = (checkpoint.get(CHECKPOINT_KEY) or {}).get("wandb_run_id")
        logger = config.trainer.logger
        init_args = getattr(logger, "init_args", None)
        if run_id and init_args is not None and str(getattr(logger, "class_path", "")).endswith("WandbLogger") \
                and init_args.get("id") is None:
            init_args.id = run_id  # Lightning's WandbLogger resumes with resume="allow": the same W&B run

    def before_instantiate_classes(self) -> None:
        config = self._subconfig()
        check_devices(config.trainer.accelerator, config.trainer.devices)
        if self.subcommand == "fit":
            for flag in ("max_epochs", "max_steps"):
                if config.trainer.get(flag) == 0:
                    raise ValueError(f"--trainer.{flag}=0 trains nothing: the run would test an untrained network "
                                     f"and call it finished. Give --trainer.{flag} a positive number.")
        root = config.trainer.default_root_dir or "."
        self._set_checkpoint_dir(config)
        logger = config.trainer.logger
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and "save_dir" in init_args and init_args.save_dir is None:
            init_args.save_dir = root

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        """The subcommand, with SIGTERM/SIGINT recorded; a ``fit`` that does not finish leaves a summary that
        says why (``interrupted``, ``diverged``, ``failed``), and a signal ends in exit status 128 + N."""
        with signals_recorded():
            try:
                super()._run_subcommand(subcommand)
            except BaseException as error:
                signum = error.signum if isinstance(error, Interrupted) else received()
                started = signum is not None or isinstance(error, Diverged) or self.trainer.global_step > 0
                if subcommand == "fit" and started and not self.summary_written and self.trainer.is_global_zero:
                    try:
                        self._record_unfinished(error, signum)
                    except OSError as failure:  # e.g. the disk that filled: the first error is the one to see
                        print(f"(the summary could not be written: {failure})", file=sys.stderr)
                if signum is not None:
                    raise SystemExit(exit_code_of(signum)) from None
                raise
            # a signal after the last check (e.g. while the summary was written) finds the run finished: exit 0

    def _record_unfinished(self, error: BaseException, signum: int | None) -> None:
        """The summary of a fit that stopped before ``after_fit``, with the status, and how to go on."""
        callback = self.trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        summary = self._summary(_scalars(self.trainer.callback_metrics), {}, best)
        self._mark_unfinished(summary, error, signum)
        for record in self._member_summaries(summary):
            self._write_summary(record)
            summary.setdefault("summary_files", []).append(record["summary_file"])
        self._finish_wandb_run(summary)
        self._report(summary)

    def _mark_unfinished(self, summary: dict[str, Any], error: BaseException, signum: int | None) -> None:
        if signum is not None:
            import signal

            summary["status"] = "interrupted"
            summary["interrupted"] = {"signal": signal.Signals(signum).name, "epoch": self.trainer.current_epoch,
                                      "during": "training", "resume": self.resume_command()}
            atlas = [c for c in self.trainer.callbacks if isinstance(c, ActivationAtlas) and c.interrupted]
            if atlas:  # training had finished: only the figures are missing
                last = summary["checkpoints"]["last"]
                summary["interrupted"].update(during="atlas", resume=shlex.join(["wide-lightning-atlas", "--checkpoint", last]))
        elif isinstance(error, Diverged):
            summary["status"] = "diverged"
            summary["error"] = str(error)
        else:
            summary["status"] = "failed"
            summary["error"] = f"{type(error).__name__}: {error}"

    def resume_command(self) -> str:
        """This command again, resuming from the run's newest ``last.ckpt``."""
        args = list(sys.argv[1:] if self.args_for_resume is None else self.args_for_resume)
        kept, skip = [], False
        for arg in args:
            if skip:
                skip = False
                continue
            if arg == "--ckpt_path":
                skip = True
                continue
            if not arg.startswith("--ckpt_path="):
                kept.append(arg)
        return shlex.join(["wide-lightning", *kept, "--ckpt_path", "last"])

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            return
        fit_metrics = _scalars(trainer.callback_metrics)  # test() below resets them
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        last = callback.last_model_path if callback is not None else ""
        test_metrics = trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None)
        if callback is not None:  # testing "best" restored the callback's state as it was when best was saved
            callback.last_model_path = last
        summary = self._summary(fit_metrics, test_metrics[0] if test_metrics else {}, best)
        try:
            spec = ProbeSpec(**vars(self._subconfig().probe))
            if spec.target is not None:
                summary["kind"] = "transfer"
                summary["probe"] = self._run_probe(spec, summary)
        except BaseException as error:  # a signal during the test or the probe too
            self._mark_unfinished(summary, error, error.signum if isinstance(error, Interrupted) else received())
            raise
        finally:
            self.summary_written = True
            if trainer.is_global_zero:
                for record in self._member_summaries(summary):
                    self._write_summary(record)
                    summary.setdefault("summary_files", []).append(record["summary_file"])
            self._finish_wandb_run(summary)
            if trainer.is_global_zero:  # last, after W&B's own closing lines, so that it stays on screen
                self._report(summary)

    # -- transfer ---------------------------------------------------------------------------------

    def _run_probe(self, spec: ProbeSpec, summary: dict[str, Any]) -> dict[str, Any]:
        """A linear probe on the frozen features just trained, for ``spec.target``, in the same W&B run."""
        callback = self.trainer.checkpoint_callback
        backbone = (callback.last_model_path if spec.backbone == "last" else callback.best_model_path) if callback else ""
        if self.trainer.fast_dev_run:  # no checkpoints are saved: probe the weights at hand
            backbone = os.path.join(callback.dirpath if callback else self.trainer.default_root_dir, "fast_dev_run.ckpt")
            self.trainer.save_checkpoint(backbone)
        if not backbone or not os.path.exists(backbone):
            raise RuntimeError(f"the transfer run has no {spec.backbone} checkpoint to probe ({backbone!r}).")
        data = type(self.datamodule)(**{**init_arguments(self.datamodule), "target": spec.target, "test_each_epoch": True})
        kwargs = dict(num_classes=data.num_classes, input_shape=tuple(data.input_shape),
                      lr=spec.lr if spec.lr is not None else self.model.lr, momentum=self.model.momentum)
        if isinstance(self.model, StackedTask):  # each member's head is seeded with the member's seed
            probe = StackedLinearProbe(backbone, **kwargs)
        else:  # the run's seed, not whatever base training left in the random stream
            seed = self._subconfig().get("seed_everything")
            probe = LinearProbe(backbone, **kwargs, head_seed=seed if type(seed) is int else None)
        trainer_config = {k: v for k, v in vars(self._subconfig().trainer).items()
                          if k not in ("callbacks", "logger", "enable_checkpointing")}
        if spec.max_epochs is not None:
            trainer_config["max_epochs"] = spec.max_epochs
        probe_dir = os.path.join(callback.dirpath, "probe")
        checkpoint = BestAndLastCheckpoint(dirpath=probe_dir, **{k.split(".", 1)[1]: v for k, v in CHECKPOINT_DEFAULTS.items()})
        loggers = [PrefixedLogger(logger, "probe/") for logger in self.trainer.loggers]
        levers = [c for c in self.trainer.callbacks if isinstance(c, STEP_LEVERS)]  # the probe trains as fast
        trainer = Trainer(**trainer_config, callbacks=[checkpoint, *levers], logger=loggers or False)
        use_atomic_checkpoints(trainer)
        rank_zero_info(f"transfer: linear probe for target {spec.target!r} on the frozen features of {backbone}")
        trainer.fit(probe, datamodule=data)
        fit_metrics = _scalars(trainer.callback_metrics)
        return {
            "target": spec.target, "backbone_checkpoint": backbone, "checkpoint": checkpoint.best_model_path,
            "lr": probe.lr, "max_epochs": trainer.max_epochs, **fit_metrics,
        }

    # -- the record a finished run leaves ----------------------------------------------------------

    def _summary(self, fit_metrics: dict[str, float], test_metrics: dict[str, float], best: str) -> dict[str, Any]:
        model, data = self.model, self.datamodule
        facts = model.summary()
        callback = self.trainer.checkpoint_callback
        config = self._subconfig()
        return {
            "kind": "fit",
            "status": "finished",
            "model": type(model).__name__,
            "dataset": type(data).__name__,
            "target": data.target,
            "width": facts["width"],
            "depth": facts.get("depth"),
            "parameters": facts["parameters"],
            "lr": facts["lr_resolved"],
            # a stack's members have their own seeds (its per-member summaries carry them)
            "seed": None if isinstance(model, StackedTask) else config.get("seed_everything"),
            "max_epochs": self.trainer.max_epochs,
            "config": [str(c) for c in (config.get("config") or [])],
            "base": {**fit_metrics, **_scalars(test_metrics)},
            "checkpoints": {"best": best, "last": callback.last_model_path if callback else ""},
            "wandb": self._wandb_facts(),
        }

    def _wandb_facts(self) -> dict[str, Any] | None:
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                run_dir = getattr(run, "dir", None)
                if isinstance(run_dir, str):
                    return {"id": getattr(run, "id", None), "project": getattr(run, "project", None),
                            "url": getattr(run, "url", None), "dir": os.path.dirname(run_dir)}
        return None

    def _member_summaries(self, summary: dict[str, Any]) -> list[dict[str, Any]]:
        """One record per trained network: the run's own, or one per member of a stack, each with its own
        seed, depth, width and parameter count and its own metrics (those under its ``member_names`` prefix)."""
        if not isinstance(self.model, StackedTask):
            return [summary]
        sections = {name: values for name in ("base", "probe") if isinstance(values := summary.get(name), dict)}
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
            record = {**summary, "seed": member["seed"], "depth": member["depth"], "width": member["width"],
                      "parameters": member["parameters"], "member_of_stack": {**stack, "name": member["name"]}}
            for name, values in sections.items():
                # facts (no "/") and this member's own metrics
                record[name] = {**{k: v for k, v in values.items() if "/" not in k},
                                **{k[len(prefix):]: v for k, v in values.items() if k.startswith(prefix)}}
            records.append(record)
        return records

    def _write_summary(self, summary: dict[str, Any]) -> None:
        root = Path(self.trainer.default_root_dir)
        run_id = (summary.get("wandb") or {}).get("id")
        name = f"summary-{run_id}.json" if os.environ.get("WANDB_SWEEP_ID") and run_id else "summary.json"
        if "member_of_stack" in summary:  # seed<S> -> -seed<S>.json; depth<L>/seed<S> -> -depth<L>-seed<S>.json
            name = name.replace(".json", f"-{summary['member_of_stack']['name'].replace('/', '-')}.json")
        path = unused_path(root / name)
        write_text(path, json.dumps(summary, indent=2, default=str))
        summary["summary_file"] = str(path)

    def _report(self, summary: dict[str, Any]) -> None:
        lines = [f"best checkpoint: {summary['checkpoints']['best'] or '(none saved)'}"]
        last = summary["checkpoints"]["last"]
        interrupted = summary.get("interrupted")
        if interrupted and interrupted["during"] == "atlas":
            lines.insert(0, f"interrupted by {interrupted['signal']} while rendering the atlas (training had finished, "
                            f"the checkpoints are kept); render it with:\n  {interrupted['resume']}")
        elif interrupted:
            saved = f"the finished epochs are in {last}" if last and os.path.exists(last) else "no epoch had finished"
            lines.insert(0, f"interrupted by {interrupted['signal']} in epoch {interrupted['epoch']} ({saved}); "
                            f"resume with:\n  {interrupted['resume']}")
        elif last and os.path.exists(last):
            lines.append(f"last checkpoint: {last} (resume with --ckpt_path last)")
        if summary.get("status") == "diverged":
            lines.insert(0, f"diverged: {summary['error']}")
        if "probe" in summary:
            probe = summary["probe"]
            lines.append(f"probe ({probe['target']}): best test accuracy {probe.get('test/acc_best', float('nan')):.4f}, "
                         f"checkpoint {probe['checkpoint']}")
        atlases = [c.directory for c in self.trainer.callbacks if isinstance(c, ActivationAtlas) and c.directory]
        lines += [f"atlas: {directory}" for directory in atlases]
        wandb_facts = summary.get("wandb")
        if wandb_facts:
            lines.append(f"W&B run: {wandb_facts['url'] or 'offline; upload with `wandb sync ' + wandb_facts['dir'] + '`'}")
        files = summary.get("summary_files") or []
        lines.append(f"summary: {files[0]}" if len(files) == 1 else f"summaries (one per member of the stack): {', '.join(files)}")
        rank_zero_info("\n".join(lines))

    def _finish_wandb_run(self, summary: dict[str, Any]) -> None:
        # One fit is one W&B run: record the summary, then close it so a later run starts its own.
        if not self.trainer.is_global_zero:
            return
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                flat = {k: v for k, v in summary.items() if isinstance(v, (int, float, str)) or v is None}
                for section in ("base", "probe"):
                    flat.update({f"{section}/{k}": v for k, v in (summary.get(section) or {}).items()
                                 if isinstance(v, (int, float))})
                if hasattr(run, "summary"):
                    run.summary.update(flat)
                import wandb

                if wandb.run is not None:
                    wandb.finish(exit_code=0 if summary.get("status") == "finished" else 1)


def description() -> str:
    """``wide-lightning --help``: what the tool is, the paper's configs, and the other two commands."""
    configs = Path(__file__).resolve().parents[1] / "configs"
    listed = sorted(str(p.relative_to(configs.parent)) for p in configs.glob("*/*.yaml")) if configs.is_dir() else []
    return "\n".join([
        "Train the networks of 'Wider Networks Learn Better Features' (Gilboa & Gur-Ari) and look inside them.",
        "",
        "  wide-lightning fit --config configs/mnist/conv_n2048.yaml [--model.width=64 ...]",
        "",
        "The paper's runs, one config each" + (":" if listed else " (configs/ in the repository)."),
        *[f"  {name}" for name in listed],
        "",
        "Also: wide-lightning-atlas --checkpoint CKPT (the activation atlas of a trained network) and",
        "wide-lightning-report --runs DIR (Figure 4 from finished runs). `wide-lightning fit --help` lists",
        "every option; options are spelt out in full.",
    ])


def build_cli(args: ArgsType = None, run: bool = True, **kwargs: Any) -> WideLightningCLI:
    """The CLI; a parse error raises ``argparse.ArgumentError`` (``main`` turns it into a short message)."""
    from jsonargparse import DefaultHelpFormatter

    class KeepLines(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
        """The description's lines as written (the configs one per line)."""

    strict = {"exit_on_error": False, "allow_abbrev": False}
    parser_kwargs = {**strict, "description": description(), "formatter_class": KeepLines, "prog": "wide-lightning",
                     **{name: dict(strict) for name in LightningCLI.subcommands()}}
    parser_kwargs.update(kwargs.pop("parser_kwargs", {}))
    return WideLightningCLI(
        args_for_resume=None if args is None else [str(a) for a in args] if isinstance(args, list) else None,
        model_class=ClassificationTask,
        datamodule_class=ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        seed_everything_default=0,
        trainer_defaults={"logger": {"class_path": "wide_lightning.loggers.WandbLogger"}},
        auto_configure_optimizers=False,
        args=args,
        run=run,
        parser_kwargs=parser_kwargs,
        **kwargs,
    )


def main(args: ArgsType = None) -> None:
    """``wide-lightning``: the CLI, with short errors for what a person got wrong (``errors.py``)."""
    from wide_lightning.console import quiet_library_noise
    from wide_lightning.errors import run_for_people

    quiet_library_noise()

    def run(argv: list[str]) -> None:
        # the resolved config without the logger's dozens of unset (null) arguments
        argv = ["--print_config=skip_null" if a == "--print_config" else a for a in argv]
        build_cli(argv)

    run_for_people(run, args, "wide-lightning")


if __name__ == "__main__":
    main()

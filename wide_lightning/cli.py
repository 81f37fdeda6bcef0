"""``wide-lightning`` / ``python -m wide_lightning``: one LightningCLI in subclass mode.

``fit`` trains (the atlas callback renders at the end of training), then tests the best checkpoint;
a config with a ``probe`` section (a transfer run, one point of Figure 4) then trains a linear probe
on the frozen features (``transfer.py``); every ``fit`` ends in its run record, ``summary.json``
(``record.py``), what ``wide-lightning-report`` reads.

Each run has its own folder, ``<trainer.default_root_dir>/<run name>`` (``run_folder.py``), which
the CLI makes the run's ``default_root_dir``: its checkpoints, record, atlas and W&B files go there,
and ``fit --ckpt_path last`` finds the newest ``last*.ckpt`` of that run alone (``resume.py``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Trainer
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.trainer.states import TrainerStatus

import wide_lightning.data  # noqa: F401  (so YAML may name classes by their short names)
import wide_lightning.tasks  # noqa: F401
from wide_lightning.checkpoints import CHECKPOINT_DEFAULTS, BestAndLastCheckpoint
from wide_lightning.data.base import ImageDataModule
from wide_lightning.errors import check_config_files
from wide_lightning.files import use_atomic_checkpoints
from wide_lightning.interruption import entered, exit_code_of, signals_recorded
from wide_lightning.loggers import RunConfigSaver
from wide_lightning.record import RunRecord, check_data_folders, scalars, signal_of
from wide_lightning.resume import Placement, check_trains_something, place_run
from wide_lightning.run_folder import RunIdentity, RunLock, is_worker_process, write_run_file
from wide_lightning.tasks.base import ClassificationTask
from wide_lightning.transfer import ProbeSpec, check_probe_spec, run_probe


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


class WideLightningCLI(LightningCLI):
    """Links the DataModule's ``num_classes`` and ``input_shape`` into the model; test, probe and record after ``fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(BestAndLastCheckpoint, "checkpoint")
        parser.set_defaults({f"checkpoint.{k}": v for k, v in CHECKPOINT_DEFAULTS.items()})
        parser.add_class_arguments(ProbeSpec, "probe")
        parser.add_argument("--run_name", type=str | None, default=None,
                            help="The run's folder under trainer.default_root_dir (default: seed<S>-<hash of the "
                                 "settings>, under a W&B sweep the W&B run's id): a second run of the same settings.")
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")

    def __init__(self, *args: Any, args_for_resume: list[str] | None = None, **kwargs: Any) -> None:
        self.args_for_resume = list(sys.argv[1:] if args_for_resume is None else args_for_resume)
        self.record: RunRecord | None = None
        self.placement: Placement | None = None
        self.lock: RunLock | None = None
        super().__init__(*args, **kwargs)

    def _subconfig(self) -> Any:
        # from the config, not ``self.subcommand``: ``_parse_ckpt_path`` runs before that is set
        subcommand = self.config.get("subcommand")
        return self.config[subcommand] if subcommand else self.config

    def _parse_ckpt_path(self) -> None:
        # private, since it is where LightningCLI would silently override the config by the checkpoint's
        # hyper-parameters: here the checkpoint must describe the config's run instead (resume.py)
        if self.config.get("subcommand") != "fit":
            return super()._parse_ckpt_path()
        check_trains_something(self._subconfig())  # only what was asked is recorded as finished
        self.placement = place_run(self._subconfig())  # the run's own folder, and what it resumes

    def before_instantiate_classes(self) -> None:
        config = self._subconfig()
        check_devices(config.trainer.accelerator, config.trainer.devices)
        if "probe" in config:
            check_probe_spec(ProbeSpec(**vars(config.probe)), getattr(config.model, "class_path", None))
        init_args = getattr(config.trainer.logger, "init_args", None)
        if init_args is not None and "save_dir" in init_args and init_args.save_dir is None:
            init_args.save_dir = config.trainer.default_root_dir or "."

    def instantiate_trainer(self, **kwargs: Any) -> Trainer:
        trainer = super().instantiate_trainer(**kwargs)
        use_atomic_checkpoints(trainer)
        placement = self.placement
        if placement is None:  # validate / test: no run of its own, but the same refusal of unreadable data
            check_data_folders(self.datamodule)
            return trainer
        self.record = RunRecord(trainer, self.model, self.datamodule, self._subconfig(), self.args_for_resume,
                                resumed=placement.resumed)  # checks that the run folder can be written
        trainer.callbacks.append(RunIdentity(placement.name, placement.settings))
        if not is_worker_process():
            self.lock = RunLock(placement.folder)
            self.lock.claim()  # a second fit of this run is refused while this one writes here
            write_run_file(placement.folder, placement.name, placement.settings)
        return trainer

    def _run_subcommand(self, subcommand: str) -> None:
        # private, since no public hook surrounds the whole subcommand: a failure or a signal in fit, in the
        # test or in the probe after it must end in the same unfinished record and exit status 128 + N
        with signals_recorded():
            try:
                super()._run_subcommand(subcommand)
            except BaseException as error:
                if subcommand == "fit" and self.record is not None:
                    self.record.close_unfinished(error)
                if (signum := signal_of(error)) is not None:
                    raise SystemExit(exit_code_of(signum)) from None
                raise
            finally:
                if self.lock is not None:
                    self.lock.release()
            # a signal after the last check (e.g. while the record was written) finds the run finished: exit 0

    def after_fit(self) -> None:
        """The run after training, as it reads: test the best checkpoint, the probe (a transfer run), the record."""
        trainer, record = self.trainer, self.record
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            return
        fit_metrics = scalars(trainer.callback_metrics)  # test() below resets them
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        last = callback.last_model_path if callback is not None else ""
        test_metrics = trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None)
        if callback is not None:  # testing "best" restored the callback's state as it was when best was saved
            callback.last_model_path = last
        summary = record.describe(fit_metrics, test_metrics[0] if test_metrics else {})
        try:
            spec = ProbeSpec(**vars(self._subconfig().probe))
            if spec.target is not None:
                summary["kind"] = "transfer"
                entered("probe")
                settings, seed = vars(self.config_init[self.subcommand].trainer), self._subconfig().get("seed_everything")
                record.with_probe(summary, run_probe(spec, trainer, self.model, self.datamodule, settings, seed))
                if spec.control == "untrained":
                    record.with_probe(summary, run_probe(spec, trainer, self.model, self.datamodule, settings, seed,
                                                         untrained=True), section="probe_untrained")
        except BaseException as error:  # a signal during the test or the probe too
            record.unfinished(summary, error)
            raise
        finally:
            record.close(summary)


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

    check_config_files(sys.argv[1:] if args is None else args)  # before jsonargparse reads (and forgives) them

    class KeepLines(argparse.RawDescriptionHelpFormatter, DefaultHelpFormatter):
        """The description's lines as written (the configs one per line)."""

    strict = {"exit_on_error": False, "allow_abbrev": False}
    parser_kwargs = {**strict, "description": description(), "formatter_class": KeepLines, "prog": "wide-lightning",
                     **{name: dict(strict) for name in LightningCLI.subcommands()}}
    parser_kwargs.update(kwargs.pop("parser_kwargs", {}))
    return WideLightningCLI(
        args_for_resume=[str(a) for a in args] if isinstance(args, list) else None,
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

"""``wide-lightning`` / ``python -m wide_lightning``: one LightningCLI in subclass mode.

``fit`` trains, then tests the best checkpoint in the same command. Each run's checkpoints go to
``<trainer.default_root_dir>/checkpoints`` (every config names its own root), so
``fit --ckpt_path last`` finds the newest ``last*.ckpt`` of that run and resumes it.
"""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.cli import ArgsType, LightningArgumentParser, LightningCLI
from lightning.pytorch.trainer.states import TrainerStatus
from lightning.pytorch.utilities import rank_zero_info

import wide_lightning.data  # noqa: F401  (so YAML may name classes by their short names)
import wide_lightning.tasks  # noqa: F401
from wide_lightning.data.base import ImageDataModule
from wide_lightning.loggers import RunConfigSaver
from wide_lightning.tasks.base import ClassificationTask

CHECKPOINT_DEFAULTS = {
    "checkpoint.monitor": "val/acc",
    "checkpoint.mode": "max",
    "checkpoint.save_last": True,
    "checkpoint.filename": "epoch{epoch:03d}-val_acc{val/acc:.4f}",
    "checkpoint.auto_insert_metric_name": False,
}


class WideLightningCLI(LightningCLI):
    """Links the DataModule's ``num_classes`` and ``input_shape`` into the model and tests after ``fit``."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        parser.add_lightning_class_args(ModelCheckpoint, "checkpoint")
        parser.set_defaults(CHECKPOINT_DEFAULTS)
        parser.link_arguments("data.num_classes", "model.init_args.num_classes", apply_on="instantiate")
        parser.link_arguments("data.input_shape", "model.init_args.input_shape", apply_on="instantiate")

    def before_instantiate_classes(self) -> None:
        config = self.config[self.subcommand] if self.subcommand else self.config
        root = config.trainer.default_root_dir or "."
        if config.get("checkpoint") is not None and config.checkpoint.dirpath is None:
            config.checkpoint.dirpath = os.path.join(root, "checkpoints")
        logger = config.trainer.logger
        init_args = getattr(logger, "init_args", None)
        if init_args is not None and "save_dir" in init_args and init_args.save_dir is None:
            init_args.save_dir = root

    def after_fit(self) -> None:
        trainer = self.trainer
        if trainer.state.status == TrainerStatus.INTERRUPTED:
            return
        callback = trainer.checkpoint_callback
        best = callback.best_model_path if callback is not None else ""
        trainer.test(self.model, datamodule=self.datamodule, ckpt_path="best" if best else None)
        self._report(best)
        self._finish_wandb_run()

    def _finish_wandb_run(self) -> None:
        # One fit is one W&B run: close it so a later run in the same process starts its own.
        if any(isinstance(logger, WandbLogger) for logger in self.trainer.loggers) and self.trainer.is_global_zero:
            import wandb

            if wandb.run is not None:
                wandb.finish()

    def _report(self, best: str) -> None:
        lines = [f"best checkpoint: {best or '(none saved)'}"]
        callback = self.trainer.checkpoint_callback
        if callback is not None and callback.last_model_path and os.path.exists(callback.last_model_path):
            lines.append(f"last checkpoint: {callback.last_model_path} (resume with --ckpt_path last)")
        for logger in self.trainer.loggers:
            if isinstance(logger, WandbLogger):
                run = logger.experiment
                run_dir = getattr(run, "dir", None)
                if isinstance(run_dir, str):
                    where = getattr(run, "url", None) or f"offline; upload with `wandb sync {os.path.dirname(run_dir)}`"
                    lines.append(f"W&B run: {where}")
        rank_zero_info("\n".join(lines))


def build_cli(args: ArgsType = None, run: bool = True, **kwargs: Any) -> WideLightningCLI:
    return WideLightningCLI(
        ClassificationTask,
        ImageDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        save_config_callback=RunConfigSaver,
        seed_everything_default=0,
        trainer_defaults={"logger": {"class_path": "wide_lightning.loggers.WandbLogger"}},
        auto_configure_optimizers=False,
        args=args,
        run=run,
        **kwargs,
    )


def main(args: ArgsType = None) -> None:
    build_cli(args)


if __name__ == "__main__":
    main()

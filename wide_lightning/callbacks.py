"""The end-of-training activation atlas (Sections 3-4; Figures 1-3)."""

from __future__ import annotations

import time
import traceback
from pathlib import Path
from typing import Any

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.callbacks import TQDMProgressBar
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from wide_lightning.atlas.collect import collect_from_datamodule
from wide_lightning.atlas.figures import exemplar_strips, icon_grid, to_uint8
from wide_lightning.activations import Position, layer_reader
from wide_lightning.atlas.pipeline import AtlasResult
from wide_lightning.atlas.progress import Progress
from wide_lightning.atlas.settings import AtlasSettings
from wide_lightning.atlas.summary import metric_lines, summary_lines
from wide_lightning.atlas.memory import AtlasMemoryError, available_device_memory, check_atlas_memory, keyword
from wide_lightning.atlas.task import estimate_task_atlas, render_task_atlas
from wide_lightning.interruption import Interrupted, stop_promptly


class ActivationAtlas(Callback):
    """At the end of training, the atlas of the trained network's penultimate layer (or of any ``layer``).

    Renders (a) the UMAP histogram coloured by class, (b) the atlas, (c) individual neurons, (d) the
    training images nearest each cell beside its icon; logs them to W&B as images, the cells as a
    table (one row per cell: icon, exemplars, count, majority label, purity, what the network and
    the judge call the icon), the atlas numbers (how recognizable the icons are among them) and the
    final accuracies; writes PNGs, ``atlas.npz`` and ``settings.txt`` to ``<default_root_dir>/atlas``
    (``atlas-v1``... if taken). Every rank collects its share of the training set and the vectors
    are gathered and de-duplicated; rank 0 alone lays out and renders while the others wait. An
    atlas whose settings need more memory than is free is refused in ``setup``, before training, in one
    sentence naming the memory and the setting to change (``atlas/memory.py``). A failure while
    rendering is reported (warning, ``atlas_error.txt``) and does not stop the run: checkpoints and
    logged metrics are kept, and ``fit`` goes on to test. Skipped under
    ``fast_dev_run``. The keyword arguments are ``AtlasSettings``' (``preset``, ``steps``, ``grid_size``,
    ...: the one declaration of the atlas settings, checked here, before training), beside
    ``batch_size`` for collecting and ``output_dir``. ``layer`` names the layer by its
    module path in the LightningModule (``features``, the default, is our networks' penultimate layer;
    e.g. ``net.features.3``, or ``backbone.layer4`` of a module of your own) and ``position`` how a
    convolutional layer gives one vector per example (``random``, the paper's; ``centre``; ``mean``):
    see ``wide_lightning/activations.py``.

    While it works it logs one line per stage and, where the trainer shows a progress bar
    (``enable_progress_bar``) on a terminal outside CI, a bar of each long stage (``atlas/progress.py``); it
    ends with a short table (cells kept, purity, how many icons the network and the judge name, the panel).
    ``verbose=True`` logs every number of the atlas too (they are in ``atlas.npz`` and the loggers anyway).
    """

    def __init__(
        self,
        layer: str = "features",
        position: Position = "random",
        batch_size: int = 1024,
        output_dir: str | None = None,
        verbose: bool = False,
        **settings: Any,
    ) -> None:
        self.settings = AtlasSettings(**settings)  # the settings' checks run here, before training
        self.batch_size = batch_size
        self.verbose = verbose
        self.output_dir = output_dir
        self.layer = layer
        self.position = position
        self.result: AtlasResult | None = None
        self.directory: Path | None = None
        self.error: BaseException | None = None
        self.interrupted: Interrupted | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":  # a layer name that does not exist is refused before training, not after it
            read = layer_reader(pl_module, self.layer, self.position, self.settings.seed)
            if not trainer.fast_dev_run:
                self._refuse_what_will_not_fit(trainer, pl_module, read)

    def _refuse_what_will_not_fit(self, trainer: Trainer, pl_module: LightningModule, read: Any) -> None:
        """An atlas that will not fit in memory is refused before training (``atlas/memory.py``), in one sentence.

        The width and the training split are known in ``setup``; the network is still on the CPU, so the
        device's free memory is counted less the parameters that will move there. Every process decides
        together, so that none trains alone while another has refused.
        """
        datamodule = trainer.datamodule
        sentence = None
        if datamodule is not None and hasattr(datamodule, "dataset"):
            device = trainer.strategy.root_device
            try:
                estimate = estimate_task_atlas(datamodule, read, self.settings, device=device, collect_all=True,
                                               world_size=trainer.world_size)
            except Exception as error:  # noqa: BLE001 - a failed estimate is no reason to stop training
                rank_zero_warn(f"ActivationAtlas: its memory could not be estimated before training ({error}).")
            else:
                device_free = available_device_memory(device)
                if device_free is not None and pl_module.device != device:  # the network moves there to train
                    device_free -= sum(p.numel() * p.element_size() for p in pl_module.parameters())
                try:
                    check_atlas_memory(estimate, device=device, device_free=device_free, flag=keyword)
                except AtlasMemoryError as error:
                    sentence = str(error)
        if trainer.world_size > 1 and not trainer.strategy.reduce_boolean_decision(sentence is None, all=True):
            sentence = sentence or "the atlas does not fit in the memory of another process; see its message"
        if sentence is not None:
            raise AtlasMemoryError(f"ActivationAtlas, before training: {sentence}")

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:
            rank_zero_info("ActivationAtlas: skipped under fast_dev_run.")
            return
        bar = trainer.progress_bar_callback
        if isinstance(bar, TQDMProgressBar) and bar._train_progress_bar is not None:
            bar.on_train_end(trainer, pl_module)  # close the epoch's bar first: its timer is not the atlas's
        out_dir = Path(self.output_dir or Path(trainer.default_root_dir) / "atlas").resolve()
        try:
            with stop_promptly():  # the checkpoints and metrics are safe: a signal need not wait for the figures
                self._collect_and_render(trainer, pl_module, out_dir)
        except Interrupted as interruption:
            self.interrupted = interruption
            checkpoint = trainer.checkpoint_callback
            last = getattr(checkpoint, "last_model_path", "") or "<the run's last.ckpt>"
            rank_zero_warn(f"ActivationAtlas: {interruption} while rendering; the checkpoints and metrics are kept. "
                           f"Render the atlas later with `wide-lightning-atlas --checkpoint {last}`.")
            raise

    def _collect_and_render(self, trainer: Trainer, pl_module: LightningModule, out_dir: Path) -> None:
        datamodule = trainer.datamodule
        progress = Progress(shows_progress_bar(trainer))
        started = time.perf_counter()
        try:  # a collective: every rank collects its share, all ranks raise together on a failure
            read = layer_reader(pl_module, self.layer, self.position, self.settings.seed)
            shares = f", shared by {trainer.world_size} processes" if trainer.world_size > 1 else ""
            rank_zero_info(f"atlas: collecting the activations of {len(datamodule.dataset('train'))} training images "
                           f"at layer {self.layer}{shares}")
            with progress.bar("collect", unit="batch") as tick:
                activations = collect_from_datamodule(read, datamodule, "train", batch_size=self.batch_size,
                                                      device=pl_module.device, trainer=trainer, progress=tick)
        except Exception as error:  # noqa: BLE001 - the trained model must survive a failed atlas
            self._report(trainer, out_dir, error)
            return
        if trainer.is_global_zero:
            try:
                self._render(trainer, pl_module, read, activations, out_dir, progress,
                             started=started, collect_seconds=time.perf_counter() - started)
            except Exception as error:  # noqa: BLE001 - the trained model must survive a failed figure
                self._report(trainer, out_dir, error)
        trainer.strategy.barrier("activation_atlas")

    def _render(self, trainer: Trainer, pl_module: LightningModule, read: Any, activations: Any, out_dir: Path,
                progress: Progress | None = None, *, started: float | None = None,
                collect_seconds: float | None = None) -> None:
        datamodule = trainer.datamodule
        result = render_task_atlas(pl_module, datamodule, read, activations, self.settings, layer=self.layer,
                                   images=datamodule.dataset("train").images, device=pl_module.device,
                                   log=rank_zero_info, flag=keyword, progress=progress)
        finals = {f"atlas/final/{k}": float(v) for k, v in trainer.callback_metrics.items() if k.endswith("acc")}
        result.metrics.update(finals)
        if collect_seconds is not None:
            result.metrics["atlas/seconds/collect"] = collect_seconds
        if started is not None:  # collecting and rendering, as the command counts it
            result.metrics["atlas/seconds/total"] = time.perf_counter() - started
        self.directory = result.save(out_dir)
        self.result = result
        self._log(trainer, result)
        if self.verbose:
            rank_zero_info("\n".join(metric_lines(result.metrics)))
        loggers = sorted({"W&B" if isinstance(logger, WandbLogger) else type(logger).__name__ for logger in trainer.loggers})
        rank_zero_info("\n".join(summary_lines(
            result, self.directory, where=f" and {', '.join(loggers)}" if loggers else "",
            more="logged above" if self.verbose else "verbose=true logs them")))

    def _log(self, trainer: Trainer, result: AtlasResult) -> None:
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(result.metrics, step=step)
            if isinstance(logger, WandbLogger):
                for name, image in result.figures.items():
                    logger.log_image(key=f"atlas/{name}", images=[to_uint8(image)], step=step)
                columns, rows = cell_table(result)
                logger.log_table(key="atlas/cells", columns=columns, data=rows, step=step)

    def _report(self, trainer: Trainer, out_dir: Path, error: BaseException) -> None:
        self.error = error
        if not trainer.is_global_zero:
            return
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "atlas_error.txt").write_text("".join(traceback.format_exception(error)))
        rank_zero_warn(
            f"ActivationAtlas failed ({type(error).__name__}: {error}). The trained checkpoints and logged metrics "
            f"are kept; the traceback is in {out_dir / 'atlas_error.txt'}. Render it later from the checkpoint with "
            f"`wide-lightning-atlas --checkpoint <ckpt>`."
        )


def shows_progress_bar(trainer: Trainer) -> bool:
    """The trainer shows a progress bar (``enable_progress_bar``, not disabled) and this is rank 0: the atlas may
    draw its own bars (where standard error is a terminal outside CI, ``atlas/progress.py``)."""
    bar = trainer.progress_bar_callback
    return bar is not None and bool(getattr(bar, "is_enabled", True)) and trainer.is_global_zero


def cell_table(result: AtlasResult) -> tuple[list[str], list[list[Any]]]:
    """The atlas's cells as W&B table rows: icon and exemplars as images, count, majority label, purity,
    what the network and the judge call the icon (and whether that is the cell's label), objective."""
    import wandb

    columns = ["i", "j", "count", "objective"]
    rows = [[int(i), int(j), int(c), float(o)] for (i, j), c, o in
            zip(result.layout.cells, result.layout.counts, result.icons.objective.tolist())]
    judged = result.judgement
    if judged is None:
        return columns, rows
    columns += ["icon", "exemplars", "label", "purity", "judge_label", "judge_agrees"]
    strips = [exemplar_strips(icon[None], result.exemplars[k:k + 1], blocks=1)
              for k, icon in enumerate(result.icons.icons)]
    for k, row in enumerate(rows):
        row += [wandb.Image(to_uint8(icon_grid(result.icons.icons[k:k + 1]))), wandb.Image(to_uint8(strips[k])),
                int(judged.majority[k]), float(judged.purity[k]), int(judged.judge_label[k]),
                bool(judged.judge_label[k] == judged.majority[k])]
    if judged.network_label is not None:
        columns += ["network_label", "network_agrees"]
        for k, row in enumerate(rows):
            row += [int(judged.network_label[k]), bool(judged.network_label[k] == judged.majority[k])]
    return columns, rows

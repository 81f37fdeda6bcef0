"""The end-of-training activation atlas (Sections 3-4; Figures 1-3)."""

from __future__ import annotations

import traceback
from pathlib import Path
from typing import Any, Literal

from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

from wide_lightning.atlas.collect import collect_from_datamodule
from wide_lightning.atlas.figures import to_uint8
from wide_lightning.atlas.pipeline import AtlasResult, AtlasSettings, build_atlas
from wide_lightning.atlas.render import render_kwargs


class ActivationAtlas(Callback):
    """At the end of training, the atlas of the trained network's penultimate layer.

    Renders (a) the UMAP histogram coloured by class, (b) the atlas, (c) individual neurons; logs
    them to W&B as images with the per-cell counts (a table), the atlas numbers and the final
    accuracies; writes PNGs, ``atlas.npz`` and ``settings.txt`` to ``<default_root_dir>/atlas``
    (``atlas-v1``... if taken). Every rank collects its share of the training set and the vectors
    are gathered and de-duplicated; rank 0 alone lays out and renders while the others wait. A
    failure while rendering is reported (warning, ``atlas_error.txt``) and does not stop the run:
    checkpoints and logged metrics are kept, and ``fit`` goes on to test. Skipped under
    ``fast_dev_run``. Arguments are those of ``AtlasSettings``, plus ``batch_size`` for collecting
    and ``output_dir``.
    """

    def __init__(
        self,
        grid_size: int = 15,
        min_density: int = 10,
        steps: int = 512,
        whiten: bool = True,
        neurons: int = 10,
        space: Literal["hidden", "classifier_subspace"] = "hidden",
        max_points: int | None = None,
        icon_size: int | None = None,
        reducer: Literal["umap", "pca"] = "umap",
        reproducible_layout: bool = True,
        knn: Literal["auto", "exact", "umap"] = "auto",
        seed: int = 0,
        batch_size: int = 1024,
        output_dir: str | None = None,
    ) -> None:
        self.settings = AtlasSettings(grid_size=grid_size, min_density=min_density, steps=steps, whiten=whiten,
                                      neurons=neurons, space=space, max_points=max_points, icon_size=icon_size,
                                      reducer=reducer, reproducible_layout=reproducible_layout, knn=knn,
                                      seed=seed)
        self.batch_size = batch_size
        self.output_dir = output_dir
        self.result: AtlasResult | None = None
        self.directory: Path | None = None
        self.error: BaseException | None = None

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run:
            rank_zero_info("ActivationAtlas: skipped under fast_dev_run.")
            return
        datamodule = trainer.datamodule
        out_dir = Path(self.output_dir or Path(trainer.default_root_dir) / "atlas").resolve()
        try:  # a collective: every rank collects its share, all ranks raise together on a failure
            activations = collect_from_datamodule(pl_module.net, datamodule, "train", batch_size=self.batch_size,
                                                  device=pl_module.device, trainer=trainer)
        except Exception as error:  # noqa: BLE001 - the trained model must survive a failed atlas
            self._report(trainer, out_dir, error)
            return
        if trainer.is_global_zero:
            try:
                self._render(trainer, pl_module, activations, out_dir)
            except Exception as error:  # noqa: BLE001 - the trained model must survive a failed figure
                self._report(trainer, out_dir, error)
        trainer.strategy.barrier("activation_atlas")

    def _render(self, trainer: Trainer, pl_module: LightningModule, activations: Any, out_dir: Path) -> None:
        datamodule = trainer.datamodule
        net = pl_module.net
        result = build_atlas(
            activations, net.features, **render_kwargs(datamodule), settings=self.settings, head_weight=net.head.weight,
            class_label=datamodule.target, device=pl_module.device, log=rank_zero_info,
            title=f"{type(datamodule).__name__}, width {net.width}",
        )
        finals = {f"atlas/final/{k}": float(v) for k, v in trainer.callback_metrics.items() if k.endswith("acc")}
        result.metrics.update(finals)
        self.directory = result.save(out_dir)
        self.result = result
        self._log(trainer, result)
        rank_zero_info(f"activation atlas: {len(result.layout.cells)} icons, figures in {self.directory}")

    def _log(self, trainer: Trainer, result: AtlasResult) -> None:
        step = trainer.global_step
        for logger in trainer.loggers:
            logger.log_metrics(result.metrics, step=step)
            if isinstance(logger, WandbLogger):
                for name, image in result.figures.items():
                    logger.log_image(key=f"atlas/{name}", images=[to_uint8(image)], step=step)
                rows = [[int(i), int(j), int(c), float(o)] for (i, j), c, o in
                        zip(result.layout.cells, result.layout.counts, result.icons.objective.tolist())]
                logger.log_table(key="atlas/cells", columns=["i", "j", "count", "objective"], data=rows, step=step)

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

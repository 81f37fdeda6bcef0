"""How far a network's features moved from their initial values: the lazy limit of the paper's Discussion.

Section 6 of the paper: in very wide, properly parameterized networks the hidden activations barely
move from their initial values (lazy training), yet the classifier reads only the span of its
head's rows, where they may still move. ``FeatureMovement`` measures both on a fixed, seeded set of
held-out images, at the layer an atlas reads (``features``, the penultimate one, by default):

- ``movement/relative``: mean over images of ``||h_T(x) - h_0(x)|| / ||h_0(x)||``;
- ``movement/relative_trained_head_span`` (``_initial_head_span``): the same after projecting both
  onto the span of the trained (initial) head's rows, the classifier subspace;
- ``movement/unchanged_patterns``: the share of (image, unit) ReLU on/off states unchanged since
  initialization (Chizat, Oyallon and Bach 2019's "proportion lazy"; meaningful at a post-ReLU layer);
- ``movement/cka``: linear CKA (Kornblith et al. 2019) between the initial and the trained features;
- ``movement/collapsed``: 1 when every image gives the same trained features (the layer died: every
  unit off), whose movement measures the collapse; the lazy-limit report leaves such runs out.

The initial features are taken once, at the start of the fit, and kept in the callback's state (so
in every checkpoint: ``num_images x width`` floats), so a resumed run measures against the same
``h_0``; no second copy of the network is kept.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info

from wide_lightning.activations import Position, layer_reader, penultimate_head_weight


class UndefinedMeasure(ValueError):
    """A measure with no value for these features (a dead layer): ``movement_measures`` records it as NaN."""


def relative_movement(initial: torch.Tensor, trained: torch.Tensor) -> float:
    """Mean over rows of ``||trained - initial|| / ||initial||``; rows whose initial norm is 0 are left out."""
    initial, trained = _pair(initial, trained)
    norms = initial.norm(dim=1)
    kept = norms > 0
    if not bool(kept.any()):
        raise UndefinedMeasure("every initial vector is zero: relative movement is undefined (a dead layer at "
                               "initialization).")
    return float(((trained - initial).norm(dim=1)[kept] / norms[kept]).mean())


def head_span_basis(head_weight: torch.Tensor) -> torch.Tensor | None:
    """Orthonormal basis ``[D, r]`` (float64) of the span of the head's rows ``[k, D]``; ``None`` for a zero head
    (a zero-initialized readout has no classifier subspace)."""
    w = head_weight.detach().to(torch.float64)
    _, s, vt = torch.linalg.svd(w, full_matrices=False)
    rank = int((s > s.max() * max(w.shape) * torch.finfo(torch.float64).eps).sum()) if s.numel() else 0
    return vt[:rank].T if rank else None


def projected_relative_movement(initial: torch.Tensor, trained: torch.Tensor, basis: torch.Tensor) -> float:
    """``relative_movement`` of the projections onto the span of ``basis`` ``[D, r]`` (orthonormal columns).

    The norm of a projection is the norm of its coordinates in an orthonormal basis, so the ``D``-dimensional
    projections are never formed."""
    initial, trained = _pair(initial, trained)
    basis = basis.to(initial.device, torch.float64)
    return relative_movement(initial @ basis, trained @ basis)


def unchanged_patterns(initial: torch.Tensor, trained: torch.Tensor) -> float:
    """Share of entries whose on/off state (``> 0``) is the same in ``initial`` and ``trained``."""
    initial, trained = _pair(initial, trained)
    return float(((initial > 0) == (trained > 0)).to(torch.float64).mean())


def linear_cka(x: torch.Tensor, y: torch.Tensor) -> float:
    """Linear CKA of two representations of the same ``N`` examples, ``[N, D1]`` and ``[N, D2]``.

    ``||Y^T X||_F^2 / (||X^T X||_F ||Y^T Y||_F)`` on column-centred features, computed through the ``N x N``
    Gram matrices when the features are wider than ``N`` (the same number, less work); 1 for representations
    equal up to rotation and isotropic scaling."""
    x, y = _pair(x, y, same_width=False)
    x, y = x - x.mean(0), y - y.mean(0)
    if max(x.shape[1], y.shape[1]) > x.shape[0]:
        kx, ky = x @ x.T, y @ y.T
        cross, sx, sy = (kx * ky).sum(), kx.norm(), ky.norm()
    else:
        cross, sx, sy = (y.T @ x).pow(2).sum(), (x.T @ x).norm(), (y.T @ y).norm()
    if sx == 0 or sy == 0:
        raise UndefinedMeasure("a representation is constant over the examples: CKA is undefined.")
    return float(cross / (sx * sy))


def collapsed(features: torch.Tensor) -> bool:
    """Every image gives the same features (a layer that died in training: every unit off). Its relative movement
    is then 1 (each row lost its whole norm) and measures the collapse, not what was learned."""
    return bool((features == features[:1]).all())


def _pair(a: torch.Tensor, b: torch.Tensor, same_width: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    if a.ndim != 2 or b.ndim != 2 or a.shape[0] != b.shape[0] or (same_width and a.shape != b.shape):
        raise ValueError(f"expected two [N, D] matrices of the same examples, got {tuple(a.shape)} and {tuple(b.shape)}.")
    return a.detach().to(torch.float64), b.detach().to(a.device, torch.float64)


def movement_measures(initial: torch.Tensor, trained: torch.Tensor, trained_head: torch.Tensor | None = None,
                      initial_head: torch.Tensor | None = None) -> dict[str, float]:
    """Every measure of the module's docstring, named as they are logged; the head-span ones where a head is given
    and not zero."""
    def measured(measure: Callable[..., float], *args: Any) -> float:
        # a layer that died in training (every unit off: a too-large learning rate) is a result, not a crash
        try:
            return measure(*args)
        except UndefinedMeasure:
            return math.nan

    measures = {"movement/relative": measured(relative_movement, initial, trained),
                "movement/unchanged_patterns": unchanged_patterns(initial, trained),
                "movement/cka": measured(linear_cka, initial, trained),
                "movement/collapsed": float(collapsed(trained))}
    for name, head in (("trained", trained_head), ("initial", initial_head)):
        basis = None if head is None else head_span_basis(head)
        if basis is not None:
            measures[f"movement/relative_{name}_head_span"] = measured(
                projected_relative_movement, initial, trained, basis)
    return measures


class FeatureMovement(Callback):
    """How far the features of ``layer`` moved since initialization, at the end of the fit (and every
    ``every_n_epochs`` epochs when set), on ``num_images`` held-out images drawn by ``seed`` from ``split``.

    Logged as ``movement/*`` (module docstring) with the other metrics and written to ``summary.json``.
    ``layer`` and ``position`` are the atlas's (``wide_lightning/activations.py``); the head-span measures
    need ``layer: features``, what the head reads. The initial features stay in the callback's state, so
    a checkpoint carries ``num_images x width`` more floats (2,000 x 65,536: 0.5 GB).
    """

    def __init__(self, layer: str = "features", position: Position = "random", num_images: int = 2000,
                 split: str = "val", seed: int = 0, every_n_epochs: int = 0, batch_size: int = 1000) -> None:
        for name, value, least in (("num_images", num_images, 2), ("every_n_epochs", every_n_epochs, 0),
                                   ("batch_size", batch_size, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < least:
                raise ValueError(f"FeatureMovement: {name} must be an integer >= {least}, got {value!r}.")
        if split not in ("train", "val", "test"):
            raise ValueError(f"FeatureMovement: split must be 'train', 'val' or 'test', got {split!r}.")
        self.layer, self.position, self.num_images, self.split = layer, position, num_images, split
        self.seed, self.every_n_epochs, self.batch_size = seed, every_n_epochs, batch_size
        self.indices: torch.Tensor | None = None
        self.initial: torch.Tensor | None = None
        self.initial_head: torch.Tensor | None = None
        self.measured_at_step: int | None = None
        self.measures: dict[str, float] = {}

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if stage == "fit":  # refused before training: a layer that does not exist, a stack of networks
            if getattr(pl_module, "members", None):
                raise ValueError("FeatureMovement reads one network; a stacked task trains several: run its seeds "
                                 "as single runs (--seed_everything=k) to measure their movement.")
            layer_reader(pl_module, self.layer, self.position, self.seed)

    def on_fit_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.initial is not None:  # restored from the checkpoint a resumed run started from
            return
        dataset = trainer.datamodule.dataset(self.split)
        if len(dataset) < 2:
            raise ValueError(f"FeatureMovement: the {self.split} split has {len(dataset)} images; it needs at least 2.")
        generator = torch.Generator().manual_seed(self.seed)  # not the global stream: training draws stay the same
        self.indices = torch.randperm(len(dataset), generator=generator)[: self.num_images].sort().values
        self.initial = self.features(trainer, pl_module).cpu()
        head = penultimate_head_weight(pl_module, self.layer)
        self.initial_head = None if head is None else head.detach().float().cpu().clone()

    @torch.no_grad()
    def features(self, trainer: Trainer, pl_module: LightningModule) -> torch.Tensor:
        """The layer's activations of the fixed images ``[num_images, D]`` (float32, on the module's device)."""
        datamodule = trainer.datamodule
        images = datamodule.dataset(self.split).images[self.indices]
        read = layer_reader(pl_module, self.layer, self.position, self.seed)
        was_training = pl_module.training
        pl_module.eval()
        try:
            parts = []
            for start in range(0, len(images), self.batch_size):
                x = datamodule.batch_transform(images[start:start + self.batch_size].to(pl_module.device), train=False)
                index = self.indices[start:start + self.batch_size].to(pl_module.device)
                parts.append((read(x, index) if getattr(read, "reads_positions", False) else read(x)).float())
        finally:
            pl_module.train(was_training)
        return torch.cat(parts)

    def measure(self, trainer: Trainer, pl_module: LightningModule) -> dict[str, float]:
        trained = self.features(trainer, pl_module)
        head = penultimate_head_weight(pl_module, self.layer)
        self.measures = movement_measures(self.initial.to(trained.device), trained, head, self.initial_head)
        self.measured_at_step = trainer.global_step
        return self.measures

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if self.every_n_epochs and (trainer.current_epoch + 1) % self.every_n_epochs == 0:
            for name, value in self.measure(trainer, pl_module).items():
                pl_module.log(name, value, on_epoch=True)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if trainer.fast_dev_run or self.initial is None:
            return
        if self.measured_at_step != trainer.global_step:
            self.measure(trainer, pl_module)
            # on_train_end may not call self.log: the values go to the loggers and the run's record directly
            for logger in trainer.loggers:
                logger.log_metrics(self.measures, step=trainer.global_step)
            trainer.callback_metrics.update({k: torch.tensor(v) for k, v in self.measures.items()})
        rank_zero_info("feature movement since initialization: " +
                       ", ".join(f"{k.split('/')[1]} {v:.4g}" for k, v in self.measures.items()))

    def state_dict(self) -> dict[str, Any]:
        return {"indices": self.indices, "initial": self.initial, "initial_head": self.initial_head,
                "num_images": self.num_images, "split": self.split, "seed": self.seed, "layer": self.layer}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        kept = {k: state_dict.get(k) for k in ("num_images", "split", "seed", "layer")}
        asked = {"num_images": self.num_images, "split": self.split, "seed": self.seed, "layer": self.layer}
        if kept != asked:
            raise ValueError(f"FeatureMovement: the checkpoint measured movement with {kept}, this run asks for {asked}; "
                             f"resume with the same callback settings, or start a new run.")
        self.indices, self.initial, self.initial_head = (state_dict["indices"], state_dict["initial"],
                                                         state_dict["initial_head"])

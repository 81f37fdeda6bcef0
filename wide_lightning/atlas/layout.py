"""Steps 2-3 of an atlas, chained: UMAP layout, normalization, the g x g grid, cell means and whitening.

Everything follows lucid's ``activation-atlas-simple`` notebook (spec section 1, "L-NB"):

* ``embedding.umap_layout`` / ``normalize_layout``: UMAP(n_neighbors=20, min_dist=0.01, cosine) on the
  raw activations (2.3), per-axis 1st/99th percentile, 10 % margins, rescale to [0, 1] (2.4);
* ``grid.grid_cells``: inclusive cell bounds, keep cells with ``count > min_density``, cell direction =
  plain mean of the raw activations of its points (2.5);
* ``whitening.whitening_matrix``: ``S = inv(A^T A / N)`` (uncentered), regularized by default (2.2),
  applied to the cell directions as ``v @ S`` (``whiten``);
* ``subspace.classifier_subspace_projection``: the paper's Discussion proposes atlases of the
  activations projected onto the span of the classifier's weight rows.

:func:`compute_layout` chains them. Arrays are numpy; torch tensors are accepted as input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Literal

import numpy as np
import torch

from wide_lightning.atlas.arrays import _as_activations, as_numpy
from wide_lightning.atlas.embedding import normalize_layout, umap_layout
from wide_lightning.atlas.grid import GridCells, grid_cells
from wide_lightning.atlas.whitening import SPEC_RIDGE, WhitenMode, whiten, whitening_matrix


def _of_grid(attribute: str) -> property:
    return property(lambda self: getattr(self.grid, attribute), doc=f"``grid.{attribute}``")


@dataclass
class AtlasLayout:
    """Everything between the activations and the icons: ``xy`` (raw UMAP), ``xy01`` (normalized),
    ``grid`` (:class:`GridCells`), whitening ``matrix`` S (``None`` without whitening: S = I, not formed),
    ``whitened`` directions ``[K, C]`` (``directions @ S``, what the icon objective targets),
    ``condition_number`` of M and the ``ridge`` used."""

    xy: np.ndarray
    xy01: np.ndarray
    grid: GridCells
    matrix: np.ndarray | None
    whitened: np.ndarray
    condition_number: float
    ridge: float
    whiten_mode: str

    # the grid's arrays, read from the layout by the renderer, the figures and the metrics
    cells = _of_grid("cells")
    counts = _of_grid("counts")
    directions = _of_grid("directions")
    count_matrix = _of_grid("count_matrix")
    grid_size = _of_grid("grid_size")


def compute_layout(
    activations: Any,
    *,
    grid_size: int = 15,
    min_density: int = 10,
    seed: int | None = 0,
    reducer: Any | Callable[[np.ndarray], np.ndarray] | None = None,
    whiten_mode: WhitenMode | None = "regularized",
    whiten_ridge: float = SPEC_RIDGE,
    n_neighbors: int = 20,
    min_dist: float = 0.01,
    metric: str = "cosine",
    xy: Any | None = None,
    knn: Literal["umap", "exact"] = "umap",
    knn_device: str | torch.device | None = None,
) -> AtlasLayout:
    """UMAP -> normalize -> grid -> cell means -> whitening, with the paper's/L-NB defaults.

    ``xy`` reuses an existing raw layout (skips UMAP). ``whiten_mode=None`` skips whitening (S = I,
    the un-whitened objective of L-NB); ``whiten_ridge`` is the regularized inverse's ridge in units
    of the mean eigenvalue. For the classifier-subspace atlas of the paper's Discussion,
    pass ``classifier_subspace_projection(activations, net.head.weight)``.
    """
    a = _as_activations(activations)
    if xy is None:
        xy = umap_layout(a, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric, seed=seed, reducer=reducer,
                         knn=knn, knn_device=knn_device)
    xy = as_numpy(xy, np.float64)
    if len(xy) != len(a):
        raise ValueError(f"{len(xy)} layout points but {len(a)} activation rows.")
    xy01 = normalize_layout(xy)
    grid = grid_cells(xy01, a, grid_size=grid_size, min_density=min_density)
    if whiten_mode is None:  # S = I, never formed: a D x D identity is 16 GiB at D = 65,536
        return AtlasLayout(xy=xy, xy01=xy01, grid=grid, matrix=None, whitened=grid.directions.copy(),
                           condition_number=float("nan"), ridge=0.0, whiten_mode="None")
    matrix, condition, ridge = whitening_matrix(a, whiten_mode, whiten_ridge)
    return AtlasLayout(
        xy=xy, xy01=xy01, grid=grid, matrix=matrix, whitened=whiten(grid.directions, matrix),
        condition_number=condition, ridge=ridge, whiten_mode=str(whiten_mode),
    )

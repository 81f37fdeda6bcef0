"""Step 3 of an atlas: the g x g grid over the normalized layout, and the mean activation of each dense cell.

As lucid's notebook (spec section 2.5): inclusive cell bounds, a cell is kept when it holds more than
``min_density`` points, and its direction is the plain mean of its points' raw activations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from wide_lightning.atlas.arrays import _as_activations, as_numpy

# -- 2.5 grid -----------------------------------------------------------------------------------------


def _check_layout01(xy01: Any) -> np.ndarray:
    xy = as_numpy(xy01, np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"a layout is an [N, 2] array, got shape {xy.shape}.")
    bad = ~np.isfinite(xy).all(axis=1)
    if bad.any():
        raise ValueError(f"the layout has {int(bad.sum())} rows with NaN or inf; normalize a finite layout first.")
    return xy


def _check_grid_size(grid_size: int) -> int:
    if isinstance(grid_size, bool) or int(grid_size) != grid_size or grid_size < 1:
        raise ValueError(f"grid_size must be a positive integer, got {grid_size!r}.")
    return int(grid_size)


def cell_members(xy01: Any, grid_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """All (point, i, j) memberships of the g x g grid over [0, 1]^2, with L-NB's inclusive bounds.

    With ``xs = x * g``, point p is in cell (i, j) iff ``i <= xs <= i + 1`` and ``j <= ys <= j + 1``:
    a point on an inner boundary belongs to 2 cells (4 on a corner), ``x = 1.0`` to the last column,
    and points outside [0, 1] to none. Returns three int64 arrays ``(points, i, j)``, grouped by point
    order per candidate (not sorted).
    """
    g = _check_grid_size(grid_size)
    xy = _check_layout01(xy01)
    scaled = xy * g
    upper = np.floor(scaled).astype(np.int64)  # the bin whose lower edge is <= s
    lower = np.ceil(scaled).astype(np.int64) - 1  # differs from ``upper`` only when s is an integer
    (ux, uy), (lx, ly) = upper.T, lower.T
    points = np.arange(len(xy))
    combos = [
        (ux, uy, np.ones(len(xy), bool)),
        (lx, uy, lx != ux),
        (ux, ly, ly != uy),
        (lx, ly, (lx != ux) & (ly != uy)),
    ]
    out_p, out_i, out_j = [], [], []
    for i, j, new in combos:
        keep = new & (i >= 0) & (i < g) & (j >= 0) & (j < g)
        out_p.append(points[keep])
        out_i.append(i[keep])
        out_j.append(j[keep])
    return np.concatenate(out_p), np.concatenate(out_i), np.concatenate(out_j)


@dataclass
class GridCells:
    """The kept cells of a g x g grid.

    Attributes:
        grid_size: g.
        cells: ``[K, 2]`` int64 ``(i, j)``; ``i`` is the x-bin (column), ``j`` the y-bin (up), in
            x-major order (as L-NB loops).
        counts: ``[K]`` points per kept cell (> min_density).
        directions: ``[K, C]`` float32, mean raw activation of each kept cell's points.
        count_matrix: ``[g, g]`` int64 counts of **all** cells, indexed ``[i, j]``. To show it as an
            image with y up, use ``count_matrix.T[::-1]``.
        min_density: the threshold used (cells need ``count > min_density``).
    """

    grid_size: int
    cells: np.ndarray
    counts: np.ndarray
    directions: np.ndarray
    count_matrix: np.ndarray
    min_density: int

    def __len__(self) -> int:
        return len(self.cells)


def grid_cells(xy01: Any, activations: Any, grid_size: int = 15, min_density: int = 10) -> GridCells:
    """Bin a normalized layout into a g x g grid and average the activations of each dense cell (spec 2.5).

    Cells use inclusive bounds (see :func:`cell_members`); a cell is kept iff ``count > min_density``
    (strict, L-NB); its direction is the plain mean of its points' raw activations (float64
    accumulation, float32 result). Paper: g = 15; L-NB: min_density = 10.

    Raises:
        ValueError: grid_size < 1, negative min_density, NaN in the layout, mismatched lengths, or no
            cell above the threshold (with the number of points, the largest cell count and advice).
    """
    g = _check_grid_size(grid_size)
    if min_density < 0:
        raise ValueError(f"min_density must be >= 0, got {min_density}.")
    xy = _check_layout01(xy01)
    a = _as_activations(activations)
    if len(a) != len(xy):
        raise ValueError(f"{len(xy)} layout points but {len(a)} activation rows.")
    points, i, j = cell_members(xy, g)
    flat = i * g + j
    count_matrix = np.bincount(flat, minlength=g * g).reshape(g, g)
    kept_flat = np.flatnonzero(count_matrix.ravel() > min_density)
    if len(kept_flat) == 0:
        raise ValueError(
            f"no cell of the {g}x{g} grid has more than min_density={min_density} of the {len(xy)} points "
            f"(the fullest cell has {int(count_matrix.max(initial=0))}). The grid is too fine for this much "
            f"data: use a smaller grid_size or min_density."
        )
    counts = count_matrix.ravel()[kept_flat]
    # Row of each membership among the kept cells (-1: a dropped cell).
    slot = np.full(g * g, -1, np.int64)
    slot[kept_flat] = np.arange(len(kept_flat))
    rows = slot[flat]
    mask = rows >= 0
    rows, points = rows[mask], points[mask]
    sums = np.zeros((len(kept_flat), a.shape[1]), np.float64)
    step = max(1, (1 << 22) // max(1, len(points)))  # ~32 MB of float64 per column block
    for start in range(0, a.shape[1], step):
        block = a[points, start : start + step].astype(np.float64)
        _scatter_add(sums[:, start : start + step], rows, block)
    directions = (sums / counts[:, None]).astype(np.float32)
    cells = np.stack([kept_flat // g, kept_flat % g], axis=1).astype(np.int64)
    return GridCells(g, cells, counts.astype(np.int64), directions, count_matrix.astype(np.int64), int(min_density))


def _scatter_add(out: np.ndarray, rows: np.ndarray, values: np.ndarray) -> None:
    """``out[rows[k]] += values[k]`` for every k, vectorized (sort by row, then reduceat)."""
    if len(rows) == 0:
        return
    order = np.argsort(rows, kind="stable")
    sorted_rows = rows[order]
    starts = np.flatnonzero(np.r_[True, sorted_rows[1:] != sorted_rows[:-1]])
    out[sorted_rows[starts]] += np.add.reduceat(values[order], starts, axis=0)


def cell_label_counts(xy01: Any, labels: Any, cells: Any, grid_size: int) -> tuple[np.ndarray, np.ndarray]:
    """How many points of each label value every kept cell holds, with the grid's inclusive bounds.

    Returns ``(values [V], table [K, V] int64)``: ``values`` are the distinct labels, and row ``k`` of
    ``table`` counts the points of cell ``cells[k]`` (``[K, 2]`` (i, j), or a ``GridCells``) per value.
    """
    labels = as_numpy(labels).ravel()
    xy = _check_layout01(xy01)
    if len(labels) != len(xy):
        raise ValueError(f"{len(xy)} layout points but {len(labels)} labels.")
    g = _check_grid_size(grid_size)
    cells = as_numpy(getattr(cells, "cells", cells), np.int64).reshape(-1, 2)
    slot = np.full(g * g, -1, np.int64)
    slot[cells[:, 0] * g + cells[:, 1]] = np.arange(len(cells))
    points, i, j = cell_members(xy, g)
    rows = slot[i * g + j]
    mask = rows >= 0
    values, label_index = np.unique(labels, return_inverse=True)
    table = np.zeros((len(cells), len(values)), np.int64)
    np.add.at(table, (rows[mask], label_index.ravel()[points[mask]]), 1)
    return values, table

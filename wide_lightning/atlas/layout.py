"""Steps 2-3 of an atlas: UMAP layout, normalization, the g x g grid, cell means and whitening.

Everything follows lucid's ``activation-atlas-simple`` notebook (spec section 1, "L-NB"):

* :func:`umap_layout`: UMAP(n_neighbors=20, min_dist=0.01, metric="cosine") on the raw activations (2.3);
* :func:`normalize_layout`: per-axis 1st/99th percentile, 10 % margins, clip, rescale to [0, 1] (2.4);
* :func:`grid_cells`: inclusive cell bounds, keep cells with ``count > min_density``, cell direction =
  plain mean of the raw activations of its points (2.5);
* :func:`whitening_matrix`: ``S = inv(A^T A / N)`` (uncentered), regularized by default (2.2), applied
  to the cell directions as ``v @ S`` (:func:`whiten`);
* :func:`classifier_subspace_projection`: the paper's Discussion proposes atlases of the activations
  projected onto the span of the classifier's weight rows.

:func:`compute_layout` chains them. Arrays are numpy; torch tensors are accepted as input.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Literal, NamedTuple

import numpy as np
import torch

WhitenMode = Literal["regularized", "pinv", "exact"]

#: lucid notebook (L-NB) UMAP parameters, which the paper used.
UMAP_DEFAULTS = {"n_neighbors": 20, "min_dist": 0.01, "metric": "cosine"}


def as_numpy(x: Any, dtype: Any = None) -> np.ndarray:
    """numpy view/copy of an array-like or (CPU/GPU, grad or not) torch tensor."""
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=dtype)


def _as_activations(activations: Any) -> np.ndarray:
    a = as_numpy(activations, np.float32)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"activations must be a non-empty [N, C] array, got shape {a.shape}.")
    return a


# -- 2.3 UMAP -----------------------------------------------------------------------------------------


#: umap-learn's numba functions that it compiles in every new process (``cache=False``), with their modules.
UNCACHED_UMAP_FUNCTIONS = (
    ("umap.umap_", "smooth_knn_dist"),
    ("umap.umap_", "compute_membership_strengths"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch"),
    ("umap.layouts", "_nb_optimize_layout_euclidean_single_epoch_parallel"),
)


def cache_umap_compilation() -> list[str]:
    """Recompile umap-learn's per-process numba functions with numba's disk cache on; returns their names.

    UMAP compiles these three functions (the neighbour graph's weights and the layout's epoch) anew
    in every process: 6 s on our 2-core CPU and about 10 s on the H100 machine, a third of an atlas
    there. Wrapped again with ``cache=True`` (same options, same Python function), only the first
    process on a machine compiles them; later ones load them from numba's cache in well under a
    second. UMAP looks them up as module globals at call time, so it calls the cached versions; the
    arithmetic is unchanged. A umap-learn without one of them is left as it is.
    """
    import importlib

    import numba
    from numba.core.dispatcher import Dispatcher

    cached = []
    for module_name, name in UNCACHED_UMAP_FUNCTIONS:
        module = importlib.import_module(module_name)
        function = getattr(module, name, None)
        if not isinstance(function, Dispatcher) or getattr(function, "_wide_lightning_cached", False):
            continue
        options = {k: v for k, v in function.targetoptions.items() if k != "nopython"}
        replacement = numba.njit(cache=True, locals=dict(function.locals), **options)(function.py_func)
        replacement._wide_lightning_cached = True
        replacement._wide_lightning_original = function
        setattr(module, name, replacement)
        cached.append(name)
    return cached


def unique_rows(activations: Any) -> tuple[np.ndarray, np.ndarray]:
    """``(first_index_of_each_distinct_row, inverse)`` so that ``a[first][inverse] == a`` row by row.

    Rows are compared bit for bit (so ``-0.0`` and ``0.0`` differ, which ReLU outputs never produce).
    """
    a = np.ascontiguousarray(_as_activations(activations))
    rows = a.view(np.dtype((np.void, a.dtype.itemsize * a.shape[1]))).ravel()
    _, first, inverse = np.unique(rows, return_index=True, return_inverse=True)
    return first, inverse.ravel()


def exact_knn(points: Any, k: int, metric: str = "cosine", device: str | torch.device | None = None,
              chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Exact ``k`` nearest neighbours ``(indices [N, k] int64, distances [N, k] float32)`` by brute force.

    What UMAP's NN-descent approximates, as one matrix product per chunk of rows. For 50,000 points
    of width 2,048 that is about 10 TFLOP: 0.3 s on an H100, but 75 s on 2 CPU cores, where
    NN-descent took about 12 s. Each row's
    first neighbour is itself at distance 0, as UMAP's own search returns it, also for an all-zero row.
    ``metric``: ``cosine`` (1 - cosine similarity; a zero row is at distance 1 from every other row,
    as in UMAP) or ``euclidean``.
    """
    if metric not in ("cosine", "euclidean"):
        raise ValueError(f"exact_knn computes 'cosine' or 'euclidean' distances, got metric={metric!r}; "
                         f"use knn='umap' for other metrics.")
    x = torch.from_numpy(_as_activations(points)).to(device or "cpu")
    n = len(x)
    if not 1 <= k <= n:
        raise ValueError(f"k={k} neighbours need 1 <= k <= {n} (the number of points).")
    if metric == "cosine":
        x = x / x.norm(dim=1, keepdim=True).clamp_min(torch.finfo(x.dtype).tiny)
    else:
        squared = (x * x).sum(1)
    indices, distances = [], []
    for start in range(0, n, chunk):
        block = x[start:start + chunk]
        if metric == "cosine":
            d = 1.0 - block @ x.T
        else:
            d = (squared[start:start + chunk, None] - 2.0 * block @ x.T + squared[None]).clamp_min_(0.0).sqrt_()
        d.diagonal(start).fill_(-1.0)  # entries (i, start + i): each row itself, first whatever rounding does
        value, index = d.topk(k, dim=1, largest=False)
        indices.append(index.cpu())
        distances.append(value.clamp_min_(0.0).cpu())
    return torch.cat(indices).numpy(), torch.cat(distances).numpy()


def umap_layout(
    activations: Any,
    *,
    n_neighbors: int = 20,
    min_dist: float = 0.01,
    metric: str = "cosine",
    seed: int | None = 0,
    reducer: Any | None = None,
    dedupe: bool = True,
    knn: Literal["umap", "exact"] = "umap",
    knn_device: str | torch.device | None = None,
    **umap_kwargs: Any,
) -> np.ndarray:
    """2-D UMAP layout ``[N, 2]`` (float64) of the raw activations ``[N, C]``.

    Defaults are the lucid notebook's (n_neighbors=20, min_dist=0.01, cosine); ``seed`` becomes
    UMAP's ``random_state`` (reproducible, which forces ``n_jobs=1``; ``seed=None`` runs in parallel
    but is not reproducible).

    Duplicates (spec 2.3): ReLU layers produce many identical rows (all-zero ones in particular), on
    which UMAP's graph construction is known to choke (lmcinnes/umap#99, #17: RecursionError,
    disconnected components, warnings). With ``dedupe=True`` (default) UMAP runs on the distinct rows
    only and every duplicate gets the position of its distinct row, so identical activations land on
    identical points, and the grid still counts every example. At most one all-zero row remains; UMAP's
    cosine treats it as at distance 1 from everything else. If fewer distinct rows than
    ``n_neighbors + 1`` remain, ``n_neighbors`` is lowered with a warning.

    Args:
        reducer: replaces UMAP (tests, other methods): an object with ``fit_transform(X)`` or a
            callable ``X -> [len(X), 2]``; it receives the (deduplicated) float32 rows.
        knn: ``umap``: UMAP's own neighbour search (NN-descent, approximate); ``exact``: the exact
            neighbours by brute force (:func:`exact_knn` on ``knn_device``), given to UMAP as
            ``precomputed_knn``. Deviation from L-NB, which used UMAP's search: the exact graph is what
            NN-descent approximates (it found 99.9 % of the exact neighbours on MNIST activations), and
            on a GPU one matrix product replaces NN-descent's one-core search (about 12 s of a 41 s
            seeded layout of 50,000 x 2,048 activations on our CPU).
        umap_kwargs: passed on to ``umap.UMAP``.

    Raises:
        ValueError: fewer than 4 distinct rows, or a layout with NaN/inf.
    """
    a = _as_activations(activations)
    if not np.isfinite(a).all():
        raise ValueError(f"activations contain NaN or inf in {int((~np.isfinite(a).all(1)).sum())} rows.")
    if dedupe:
        first, inverse = unique_rows(a)
        points = a[first]
    else:
        inverse, points = None, a
    if len(points) < 4:
        raise ValueError(
            f"only {len(points)} distinct activation vectors among {len(a)} rows: nothing to lay out. "
            f"Is the layer dead (all ReLUs off) or the dataset tiny?"
        )
    if reducer is None:
        if n_neighbors >= len(points):
            lowered = max(2, len(points) - 1)
            warnings.warn(
                f"umap_layout: {len(points)} distinct rows <= n_neighbors={n_neighbors}; using n_neighbors={lowered}.",
                stacklevel=2,
            )
            n_neighbors = lowered
        import umap  # slow import (numba): only when a real layout is wanted

        cache_umap_compilation()
        options = dict(n_components=2, n_neighbors=n_neighbors, min_dist=min_dist, metric=metric)
        if seed is not None:
            options.update(random_state=seed, n_jobs=1)
        if knn == "exact":
            neighbours, distances = exact_knn(points, n_neighbors, metric, device=knn_device)
            options.update(precomputed_knn=(neighbours, distances, None))
        elif knn != "umap":
            raise ValueError(f"knn must be 'umap' or 'exact', got {knn!r}.")
        options.update(umap_kwargs)
        reducer = umap.UMAP(**options)
    fit = reducer.fit_transform if hasattr(reducer, "fit_transform") else reducer
    with warnings.catch_warnings():  # a given graph has no search index, which only UMAP.transform needs
        warnings.filterwarnings("ignore", message=r"precomputed_knn\[2\]", category=UserWarning)
        xy = np.asarray(fit(points), dtype=np.float64)
    if xy.shape != (len(points), 2):
        raise ValueError(f"the reducer returned shape {xy.shape}, expected ({len(points)}, 2).")
    if not np.isfinite(xy).all():
        raise ValueError(f"the layout has {int((~np.isfinite(xy).all(1)).sum())} rows with NaN or inf.")
    return xy[inverse] if inverse is not None else xy


# -- 2.4 normalization --------------------------------------------------------------------------------


def normalize_layout(
    xy: Any, min_percentile: float = 1.0, max_percentile: float = 99.0, margin: float = 0.1
) -> np.ndarray:
    """Per axis (L-NB ``normalize_layout``): clip to the [1st, 99th] percentiles widened by 10 %, rescale to [0, 1].

    ``lo, hi = percentiles``; ``lo -= margin * (hi - lo)``; *then* ``hi += margin * (hi - lo)`` with the
    new ``lo`` (so the upper margin is 0.11 of the range); clip to ``[lo, hi]``, subtract the minimum
    and divide by the maximum. Percentiles are numpy's default (linear interpolation).

    Raises:
        ValueError: NaN/inf in the layout, or an axis with no spread (the rescale would divide by 0).
    """
    xy = as_numpy(xy, np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or len(xy) == 0:
        raise ValueError(f"a layout is a non-empty [N, 2] array, got shape {xy.shape}.")
    if not np.isfinite(xy).all():
        raise ValueError(f"the layout has {int((~np.isfinite(xy).all(1)).sum())} rows with NaN or inf.")
    lo = np.percentile(xy, min_percentile, axis=0)
    hi = np.percentile(xy, max_percentile, axis=0)
    lo = lo - margin * (hi - lo)
    hi = hi + margin * (hi - lo)
    out = np.clip(xy, lo, hi)
    out = out - out.min(axis=0)
    top = out.max(axis=0)
    if (top <= 0).any():
        axes = [name for name, t in zip("xy", top) if t <= 0]
        raise ValueError(
            f"the layout has no spread along {', '.join(axes)} (after clipping to the percentiles): "
            f"cannot rescale to [0, 1]. Are (almost) all activations identical?"
        )
    return out / top


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


# -- 2.2 whitening ------------------------------------------------------------------------------------


class Whitening(NamedTuple):
    """``S`` (float32 ``[C, C]``), the condition number of ``M = A^T A / N``, and the ridge added
    (0 unless regularized)."""

    matrix: np.ndarray
    condition_number: float
    ridge: float


def second_moment(activations: Any, chunk: int = 8192) -> np.ndarray:
    """Uncentered ``M = A^T A / N`` in float64, accumulated over row chunks (no float64 copy of A)."""
    a = _as_activations(activations)
    m = np.zeros((a.shape[1], a.shape[1]), np.float64)
    for start in range(0, len(a), chunk):
        block = a[start : start + chunk].astype(np.float64)
        m += block.T @ block
    return m / len(a)


def whitening_matrix(activations: Any, mode: WhitenMode = "regularized") -> Whitening:
    """Lucid's whitening ``S = inv(A^T A / N)`` (uncentered second moment, float64; spec 2.2).

    Modes:
        ``"regularized"`` (default): ``inv(M + lam I)``, ``lam = 1e-6 * trace(M) / C``; finite with dead
            units (all-zero columns) and with width close to N.
        ``"pinv"``: ``pinv(M, hermitian=True)``; dead units get zero rows/columns.
        ``"exact"``: plain ``inv(M)`` as lucid (raises if M is numerically singular).

    Returns:
        :class:`Whitening` ``(matrix, condition_number, ridge)``: S as float32, ``cond(M)`` (``inf`` if
        singular) for logging, and ``lam``.
    """
    if mode not in ("regularized", "pinv", "exact"):
        raise ValueError(f"mode must be 'regularized', 'pinv' or 'exact', got {mode!r}.")
    m = second_moment(activations)
    c = m.shape[0]
    eig = np.linalg.eigvalsh(m)
    top = float(eig[-1])
    if top <= 0:
        raise ValueError("all activations are zero: the second-moment matrix is 0 and cannot be whitened.")
    tol = top * c * np.finfo(np.float64).eps
    condition = float(top / eig[0]) if eig[0] > tol else float("inf")
    ridge = 0.0
    if mode == "regularized":
        ridge = 1e-6 * float(np.trace(m)) / c
        s = np.linalg.inv(m + ridge * np.eye(c))
    elif mode == "pinv":
        s = np.linalg.pinv(m, hermitian=True)
    else:
        if eig[0] <= tol:
            dead = int((np.diag(m) == 0).sum())
            raise ValueError(
                f"the {c}x{c} second-moment matrix is singular (smallest eigenvalue {eig[0]:.3g}, largest {top:.3g}; "
                f"{dead} dead units): plain inverse impossible. Use mode='regularized' (or 'pinv')."
            )
        s = np.linalg.inv(m)
    s = (s + s.T) / 2  # exactly symmetric
    return Whitening(s.astype(np.float32), condition, ridge)


def whiten(directions: Any, matrix: Any) -> Any:
    """``directions @ S`` (row vectors; S is symmetric so this is ``S v`` for each v). Keeps torch/numpy type."""
    if hasattr(directions, "detach"):
        import torch

        return directions @ torch.as_tensor(as_numpy(matrix), dtype=directions.dtype, device=directions.device)
    return as_numpy(directions, np.float32) @ as_numpy(matrix, np.float32)


# -- classifier subspace (paper, Discussion) -----------------------------------------------------------


def classifier_subspace_basis(head_weight: Any) -> np.ndarray:
    """Orthonormal basis ``[C, r]`` (float64) of the span of the rows of ``head_weight`` ``[k, C]`` (r = rank <= k)."""
    w = as_numpy(head_weight, np.float64)
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"head_weight must be a non-empty [num_classes, C] matrix, got shape {w.shape}.")
    _, s, vt = np.linalg.svd(w, full_matrices=False)
    rank = int((s > s.max(initial=0) * max(w.shape) * np.finfo(np.float64).eps).sum())
    if rank == 0:
        raise ValueError("head_weight is zero: its row span is {0}.")
    return vt[:rank].T


def classifier_subspace_projection(activations: Any, head_weight: Any) -> np.ndarray:
    """Orthogonal projection of the activations ``[N, C]`` onto the span of the head's weight rows.

    ``A V V^T`` with V an orthonormal basis of ``rowspan(W)``, W = ``net.head.weight`` ``[k, C]``. The
    result stays in R^C (so UMAP, grid and whitening apply unchanged) but has rank <= k: the paper's
    Discussion suggests atlases of these projected activations (whiten them with the default
    ``"regularized"`` or ``"pinv"`` mode; ``"exact"`` will fail). Returns float32 ``[N, C]``.
    """
    a = _as_activations(activations)
    basis = classifier_subspace_basis(head_weight)
    if basis.shape[0] != a.shape[1]:
        raise ValueError(f"head_weight has {basis.shape[0]} columns but the activations have {a.shape[1]} units.")
    return ((a.astype(np.float64) @ basis) @ basis.T).astype(np.float32)


# -- everything ---------------------------------------------------------------------------------------


@dataclass
class AtlasLayout:
    """Everything between the activations and the icons: ``xy`` (raw UMAP), ``xy01`` (normalized),
    ``grid`` (:class:`GridCells`), whitening ``matrix`` S, ``whitened`` directions ``[K, C]`` (``directions
    @ S``, what the icon objective targets), ``condition_number`` of M and the ``ridge`` used."""

    xy: np.ndarray
    xy01: np.ndarray
    grid: GridCells
    matrix: np.ndarray
    whitened: np.ndarray
    condition_number: float
    ridge: float
    whiten_mode: str

    @property
    def cells(self) -> np.ndarray:
        return self.grid.cells

    @property
    def counts(self) -> np.ndarray:
        return self.grid.counts

    @property
    def directions(self) -> np.ndarray:
        return self.grid.directions

    @property
    def count_matrix(self) -> np.ndarray:
        return self.grid.count_matrix

    @property
    def grid_size(self) -> int:
        return self.grid.grid_size


def compute_layout(
    activations: Any,
    *,
    grid_size: int = 15,
    min_density: int = 10,
    seed: int | None = 0,
    reducer: Any | Callable[[np.ndarray], np.ndarray] | None = None,
    whiten_mode: WhitenMode | None = "regularized",
    n_neighbors: int = 20,
    min_dist: float = 0.01,
    metric: str = "cosine",
    xy: Any | None = None,
    knn: Literal["umap", "exact"] = "umap",
    knn_device: str | torch.device | None = None,
) -> AtlasLayout:
    """UMAP -> normalize -> grid -> cell means -> whitening, with the paper's/L-NB defaults.

    ``xy`` reuses an existing raw layout (skips UMAP). ``whiten_mode=None`` skips whitening (S = I,
    the un-whitened objective of L-NB). For the classifier-subspace atlas of the paper's Discussion,
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
    if whiten_mode is None:
        matrix, condition, ridge = np.eye(a.shape[1], dtype=np.float32), float("nan"), 0.0
    else:
        matrix, condition, ridge = whitening_matrix(a, whiten_mode)
    return AtlasLayout(
        xy=xy, xy01=xy01, grid=grid, matrix=matrix, whitened=whiten(grid.directions, matrix),
        condition_number=condition, ridge=ridge, whiten_mode=str(whiten_mode),
    )

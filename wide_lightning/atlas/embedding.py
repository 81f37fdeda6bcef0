"""Step 2 of an atlas: the UMAP layout of the activations and its normalization to [0, 1]^2.

As lucid's ``activation-atlas-simple`` notebook (spec sections 2.3-2.4, "L-NB"):
:func:`umap_layout` is UMAP(n_neighbors=20, min_dist=0.01, metric="cosine") on the raw activations;
:func:`normalize_layout` clips each axis to its 1st/99th percentiles widened by 10 % and rescales it.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal

import numpy as np
import torch

from wide_lightning.atlas.arrays import _as_activations, as_numpy

#: lucid notebook (L-NB) UMAP parameters, which the paper used.
UMAP_DEFAULTS = {"n_neighbors": 20, "min_dist": 0.01, "metric": "cosine"}


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

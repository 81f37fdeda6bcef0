"""The classifier subspace of the paper's Discussion: the span of the head's weight rows."""

from __future__ import annotations

from typing import Any

import numpy as np

from wide_lightning.atlas.arrays import _as_activations, as_numpy


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

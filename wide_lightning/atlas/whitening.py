"""Whitening of the atlas directions (spec section 2.2): ``S = inv(A^T A / N)``, applied as ``v @ S``."""

from __future__ import annotations

from typing import Any, Literal, NamedTuple

import numpy as np

from wide_lightning.atlas.arrays import _as_activations, as_numpy

WhitenMode = Literal["regularized", "pinv", "exact"]


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


#: The regularized inverse's ridge, as a multiple of M's mean eigenvalue ``trace(M) / C``: the atlas
#: spec's choice (section 2.2), just enough to make ``inv`` finite with dead units.
SPEC_RIDGE = 1e-6


def whitening_matrix(activations: Any, mode: WhitenMode = "regularized", ridge: float = SPEC_RIDGE) -> Whitening:
    """Lucid's whitening ``S = inv(A^T A / N)`` (uncentered second moment, float64; spec 2.2).

    Modes:
        ``"regularized"`` (default): ``inv(M + lam I)``, ``lam = ridge * trace(M) / C``; finite with dead
            units (all-zero columns) and with width close to N. The spec's ``ridge=1e-6`` leaves
            ``S`` amplifying the near-null directions of ``M`` up to a million times more than its
            mean direction; a ridge near 1 keeps only the whitening of the dominant directions
            (``docs/studies/2026-12-02-atlas-icons.md`` measures what that does to the icons).
        ``"pinv"``: ``pinv(M, hermitian=True)``; dead units get zero rows/columns.
        ``"exact"``: plain ``inv(M)`` as lucid (raises if M is numerically singular).

    Returns:
        :class:`Whitening` ``(matrix, condition_number, ridge)``: S as float32, ``cond(M)`` (``inf`` if
        singular) for logging, and ``lam``.
    """
    if mode not in ("regularized", "pinv", "exact"):
        raise ValueError(f"mode must be 'regularized', 'pinv' or 'exact', got {mode!r}.")
    if not ridge > 0 or not np.isfinite(ridge):
        raise ValueError(f"ridge must be a positive multiple of the mean eigenvalue (e.g. 1e-6 or 1.0), got {ridge!r}.")
    m = second_moment(activations)
    c = m.shape[0]
    eig = np.linalg.eigvalsh(m)
    top = float(eig[-1])
    if top <= 0:
        raise ValueError("all activations are zero: the second-moment matrix is 0 and cannot be whitened.")
    tol = top * c * np.finfo(np.float64).eps
    condition = float(top / eig[0]) if eig[0] > tol else float("inf")
    lam = 0.0
    if mode == "regularized":
        lam = ridge * float(np.trace(m)) / c
        m[np.diag_indices(c)] += lam  # M + lam I in place: the same numbers as ``m + lam * np.eye(c)``, two C x C fewer
        s = np.linalg.inv(m)
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
    del m  # numpy's inverse holds 4 float64 C x C at its peak (M, its copy, the identity, S): the atlas's largest
    s = (s + s.T) / 2  # exactly symmetric
    return Whitening(s.astype(np.float32), condition, lam)


def whiten(directions: Any, matrix: Any) -> Any:
    """``directions @ S`` (row vectors; S is symmetric so this is ``S v`` for each v). Keeps torch/numpy type."""
    if hasattr(directions, "detach"):
        import torch

        return directions @ torch.as_tensor(as_numpy(matrix), dtype=directions.dtype, device=directions.device)
    return as_numpy(directions, np.float32) @ as_numpy(matrix, np.float32)

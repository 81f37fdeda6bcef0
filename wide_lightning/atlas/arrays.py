"""Array helpers shared by the atlas modules: numpy views of tensors, and the activation-matrix check."""

from __future__ import annotations

from typing import Any

import numpy as np


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

"""Real examples beside the optimized icons: for every atlas cell, the training images nearest its mean.

An icon is what the network's layer responds to along a cell's direction; the exemplars are what
the data holds there. A reader checks a sub-cluster ("closed 4s", "2s with a loop") against both.
Nearness is the Euclidean distance in the atlas layer, between an example's activation vector and
the cell's mean activation (the cell direction before whitening).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from wide_lightning.atlas.arrays import as_numpy


def nearest_examples(directions: Any, activations: Any, count: int = 5, device: str | torch.device | None = None,
                     chunk: int = 8192) -> np.ndarray:
    """Indices ``[K, count]`` of the ``count`` activation rows nearest each direction (nearest first).

    Args:
        directions: ``[K, D]`` cell means.
        activations: ``[N, D]`` the laid-out activations (row ``n`` is example ``n``).
        count: exemplars per cell (at most N).
        device: where the distances are computed (default the CPU); rows are streamed in chunks.
    """
    v = torch.as_tensor(as_numpy(directions, np.float32))
    a = torch.as_tensor(as_numpy(activations, np.float32))
    if v.ndim != 2 or a.ndim != 2 or v.shape[1] != a.shape[1]:
        raise ValueError(f"directions [K, D] and activations [N, D] must share D, got {tuple(v.shape)} and {tuple(a.shape)}.")
    if isinstance(count, bool) or not isinstance(count, int) or not 1 <= count <= len(a):
        raise ValueError(f"count must be an integer in [1, {len(a)}] (the number of examples), got {count!r}.")
    device = torch.device(device or "cpu")
    v = v.to(device, torch.float64)
    best_d = torch.full((len(v), 0), float("inf"), dtype=torch.float64, device=device)
    best_i = torch.zeros((len(v), 0), dtype=torch.int64, device=device)
    for start in range(0, len(a), chunk):
        block = a[start:start + chunk].to(device, torch.float64)
        d = torch.cdist(v, block)
        take = min(count, d.shape[1])
        value, index = d.topk(take, dim=1, largest=False)
        best_d = torch.cat([best_d, value], 1)
        best_i = torch.cat([best_i, index + start], 1)
        order = torch.sort(best_d, dim=1, stable=True).indices[:, :count]  # stable: ties keep the lower index
        best_d, best_i = best_d.gather(1, order), best_i.gather(1, order)
    return best_i.cpu().numpy()

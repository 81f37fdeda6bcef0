"""The icon objective (atlas spec section 2.6): how strongly activations point along a target direction.

* ``"lucid_notebook"`` (lucid's notebook ``direction_neuron_cossim_S``): ``dot = mean_c(a_c u_c)``,
  ``cos' = dot / (1e-4 + |a|)``, ``obj = dot * max(0.1, cos')^4``; ``u`` is the (whitened) direction,
  computed by the caller.
* ``"true_cosine"``: lucid's generic ``_dot_cossim`` (summed dot, true cosine), the paper's formula.
* ``"dot"``: the plain summed dot that the notebook uses when there is no whitening matrix.
* ``"cosine"``: the true cosine alone. ``dot`` grows with the activations' size, so with the other
  objectives an image that repeats a feature (say a digit at three shifts, which a shift-invariant
  network adds up) beats the feature once; the cosine does not pay for repetition.
* ``"match"``: the activations matched to the direction itself, ``-|a - u|^2 / |u|^2``
  (representation inversion, Mahendran & Vedaldi 2015): the image whose hidden state is the cell's
  mean, in size too. Meaningful for unwhitened directions only.
"""

from __future__ import annotations

from typing import Literal

import torch

Objective = Literal["lucid_notebook", "true_cosine", "dot", "cosine", "match"]
OBJECTIVES: tuple[str, ...] = ("lucid_notebook", "true_cosine", "dot", "cosine", "match")


def objective_terms(
    acts: torch.Tensor, directions: torch.Tensor, mode: Objective = "lucid_notebook", cossim_pow: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-icon objective (to be maximized) and cosine term, both ``[B]``, for acts and directions ``[B, C]``.

    * ``"lucid_notebook"`` (L-NB ``direction_neuron_cossim_S``): ``dot = mean_c(a u)``,
      ``cos = dot / (1e-4 + |a|)`` (``u`` not normalized), ``obj = dot * max(0.1, cos)^cossim_pow``.
    * ``"true_cosine"`` (lucid ``_dot_cossim``, the paper's formula): ``dot = sum_c(a u)``,
      ``cos = dot / ((1e-4 + |a|)(1e-4 + |u|))``, ``obj = dot * max(0.1, cos)^cossim_pow``.
    * ``"dot"`` (L-NB without whitening): ``obj = sum_c(a u)``; ``cos`` is the true cosine, for reporting.
    * ``"cosine"``: ``obj = cos``, the true cosine.
    * ``"match"``: ``obj = -|a - u|^2 / (eps + |u|^2)``.

    The returned ``cos`` is unclamped, so the regime of the 0.1 floor is visible.
    """
    if mode not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {mode!r}.")
    if acts.ndim != 2 or acts.shape != directions.shape:
        raise ValueError(
            f"activations and directions must both be [B, C] of equal shape, got {tuple(acts.shape)} "
            f"and {tuple(directions.shape)}."
        )
    eps = 1e-4
    acts_norm = acts.norm(dim=1)
    if mode == "lucid_notebook":
        dot = (acts * directions).mean(1)
        cos = dot / (eps + acts_norm)
        return dot * cos.clamp(min=0.1) ** cossim_pow, cos
    dot = (acts * directions).sum(1)
    cos = dot / ((eps + acts_norm) * (eps + directions.norm(dim=1)))
    if mode == "true_cosine":
        return dot * cos.clamp(min=0.1) ** cossim_pow, cos
    if mode == "cosine":
        return cos, cos
    if mode == "match":
        return -(acts - directions).pow(2).sum(1) / (eps + directions.pow(2).sum(1)), cos
    return dot, cos


def direction_objective(
    acts: torch.Tensor, directions: torch.Tensor, mode: Objective = "lucid_notebook", cossim_pow: float = 4.0
) -> torch.Tensor:
    """The per-icon objective ``[B]`` of :func:`objective_terms` (maximized; the loss is ``-obj.sum()``)."""
    return objective_terms(acts, directions, mode, cossim_pow)[0]

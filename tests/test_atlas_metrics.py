"""Numbers beside the atlases: participation ratio, activity, decodability, subspace energy, purity."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from wide_lightning.atlas.layout import compute_layout
from wide_lightning.atlas.metrics import (
    active_fraction,
    atlas_metrics,
    cell_purity,
    classifier_subspace_energy,
    covariance,
    decodability,
    participation_ratio,
)


def test_participation_ratio_hand_computed():
    a = np.array([[1.0, 0.0], [-1.0, 0.0], [0.0, 2.0], [0.0, -2.0]])
    # centered covariance (N - 1 = 3): diag(2/3, 8/3) -> (10/3)^2 / ((2/3)^2 + (8/3)^2) = 100 / 68
    np.testing.assert_allclose(covariance(a), np.diag([2 / 3, 8 / 3]))
    assert participation_ratio(a) == pytest.approx(100 / 68)
    # centering matters: shifting the data changes nothing
    assert participation_ratio(a + 5.0) == pytest.approx(100 / 68)


def test_participation_ratio_limits():
    rng = np.random.default_rng(0)
    assert participation_ratio(rng.normal(size=(20000, 5))) == pytest.approx(5.0, rel=0.02)  # isotropic: d
    rank1 = rng.normal(size=(100, 1)) * rng.normal(size=(1, 7))
    assert participation_ratio(torch.from_numpy(rank1)) == pytest.approx(1.0)
    assert math.isnan(participation_ratio(np.ones((4, 3))))  # no variance


def test_active_fraction_hand_computed():
    a = np.array([[1.0, 0.0, 0.0, 2.0], [0.5, 0.0, 0.0, 0.0], [0.0, 0.0, 3.0, 0.0]])
    result = active_fraction(a)
    assert result.units == pytest.approx(3 / 4)  # unit 1 is dead
    assert result.per_example == pytest.approx((2 / 4 + 1 / 4 + 1 / 4) / 3)
    assert active_fraction(a, threshold=1.0) == (pytest.approx(2 / 4), pytest.approx(2 / 12))


def test_decodability_separable_and_noise():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 4, 2000)
    centers = rng.normal(0, 10, (4, 8))
    separable = centers[y] + rng.normal(0, 0.5, (2000, 8))
    for method in ("linear", "knn"):
        result = decodability(separable, y, method=method, seed=0)
        assert result.accuracy > 0.99
        assert 0.2 < result.chance < 0.3
        assert result.n_test == 400 and result.n_train == 1600
    noise = rng.normal(size=(2000, 8))
    for method in ("linear", "knn"):
        result = decodability(noise, y, method=method, seed=0)
        assert abs(result.accuracy - result.chance) < 0.08
    # seeded: the same answer twice; a 1-D attribute reader works on a 2-D layout too
    assert decodability(noise[:, :2], y, method="knn", seed=3) == decodability(noise[:, :2], y, method="knn", seed=3)


def test_decodability_chance_is_the_training_majority_and_subsampling():
    rng = np.random.default_rng(1)
    y = (rng.random(1000) < 0.8).astype(int)  # 80 % ones
    result = decodability(rng.normal(size=(1000, 3)), y, method="knn", max_samples=500)
    assert result.n_train + result.n_test == 500
    assert result.chance == pytest.approx(np.mean(y == 1), abs=0.08)


def test_decodability_errors():
    with pytest.raises(ValueError, match="single value"):
        decodability(np.zeros((10, 2)), np.zeros(10))
    with pytest.raises(ValueError, match="method"):
        decodability(np.zeros((10, 2)), np.arange(10) % 2, method="svm")
    with pytest.raises(ValueError, match="N = len"):
        decodability(np.zeros((9, 2)), np.arange(10) % 2)


def test_classifier_subspace_energy():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(2, 6))
    assert classifier_subspace_energy(rng.normal(size=(5, 2)) @ w, w) == pytest.approx(1.0)
    null = np.linalg.svd(w)[2][2:]  # rows orthogonal to w's row space
    assert classifier_subspace_energy(rng.normal(size=(5, 4)) @ null, w) == pytest.approx(0.0, abs=1e-12)
    iso = rng.normal(size=(20000, 6))
    assert classifier_subspace_energy(iso, w) == pytest.approx(2 / 6, rel=0.05)


def test_cell_purity_hand_computed():
    xy = np.array([[0.1, 0.1]] * 3 + [[0.9, 0.9]] * 4)
    labels = np.array([0, 0, 1, 2, 2, 2, 2])
    assert cell_purity(xy, labels, [[0, 0], [1, 1]], 2) == pytest.approx((2 + 4) / 7)
    assert cell_purity(xy, labels, [[1, 1]], 2) == 1.0


def test_atlas_metrics_flat_dict():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 400)
    acts = np.maximum(rng.uniform(1, 6, (3, 10))[y] + rng.normal(0, 0.3, (400, 10)), 0).astype(np.float32)
    acts[:, 9] = 0  # a dead unit
    shift = rng.integers(0, 4, 400)

    def pca2(x):
        x = x - x.mean(0)
        return x @ np.linalg.svd(x, full_matrices=False)[2][:2].T

    layout = compute_layout(acts, grid_size=4, min_density=5, reducer=pca2)
    out = atlas_metrics(acts, labels={"digit": y, "shift": shift}, layout=layout, head_weight=rng.normal(size=(3, 10)))
    expected = {
        "width", "participation_ratio", "active_units", "active_per_example", "classifier_subspace_energy",
        "cells_kept", "points_in_kept_cells", "whitening_log10_cond",
        "decode/digit/hidden_linear", "decode/digit/layout_knn", "decode/digit/chance", "cell_purity/digit",
        "decode/shift/hidden_linear", "decode/shift/layout_knn", "decode/shift/chance", "cell_purity/shift",
    }
    assert set(out) == {f"atlas/{k}" for k in expected}
    assert all(isinstance(v, float) for v in out.values())
    assert out["atlas/width"] == 10 and out["atlas/active_units"] == pytest.approx(0.9)
    assert out["atlas/decode/digit/hidden_linear"] > 0.95 and out["atlas/decode/shift/hidden_linear"] < 0.5
    assert out["atlas/whitening_log10_cond"] == float("inf")  # the dead unit makes M singular
    assert 0 < out["atlas/points_in_kept_cells"] <= 1
    small = atlas_metrics(acts, labels={"digit": y}, decode=[], prefix="")
    assert set(small) == {"width", "participation_ratio", "active_units", "active_per_example"}
    with pytest.raises(KeyError, match="nope"):
        atlas_metrics(acts, labels={"digit": y}, decode=["nope"])

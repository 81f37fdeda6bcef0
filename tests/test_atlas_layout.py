"""Atlas layout: UMAP wrapper, normalization, grid and cell means, whitening, classifier subspace."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from wide_lightning.atlas.embedding import exact_knn, normalize_layout, umap_layout, unique_rows
from wide_lightning.atlas.grid import cell_members, grid_cells
from wide_lightning.atlas.layout import AtlasLayout, compute_layout
from wide_lightning.atlas.subspace import classifier_subspace_basis, classifier_subspace_projection
from wide_lightning.atlas.whitening import second_moment, whiten, whitening_matrix


def pca2(x: np.ndarray) -> np.ndarray:
    """A cheap, deterministic stand-in for UMAP."""
    x = x - x.mean(0)
    _, _, vt = np.linalg.svd(x, full_matrices=False)
    return x @ vt[:2].T


def relu_clusters(n: int = 300, width: int = 16, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, k, n)
    centers = rng.normal(0, 3, (k, width))
    return np.maximum(centers[labels] + rng.normal(0, 0.5, (n, width)), 0).astype(np.float32), labels


# -- normalize_layout (spec 2.4) ----------------------------------------------------------------------


def test_normalize_layout_matches_hand_computed_percentiles_and_margins():
    x = np.arange(101, dtype=np.float64)
    x[0], x[100] = -1000.0, 1000.0  # sorted: -1000, 1, ..., 99, 1000 -> 1st pct = 1, 99th pct = 99
    y = 3.0 * x + 7.0
    out = normalize_layout(np.stack([x, y], 1))
    # lo = 1 - 0.1 * 98 = -8.8 first, then hi = 99 + 0.1 * (99 - (-8.8)) = 109.78 (upper margin 0.11 * range)
    lo, hi = -8.8, 109.78
    expected = (np.clip(x, lo, hi) - lo) / (hi - lo)
    np.testing.assert_allclose(out[:, 0], expected, atol=1e-12)
    np.testing.assert_allclose(out[:, 1], expected, atol=1e-12)  # affine per axis -> the same result
    assert out[0, 0] == 0.0 and out[100, 0] == 1.0  # outliers clipped to the ends
    assert out[50, 0] == pytest.approx((50 + 8.8) / 118.58)
    # a symmetric margin (hi = 99 + 9.8) would give a different value
    assert out[50, 0] != pytest.approx((50 + 8.8) / (108.8 + 8.8))


def test_normalize_layout_divides_by_data_max_when_no_outliers():
    x = np.linspace(0, 10, 1001)
    out = normalize_layout(np.stack([x, -x], 1))
    assert out.min() == 0.0 and out.max() == 1.0
    np.testing.assert_allclose(out[:, 0], x / 10)  # clipping bounds lie outside the data: only the rescale acts
    np.testing.assert_allclose(out[:, 1], 1 - x / 10)


def test_normalize_layout_errors():
    with pytest.raises(ValueError, match="NaN"):
        normalize_layout(np.array([[0.0, 1.0], [np.nan, 2.0], [1.0, 3.0]]))
    with pytest.raises(ValueError, match="no spread along y"):
        normalize_layout(np.stack([np.arange(10.0), np.ones(10)], 1))
    with pytest.raises(ValueError, match=r"\[N, 2\]"):
        normalize_layout(np.zeros((5, 3)))


# -- grid (spec 2.5) ----------------------------------------------------------------------------------


def members(xy, g):
    p, i, j = cell_members(np.asarray(xy, float), g)
    return sorted(zip(p.tolist(), i.tolist(), j.tolist()))


def test_cell_members_inclusive_bounds():
    g = 2
    assert members([[0.25, 0.25]], g) == [(0, 0, 0)]
    assert members([[0.5, 0.25]], g) == [(0, 0, 0), (0, 1, 0)]  # on the x = 0.5 boundary: both cells
    assert members([[0.5, 0.5]], g) == [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1)]  # corner: 4 cells
    assert members([[1.0, 1.0]], g) == [(0, 1, 1)]  # x = 1.0 is in the last cell
    assert members([[0.0, 0.75]], g) == [(0, 0, 1)]
    assert members([[1.2, 0.5], [-0.1, 0.2]], g) == []  # outside [0, 1]: no cell


def test_grid_density_threshold_is_strict_and_directions_are_means():
    g, min_density = 2, 3
    rng = np.random.default_rng(0)
    # cell (0, 0): exactly 3 points (dropped); cell (1, 1): 4 points (kept); cell (1, 0): 5 points (kept)
    xy = np.array([[0.1, 0.1], [0.2, 0.3], [0.3, 0.2],
                   [0.6, 0.6], [0.7, 0.9], [0.9, 0.7], [0.8, 0.8],
                   [0.6, 0.1], [0.7, 0.2], [0.8, 0.3], [0.9, 0.4], [0.95, 0.05]])
    acts = rng.random((len(xy), 6)).astype(np.float32)
    cells = grid_cells(xy, acts, grid_size=g, min_density=min_density)
    assert cells.cells.tolist() == [[1, 0], [1, 1]]  # x-major order, (0, 0) with exactly 3 dropped
    assert cells.counts.tolist() == [5, 4]
    np.testing.assert_allclose(cells.directions[0], acts[7:12].mean(0), rtol=1e-6)
    np.testing.assert_allclose(cells.directions[1], acts[3:7].mean(0), rtol=1e-6)
    assert cells.directions.dtype == np.float32
    np.testing.assert_array_equal(cells.count_matrix, [[3, 0], [5, 4]])  # indexed [i, j]
    assert cells.min_density == 3 and len(cells) == 2
    # min_density = 2 keeps the 3-point cell
    assert grid_cells(xy, acts, grid_size=g, min_density=2).cells.tolist() == [[0, 0], [1, 0], [1, 1]]


def test_grid_boundary_point_counts_in_both_cells_and_their_means():
    g = 2
    xy = np.array([[0.25, 0.25]] * 2 + [[0.75, 0.25]] * 2 + [[0.5, 0.25]])  # the last point is on x = 0.5
    acts = np.array([[1.0], [1.0], [3.0], [3.0], [10.0]], np.float32)
    cells = grid_cells(xy, acts, grid_size=g, min_density=2)
    assert cells.cells.tolist() == [[0, 0], [1, 0]]
    assert cells.counts.tolist() == [3, 3]
    np.testing.assert_allclose(cells.directions[:, 0], [(1 + 1 + 10) / 3, (3 + 3 + 10) / 3], rtol=1e-6)


def test_grid_matches_a_loop_reference():
    rng = np.random.default_rng(1)
    xy = rng.random((500, 2))
    xy[:40] = np.round(xy[:40] * 5) / 5  # many points exactly on grid lines
    acts = rng.random((500, 4)).astype(np.float32)
    g, d = 5, 10
    cells = grid_cells(xy, acts, grid_size=g, min_density=d)
    xs, ys = xy[:, 0] * g, xy[:, 1] * g
    expected = []
    for i in range(g):  # the L-NB loop, verbatim semantics
        for j in range(g):
            inside = (i <= xs) & (xs <= i + 1) & (j <= ys) & (ys <= j + 1)
            if inside.sum() > d:
                expected.append(((i, j), inside.sum(), acts[inside].mean(0)))
    assert [tuple(c) for c in cells.cells.tolist()] == [e[0] for e in expected]
    assert cells.counts.tolist() == [e[1] for e in expected]
    np.testing.assert_allclose(cells.directions, np.stack([e[2] for e in expected]), rtol=1e-5)


def test_grid_errors():
    xy, acts = np.random.default_rng(0).random((30, 2)), np.ones((30, 3), np.float32)
    with pytest.raises(ValueError, match="grid_size"):
        grid_cells(xy, acts, grid_size=0)
    with pytest.raises(ValueError, match="NaN"):
        grid_cells(np.r_[xy[:-1], [[np.nan, 0.5]]], acts)
    with pytest.raises(ValueError, match=r"30 points.*fullest cell has \d+.*smaller grid_size or min_density"):
        grid_cells(xy, acts, grid_size=15, min_density=10)
    with pytest.raises(ValueError, match="29 activation rows"):
        grid_cells(xy, acts[:29], grid_size=1, min_density=0)
    with pytest.raises(ValueError, match="min_density"):
        grid_cells(xy, acts, grid_size=2, min_density=-1)


# -- whitening (spec 2.2) -----------------------------------------------------------------------------


def test_second_moment_is_uncentered():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    np.testing.assert_allclose(second_moment(a), a.T.astype(float) @ a / 2)


@pytest.mark.parametrize("mode", ["regularized", "pinv", "exact"])
def test_whitening_inverts_full_rank_second_moment(mode):
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(400, 12))).astype(np.float32)
    s, cond, ridge = whitening_matrix(a, mode)
    m = second_moment(a)
    assert s.dtype == np.float32 and s.shape == (12, 12)
    np.testing.assert_allclose(s, s.T)
    np.testing.assert_allclose(s.astype(np.float64) @ m, np.eye(12), atol=1e-4)
    assert cond == pytest.approx(np.linalg.cond(m), rel=1e-6)
    assert (ridge > 0) == (mode == "regularized")


def test_whitening_with_a_dead_unit():
    rng = np.random.default_rng(0)
    a = np.abs(rng.normal(size=(200, 6))).astype(np.float32)
    a[:, 2] = 0.0  # a dead ReLU unit
    s, cond, ridge = whitening_matrix(a)  # regularized by default
    assert np.isfinite(s).all() and cond == float("inf")
    assert ridge == pytest.approx(1e-6 * np.trace(second_moment(a)) / 6)
    live = [0, 1, 3, 4, 5]
    m = second_moment(a)
    np.testing.assert_allclose(s[np.ix_(live, live)] @ m[np.ix_(live, live)], np.eye(5), atol=1e-3)
    p, _, _ = whitening_matrix(a, "pinv")
    assert np.isfinite(p).all() and np.abs(p[2]).max() < 1e-12 and np.abs(p[:, 2]).max() < 1e-12
    with pytest.raises(ValueError, match="singular.*1 dead units.*regularized"):
        whitening_matrix(a, "exact")
    with pytest.raises(ValueError, match="all activations are zero"):
        whitening_matrix(np.zeros((5, 3)))
    with pytest.raises(ValueError, match="mode"):
        whitening_matrix(a, "cholesky")


def test_whiten_is_row_vector_times_s_for_numpy_and_torch():
    rng = np.random.default_rng(0)
    s = rng.normal(size=(4, 4)).astype(np.float32)
    s = s + s.T
    v = rng.normal(size=(3, 4)).astype(np.float32)
    np.testing.assert_allclose(whiten(v, s), v @ s, rtol=1e-6)
    out = whiten(torch.from_numpy(v), s)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_allclose(out.numpy(), v @ s, rtol=1e-6)


# -- classifier subspace (Discussion) -------------------------------------------------------------------


def test_classifier_subspace_projection():
    rng = np.random.default_rng(0)
    w = rng.normal(size=(3, 10))
    a = rng.normal(size=(50, 10)).astype(np.float32)
    p = classifier_subspace_projection(a, torch.from_numpy(w).float())
    assert p.shape == a.shape and p.dtype == np.float32
    np.testing.assert_allclose(classifier_subspace_projection(p, w), p, atol=1e-5)  # idempotent
    np.testing.assert_allclose(classifier_subspace_projection(w.astype(np.float32), w), w, atol=1e-5)  # head rows fixed
    np.testing.assert_allclose((a - p) @ w.T, 0, atol=1e-4)  # the residual is orthogonal to the rows
    assert np.linalg.matrix_rank(p.astype(np.float64), tol=1e-4) == 3
    # a rank-deficient head (duplicate row) projects onto its 2-D span
    assert classifier_subspace_basis(np.stack([w[0], w[1], 2 * w[0]])).shape == (10, 2)
    with pytest.raises(ValueError, match="columns"):
        classifier_subspace_projection(a, w[:, :5])


# -- UMAP wrapper and pipeline ------------------------------------------------------------------------


def test_unique_rows_inverse_reconstructs():
    a = np.array([[0, 0], [1, 2], [0, 0], [1, 2], [3, 3]], np.float32)
    first, inverse = unique_rows(a)
    assert len(first) == 3
    np.testing.assert_array_equal(a[first][inverse], a)


def test_umap_layout_dedupes_before_the_reducer():
    a, _ = relu_clusters(200)
    a[::5] = 0.0  # many all-zero rows
    a[1::10] = a[1]  # many duplicates (never a zero row)
    seen = []

    def reducer(x):
        seen.append(len(x))
        return pca2(x)

    xy = umap_layout(a, reducer=reducer)
    first, inverse = unique_rows(a)
    assert seen == [len(first)] and len(first) < 200
    assert xy.shape == (200, 2) and xy.dtype == np.float64
    np.testing.assert_array_equal(xy[::5], np.repeat(xy[:1], 40, 0))  # identical rows, identical positions
    np.testing.assert_array_equal(xy[1::10], np.repeat(xy[1:2], 20, 0))
    # an object with fit_transform works too, and dedupe can be switched off
    class Obj:
        def fit_transform(self, x):
            return pca2(x)

    assert umap_layout(a, reducer=Obj(), dedupe=False).shape == (200, 2)


def test_umap_layout_errors():
    with pytest.raises(ValueError, match="only 2 distinct"):
        umap_layout(np.array([[0, 1], [0, 1], [1, 0]] * 5, np.float32), reducer=pca2)
    with pytest.raises(ValueError, match="NaN"):
        umap_layout(np.array([[np.nan, 1]] + [[k, 1] for k in range(5)], np.float32), reducer=pca2)
    with pytest.raises(ValueError, match=r"shape \(6, 3\)"):
        umap_layout(np.eye(6, dtype=np.float32), reducer=lambda x: np.zeros((len(x), 3)))


def test_compute_layout_end_to_end_with_stub_reducer():
    a, _ = relu_clusters(600, width=8)
    out = compute_layout(torch.from_numpy(a), grid_size=6, min_density=5, reducer=pca2)
    assert isinstance(out, AtlasLayout)
    assert out.xy.shape == out.xy01.shape == (600, 2)
    assert out.xy01.min() == 0 and out.xy01.max() == 1
    k = len(out.cells)
    assert k > 0 and out.directions.shape == (k, 8) and out.whitened.shape == (k, 8)
    assert (out.counts > 5).all() and out.count_matrix.shape == (6, 6)
    np.testing.assert_allclose(out.whitened, out.directions @ out.matrix, rtol=1e-5)
    assert np.isfinite(out.condition_number) and out.whiten_mode == "regularized"
    # an existing layout skips the reducer; whiten_mode=None gives the identity
    again = compute_layout(a, xy=out.xy, grid_size=6, min_density=5, whiten_mode=None)
    np.testing.assert_array_equal(again.cells, out.cells)
    np.testing.assert_allclose(again.whitened, again.directions)


@pytest.mark.slow
def test_real_umap_on_relu_clusters():
    """One real UMAP fit (< 2,000 points; the first fit in a process JIT-compiles for ~15 s)."""
    from wide_lightning.atlas.metrics import decodability

    a, labels = relu_clusters(500, width=32, k=3)
    a[:25] = 0.0  # dead inputs: all-zero rows
    a[25:40] = a[40]  # duplicates
    xy = umap_layout(a, seed=0)
    assert xy.shape == (500, 2) and np.isfinite(xy).all()
    np.testing.assert_array_equal(xy[:25], np.repeat(xy[:1], 25, 0))
    xy01 = normalize_layout(xy)
    assert decodability(xy01[40:], labels[40:], method="knn").accuracy > 0.95
    np.testing.assert_array_equal(umap_layout(a, seed=0), xy)  # seeded: reproducible


@pytest.mark.parametrize("metric", ["cosine", "euclidean"])
def test_exact_knn_matches_brute_force_and_puts_each_row_first(metric):
    rng = np.random.default_rng(3)
    a = np.maximum(rng.standard_normal((57, 9)), 0).astype(np.float32)
    a[5] = 0.0  # an all-zero row: at cosine distance 1 from every other row, 0 from itself
    if metric == "cosine":
        unit = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-30)
        d = 1.0 - unit.astype(np.float64) @ unit.T.astype(np.float64)
    else:
        d = np.linalg.norm(a[:, None].astype(np.float64) - a[None].astype(np.float64), axis=2)
    np.fill_diagonal(d, 0.0)
    index, dist = exact_knn(a, 6, metric, chunk=10)  # several chunks, one of them partial
    assert index.shape == dist.shape == (57, 6) and index.dtype == np.int64
    np.testing.assert_array_equal(index[:, 0], np.arange(57))
    np.testing.assert_array_equal(dist[:, 0], 0.0)
    assert (np.diff(dist, axis=1) >= 0).all()
    np.testing.assert_allclose(dist, np.take_along_axis(d, index, 1), atol=1e-5)
    for row in range(57):
        if row == 5 and metric == "cosine":
            np.testing.assert_allclose(dist[row, 1:], 1.0)  # every other row is a tie at 1
            continue
        expected = np.sort(d[row])[:6]
        np.testing.assert_allclose(dist[row], expected, atol=1e-5)


def test_exact_knn_errors():
    with pytest.raises(ValueError, match="got metric='correlation'"):
        exact_knn(np.eye(4, dtype=np.float32), 2, "correlation")
    with pytest.raises(ValueError, match="k=5 neighbours need 1 <= k <= 4"):
        exact_knn(np.eye(4, dtype=np.float32), 5)


def test_knn_auto_is_exact_on_a_gpu_only():
    from wide_lightning.atlas.pipeline import resolve_knn

    assert resolve_knn("auto", "cuda") == "exact"
    assert resolve_knn("auto", torch.device("cuda", 0)) == "exact"
    assert resolve_knn("auto", "cpu") == resolve_knn("auto", None) == "umap"
    assert resolve_knn("exact", "cpu") == "exact"
    with pytest.raises(ValueError, match="knn must be 'auto', 'exact' or 'umap', got 'kd'"):
        resolve_knn("kd", "cpu")


@pytest.mark.slow
def test_real_umap_on_the_exact_neighbour_graph(monkeypatch):
    """knn='exact' hands UMAP the brute-force graph: its own search never runs, and the layout separates the clusters."""
    import umap.umap_
    from wide_lightning.atlas.metrics import decodability

    def no_search(*args, **kwargs):
        raise AssertionError("UMAP searched for neighbours although they were given")

    monkeypatch.setattr(umap.umap_, "nearest_neighbors", no_search)
    a, labels = relu_clusters(500, width=32, k=3)
    a[25:40] = a[40]
    # below 4,096 points UMAP computes all distances itself; forcing its large-data path takes the given graph
    xy = umap_layout(a, seed=0, knn="exact", force_approximation_algorithm=True)
    assert xy.shape == (500, 2) and np.isfinite(xy).all()
    assert decodability(normalize_layout(xy)[40:], labels[40:], method="knn").accuracy > 0.95
    np.testing.assert_array_equal(umap_layout(a, seed=0, knn="exact", force_approximation_algorithm=True), xy)
    with pytest.raises(AssertionError, match="searched for neighbours"):  # the check itself can fail
        umap_layout(a, seed=0, knn="umap", force_approximation_algorithm=True)


@pytest.mark.slow
def test_umaps_per_process_compilation_is_cached_on_disk_without_changing_the_layout(monkeypatch):
    import importlib

    import umap

    from wide_lightning.atlas.embedding import UNCACHED_UMAP_FUNCTIONS, cache_umap_compilation

    for module_name, name in UNCACHED_UMAP_FUNCTIONS:  # umap-learn as shipped, even if an earlier test cached it
        module = importlib.import_module(module_name)
        function = getattr(module, name)
        monkeypatch.setattr(module, name, getattr(function, "_wide_lightning_original", function))
    a, _ = relu_clusters(300, width=16, k=3)
    options = dict(n_neighbors=20, min_dist=0.01, metric="cosine", random_state=0, n_jobs=1)
    shipped = umap.UMAP(**options).fit_transform(a)
    assert sorted(cache_umap_compilation()) == sorted(name for _, name in UNCACHED_UMAP_FUNCTIONS)
    for module_name, name in UNCACHED_UMAP_FUNCTIONS:
        assert type(getattr(importlib.import_module(module_name), name)._cache).__name__ == "FunctionCache", name
    np.testing.assert_array_equal(umap.UMAP(**options).fit_transform(a), shipped)
    assert cache_umap_compilation() == []  # once per process

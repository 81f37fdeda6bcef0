"""Numbers to put beside the atlas pictures.

* :func:`participation_ratio`: effective dimensionality of the hidden state (how "distributed" it is);
* :func:`active_fraction`: dead units and sparsity (the paper: "activation vectors of wide networks
  are not sparse");
* :func:`decodability`: how well a label or nuisance attribute (e.g. the shift of translated MNIST,
  Figure 2) can be read from the hidden state or from the 2-D layout, against chance;
* :func:`classifier_subspace_energy`: the share of the activations' energy inside the classifier's
  row space (paper, Discussion);
* :func:`cell_purity`: how class-pure the atlas cells are;
* :func:`atlas_metrics`: all of it as a flat ``{name: float}`` dict ready for ``logger.log_metrics``.
"""

from __future__ import annotations

import warnings
from typing import Any, Literal, Mapping, NamedTuple, Sequence

import numpy as np

from wide_lightning.atlas.arrays import as_numpy
from wide_lightning.atlas.grid import cell_label_counts, cell_members
from wide_lightning.atlas.layout import AtlasLayout
from wide_lightning.atlas.subspace import classifier_subspace_basis


def _activations(x: Any) -> np.ndarray:
    a = as_numpy(x, np.float32)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise ValueError(f"expected a non-empty [N, C] array, got shape {a.shape}.")
    return a


def covariance(activations: Any, chunk: int = 8192) -> np.ndarray:
    """Centered covariance ``[C, C]`` (float64, divided by N - 1; by N when N = 1), accumulated in chunks."""
    a = _activations(activations)
    n = len(a)
    mean = a.mean(axis=0, dtype=np.float64)
    cov = np.zeros((a.shape[1], a.shape[1]), np.float64)
    for start in range(0, n, chunk):
        block = a[start : start + chunk].astype(np.float64) - mean
        cov += block.T @ block
    return cov / max(n - 1, 1)


#: :func:`participation_ratio` forms the C x C covariance whole up to this width, beyond it a C x this
#: column block at a time (the whole one is 32 GiB of float64 at C = 65,536).
COVARIANCE_BLOCK = 2048


def participation_ratio(activations: Any, block: int = COVARIANCE_BLOCK) -> float:
    """``(sum_i lambda_i)^2 / sum_i lambda_i^2`` over the eigenvalues of the **centered** covariance.

    Between 1 (all variance along one direction) and C (isotropic); computed without an
    eigendecomposition as ``trace(Sigma)^2 / ||Sigma||_F^2``. Returns ``nan`` when there is no variance.
    Up to ``block`` units the covariance is formed whole; a wider layer's is summed a ``[C, block]``
    column block at a time (memory ``O(C * block)``, not ``O(C^2)``; the same number up to rounding).
    """
    a = _activations(activations)
    n, c = a.shape
    if c <= block:
        cov = covariance(a)
        trace, energy = float(np.trace(cov)), float(np.sum(cov * cov))
    else:
        mean = a.mean(axis=0, dtype=np.float64)
        rows = max(1, min(8192, (1 << 26) // c))  # about 512 MiB of float64 rows at a time
        trace = energy = 0.0
        for start in range(0, c, block):
            stop = min(start + block, c)
            part = np.zeros((c, stop - start), np.float64)
            for first in range(0, n, rows):
                chunk = a[first : first + rows].astype(np.float64) - mean
                part += chunk.T @ chunk[:, start:stop]
            part /= max(n - 1, 1)
            trace += float(np.trace(part[start:stop]))
            energy += float(np.sum(part * part))
    if energy <= 0:
        return float("nan")
    return float(trace ** 2 / energy)


class ActiveFraction(NamedTuple):
    """``units``: fraction of units > 0 on at least one example (1 - dead fraction);
    ``per_example``: mean over examples of the fraction of units > 0 (density of the code)."""

    units: float
    per_example: float


def active_fraction(activations: Any, threshold: float = 0.0) -> ActiveFraction:
    """How many units are ever active (``> threshold``), and how many are active per example on average."""
    a = _activations(activations)
    active = a > threshold
    return ActiveFraction(float(active.any(axis=0).mean()), float(active.mean()))


class Decodability(NamedTuple):
    """Held-out ``accuracy`` of the probe, ``chance`` (accuracy of always predicting the training
    majority class on the same test examples), and the sizes used."""

    accuracy: float
    chance: float
    n_train: int
    n_test: int


def decodability(
    x: Any,
    attribute: Any,
    *,
    method: Literal["linear", "knn"] = "linear",
    seed: int = 0,
    test_fraction: float = 0.2,
    k: int = 10,
    max_iter: int = 200,
    max_samples: int | None = 10_000,
) -> Decodability:
    """How well ``attribute`` (ints ``[N]``) can be read from ``x`` (``[N, D]``: hidden state or 2-D layout).

    A seeded, stratified (when every class has >= 2 examples) train/test split; features standardized
    on the training part; then ``method="linear"``: multinomial logistic regression (lbfgs,
    ``max_iter``; convergence warnings are silenced, the result is a lower bound) or ``"knn"``:
    k-nearest neighbours (k = 10, Euclidean). ``max_samples`` (seeded subsample, ``None`` = all) keeps
    the cost bounded on 2,000-unit x 50,000-example hidden states.

    Returns:
        :class:`Decodability` ``(accuracy, chance, n_train, n_test)``.
    """
    from sklearn.model_selection import train_test_split
    from sklearn.preprocessing import StandardScaler

    features = as_numpy(x)  # float64 only after the subsample: 26 GB for 50,000 x 65,536 before it
    if not np.issubdtype(features.dtype, np.floating):
        features = features.astype(np.float64)
    if features.ndim == 1:
        features = features[:, None]
    y = as_numpy(attribute).ravel()
    if features.ndim != 2 or len(features) != len(y):
        raise ValueError(f"x must be [N, D] with N = len(attribute) = {len(y)}, got shape {features.shape}.")
    if not np.isfinite(features).all():
        raise ValueError("x contains NaN or inf.")
    if not 0 < test_fraction < 1:
        raise ValueError(f"test_fraction must lie in (0, 1), got {test_fraction}.")
    if method not in ("linear", "knn"):
        raise ValueError(f"method must be 'linear' or 'knn', got {method!r}.")
    rng = np.random.default_rng(seed)
    if max_samples is not None and len(y) > max_samples:
        keep = np.sort(rng.choice(len(y), size=max_samples, replace=False))
        features, y = features[keep], y[keep]
    features = features.astype(np.float64)
    classes, counts = np.unique(y, return_counts=True)
    if len(classes) < 2:
        raise ValueError(f"the attribute takes a single value ({classes.tolist()}): nothing to decode.")
    n_test = max(1, int(round(test_fraction * len(y))))
    if n_test >= len(y):
        raise ValueError(f"{len(y)} examples are too few to split with test_fraction={test_fraction}.")
    stratify = y if counts.min() >= 2 and n_test >= len(classes) and len(y) - n_test >= len(classes) else None
    x_train, x_test, y_train, y_test = train_test_split(
        features, y, test_size=n_test, random_state=seed, stratify=stratify
    )
    scaler = StandardScaler().fit(x_train)
    x_train, x_test = scaler.transform(x_train), scaler.transform(x_test)
    if len(np.unique(y_train)) < 2:
        accuracy = float(np.mean(y_test == y_train[0]))
    elif method == "linear":
        accuracy = float(logistic_regression(x_train, y_train, max_iter).score(x_test, y_test))
    else:
        from sklearn.neighbors import KNeighborsClassifier

        model = KNeighborsClassifier(n_neighbors=min(k, len(y_train))).fit(x_train, y_train)
        accuracy = float(model.score(x_test, y_test))
    values, train_counts = np.unique(y_train, return_counts=True)
    chance = float(np.mean(y_test == values[np.argmax(train_counts)]))
    return Decodability(accuracy, chance, len(y_train), len(y_test))


def logistic_regression(x: np.ndarray, y: np.ndarray, max_iter: int = 200) -> Any:
    """A fitted multinomial logistic regression (sklearn, lbfgs) of ``y`` on ``x``.

    Convergence warnings are silenced: within ``max_iter`` iterations the fit is a lower bound on
    what a linear read-out can do, which is what the atlas numbers report.
    """
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return LogisticRegression(max_iter=max_iter).fit(x, y)


def classifier_subspace_energy(activations: Any, head_weight: Any) -> float:
    """``sum ||P a||^2 / sum ||a||^2``: the share of the activations' (uncentered) energy that lies in the
    span of the head's weight rows (paper, Discussion). ``k / C`` for isotropic activations."""
    a = _activations(activations)
    basis = classifier_subspace_basis(head_weight)
    if basis.shape[0] != a.shape[1]:
        raise ValueError(f"head_weight has {basis.shape[0]} columns but the activations have {a.shape[1]} units.")
    total = inside = 0.0
    rows = max(1, min(8192, (1 << 26) // a.shape[1]))  # float64 a chunk of rows at a time, not all N x C
    for start in range(0, len(a), rows):
        chunk = a[start : start + rows].astype(np.float64)
        total += float(np.sum(chunk * chunk))
        inside += float(np.sum((chunk @ basis) ** 2))
    return inside / total if total > 0 else float("nan")


def cell_purity(xy01: Any, labels: Any, cells: Any, grid_size: int) -> float:
    """Mean over the kept ``cells`` (``[K, 2]`` (i, j)) of the share of the cell's points that carry its
    majority label, weighted by the cell's count: 1 when every atlas icon stands for one class."""
    _, table = cell_label_counts(xy01, labels, cells, grid_size)
    total = table.sum()
    return float(table.max(axis=1).sum() / total) if total else float("nan")


def atlas_metrics(
    activations: Any,
    *,
    labels: Mapping[str, Any] | None = None,
    layout: AtlasLayout | None = None,
    head_weight: Any | None = None,
    decode: Sequence[str] | None = None,
    decode_hidden: bool = True,
    seed: int = 0,
    max_samples: int | None = 10_000,
    prefix: str = "atlas/",
) -> dict[str, float]:
    """Everything above as a flat ``{name: float}`` dict (names prefixed with ``prefix``).

    Always: ``width``, ``participation_ratio``, ``active_units``, ``active_per_example``. With a
    ``head_weight``: ``classifier_subspace_energy``. With a ``layout``: ``cells_kept``,
    ``points_in_kept_cells`` (share of the examples that fall in some kept cell),
    ``whitening_log10_cond``. With ``labels`` (name -> ``[N]``), for each name in ``decode`` (default
    all): ``decode/<name>/chance``, ``decode/<name>/hidden_linear`` (if ``decode_hidden``),
    ``decode/<name>/layout_knn`` and ``cell_purity/<name>`` (if a layout is given).
    """
    a = _activations(activations)
    out: dict[str, float] = {"width": float(a.shape[1]), "participation_ratio": participation_ratio(a)}
    active = active_fraction(a)
    out["active_units"] = active.units
    out["active_per_example"] = active.per_example
    if head_weight is not None:
        out["classifier_subspace_energy"] = classifier_subspace_energy(a, head_weight)
    if layout is not None:
        if len(layout.xy01) != len(a):
            raise ValueError(f"the layout has {len(layout.xy01)} points for {len(a)} activation rows.")
        g = layout.grid_size
        kept = np.zeros(g * g, bool)
        kept[layout.cells[:, 0] * g + layout.cells[:, 1]] = True
        pts, i, j = cell_members(layout.xy01, g)
        covered = np.unique(pts[kept[i * g + j]])
        out["cells_kept"] = float(len(layout.cells))
        out["points_in_kept_cells"] = float(len(covered) / len(a))
        cond = layout.condition_number
        if not np.isnan(cond):  # nan: the directions were not whitened
            out["whitening_log10_cond"] = float(np.log10(cond)) if np.isfinite(cond) and cond > 0 else float("inf")
    for name in (decode if decode is not None else sorted(labels or {})):
        if labels is None or name not in labels:
            raise KeyError(f"no label {name!r} to decode; labels are {sorted(labels or {})}.")
        values = as_numpy(labels[name]).ravel()
        if len(np.unique(values)) < 2:
            continue
        if decode_hidden:
            result = decodability(a, values, method="linear", seed=seed, max_samples=max_samples)
            out[f"decode/{name}/hidden_linear"] = result.accuracy
            out[f"decode/{name}/chance"] = result.chance
        if layout is not None:
            result = decodability(layout.xy01, values, method="knn", seed=seed, max_samples=max_samples)
            out[f"decode/{name}/layout_knn"] = result.accuracy
            out[f"decode/{name}/chance"] = result.chance
            out[f"cell_purity/{name}"] = cell_purity(layout.xy01, values, layout.cells, layout.grid_size)
    return {f"{prefix}{key}": value for key, value in out.items()}

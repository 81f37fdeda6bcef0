"""Are an atlas's icons recognizable? The numbers behind "the icons look like digits".

The paper's first finding rests on what its atlas icons look like; these measures make that a number
for every atlas (:func:`judge_icons`):

* **own-network agreement**: the share of kept cells whose icon the atlas's own network classifies
  as the cell's majority label (the label that colours the histogram above the atlas);
* **an independent judge** (:class:`NearestNeighbourJudge`): the majority label of the ``k`` nearest
  training images in pixel space. It is not a network and is not trained, so a stroke pattern that
  only networks respond to (adversarial patterns transfer between networks) does not fool it; an
  icon it recognizes looks like real examples of its cell's class;
* **data-likeness**: the icons' mean intensity and share of bright pixels (> 0.5) against the
  training images', and each icon's distance to its nearest training image divided by the typical
  distance from a training image to its nearest other one (about 1 for a data-like image);
* **labels the network was not trained on** (translated MNIST's shift): a linear read-out of the
  label from the hidden state, fitted on the training activations, applied to each icon's
  activations and compared with the cell's own value (its circular mean for a cyclic label such as
  the shift), beside the same comparison with the cells paired at random (chance);
* **neuron icons**, which have no cell label: the judge's confidence (the share of the ``k``
  neighbours that agree with its vote) and the distance ratio. "More digit-like" is higher
  confidence and a smaller ratio.

Everything is computed at the network's input size, in [0, 1] pixel space.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import torch

from wide_lightning.atlas.arrays import as_numpy
from wide_lightning.atlas.grid import cell_label_counts
from wide_lightning.atlas.metrics import logistic_regression
from wide_lightning.atlas.transforms import Resize

#: A pixel counts as bright above this value (MNIST's strokes; 13 % of its pixels).
BRIGHT = 0.5


def _pixels(images: Any) -> torch.Tensor:
    """Images as float32 in [0, 1]: uint8 is divided by 255, floats are taken as they are."""
    x = torch.as_tensor(images)
    return x.float().div(255.0) if x.dtype == torch.uint8 else x.float()


class NearestNeighbourJudge:
    """Labels images by a vote of their ``k`` nearest training images (Euclidean distance, [0, 1] pixels).

    Args:
        images: the training images, uint8 (or float in [0, 1]) ``[N, C, H, W]``, at the network's input size.
        labels: label name -> ``[N]`` values of those images; any of them can be voted on.
        k: neighbours per vote (ties go to the label of the nearer neighbour).
        device: where the distances are computed (default the CPU).
    """

    def __init__(self, images: Any, labels: Mapping[str, Any], k: int = 10,
                 device: str | torch.device | None = None) -> None:
        pixels = _pixels(images)
        if pixels.ndim != 4 or len(pixels) == 0:
            raise ValueError(f"the judge needs a non-empty [N, C, H, W] image tensor, got shape {tuple(pixels.shape)}.")
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= len(pixels):
            raise ValueError(f"k must be an integer in [1, {len(pixels)}] (the number of images), got {k!r}.")
        self.shape = tuple(pixels.shape[1:])
        self.device = torch.device(device or "cpu")
        self.images = pixels.flatten(1).to(self.device)
        self.squared = (self.images * self.images).sum(1)
        self.labels = {name: as_numpy(values).ravel() for name, values in labels.items()}
        for name, values in self.labels.items():
            if len(values) != len(pixels):
                raise ValueError(f"label {name!r} has {len(values)} values for {len(pixels)} images.")
        self.k = k
        self._typical: dict[tuple[int, int], float] = {}

    def _distances(self, x: torch.Tensor) -> torch.Tensor:
        x = x.flatten(1).to(self.device, torch.float32)
        squared = (x * x).sum(1, keepdim=True) - 2.0 * x @ self.images.T + self.squared[None]
        return squared.clamp_min_(0.0).sqrt_()

    def neighbours(self, images: Any, k: int | None = None, chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
        """``(indices [B, k], distances [B, k])`` of each image's nearest training images, nearest first."""
        x = _pixels(images)
        if tuple(x.shape[1:]) != self.shape:
            raise ValueError(f"the judge compares images of shape {self.shape}, got {tuple(x.shape[1:])}.")
        k = k or self.k
        indices, distances = [], []
        for start in range(0, len(x), chunk):
            value, index = self._distances(x[start:start + chunk]).topk(k, dim=1, largest=False)
            indices.append(index.cpu())
            distances.append(value.cpu())
        return torch.cat(indices).numpy(), torch.cat(distances).numpy()

    def vote(self, indices: np.ndarray, name: str) -> tuple[np.ndarray, np.ndarray]:
        """The majority value of label ``name`` among each row's neighbours, and its share of the votes."""
        if name not in self.labels:
            raise KeyError(f"the judge has no label {name!r}; it has {sorted(self.labels)}.")
        votes = self.labels[name][indices]
        winners, shares = np.empty(len(votes), votes.dtype), np.empty(len(votes))
        for row, values in enumerate(votes):
            distinct, first, counts = np.unique(values, return_index=True, return_counts=True)
            best = np.flatnonzero(counts == counts.max())
            pick = best[np.argmin(first[best])]  # a tie goes to the value of the nearer neighbour
            winners[row], shares[row] = distinct[pick], counts[pick] / len(values)
        return winners, shares

    def typical_distance(self, sample: int = 1000, seed: int = 0) -> float:
        """Median distance from a training image to its nearest *other, different* training image (a seeded sample).

        Exact duplicates are skipped: they would make the typical distance 0 for a data set with copies.
        Computed once per ``(sample, seed)``.
        """
        if (sample, seed) in self._typical:
            return self._typical[(sample, seed)]
        n = len(self.images)
        if n < 2:
            raise ValueError("the typical distance needs at least 2 training images.")
        rows = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[: min(sample, n)].sort().values
        nearest = []
        for start in range(0, len(rows), 256):
            block = rows[start:start + 256]
            d = self._distances(self.images[block.to(self.device)])
            d[d <= 0] = float("inf")  # the image itself and its exact copies
            nearest.append(d.min(1).values.cpu())
        self._typical[(sample, seed)] = float(torch.cat(nearest).median())
        return self._typical[(sample, seed)]


def pixel_statistics(images: Any) -> tuple[float, float]:
    """``(mean intensity, share of pixels > 0.5)`` of images in [0, 1] (uint8 is scaled)."""
    x = _pixels(images)
    return float(x.mean()), float((x > BRIGHT).float().mean())


def at_input_size(icons: torch.Tensor, input_shape: Sequence[int]) -> torch.Tensor:
    """Icons resized to the network's input (the renderer's final bilinear resize), in [0, 1]."""
    return Resize(tuple(input_shape[-2:]))(torch.as_tensor(icons).float())


def cell_targets(values: np.ndarray, table: np.ndarray, period: int | None = None) -> np.ndarray:
    """Each kept cell's value of a label, from :func:`~wide_lightning.atlas.grid.cell_label_counts`.

    The majority value, or for a cyclic label of ``period`` the circular mean of the cell's values
    (a float in ``[0, period)``).
    """
    if period is None:
        return values[table.argmax(1)]
    angle = 2 * np.pi * values.astype(np.float64) / period
    x, y = table @ np.cos(angle), table @ np.sin(angle)
    return (np.arctan2(y, x) % (2 * np.pi)) * period / (2 * np.pi)


def mismatch(predicted: np.ndarray, target: np.ndarray, period: int | None = None) -> np.ndarray:
    """Per pair: ``predicted != target`` (0/1), or the cyclic distance for a label of ``period``."""
    predicted, target = np.asarray(predicted, np.float64), np.asarray(target, np.float64)
    if period is None:
        return (predicted != target).astype(np.float64)
    gap = np.abs(predicted - target) % period
    return np.minimum(gap, period - gap)


def paired_chance(predicted: np.ndarray, target: np.ndarray, period: int | None = None) -> float:
    """The mean :func:`mismatch` over every pairing of a prediction with a cell (the cells shuffled)."""
    return float(mismatch(np.asarray(predicted)[:, None], np.asarray(target)[None, :], period).mean())


def evaluate(function: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
             normalize: Callable[[torch.Tensor], torch.Tensor] | None, device: torch.device,
             batch_size: int = 512) -> torch.Tensor:
    """``function(normalize(images))`` in batches, in eval mode without gradients (the owning module's
    mode is restored), on the CPU as float32."""
    module = function if isinstance(function, torch.nn.Module) else getattr(function, "__self__", None)
    training = module.training if isinstance(module, torch.nn.Module) else None
    to_input = normalize or (lambda x: x)
    out = []
    try:
        if training is not None:
            module.eval()
        with torch.no_grad():
            for start in range(0, len(images), batch_size):
                out.append(function(to_input(images[start:start + batch_size].to(device))).float().cpu())
    finally:
        if training is not None:
            module.train(training)
    return torch.cat(out)


def classify(network: Callable[[torch.Tensor], torch.Tensor], images: torch.Tensor,
             normalize: Callable[[torch.Tensor], torch.Tensor] | None, device: torch.device) -> np.ndarray:
    """The network's class for each image, ``[B]``."""
    return evaluate(network, images, normalize, device).argmax(1).numpy()


def readout(train_activations: np.ndarray, train_values: np.ndarray, activations: np.ndarray,
            seed: int = 0, max_samples: int = 10_000) -> np.ndarray:
    """A linear read-out of a label fitted on (a seeded subsample of) the training activations, applied
    to ``activations``: what the hidden state says the label of each icon is."""
    rng = np.random.default_rng(seed)
    keep = np.arange(len(train_values))
    if len(keep) > max_samples:
        keep = np.sort(rng.choice(len(keep), size=max_samples, replace=False))
    # the subsample first, then float64: not a float64 copy of all N x D activations
    model = logistic_regression(as_numpy(train_activations)[keep].astype(np.float64), np.asarray(train_values)[keep])
    return model.predict(as_numpy(activations, np.float64))


@dataclass
class IconJudgement:
    """Per kept cell: its label (``majority``, ``purity``), what the network and the judge call its
    icon, and the icon's distance to its nearest training image; ``metrics`` holds the summaries."""

    majority: np.ndarray
    purity: np.ndarray
    network_label: np.ndarray | None
    judge_label: np.ndarray
    judge_confidence: np.ndarray
    nearest_distance: np.ndarray
    metrics: dict[str, float] = field(default_factory=dict)


def judge_icons(
    icons: torch.Tensor,
    *,
    xy01: np.ndarray,
    cells: np.ndarray,
    grid_size: int,
    labels: Mapping[str, np.ndarray],
    class_label: str,
    judge: NearestNeighbourJudge,
    input_shape: Sequence[int],
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    network: Callable[[torch.Tensor], torch.Tensor] | None = None,
    features: Callable[[torch.Tensor], torch.Tensor] | None = None,
    activations: np.ndarray | None = None,
    periods: Mapping[str, int] | None = None,
    other_labels: Sequence[str] = (),
    neuron_icons: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    seed: int = 0,
    prefix: str = "atlas/",
    progress: Callable[[int, int], None] | None = None,
) -> IconJudgement:
    """Every measure of the module docstring for one atlas.

    Args:
        icons: ``[K, C, P, P]`` in [0, 1], one per kept cell, in the order of ``cells``.
        xy01, cells, grid_size: the normalized layout and the kept cells (``AtlasLayout``).
        labels: label name -> ``[N]`` values of the laid-out examples; ``class_label`` names the
            one that colours the histogram (whose majority each icon should show).
        judge: the independent judge over the training images.
        input_shape, normalize: the network's input ``(C, H, W)`` and the DataModule's normalization.
        network: the whole classifier (normalized input -> logits), for the own-network agreement.
        features, activations: the atlas layer's reader and the laid-out activations ``[N, D]``, for
            the read-out of ``other_labels`` (labels the network was not trained on).
        periods: label name -> period for cyclic labels (translated MNIST: ``{"shift": 28}``).
        neuron_icons: ``[M, C, P, P]`` individual-neuron icons, judged without a label.
        progress: called as ``progress(parts_done, parts)`` after each part: the icons' neighbours, the
            typical distance, the network's classes, each label in ``other_labels``, the neuron icons.
    """
    periods = dict(periods or {})
    parts = 2 + (network is not None) + len(other_labels) + (neuron_icons is not None and len(neuron_icons) > 0)
    done = 0

    def part_done() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, parts)

    if progress is not None:
        progress(0, parts)

    run_device = torch.device(device or "cpu")
    values, table = cell_label_counts(xy01, labels[class_label], cells, grid_size)
    majority = cell_targets(values, table)
    purity = table.max(1) / np.maximum(table.sum(1), 1)
    seen = at_input_size(icons, input_shape)
    indices, distances = judge.neighbours(seen)
    judge_label, confidence = judge.vote(indices, class_label)
    part_done()
    typical = judge.typical_distance(seed=seed)
    part_done()
    data_mean, data_bright = pixel_statistics(judge.images)
    icon_mean, icon_bright = pixel_statistics(seen)
    metrics = {
        "icons/judge_agreement": float(np.mean(judge_label == majority)),
        "icons/judge_confidence": float(confidence.mean()),
        "icons/mean_intensity": icon_mean,
        "icons/bright_share": icon_bright,
        "icons/nearest_image_distance_ratio": float(distances[:, 0].mean() / typical),
        "data/mean_intensity": data_mean,
        "data/bright_share": data_bright,
        "data/nearest_image_distance": typical,
    }
    network_label = None
    if network is not None:
        network_label = classify(network, seen, normalize, run_device)
        metrics["icons/network_agreement"] = float(np.mean(network_label == majority))
        part_done()
    for name in other_labels:
        period = periods.get(name)
        values, table = cell_label_counts(xy01, labels[name], cells, grid_size)
        target = cell_targets(values, table, period)
        kind = "error" if period else "agreement"
        scored = (lambda m: m) if period else (lambda m: 1.0 - m)
        judged, _ = judge.vote(indices, name)
        metrics[f"icons/{name}/judge_{kind}"] = float(scored(mismatch(judged, target, period)).mean())
        metrics[f"icons/{name}/judge_{kind}_chance"] = float(scored(paired_chance(judged, target, period)))
        if features is not None and activations is not None:
            icon_acts = evaluate(features, seen, normalize, run_device).flatten(1).numpy()
            predicted = readout(activations, labels[name], icon_acts, seed=seed)
            metrics[f"icons/{name}/readout_{kind}"] = float(scored(mismatch(predicted, target, period)).mean())
            metrics[f"icons/{name}/readout_{kind}_chance"] = float(scored(paired_chance(predicted, target, period)))
        part_done()
    if neuron_icons is not None and len(neuron_icons):
        neurons_seen = at_input_size(neuron_icons, input_shape)
        neuron_indices, neuron_distances = judge.neighbours(neurons_seen)
        _, neuron_confidence = judge.vote(neuron_indices, class_label)
        neuron_mean, neuron_bright = pixel_statistics(neurons_seen)
        metrics.update({
            "neurons/judge_confidence": float(neuron_confidence.mean()),
            "neurons/nearest_image_distance_ratio": float(neuron_distances[:, 0].mean() / typical),
            "neurons/mean_intensity": neuron_mean,
            "neurons/bright_share": neuron_bright,
        })
        part_done()
    return IconJudgement(
        majority=majority, purity=purity, network_label=network_label, judge_label=judge_label,
        judge_confidence=confidence, nearest_distance=distances[:, 0],
        metrics={f"{prefix}{key}": value for key, value in metrics.items()},
    )

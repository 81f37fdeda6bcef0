"""One activation atlas from start to end, shared by the end-of-training callback and the command.

``AtlasSettings`` holds every choice (defaults: the paper and lucid's notebook, see
``../shared/reference/atlas_spec.md``); ``build_atlas`` goes from collected activations to an
``AtlasResult`` (layout, icons, neuron icons, figures, numbers), and ``AtlasResult.save`` writes
PNGs and an ``.npz`` without ever overwriting an earlier atlas.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Literal

import numpy as np
import torch
from torch import nn

from wide_lightning.atlas.collect import ActivationSet
from wide_lightning.atlas.figures import atlas_canvas, atlas_panel, class_histogram, icon_grid, save_png
from wide_lightning.atlas.layout import AtlasLayout, compute_layout
from wide_lightning.atlas.metrics import atlas_metrics
from wide_lightning.atlas.render import RenderResult, directions_as_icons, neuron_directions, render_icons
from wide_lightning.atlas.subspace import classifier_subspace_basis
from wide_lightning.atlas.whitening import whiten

Space = Literal["hidden", "classifier_subspace"]


#: Labels with at most this many values get their own coloured layout (the 28 shifts do, the 1,785 sources not).
MAX_COLOURED_VALUES = 64


@dataclass
class AtlasSettings:
    """Every choice of an atlas.

    Args:
        grid_size: g of the g x g grid (the paper: 15).
        min_density: a cell is kept when it holds more than this many points (lucid: 10).
        steps: Adam steps per icon (lucid: 512).
        whiten: target the whitened cell means (lucid); off: the plain dot objective.
        whiten_mode: ``regularized`` (default, stable with dead units), ``pinv`` or ``exact``.
        objective: ``lucid_notebook`` (default), ``true_cosine`` or ``dot``.
        neurons: how many individual neurons to visualize (seeded random choice; 0 for none).
        whiten_neurons: whiten the one-hot neuron directions like the cells (the spec's default).
        icon_size: icon side in pixels; default the network's input size.
        space: ``hidden`` (the layer's activations) or ``classifier_subspace`` (projected onto the span
            of the head's weight rows, as the paper's Discussion proposes for very wide networks).
        max_points: lay out at most this many examples (a seeded subset), for previews; ``None``: all.
        reducer: ``umap`` (the paper) or ``pca`` (2 principal components: instant, for tests and quick looks).
        reproducible_layout: seed UMAP (bit-reproducible, but UMAP then runs on one core,
            lmcinnes/umap#298); ``False`` lets it use every core.
        knn: UMAP's neighbour graph: ``exact`` (brute force, on the atlas's device), ``umap`` (UMAP's
            own NN-descent, as L-NB) or ``auto``: exact on a GPU, UMAP's own on the CPU (where the
            brute force costs more than NN-descent at 50,000 x 2,048).
        seed: seeds UMAP, the neuron choice, the icons and the subset.
        decode: label names whose decodability is measured (default: every label of the dataset).
        icons: ``optimized`` (feature visualization, the paper's atlases) or ``directions``: each
            (whitened) direction shown as an image, for activations that are the pixels (Appendix A.2:
            "the averaged activations [...] in this case are simply whitened averages over images").
    """

    grid_size: int = 15
    min_density: int = 10
    steps: int = 512
    whiten: bool = True
    whiten_mode: Literal["regularized", "pinv", "exact"] = "regularized"
    objective: Literal["lucid_notebook", "true_cosine", "dot"] = "lucid_notebook"
    neurons: int = 10
    whiten_neurons: bool = True
    icon_size: int | None = None
    space: Space = "hidden"
    max_points: int | None = None
    reducer: Literal["umap", "pca"] = "umap"
    reproducible_layout: bool = True
    knn: Literal["auto", "exact", "umap"] = "auto"
    seed: int = 0
    decode: list[str] | None = None
    icons: Literal["optimized", "directions"] = "optimized"

    @classmethod
    def preview(cls, **overrides: Any) -> "AtlasSettings":
        """A quick look: 64 steps, a 10 x 10 grid, 10,000 points."""
        values = {"steps": 64, "grid_size": 10, "max_points": 10_000}
        values.update(overrides)
        return cls(**values)


@dataclass
class AtlasResult:
    settings: AtlasSettings
    layout: AtlasLayout
    labels: dict[str, np.ndarray]
    icons: RenderResult
    neuron_indices: np.ndarray
    neuron_icons: RenderResult | None
    metrics: dict[str, float]
    figures: dict[str, np.ndarray] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)

    def save(self, directory: str | Path) -> Path:
        """Write ``<name>.png`` for every figure and ``atlas.npz`` into ``directory``.

        If ``directory`` already holds an atlas, a new sibling ``<name>-v1``, ``-v2``... is used.
        Returns the folder written.
        """
        directory = Path(directory)
        base, version = directory, 0
        while (directory / "atlas.npz").exists():
            version += 1
            directory = base.with_name(f"{base.name}-v{version}")
        directory.mkdir(parents=True, exist_ok=True)
        for name, image in self.figures.items():
            save_png(image, directory / f"{name}.png")
        arrays = {
            "xy": self.layout.xy, "xy01": self.layout.xy01, "cells": self.layout.cells,
            "counts": self.layout.counts, "count_matrix": self.layout.count_matrix,
            "directions": self.layout.directions, "whitened_directions": self.layout.whitened,
            "icons": self.icons.icons.numpy(), "icon_objective": self.icons.objective.numpy(),
            "icon_cosine": self.icons.cosine.numpy(), "neuron_indices": self.neuron_indices,
        }
        if self.neuron_icons is not None:
            arrays["neuron_icons"] = self.neuron_icons.icons.numpy()
            arrays["neuron_objective"] = self.neuron_icons.objective.numpy()
        arrays.update({f"label_{name}": values for name, values in self.labels.items()})
        metric_names = sorted(self.metrics)
        arrays["metric_names"] = np.array(metric_names)
        arrays["metric_values"] = np.array([self.metrics[k] for k in metric_names], dtype=np.float64)
        np.savez_compressed(directory / "atlas.npz", **arrays)
        (directory / "settings.txt").write_text("".join(f"{k}: {v}\n" for k, v in asdict(self.settings).items()))
        return directory


def subset_indices(n: int, count: int, seed: int) -> torch.Tensor:
    """A seeded, sorted choice of ``count`` of ``n`` examples (the ``max_points`` subset)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def projected(features: Callable[[torch.Tensor], torch.Tensor], basis: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``features`` followed by the orthogonal projection onto the columns of ``basis`` ([C, r])."""
    projector = basis @ basis.T

    def read(x: torch.Tensor) -> torch.Tensor:
        return features(x) @ projector.to(x.device, x.dtype)

    read.__self__ = getattr(features, "__self__", features)  # lets the renderer freeze the owning module
    return read


def resolve_knn(knn: str, device: str | torch.device | None) -> Literal["exact", "umap"]:
    """``auto`` -> ``exact`` on a CUDA device, else ``umap``; the others as they are."""
    if knn == "auto":
        return "exact" if device is not None and torch.device(device).type == "cuda" else "umap"
    if knn not in ("exact", "umap"):
        raise ValueError(f"knn must be 'auto', 'exact' or 'umap', got {knn!r}.")
    return knn  # type: ignore[return-value]


def build_atlas(
    activations: ActivationSet,
    features: Callable[[torch.Tensor], torch.Tensor],
    *,
    input_shape: tuple[int, ...],
    normalize: Callable[[torch.Tensor], torch.Tensor] | None,
    pad_value: float,
    settings: AtlasSettings | None = None,
    head_weight: torch.Tensor | None = None,
    class_label: str | None = None,
    class_names: list[str] | None = None,
    reducer: Any = None,
    device: str | torch.device | None = None,
    title: str | None = None,
    log: Callable[[str], None] | None = None,
) -> AtlasResult:
    """Layout, icons, neuron icons, figures and numbers for ``activations`` read by ``features``.

    ``features`` maps a normalized input batch to the same activations that were collected (the
    renderer optimizes inputs through it). ``head_weight`` enables the classifier-subspace space and
    its numbers; ``class_label`` names the label that colours the histogram (default: the first).
    ``reducer`` (a callable ``[N, C] -> [N, 2]``) overrides ``settings.reducer``.
    """
    settings = settings or AtlasSettings()
    seconds: dict[str, float] = {}
    say = log or (lambda message: None)
    acts = activations.activations.float()
    labels = {name: values.numpy() for name, values in activations.labels.items()}
    if settings.max_points is not None and settings.max_points < len(acts):
        keep = subset_indices(len(acts), settings.max_points, settings.seed)
        acts = acts[keep]
        labels = {name: values[keep.numpy()] for name, values in labels.items()}
    if settings.space == "classifier_subspace":
        if head_weight is None:
            raise ValueError("space='classifier_subspace' needs the head's weights (the network's last layer).")
        basis = torch.from_numpy(classifier_subspace_basis(head_weight.detach().cpu())).float()
        acts = acts @ (basis @ basis.T)
        features = projected(features, basis)
    elif settings.space != "hidden":
        raise ValueError(f"space must be 'hidden' or 'classifier_subspace', got {settings.space!r}.")
    if settings.icons == "directions":
        def draw(_features: Any, targets: torch.Tensor, **_: Any) -> RenderResult:
            return directions_as_icons(targets, input_shape)
    elif settings.icons == "optimized":
        draw = render_icons
    else:
        raise ValueError(f"icons must be 'optimized' or 'directions', got {settings.icons!r}.")

    start = time.perf_counter()
    say(f"atlas: laying out {len(acts)} activations of width {acts.shape[1]} (UMAP)")
    layout = compute_layout(
        acts.numpy(), grid_size=settings.grid_size, min_density=settings.min_density,
        seed=settings.seed if settings.reproducible_layout else None,
        reducer=reducer or REDUCERS[settings.reducer], whiten_mode=settings.whiten_mode if settings.whiten else None,
        knn=resolve_knn(settings.knn, device), knn_device=device,
    )
    seconds["layout"] = time.perf_counter() - start

    render = dict(input_shape=input_shape, normalize=normalize, pad_value=pad_value, icon_size=settings.icon_size,
                  steps=settings.steps, seed=settings.seed, device=device,
                  objective=settings.objective if settings.whiten else "dot")
    start = time.perf_counter()
    say(f"atlas: rendering {len(layout.cells)} icons" +
        (f", {settings.steps} steps, one batch" if settings.icons == "optimized" else " from their directions"))
    icons = draw(features, torch.from_numpy(layout.whitened).float(), **render)
    seconds["render_icons"] = time.perf_counter() - start

    neuron_icons, neuron_indices = None, np.zeros(0, np.int64)
    if settings.neurons > 0:
        width = acts.shape[1]
        indices, onehot = neuron_directions(width, min(settings.neurons, width), seed=settings.seed)
        targets = whiten(onehot, torch.from_numpy(layout.matrix)) if settings.whiten and settings.whiten_neurons else onehot
        start = time.perf_counter()
        neuron_icons = draw(features, targets.float(), **render)
        seconds["render_neurons"] = time.perf_counter() - start
        neuron_indices = indices.numpy()

    start = time.perf_counter()
    decode = settings.decode if settings.decode is not None else sorted(labels)
    metrics = atlas_metrics(acts.numpy(), labels=labels, layout=layout, decode=decode, seed=settings.seed,
                            head_weight=None if head_weight is None else head_weight.detach().cpu().numpy())
    if settings.icons == "optimized":
        metrics["atlas/icon_objective_mean"] = float(icons.objective.mean())
        metrics["atlas/icon_objective_raised"] = float((icons.objective > icons.initial_objective).float().mean())
    seconds["metrics"] = time.perf_counter() - start

    class_label = class_label or next(iter(labels), None)
    class_values = labels[class_label] if class_label else np.zeros(len(acts), np.int64)
    canvas = atlas_canvas(icons.icons, layout.cells, layout.grid_size)
    figures = {
        "umap_histogram": class_histogram(layout.xy01, class_values, class_names=class_names,
                                          grid_size=layout.grid_size, title=title),
        "atlas": canvas,
    }
    for name in sorted(labels):  # the layout coloured by each other attribute: translated MNIST's shift
        values = labels[name]
        if name != class_label and 2 <= len(np.unique(values)) <= MAX_COLOURED_VALUES:
            # the shifts are cyclic, so a cyclic map draws Figure 2's annuli as closed colour rings
            figures[f"umap_histogram_{name}"] = class_histogram(
                layout.xy01, values, grid_size=layout.grid_size, cmap="twilight" if name == "shift" else None,
                title=f"{title + ': ' if title else ''}coloured by {name}")
    if neuron_icons is not None:
        figures["neurons"] = icon_grid(neuron_icons.icons, ncols=len(neuron_indices))
    figures["panel"] = atlas_panel(layout.xy01, class_values, canvas, class_names=class_names,
                                   neuron_icons=None if neuron_icons is None else neuron_icons.icons,
                                   grid_size=layout.grid_size, title=title)
    metrics.update({f"atlas/seconds/{name}": value for name, value in seconds.items()})
    return AtlasResult(settings, layout, labels, icons, neuron_indices, neuron_icons, metrics, figures, seconds)


def pca_2d(activations: np.ndarray) -> np.ndarray:
    """The first two principal components: a cheap stand-in for UMAP."""
    centered = activations - activations.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centered[:: max(1, len(centered) // 20_000)], full_matrices=False)
    return centered @ vt[:2].T


REDUCERS: dict[str, Any] = {"umap": None, "pca": pca_2d}  # None: compute_layout's UMAP


class LayerNotFoundError(ValueError):
    """A layer name that the network does not have; the message lists the ones it has."""


def layer_reader(net: nn.Module, layer: str = "features") -> Callable[[torch.Tensor], torch.Tensor]:
    """A callable: normalized input -> activations ``[B, D]`` of ``layer``.

    ``"features"``: the penultimate layer (post-ReLU), what the paper studies. ``"input"``: the
    pixels themselves (Appendix A.2's control). Otherwise a module name of ``net.features`` such as
    ``"features.3"`` (see ``net.features``'s ``named_modules``); a convolutional output is read at its
    centre position (lucid's choice for rendering; the paper samples a random position when
    collecting, which we do not).
    """
    if layer == "features":
        return net.features
    if layer == "input":
        return _flatten
    names = {f"features.{name}": module for name, module in net.features.named_modules() if name}
    if layer not in names:
        raise LayerNotFoundError(
            f"layer {layer!r} does not exist; choose 'features' (penultimate), 'input' (pixels) or one of "
            f"{sorted(names, key=lambda n: [int(p) if p.isdigit() else p for p in n.split('.')])}."
        )
    stop = list(dict(net.features.named_children())).index(layer.split(".")[1]) + 1
    prefix = nn.Sequential(*list(net.features.children())[:stop]) if isinstance(net.features, nn.Sequential) else None
    if prefix is None:
        raise LayerNotFoundError(f"layer {layer!r}: only layers of a sequential feature stack can be read.")

    def read(x: torch.Tensor) -> torch.Tensor:
        out = prefix(x)
        if out.ndim == 4:
            out = out[:, :, out.shape[2] // 2, out.shape[3] // 2]
        return out.flatten(1)

    read.__self__ = net  # the renderer freezes the owning module
    return read


def _flatten(x: torch.Tensor) -> torch.Tensor:
    return x.flatten(1)

"""One activation atlas from start to end, shared by the end-of-training callback and the command.

``build_atlas`` goes from collected activations to an ``AtlasResult`` (layout, icons, neuron icons,
how recognizable the icons are, the training images nearest each cell, figures, numbers), and
``AtlasResult.save`` writes PNGs and an ``.npz`` without ever overwriting an earlier atlas. Every
choice is an ``AtlasSettings`` (``settings.py``: the defaults and the named presets).
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Callable, Literal, Mapping

import numpy as np
import torch

from wide_lightning.atlas.collect import ActivationSet
from wide_lightning.atlas.exemplars import nearest_examples
from wide_lightning.atlas.figures import (
    atlas_canvas,
    atlas_panel,
    class_histogram,
    exemplar_strips,
    icon_grid,
    save_png,
    side_by_side,
)
from wide_lightning.atlas.layout import AtlasLayout, compute_layout
from wide_lightning.atlas.memory import (
    MemoryEstimate,
    check_atlas_memory,
    command_flag,
    estimate_atlas_memory,
    icon_bytes_per_icon,
)
from wide_lightning.atlas.metrics import atlas_metrics
from wide_lightning.atlas.parameterization import image_statistics
from wide_lightning.atlas.progress import Progress
from wide_lightning.atlas.recognizability import IconJudgement, NearestNeighbourJudge, judge_icons
from wide_lightning.atlas.render import RenderResult, directions_as_icons, neuron_directions, render_icons
from wide_lightning.atlas.settings import AtlasSettings
from wide_lightning.atlas.subspace import classifier_subspace_basis
from wide_lightning.atlas.whitening import whiten
from wide_lightning.files import atomic_path, write_text

#: Labels with at most this many values get their own coloured layout (the 28 shifts do, the 1,785 sources not).
MAX_COLOURED_VALUES = 64


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
    judgement: IconJudgement | None = None
    exemplar_indices: np.ndarray | None = None
    exemplars: np.ndarray | None = None

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
        if self.judgement is not None:
            arrays.update(cell_label=self.judgement.majority, cell_purity=self.judgement.purity,
                          icon_judge_label=self.judgement.judge_label,
                          icon_nearest_image_distance=self.judgement.nearest_distance)
            if self.judgement.network_label is not None:
                arrays["icon_network_label"] = self.judgement.network_label
        if self.exemplar_indices is not None:
            arrays.update(exemplar_indices=self.exemplar_indices, exemplars=self.exemplars)
        arrays.update({f"label_{name}": values for name, values in self.labels.items()})
        metric_names = sorted(self.metrics)
        arrays["metric_names"] = np.array(metric_names)
        arrays["metric_values"] = np.array([self.metrics[k] for k in metric_names], dtype=np.float64)
        write_text(directory / "settings.txt", "".join(f"{k}: {v}\n" for k, v in asdict(self.settings).items()))
        # last, and whole or not at all: its presence is what marks a folder as holding an atlas
        with atomic_path(directory / "atlas.npz", needed_bytes=lambda: sum(np.asarray(a).nbytes for a in arrays.values())) as temporary, \
                open(temporary, "wb") as file:
            np.savez_compressed(file, **arrays)
        return directory


def subset_indices(n: int, count: int, seed: int) -> torch.Tensor:
    """A seeded, sorted choice of ``count`` of ``n`` examples (the ``max_points`` subset)."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:count].sort().values


def project(rows: torch.Tensor, basis: torch.Tensor) -> torch.Tensor:
    """The orthogonal projection ``rows @ basis @ basis.T`` of ``rows`` ``[B, C]`` onto the columns of ``basis``
    ``[C, r]``, as two thin products: the projector ``basis @ basis.T`` would be C x C (16 GiB at C = 65,536)."""
    basis = basis.to(rows.device, rows.dtype)
    return (rows @ basis) @ basis.T


def projected(features: Callable[[torch.Tensor], torch.Tensor], basis: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor]:
    """``features`` followed by the orthogonal projection onto the columns of ``basis`` ([C, r])."""

    def read(x: torch.Tensor) -> torch.Tensor:
        return project(features(x), basis)

    read.__self__ = getattr(features, "__self__", features)  # lets the renderer freeze the owning module
    return read


def resolve_knn(knn: str, device: str | torch.device | None) -> Literal["exact", "umap"]:
    """``auto`` -> ``exact`` on a CUDA device, else ``umap``; the others as they are."""
    if knn == "auto":
        return "exact" if device is not None and torch.device(device).type == "cuda" else "umap"
    if knn not in ("exact", "umap"):
        raise ValueError(f"knn must be 'auto', 'exact' or 'umap', got {knn!r}.")
    return knn  # type: ignore[return-value]


def layout_for(activations: np.ndarray, settings: AtlasSettings, *, reducer: Any = None,
               device: str | torch.device | None = None, xy: Any = None) -> AtlasLayout:
    """The atlas layout of ``activations`` with the settings' grid, UMAP and whitening (``xy``: reuse a raw layout)."""
    return compute_layout(
        activations, grid_size=settings.grid_size, min_density=settings.min_density,
        seed=settings.seed if settings.reproducible_layout else None, reducer=reducer or REDUCERS[settings.reducer],
        whiten_mode=settings.whiten_mode if settings.whiten else None, whiten_ridge=settings.whiten_ridge,
        knn=resolve_knn(settings.knn, device), knn_device=device, xy=xy,
    )


def draw_icons(
    layout: AtlasLayout,
    features: Callable[[torch.Tensor], torch.Tensor],
    settings: AtlasSettings,
    *,
    input_shape: tuple[int, ...],
    normalize: Callable[[torch.Tensor], torch.Tensor] | None,
    pad_value: float,
    images: torch.Tensor | None = None,
    device: str | torch.device | None = None,
    progress: Progress | None = None,
) -> tuple[RenderResult, RenderResult | None, np.ndarray, dict[str, float]]:
    """The cell icons and the neuron icons of a layout: ``(icons, neuron_icons, neuron_indices, seconds)``.

    ``images`` (uint8, the training images) are needed by ``parameterization='maco'``, whose
    magnitude template is their mean amplitude spectrum. ``progress`` draws a bar of the steps of each
    (with the mean objective of the last step's icons).
    """
    progress = progress or Progress.off()
    seconds: dict[str, float] = {}
    if settings.icons == "directions":
        def draw(_features: Any, targets: torch.Tensor, **_: Any) -> RenderResult:
            return directions_as_icons(targets, input_shape)
    elif settings.icons == "optimized":
        draw = render_icons
    else:
        raise ValueError(f"icons must be 'optimized' or 'directions', got {settings.icons!r}.")
    statistics = None
    if settings.icons == "optimized" and settings.parameterization == "maco":
        if images is None:
            raise ValueError("parameterization='maco' needs the training images (their amplitude spectrum).")
        statistics = image_statistics(images, settings.icon_size or input_shape[-1], seed=settings.seed)
    render = dict(input_shape=input_shape, normalize=normalize, pad_value=pad_value, icon_size=settings.icon_size,
                  steps=settings.steps, lr=settings.lr, seed=settings.seed, device=device, objective=settings.objective,
                  cossim_pow=settings.cossim_pow, parameterization=settings.parameterization,
                  image_statistics=statistics, transforms=settings.transforms, shift=settings.shift,
                  transform_samples=settings.transform_samples, lr_schedule=settings.lr_schedule,
                  coarse_to_fine=settings.coarse_to_fine, batch_size=settings.icon_batch_size)
    start = time.perf_counter()
    with progress.bar("icons", unit="step", total=steps_of(len(layout.cells), settings)) as tick:
        icons = draw(features, torch.from_numpy(layout.whitened).float(), **render, **objective_bar(tick, progress))
    seconds["render_icons"] = time.perf_counter() - start
    neuron_icons, neuron_indices = None, np.zeros(0, np.int64)
    if settings.neurons > 0:
        width = layout.directions.shape[1]
        indices, onehot = neuron_directions(width, min(settings.neurons, width), seed=settings.seed)
        targets = whiten(onehot, torch.from_numpy(layout.matrix)) if settings.whiten and settings.whiten_neurons else onehot
        start = time.perf_counter()
        with progress.bar("neuron icons", unit="step", total=steps_of(len(targets), settings)) as tick:
            neuron_icons = draw(features, targets.float(), **render, **objective_bar(tick, progress))
        seconds["render_neurons"] = time.perf_counter() - start
        neuron_indices = indices.numpy()
    return icons, neuron_icons, neuron_indices, seconds


def steps_of(icons: int, settings: AtlasSettings) -> int | None:
    """The optimization steps of ``icons`` icons, over every batch of them (``None``: icons not optimized)."""
    if settings.icons != "optimized":
        return None
    return settings.steps * -(-icons // min(settings.icon_batch_size or icons, icons))


def objective_bar(tick: Callable[..., None], progress: Progress) -> dict[str, Any]:
    """``render_icons``' ``progress`` argument that moves ``tick``'s bar, with the mean objective; none when no bar
    is drawn (reading the objective each step would wait for the GPU)."""
    if not progress.enabled:
        return {}
    return {"progress": lambda step, steps, objective: tick(step, steps, objective=f"{objective:.3g}")}


def reducer_name(settings: AtlasSettings, reducer: Any = None) -> str:
    """How the layout line names the method that lays the activations out: ``UMAP``, ``PCA``, or a given
    ``reducer``'s own name."""
    if reducer is not None:
        return getattr(reducer, "__name__", None) or type(reducer).__name__
    return {"umap": "UMAP", "pca": "PCA"}.get(settings.reducer, str(settings.reducer))


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
    images: torch.Tensor | None = None,
    network: Callable[[torch.Tensor], torch.Tensor] | None = None,
    label_periods: Mapping[str, int] | None = None,
    memory_flag: Callable[[str, str | None], str] = command_flag,
    progress: Progress | None = None,
) -> AtlasResult:
    """Layout, icons, neuron icons, their recognizability, exemplars, figures and numbers for ``activations``.

    ``features`` maps a normalized input batch to the same activations that were collected (the
    renderer optimizes inputs through it). ``head_weight`` enables the classifier-subspace space and
    its numbers; ``class_label`` names the label that colours the histogram (default: the first).
    ``reducer`` (a callable ``[N, C] -> [N, 2]``) overrides ``settings.reducer``. ``images`` (uint8
    ``[N, C, H, W]``, row ``n`` the example of activation row ``n``) enable the judge, the exemplars and
    ``maco``; ``network`` (normalized input -> logits) the own-network agreement; ``label_periods``
    marks cyclic labels (``{"shift": 28}``).

    Before the layout (with the real N and D) and again before the icons (with the layout's cells), the
    memory the rest needs is estimated (``memory.py``) and an atlas that will not fit is refused, in one
    sentence naming the setting to change (``memory_flag`` spells it: ``--whiten false``).

    ``log`` gets one line per stage (the layout, the icons, the judge); ``progress`` (``progress.py``) draws
    a bar of each where a person watches.
    """
    settings = settings or AtlasSettings()
    progress = progress or Progress.off()
    seconds: dict[str, float] = {}
    say = log or (lambda message: None)
    acts = activations.activations.float()
    labels = {name: values.numpy() for name, values in activations.labels.items()}
    if images is not None and len(images) != len(acts):
        raise ValueError(f"{len(images)} images for {len(acts)} activation rows: pass the laid-out examples' images.")
    if settings.max_points is not None and settings.max_points < len(acts):
        keep = subset_indices(len(acts), settings.max_points, settings.seed)
        acts = acts[keep]
        labels = {name: values[keep.numpy()] for name, values in labels.items()}
        images = images[keep] if images is not None else None
    if settings.space == "classifier_subspace":
        if head_weight is None:
            raise ValueError("space='classifier_subspace' needs the head's weights (the network's last layer).")
        basis = torch.from_numpy(classifier_subspace_basis(head_weight.detach().cpu())).float()
        acts = project(acts, basis)
        features = projected(features, basis)
    elif settings.space != "hidden":
        raise ValueError(f"space must be 'hidden' or 'classifier_subspace', got {settings.space!r}.")
    class_label = class_label or next(iter(labels), None)
    remaining = partial(estimate_remaining, acts, settings, input_shape=input_shape, images=images, device=device,
                        other_labels=images is not None and bool(few_valued(labels, class_label)),
                        icon_bytes=probe_icon_bytes(features, settings, width=acts.shape[1], input_shape=input_shape,
                                                    normalize=normalize, pad_value=pad_value, device=device))
    check_atlas_memory(remaining(stage="layout"), device=device, flag=memory_flag)  # with the real N and D

    start = time.perf_counter()
    method = reducer_name(settings, reducer)
    say(f"atlas: laying out {len(acts)} activations of width {acts.shape[1]} ({method})")
    with progress.spinner(f"layout ({method})"):
        layout = layout_for(acts.numpy(), settings, reducer=reducer, device=device)
    seconds["layout"] = time.perf_counter() - start
    check_atlas_memory(remaining(stage="icons", icons=len(layout.cells)), device=device, flag=memory_flag)  # the real K
    batches = "one batch" if (settings.icon_batch_size or len(layout.cells)) >= len(layout.cells) else \
        f"batches of {settings.icon_batch_size}"
    neurons = min(settings.neurons, acts.shape[1])
    say(f"atlas: rendering {len(layout.cells)} icons" +
        (f", {settings.steps} steps, {batches}" if settings.icons == "optimized" else " from their directions") +
        (f"; then {neurons} neuron icons" if neurons > 0 else ""))
    icons, neuron_icons, neuron_indices, render_seconds = draw_icons(
        layout, features, settings, input_shape=input_shape, normalize=normalize, pad_value=pad_value,
        images=images, device=device, progress=progress)
    seconds.update(render_seconds)

    start = time.perf_counter()
    decode = settings.decode if settings.decode is not None else sorted(labels)
    with progress.spinner("metrics"):  # the participation ratio and the read-outs: seconds to a minute on a CPU
        metrics = atlas_metrics(acts.numpy(), labels=labels, layout=layout, decode=decode, seed=settings.seed,
                                head_weight=None if head_weight is None else head_weight.detach().cpu().numpy())
    if settings.icons == "optimized":
        metrics["atlas/icon_objective_mean"] = float(icons.objective.mean())
        metrics["atlas/icon_objective_raised"] = float((icons.objective > icons.initial_objective).float().mean())
    seconds["metrics"] = time.perf_counter() - start

    judgement, exemplar_indices, exemplars = None, None, None
    if images is not None and class_label is not None:
        start = time.perf_counter()
        say("atlas: judging the icons (" + ("the network, " if network is not None else "") +
            f"the {settings.judge_neighbours} nearest of {len(images)} training images)")
        parts = {"total": 1}  # the judge's parts, and the exemplars

        def judged(done: int, total: int) -> None:
            parts["total"] = total + 1
            tick(done, total + 1)

        with progress.bar("judge", unit="part") as tick:
            judge = NearestNeighbourJudge(images, labels, k=settings.judge_neighbours, device=device)
            judgement = judge_icons(
                icons.icons, xy01=layout.xy01, cells=layout.cells, grid_size=layout.grid_size, labels=labels,
                class_label=class_label, judge=judge, input_shape=input_shape, normalize=normalize, network=network,
                features=features, activations=acts.numpy(), periods=label_periods,
                other_labels=few_valued(labels, class_label), neuron_icons=None if neuron_icons is None else neuron_icons.icons,
                device=device, seed=settings.seed, progress=judged)
            metrics.update(judgement.metrics)
            exemplar_indices = nearest_examples(layout.directions, acts, min(settings.exemplars, len(acts)), device=device)
            exemplars = images[torch.from_numpy(exemplar_indices)].numpy()
            tick(parts["total"], parts["total"])
        seconds["recognizability"] = time.perf_counter() - start

    class_values = labels[class_label] if class_label else np.zeros(len(acts), np.int64)
    figures = atlas_figures(layout, labels, class_label, class_values, icons, neuron_icons, exemplars,
                            class_names=class_names, title=title)
    metrics.update({f"atlas/seconds/{name}": value for name, value in seconds.items()})
    return AtlasResult(settings, layout, labels, icons, neuron_indices, neuron_icons, metrics, figures, seconds,
                       judgement, exemplar_indices, exemplars)


def probe_icon_bytes(features: Callable[[torch.Tensor], torch.Tensor], settings: AtlasSettings, **sizes: Any) -> int:
    """What one icon adds to an optimization step (``memory.icon_bytes_per_icon``: a step of 1 and of 3 icons);
    0 for features the probe cannot run, which fail in the rendering itself, with its own message."""
    try:
        return icon_bytes_per_icon(features, settings, **sizes)
    except Exception:  # noqa: BLE001
        return 0


def estimate_remaining(acts: torch.Tensor, settings: AtlasSettings, *, input_shape: tuple[int, ...],
                       images: torch.Tensor | None, device: str | torch.device | None, other_labels: bool,
                       icon_bytes: int, stage: str, icons: int | None = None) -> MemoryEstimate:
    """What the atlas of the collected ``acts`` (already subset and projected) still needs at ``stage``
    (``layout`` or ``icons``; ``memory.estimate_atlas_memory``)."""
    return estimate_atlas_memory(
        settings, examples=len(acts), width=acts.shape[1], input_shape=input_shape, icon_bytes=icon_bytes,
        icons=icons, images=images is not None, other_labels=other_labels, device=device, stage=stage)


def few_valued(labels: Mapping[str, np.ndarray], class_label: str | None) -> list[str]:
    """The labels other than ``class_label`` with 2 to :data:`MAX_COLOURED_VALUES` values (translated MNIST's shift)."""
    return [name for name in sorted(labels)
            if name != class_label and 2 <= len(np.unique(labels[name])) <= MAX_COLOURED_VALUES]


def atlas_figures(layout: AtlasLayout, labels: Mapping[str, np.ndarray], class_label: str | None,
                  class_values: np.ndarray, icons: RenderResult, neuron_icons: RenderResult | None,
                  exemplars: np.ndarray | None, *, class_names: list[str] | None = None,
                  title: str | None = None) -> dict[str, np.ndarray]:
    """Every picture of an atlas, by file name (without ``.png``)."""
    canvas = atlas_canvas(icons.icons, layout.cells, layout.grid_size)
    figures = {
        "umap_histogram": class_histogram(layout.xy01, class_values, class_names=class_names,
                                          grid_size=layout.grid_size, title=title),
        "atlas": canvas,
    }
    for name in few_valued(labels, class_label):  # the layout coloured by each other attribute: translated MNIST's shift
        # the shifts are cyclic, so a cyclic map draws Figure 2's annuli as closed colour rings
        figures[f"umap_histogram_{name}"] = class_histogram(
            layout.xy01, labels[name], grid_size=layout.grid_size, cmap="twilight" if name == "shift" else None,
            title=f"{title + ': ' if title else ''}coloured by {name}")
    if neuron_icons is not None:
        figures["neurons"] = icon_grid(neuron_icons.icons, ncols=len(neuron_icons.icons))
    if exemplars is not None:
        nearest = atlas_canvas(torch.from_numpy(exemplars[:, 0]).float() / 255.0, layout.cells, layout.grid_size)
        if nearest.shape != canvas.shape:  # icons of another size than the images: compare at the icons' size
            nearest = atlas_canvas(torch.nn.functional.interpolate(
                torch.from_numpy(exemplars[:, 0]).float() / 255.0, size=tuple(icons.icons.shape[-2:]), mode="nearest"),
                layout.cells, layout.grid_size)
        figures["atlas_exemplars"] = side_by_side([canvas, nearest])
        figures["cells"] = exemplar_strips(icons.icons, exemplars)
    figures["panel"] = atlas_panel(layout.xy01, class_values, canvas, class_names=class_names,
                                   neuron_icons=None if neuron_icons is None else neuron_icons.icons,
                                   grid_size=layout.grid_size, title=title)
    return figures


def pca_2d(activations: np.ndarray) -> np.ndarray:
    """The first two principal components: a cheap stand-in for UMAP."""
    centered = activations - activations.mean(0, keepdims=True)
    _, _, vt = np.linalg.svd(centered[:: max(1, len(centered) // 20_000)], full_matrices=False)
    return centered @ vt[:2].T


REDUCERS: dict[str, Any] = {"umap": None, "pca": pca_2d}  # None: compute_layout's UMAP

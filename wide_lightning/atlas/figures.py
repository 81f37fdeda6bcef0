"""Pictures of an atlas: the class histogram (top row of the paper's Figures 1-3), the atlas canvas
(middle row, spec 2.10), icon grids (the neuron row), a paper-style panel, and PNG output.

Matplotlib is used through ``Figure`` + ``FigureCanvasAgg`` only (no ``pyplot``): nothing touches the
global figure manager or the backend, so it is safe in training callbacks and on headless machines.
Image functions return numpy arrays: float32 in [0, 1] for canvases, uint8 ``[H, W, 3]`` for
rendered figures; :func:`save_png` writes either.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from wide_lightning.atlas.arrays import as_numpy

ClassNames = Sequence[str] | Mapping[int, str] | None


# -- arrays of icons ----------------------------------------------------------------------------------


def _icons_hwc(icons: Any) -> np.ndarray:
    """Icons as float32 ``[K, H, W, 3]``: accepts ``[K, C, H, W]`` (torch order, C = 1 or 3, preferred when
    ambiguous), ``[K, H, W, C]`` or ``[K, H, W]``; 1-channel icons are tiled to RGB."""
    x = as_numpy(icons, np.float32)
    if x.ndim == 3:
        x = x[..., None]
    if x.ndim != 4:
        raise ValueError(f"icons must be [K, C, H, W], [K, H, W, C] or [K, H, W], got shape {x.shape}.")
    if x.shape[1] in (1, 3):
        x = x.transpose(0, 2, 3, 1)
    elif x.shape[-1] not in (1, 3):
        raise ValueError(f"icons need 1 or 3 channels (first or last), got shape {x.shape}.")
    if x.shape[-1] == 1:
        x = np.repeat(x, 3, axis=-1)
    if not np.isfinite(x).all():
        raise ValueError("icons contain NaN or inf.")
    return np.clip(x, 0.0, 1.0)


def atlas_canvas(icons: Any, cells: Any, grid_size: int) -> np.ndarray:
    """Lay icons out on the atlas grid (L-NB ``render_layout``, spec 2.10).

    White canvas ``[g*H, g*W, 3]``; the icon of cell ``(i, j)`` (i = x-bin, j = y-bin) goes to block row
    ``g - 1 - j`` and block column ``i``, so x points right and y points up, like the layout. Cells
    without an icon stay white; 1-channel icons become gray RGB.

    Args:
        icons: ``[K, ...]`` images in [0, 1] (see :func:`_icons_hwc` for accepted layouts).
        cells: ``[K, 2]`` ``(i, j)`` per icon, or a ``GridCells``/``AtlasLayout`` (its ``.cells``).
        grid_size: g.

    Returns:
        float32 ``[g*H, g*W, 3]`` in [0, 1].
    """
    cells = as_numpy(getattr(cells, "cells", cells), np.int64).reshape(-1, 2)
    x = _icons_hwc(icons)
    g = int(grid_size)
    if g < 1:
        raise ValueError(f"grid_size must be positive, got {grid_size}.")
    if len(x) != len(cells):
        raise ValueError(f"{len(x)} icons for {len(cells)} cells.")
    if len(cells) and (cells.min() < 0 or cells.max() >= g):
        raise ValueError(f"cell indices must lie in [0, {g}), got range [{cells.min()}, {cells.max()}].")
    h, w = x.shape[1:3]
    canvas = np.ones((g * h, g * w, 3), np.float32)
    for icon, (i, j) in zip(x, cells):
        row = g - 1 - j
        canvas[row * h : (row + 1) * h, i * w : (i + 1) * w] = icon
    return canvas


def icon_grid(icons: Any, ncols: int | None = None, pad: int = 2, background: float = 1.0) -> np.ndarray:
    """Icons in rows of ``ncols`` (default: one row), ``pad`` pixels of ``background`` between them.

    Returns float32 ``[rows*H + (rows-1)*pad, ncols*W + (ncols-1)*pad, 3]`` in [0, 1]; used for the
    paper's row of individual-neuron visualisations.
    """
    x = _icons_hwc(icons)
    k, h, w = x.shape[:3]
    if k == 0:
        raise ValueError("no icons to lay out.")
    ncols = k if ncols is None else int(ncols)
    if ncols < 1 or pad < 0:
        raise ValueError(f"need ncols >= 1 and pad >= 0, got ncols={ncols}, pad={pad}.")
    ncols = min(ncols, k)
    nrows = -(-k // ncols)
    out = np.full((nrows * h + (nrows - 1) * pad, ncols * w + (ncols - 1) * pad, 3), background, np.float32)
    for n, icon in enumerate(x):
        r, c = divmod(n, ncols)
        out[r * (h + pad) : r * (h + pad) + h, c * (w + pad) : c * (w + pad) + w] = icon
    return out


def side_by_side(images: Sequence[Any], gap: int = 8, background: float = 1.0) -> np.ndarray:
    """Float images ``[H, W, 3]`` of equal height side by side, ``gap`` columns of ``background`` between them."""
    arrays = [as_numpy(image, np.float32) for image in images]
    if not arrays or len({a.shape[0] for a in arrays}) != 1:
        raise ValueError(f"side_by_side needs images of one height, got {[a.shape for a in arrays]}.")
    spacer = np.full((arrays[0].shape[0], gap, 3), background, np.float32)
    parts = [part for a in arrays for part in (a, spacer)][:-1]
    return np.concatenate(parts, axis=1)


def exemplar_strips(icons: Any, exemplars: Any, blocks: int = 3, gap: int = 6) -> np.ndarray:
    """One strip per cell: its icon, then its exemplars; the strips in ``blocks`` columns side by side.

    ``icons`` ``[K, C, P, P]`` in [0, 1] are resized to the exemplars' size; ``exemplars`` are
    ``[K, M, C, H, W]`` (uint8 or [0, 1]). A thin grey rule separates each icon from its exemplars.
    """
    import torch
    import torch.nn.functional as F

    examples = torch.as_tensor(as_numpy(exemplars))
    examples = examples.float() / 255.0 if examples.dtype == torch.uint8 else examples.float()
    k, m, c, h, w = examples.shape
    small = torch.as_tensor(as_numpy(icons, np.float32))
    if small.shape[-2:] != (h, w):
        small = F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False, antialias=True)
    if len(small) != k:
        raise ValueError(f"{len(small)} icons for {k} cells of exemplars.")
    rows = []
    for icon, row in zip(_icons_hwc(small), _icons_hwc(examples.reshape(k * m, c, h, w)).reshape(k, m, h, w, 3)):
        rule = np.full((h, 2, 3), 0.6, np.float32)
        rows.append(np.concatenate([icon, rule, icon_grid(row, ncols=m)], axis=1))
    per_block = -(-k // max(1, blocks))
    columns = []
    for start in range(0, k, per_block):
        block = rows[start:start + per_block]
        block += [np.ones_like(rows[0])] * (per_block - len(block))
        columns.append(icon_grid(np.stack(block), ncols=1))
    return side_by_side(columns, gap=gap)


def to_uint8(array: Any) -> np.ndarray:
    x = as_numpy(array)
    if x.ndim == 3 and x.shape[-1] == 1:
        x = x[..., 0]
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[-1] not in (3, 4)):
        raise ValueError(f"an image is [H, W], [H, W, 1], [H, W, 3] or [H, W, 4], got shape {x.shape}.")
    if x.dtype == np.uint8:
        return x
    x = x.astype(np.float32)
    if not np.isfinite(x).all():
        raise ValueError("the image contains NaN or inf.")
    return np.round(np.clip(x, 0.0, 1.0) * 255).astype(np.uint8)


def save_png(array: Any, path: str | Path) -> Path:
    """Write an image (float in [0, 1], clipped, or uint8; gray, RGB or RGBA) as PNG; makes parent folders."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(to_uint8(array)).save(path, format="PNG")
    return path


# -- colours ------------------------------------------------------------------------------------------


def class_colors(n: int, cmap: str | None = None) -> np.ndarray:
    """``[n, 3]`` RGB colours: tab10 (n <= 10), tab20 (n <= 20), otherwise ``cmap`` sampled (default
    ``"hsv"``, cyclic, which suits the 28 shifts of translated MNIST). A given ``cmap`` always wins."""
    from matplotlib import colormaps

    if cmap is None and n <= 10:
        return np.asarray(colormaps["tab10"].colors[:n], np.float32)
    if cmap is None and n <= 20:
        return np.asarray(colormaps["tab20"].colors[:n], np.float32)
    colormap = colormaps[cmap or "hsv"]
    stops = np.arange(n) / max(n, 1)  # n, not n - 1: a cyclic map would repeat its first colour
    return np.asarray(colormap(stops)[:, :3], np.float32)


def _class_index(labels: Any) -> tuple[np.ndarray, np.ndarray]:
    labels = as_numpy(labels).ravel()
    values, index = np.unique(labels, return_inverse=True)
    return values, index.ravel()


def _name(value: Any, class_names: ClassNames) -> str:
    if class_names is None:
        return str(value)
    if isinstance(class_names, Mapping):
        return str(class_names.get(value, class_names.get(int(value), value)))
    return str(class_names[int(value)])


def histogram_rgb(
    xy01: Any,
    labels: Any,
    bins: int = 100,
    colors: Any | None = None,
    cmap: str | None = None,
) -> np.ndarray:
    """A 2-D histogram of the layout coloured by class, as float32 RGB ``[bins, bins, 3]`` (row 0 = top, y up).

    Each pixel's colour is the count-weighted mean of its classes' colours (pure colour where a class
    is alone, blends where classes mix); its opacity over white grows with ``log(1 + count)``
    (``0.2 + 0.8 * log1p(n) / log1p(max n)``; empty pixels stay white). Points outside [0, 1] are
    dropped, ``x = 1`` falls into the last bin.
    """
    xy = as_numpy(xy01, np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2:
        raise ValueError(f"a layout is an [N, 2] array, got shape {xy.shape}.")
    values, index = _class_index(labels)
    if len(index) != len(xy):
        raise ValueError(f"{len(xy)} layout points but {len(index)} labels.")
    if bins < 1:
        raise ValueError(f"bins must be positive, got {bins}.")
    palette = class_colors(len(values), cmap) if colors is None else as_numpy(colors, np.float32)[:, :3]
    if len(palette) < len(values):
        raise ValueError(f"{len(palette)} colours for {len(values)} classes.")
    inside = np.isfinite(xy).all(1) & (xy >= 0).all(1) & (xy <= 1).all(1)
    xy, index = xy[inside], index[inside]
    ix = np.minimum((xy[:, 0] * bins).astype(np.int64), bins - 1)
    iy = np.minimum((xy[:, 1] * bins).astype(np.int64), bins - 1)
    pixel = (bins - 1 - iy) * bins + ix  # y up
    per_class = np.zeros((bins * bins, len(values)), np.float64)
    np.add.at(per_class, (pixel, index), 1.0)
    total = per_class.sum(1)
    colour = (per_class @ palette) / np.maximum(total, 1)[:, None]
    alpha = np.where(total > 0, 0.2 + 0.8 * np.log1p(total) / np.log1p(max(total.max(), 1)), 0.0)[:, None]
    rgb = 1.0 - alpha * (1.0 - colour)
    return rgb.reshape(bins, bins, 3).astype(np.float32)


# -- matplotlib figures --------------------------------------------------------------------------------


def _new_figure(figsize: tuple[float, float], dpi: int) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=figsize, dpi=dpi)
    FigureCanvasAgg(figure)
    return figure


def figure_to_array(figure: Any, tight: bool = True) -> np.ndarray:
    """Render a matplotlib ``Figure`` (Agg) to uint8 RGB ``[H, W, 3]``; ``tight`` trims the white margins."""
    import io

    from PIL import Image

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=figure.dpi, bbox_inches="tight" if tight else None,
                   pad_inches=0.05, facecolor="white")
    buffer.seek(0)
    return np.asarray(Image.open(buffer).convert("RGB")).copy()


def _draw_histogram(
    ax: Any,
    xy01: Any,
    labels: Any,
    class_names: ClassNames,
    bins: int,
    cmap: str | None,
    grid_size: int | None,
    legend: bool,
) -> None:
    values, _ = _class_index(labels)
    palette = class_colors(len(values), cmap)
    ax.imshow(histogram_rgb(xy01, labels, bins, palette), extent=(0, 1, 0, 1), interpolation="nearest")
    if grid_size:
        ticks = np.linspace(0, 1, int(grid_size) + 1)
        for t in ticks[1:-1]:
            ax.axvline(t, color="0.85", lw=0.4, zorder=0.5)
            ax.axhline(t, color="0.85", lw=0.4, zorder=0.5)
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_xticks([])
    ax.set_yticks([])
    if not legend:
        return
    if len(values) <= 20:
        from matplotlib.patches import Patch

        handles = [Patch(color=palette[k], label=_name(v, class_names)) for k, v in enumerate(values)]
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    else:
        from matplotlib.cm import ScalarMappable
        from matplotlib.colors import BoundaryNorm, ListedColormap

        norm = BoundaryNorm(np.arange(len(values) + 1) - 0.5, len(values))
        cax = ax.inset_axes([1.03, 0.0, 0.04, 1.0])  # outside the axes: keeps them aligned with the atlas
        bar = ax.figure.colorbar(ScalarMappable(norm, ListedColormap(palette)), cax=cax)
        picks = np.unique(np.linspace(0, len(values) - 1, min(len(values), 8)).round().astype(int))
        bar.set_ticks(picks)
        bar.set_ticklabels([_name(values[k], class_names) for k in picks])
        bar.ax.tick_params(labelsize=7)


def class_histogram(
    xy01: Any,
    labels: Any,
    class_names: ClassNames = None,
    bins: int = 100,
    *,
    cmap: str | None = None,
    grid_size: int | None = None,
    title: str | None = None,
    figsize: tuple[float, float] = (5.0, 4.2),
    dpi: int = 100,
    path: str | Path | None = None,
) -> np.ndarray:
    """The top row of the paper's Figures 1-3: a 2-D histogram of the normalized UMAP layout coloured by class.

    See :func:`histogram_rgb` for the colouring; y points up, as in the atlas canvas below it.
    ``class_names`` (a sequence indexed by label value, or a dict) names the legend entries; more than
    20 classes (e.g. the 28 shifts) get a colour bar instead. ``grid_size`` draws the atlas grid
    faintly so cells can be matched. Returns uint8 RGB ``[H, W, 3]``; also written to ``path`` if given.
    """
    figure = _new_figure(figsize, dpi)
    ax = figure.add_subplot(1, 1, 1)
    _draw_histogram(ax, xy01, labels, class_names, bins, cmap, grid_size, legend=True)
    if title:
        ax.set_title(title, fontsize=9)
    return _finish(figure, path)


def atlas_panel(
    xy01: Any,
    labels: Any,
    atlas: Any,
    *,
    neuron_icons: Any | None = None,
    class_names: ClassNames = None,
    bins: int = 100,
    cmap: str | None = None,
    grid_size: int | None = None,
    title: str | None = None,
    width: float = 4.0,
    dpi: int = 150,
    path: str | Path | None = None,
) -> np.ndarray:
    """One column of the paper's Figures 1-3: class histogram (top), atlas canvas (middle), neuron icons (bottom).

    ``atlas`` is an :func:`atlas_canvas` image; ``neuron_icons`` (optional) a ``[K, ...]`` icon batch,
    shown as one row. Returns uint8 RGB; also written to ``path`` if given.
    """
    canvas = as_numpy(atlas, np.float32)
    rows = [1.0, 1.0] + ([0.25] if neuron_icons is not None else [])
    figure = _new_figure((width * 1.35, width * sum(rows) + 0.4), dpi)
    grid = figure.add_gridspec(len(rows), 1, height_ratios=rows, hspace=0.08)
    top = figure.add_subplot(grid[0])
    _draw_histogram(top, xy01, labels, class_names, bins, cmap, grid_size, legend=True)
    top.set_aspect("equal")
    middle = figure.add_subplot(grid[1])
    middle.imshow(np.clip(canvas, 0, 1), interpolation="lanczos" if canvas.shape[0] > 600 else "nearest")
    middle.set_xticks([])
    middle.set_yticks([])
    for spine in middle.spines.values():
        spine.set_color("0.7")
    if neuron_icons is not None:
        bottom = figure.add_subplot(grid[2])
        bottom.imshow(icon_grid(neuron_icons), interpolation="nearest")
        bottom.set_axis_off()
    if title:
        top.set_title(title, fontsize=10)
    return _finish(figure, path)


def _finish(figure: Any, path: str | Path | None) -> np.ndarray:
    """The figure as uint8 RGB, also written to ``path`` if given."""
    image = figure_to_array(figure)
    if path is not None:
        save_png(image, path)
    return image

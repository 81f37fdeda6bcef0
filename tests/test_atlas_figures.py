"""Atlas figures: canvas orientation (spec 2.10), icon grids, class histograms, PNG output."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from wide_lightning.atlas.figures import (
    atlas_canvas,
    atlas_panel,
    class_colors,
    class_histogram,
    histogram_rgb,
    icon_grid,
    save_png,
)


def solid_icons(values, channels=3, size=4):
    """Icon k is filled with values[k] (channel-first, like the renderer's output)."""
    return np.stack([np.full((channels, size, size), v, np.float32) for v in values])


def block(canvas, row, col, size=4):
    return canvas[row * size : (row + 1) * size, col * size : (col + 1) * size]


def test_atlas_canvas_orientation_y_up_x_right():
    g, p = 3, 4
    cells = np.array([[0, 2], [2, 0], [1, 1]])  # top-left, bottom-right, centre
    canvas = atlas_canvas(solid_icons([0.1, 0.2, 0.3]), cells, g)
    assert canvas.shape == (g * p, g * p, 3) and canvas.dtype == np.float32
    np.testing.assert_allclose(block(canvas, 0, 0), 0.1)  # (i=0, j=g-1) -> row 0, column 0: top-left
    np.testing.assert_allclose(block(canvas, 2, 2), 0.2)  # (i=g-1, j=0) -> bottom-right
    np.testing.assert_allclose(block(canvas, 1, 1), 0.3)
    for row, col in [(0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1)]:
        np.testing.assert_array_equal(block(canvas, row, col), 1.0)  # missing cells stay white


def test_atlas_canvas_input_layouts_and_gray_tiling():
    g = 2
    cells = np.array([[1, 1]])
    gray = atlas_canvas(torch.full((1, 1, 4, 4), 0.5), cells, g)  # torch, 1 channel
    np.testing.assert_allclose(block(gray, 0, 1), 0.5)  # tiled to RGB, (1, 1) -> top-right
    channel_last = np.zeros((1, 4, 4, 3), np.float32)
    channel_last[..., 0] = 1.0
    red = atlas_canvas(channel_last, cells, g)
    np.testing.assert_allclose(block(red, 0, 1)[..., 0], 1.0)
    np.testing.assert_allclose(block(red, 0, 1)[..., 1:], 0.0)
    clipped = atlas_canvas(solid_icons([2.0]), cells, g)
    assert clipped.max() == 1.0

    class Cells:  # GridCells / AtlasLayout duck type
        cells = np.array([[0, 0]])

    np.testing.assert_allclose(block(atlas_canvas(solid_icons([0.0]), Cells(), g), 1, 0), 0.0)


def test_atlas_canvas_errors():
    with pytest.raises(ValueError, match="2 icons for 1 cells"):
        atlas_canvas(solid_icons([0.1, 0.2]), [[0, 0]], 2)
    with pytest.raises(ValueError, match=r"\[0, 2\)"):
        atlas_canvas(solid_icons([0.1]), [[2, 0]], 2)
    with pytest.raises(ValueError, match="channels"):
        atlas_canvas(np.zeros((1, 5, 5, 5)), [[0, 0]], 2)
    with pytest.raises(ValueError, match="NaN"):
        atlas_canvas(solid_icons([np.nan]), [[0, 0]], 2)


def test_icon_grid_shapes_and_placement():
    icons = solid_icons([0.0, 0.25, 0.5, 0.75, 1.0])
    row = icon_grid(icons)
    assert row.shape == (4, 5 * 4 + 4 * 2, 3)
    grid = icon_grid(icons, ncols=2, pad=1)
    assert grid.shape == (3 * 4 + 2, 2 * 4 + 1, 3)
    np.testing.assert_allclose(grid[5:9, 5:9], 0.75)  # icon 3: row 1, column 1
    np.testing.assert_allclose(grid[10:14, 5:9], 1.0)  # unused slot: background
    assert icon_grid(icons, ncols=2, pad=0, background=0.0)[8:12, 4:8].max() == 0.0


def test_save_png_roundtrip(tmp_path):
    image = np.random.default_rng(0).random((6, 7, 3)).astype(np.float32)
    path = save_png(image, tmp_path / "sub" / "x.png")
    back = np.asarray(Image.open(path))
    assert back.shape == (6, 7, 3) and back.dtype == np.uint8
    np.testing.assert_array_equal(back, np.round(image * 255).astype(np.uint8))
    gray = save_png(np.full((3, 3), 200, np.uint8), tmp_path / "g.png")
    assert np.asarray(Image.open(gray)).tolist() == [[200] * 3] * 3
    with pytest.raises(ValueError, match="shape"):
        save_png(np.zeros((2, 2, 5)), tmp_path / "bad.png")


def test_histogram_rgb_orientation_and_colouring():
    colors = np.array([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0]])
    xy = np.array([[0.0, 0.0], [1.0, 1.0], [1.0, 1.0], [0.55, 0.55], [0.55, 0.55]])
    labels = np.array([0, 1, 1, 0, 1])
    rgb = histogram_rgb(xy, labels, bins=10, colors=colors)
    assert rgb.shape == (10, 10, 3)
    assert rgb[9, 0, 0] == 1.0 and rgb[9, 0, 2] < 1.0  # (0, 0) -> bottom-left, reddish (blue faded)
    assert rgb[0, 9, 2] == 1.0 and rgb[0, 9, 0] < rgb[9, 0, 2]  # (1, 1) -> top-right, blue, denser
    np.testing.assert_allclose(rgb[4, 5, 0], rgb[4, 5, 2])  # an even mix: purple
    assert (rgb[[0, 9, 4], [0, 9, 5]] < 1).any() and rgb[5, 5].tolist() == [1.0, 1.0, 1.0]  # empty: white


def test_class_colors():
    assert class_colors(10).shape == (10, 3)
    assert class_colors(28).shape == (28, 3)
    assert len({tuple(c) for c in class_colors(28).round(4)}) == 28  # cyclic map without a repeat


@pytest.mark.parametrize("n_classes", [3, 28])
def test_class_histogram_renders_and_saves(tmp_path, n_classes):
    from matplotlib import _pylab_helpers

    managers = _pylab_helpers.Gcf.get_num_fig_managers()
    rng = np.random.default_rng(0)
    xy = rng.random((400, 2))
    labels = rng.integers(0, n_classes, 400)
    names = [f"class {k}" for k in range(n_classes)]
    image = class_histogram(xy, labels, names, bins=20, grid_size=4, title="t", dpi=40, path=tmp_path / "h.png")
    assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    assert np.asarray(Image.open(tmp_path / "h.png")).shape == image.shape
    assert _pylab_helpers.Gcf.get_num_fig_managers() == managers  # no pyplot figures left behind


def test_atlas_panel(tmp_path):
    rng = np.random.default_rng(0)
    canvas = atlas_canvas(solid_icons([0.2, 0.8]), [[0, 0], [1, 1]], 2)
    image = atlas_panel(
        rng.random((100, 2)), rng.integers(0, 10, 100), canvas,
        neuron_icons=solid_icons([0.1, 0.5, 0.9], channels=1), class_names={k: str(k) for k in range(10)},
        grid_size=2, title="width 20", dpi=30, path=tmp_path / "panel.png",
    )
    assert image.dtype == np.uint8 and image.shape[2] == 3
    assert (tmp_path / "panel.png").stat().st_size > 0

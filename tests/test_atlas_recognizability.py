"""How recognizable atlas icons are: the judge, the agreements, data-likeness, labels the icons carry, exemplars."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from wide_lightning.atlas import AtlasSettings, build_atlas
from wide_lightning.atlas.collect import collect_activations
from wide_lightning.atlas.exemplars import nearest_examples
from wide_lightning.atlas.recognizability import (
    NearestNeighbourJudge,
    cell_targets,
    judge_icons,
    mismatch,
    paired_chance,
    pixel_statistics,
    readout,
)
from wide_lightning.atlas.transforms import shift_pixels
from wide_lightning.nets import ConvNet

FIXTURE = Path(__file__).parent / "data" / "lucid_notebook_icons.npz"


def stripes(kind: int, size: int = 8) -> torch.Tensor:
    """A 1 x size x size image: kind 0 a bright row, 1 a bright column, 2 a bright diagonal."""
    x = torch.zeros(1, size, size)
    if kind == 0:
        x[0, size // 2] = 1.0
    elif kind == 1:
        x[0, :, size // 2] = 1.0
    else:
        x[0] = torch.eye(size)
    return x


def test_the_judge_labels_known_images_by_their_nearest_training_images():
    kinds = [0, 1, 2] * 4
    images = torch.stack([stripes(k) for k in kinds]) * 255
    judge = NearestNeighbourJudge(images.to(torch.uint8), {"kind": np.array(kinds)}, k=3)
    noisy = torch.stack([stripes(k) for k in (2, 0, 1)]) + 0.1 * torch.rand(3, 1, 8, 8,
                                                                            generator=torch.Generator().manual_seed(0))
    indices, distances = judge.neighbours(noisy)
    assert indices.shape == (3, 3) and (np.diff(distances, axis=1) >= 0).all()  # nearest first
    label, confidence = judge.vote(indices, "kind")
    assert label.tolist() == [2, 0, 1] and confidence.tolist() == [1.0, 1.0, 1.0]
    with pytest.raises(ValueError, match="shape"):
        judge.neighbours(torch.zeros(1, 1, 5, 5))
    with pytest.raises(KeyError, match="no label 'shift'"):
        judge.vote(indices, "shift")


def test_a_tied_vote_goes_to_the_nearer_neighbour():
    # four 1-pixel images at intensities 0, 0.1, 0.2, 0.3 with labels a b b a: the 2 nearest of 0.04 are 0 (a) and 0.1 (b)
    images = torch.tensor([0.0, 0.1, 0.2, 0.3]).view(4, 1, 1, 1)
    judge = NearestNeighbourJudge(images, {"y": np.array([7, 8, 8, 7])}, k=2)
    indices, distances = judge.neighbours(torch.tensor([[[[0.04]]], [[[0.26]]]]))
    assert indices.tolist() == [[0, 1], [3, 2]]
    assert distances[:, 0] == pytest.approx([0.04, 0.04], abs=1e-6)
    assert judge.vote(indices, "y")[0].tolist() == [7, 7]
    # typical distance: each image's nearest other image is 0.1 away
    assert judge.typical_distance() == pytest.approx(0.1, abs=1e-6)


def test_data_likeness_by_hand():
    images = torch.zeros(2, 1, 2, 2)
    images[0, 0, 0, 0] = 1.0  # one bright pixel of 8
    images[1, 0, 0, 1] = 0.4  # dim, not bright
    mean, bright = pixel_statistics(images)
    assert mean == pytest.approx(1.4 / 8) and bright == pytest.approx(1 / 8)
    assert pixel_statistics(torch.full((1, 1, 2, 2), 255, dtype=torch.uint8)) == (1.0, 1.0)


def test_cell_targets_mismatch_and_chance_by_hand():
    values = np.array([0, 1, 27])
    table = np.array([[5, 1, 0], [0, 1, 3]])  # cell 0: mostly 0; cell 1: 1 once, 27 three times
    assert cell_targets(values, table).tolist() == [0, 27]
    circular = cell_targets(values, table, period=28)
    # the circular mean of 1, 27, 27, 27: one step up, three down -> atan2(-2 sin(a), 4 cos(a)), half a step below 0
    step = 2 * np.pi / 28
    assert circular[1] == pytest.approx(28 + np.arctan2(-2 * np.sin(step), 4 * np.cos(step)) / step)
    assert circular[1] == pytest.approx(27.5, abs=0.01)
    assert mismatch(np.array([27, 3]), np.array([1, 3]), period=28).tolist() == [2, 0]  # wraps around
    assert mismatch(np.array([27, 3]), np.array([1, 3])).tolist() == [1, 0]
    # every pairing of predictions (0, 2) with targets (0, 2): mismatches 0, 1, 1, 0 -> chance 0.5
    assert paired_chance(np.array([0, 2]), np.array([0, 2])) == 0.5


def test_a_readout_of_the_hidden_state_names_the_label_of_new_activations():
    rng = np.random.default_rng(0)
    shift = rng.integers(0, 4, 400)
    acts = np.eye(4)[shift] * 3 + 0.1 * rng.standard_normal((400, 4))
    predicted = readout(acts, shift, np.eye(4)[[2, 0, 3]] * 3)
    assert predicted.tolist() == [2, 0, 3]


def two_cell_atlas():
    """A 2 x 1 layout: 6 points in the left cell (digit 0 x 5, digit 1 x 1), 4 in the right (digit 1)."""
    xy01 = np.array([[0.2, 0.5]] * 6 + [[0.8, 0.5]] * 4)
    labels = {"digit": np.array([0, 0, 0, 0, 0, 1, 1, 1, 1, 1]), "shift": np.array([0, 0, 0, 1, 1, 27, 5, 5, 5, 6])}
    cells = np.array([[0, 0], [1, 0]])
    images = torch.zeros(10, 1, 4, 4, dtype=torch.uint8)
    images[:6, 0, 0] = 255  # digit-0 cell: a bright top row
    images[6:, 0, :, 0] = 255  # digit-1 cell: a bright left column
    images[5] = images[6]  # the one digit 1 in the left cell looks like a 1
    return xy01, labels, cells, images


def test_judge_icons_reports_known_agreements():
    xy01, labels, cells, images = two_cell_atlas()
    judge = NearestNeighbourJudge(images, labels, k=3)
    icons = images[[6, 0]].float() / 255  # the left cell gets a "1", the right one a "0": both wrong for the judge

    class Constant(torch.nn.Module):  # a "network" that calls everything a 0
        def forward(self, x):
            return torch.tensor([[1.0, 0.0]]).repeat(len(x), 1)

    judged = judge_icons(icons, xy01=xy01, cells=cells, grid_size=2, labels=labels, class_label="digit",
                         judge=judge, input_shape=(1, 4, 4), network=Constant(), other_labels=["shift"],
                         periods={"shift": 28})
    m = judged.metrics
    assert judged.majority.tolist() == [0, 1] and judged.purity == pytest.approx([5 / 6, 1.0])
    assert judged.judge_label.tolist() == [1, 0] and m["atlas/icons/judge_agreement"] == 0.0
    assert judged.network_label.tolist() == [0, 0] and m["atlas/icons/network_agreement"] == 0.5
    assert m["atlas/icons/mean_intensity"] == pytest.approx(0.25) and m["atlas/icons/bright_share"] == pytest.approx(0.25)
    assert m["atlas/data/mean_intensity"] == pytest.approx(0.25)
    # both icons are exact copies of training images: distance 0 to the nearest one
    assert m["atlas/icons/nearest_image_distance_ratio"] == 0.0 and judged.nearest_distance.tolist() == [0.0, 0.0]
    # the right cell's icon copies image 0, whose 3 nearest images (0, 1, 2) all have shift 0; the right
    # cell's circular-mean shift is about 5.25 (5, 5, 5, 6), so that icon is about 5.25 shifts off
    assert 0.0 <= m["atlas/icons/shift/judge_error"] <= 14 and 0.0 <= m["atlas/icons/shift/judge_error_chance"] <= 14
    assert "atlas/icons/shift/readout_error" not in m  # no features/activations given: no read-out


def test_exemplars_are_the_nearest_training_examples():
    rng = np.random.default_rng(0)
    acts = rng.standard_normal((500, 6)).astype(np.float32)
    directions = rng.standard_normal((4, 6)).astype(np.float32)
    indices = nearest_examples(directions, acts, count=5, chunk=64)  # several chunks
    brute = np.argsort(((directions[:, None] - acts[None]) ** 2).sum(-1), axis=1)[:, :5]
    assert indices.tolist() == brute.tolist()
    with pytest.raises(ValueError, match="count"):
        nearest_examples(directions, acts, count=0)


def tiny_atlas_inputs():
    torch.manual_seed(0)
    net = ConvNet((1, 28, 28), 10, width=12, conv_channels=4)
    images = torch.randint(0, 256, (240, 1, 28, 28), generator=torch.Generator().manual_seed(1), dtype=torch.uint8)
    dataset = SimpleNamespace(images=images, labels={"digit": torch.arange(240) % 10})
    normalize = lambda x: (x - 0.1307) / 0.3081  # noqa: E731
    acts = collect_activations(net.features, dataset, lambda x: normalize(x.float() / 255))
    return net, images, acts, normalize


def test_the_lucid_notebook_preset_reproduces_the_earlier_default_icons():
    """tests/data/lucid_notebook_icons.npz: these icons as the code before the presets drew them with its defaults."""
    net, _, acts, normalize = tiny_atlas_inputs()
    settings = AtlasSettings.from_preset("lucid_notebook", grid_size=3, min_density=2, steps=6, neurons=2,
                                         reducer="pca")
    assert (settings.whiten, settings.whiten_mode, settings.whiten_ridge, settings.objective, settings.cossim_pow,
            settings.icon_size, settings.parameterization, settings.transforms, settings.lr) == (
        True, "regularized", 1e-6, "lucid_notebook", 4.0, None, "fft", "lucid", 0.05)
    result = build_atlas(acts, net.features, input_shape=(1, 28, 28), normalize=normalize, pad_value=0.0,
                         settings=settings)
    earlier = np.load(FIXTURE)
    assert result.layout.cells.tolist() == earlier["cells"].tolist()
    np.testing.assert_allclose(result.icons.icons.numpy(), earlier["icons"], rtol=0, atol=1e-6)
    np.testing.assert_allclose(result.neuron_icons.icons.numpy(), earlier["neuron_icons"], rtol=0, atol=1e-6)


def test_presets_take_single_overrides_and_refuse_unknown_names():
    settings = AtlasSettings.from_preset("lucid_notebook", whiten=None, objective="true_cosine")
    assert settings.whiten is True and settings.objective == "true_cosine" and settings.preset == "lucid_notebook"
    assert AtlasSettings().preset == "recognizable" and AtlasSettings.from_preset().whiten == AtlasSettings().whiten
    # the paper's literal optimization stays lucid's; the default's MACO phase takes more and larger steps
    assert (AtlasSettings.from_preset("lucid_notebook").steps, AtlasSettings.from_preset("lucid_notebook").lr) == (512, 0.05)
    assert (AtlasSettings().steps, AtlasSettings().lr) == (AtlasSettings.from_preset().steps, AtlasSettings.from_preset().lr) == (1024, 0.2)
    assert AtlasSettings.from_preset("recognizable", steps=None, lr=0.1).steps == 1024  # None keeps the preset's
    # the default's whole-icon transforms shift a 28-px icon by at most 1 px; any share can be asked for
    assert AtlasSettings().shift == AtlasSettings.from_preset().shift == 0.04 and shift_pixels(AtlasSettings().shift, 28) == 1
    assert AtlasSettings.from_preset(shift=0.1).shift == 0.1
    with pytest.raises(ValueError, match="unknown atlas preset 'lucid'"):
        AtlasSettings.from_preset("lucid")
    with pytest.raises(TypeError, match="no setting 'widht'"):
        AtlasSettings.from_preset(widht=3)


def test_build_atlas_judges_its_icons_and_stores_the_exemplars(tmp_path):
    net, images, acts, normalize = tiny_atlas_inputs()
    settings = AtlasSettings(grid_size=3, min_density=2, steps=4, neurons=2, reducer="pca", exemplars=3)
    result = build_atlas(acts, net.features, input_shape=(1, 28, 28), normalize=normalize, pad_value=0.0,
                         settings=settings, images=images, network=net)
    k = len(result.layout.cells)
    for key in ("icons/network_agreement", "icons/judge_agreement", "icons/mean_intensity", "icons/bright_share",
                "icons/nearest_image_distance_ratio", "data/mean_intensity", "neurons/judge_confidence"):
        assert 0.0 <= result.metrics[f"atlas/{key}"] < np.inf, key
    assert result.exemplar_indices.shape == (k, 3)
    expected = nearest_examples(result.layout.directions, acts.activations, 3)
    assert result.exemplar_indices.tolist() == expected.tolist()
    assert np.array_equal(result.exemplars, images[torch.from_numpy(expected)].numpy())
    assert {"atlas_exemplars", "cells"} <= set(result.figures)
    assert result.figures["atlas_exemplars"].shape[1] > 2 * result.figures["atlas"].shape[1]  # two canvases
    saved = np.load(result.save(tmp_path / "atlas") / "atlas.npz")
    assert saved["exemplars"].shape == (k, 3, 1, 28, 28) and saved["exemplars"].dtype == np.uint8
    assert saved["cell_label"].shape == saved["icon_judge_label"].shape == saved["icon_network_label"].shape == (k,)

"""The atlas icon renderer: objective, FFT parameterization, lucid transforms, the batched optimization."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from wide_lightning.atlas.objective import direction_objective, objective_terms
from wide_lightning.atlas.parameterization import (
    FFTImage,
    MacoImage,
    band_limit_at,
    color_decorrelation_matrix,
    fft_scale,
    image_statistics,
    init_spectrum,
    spectrum_to_image,
)
from wide_lightning.atlas.command import atlas
from wide_lightning.atlas.render import neuron_directions, render_icons
from wide_lightning.atlas.task import render_inputs
from wide_lightning.atlas.settings import AtlasSettings
from wide_lightning.atlas.transforms import (
    LUCID_ANGLES,
    LUCID_SCALES,
    CenterFit,
    Jitter,
    Pad,
    RandomRotate,
    RandomScale,
    Resize,
    apply_transforms,
    lucid_transforms,
    min_icon_size,
    scaled_amount,
    shift_pixels,
    whole_icon_transforms,
    window_range,
)
from wide_lightning.nets import MLP, ConvNet

EPS = 1e-4
A = torch.tensor([[3.0, 4.0]])  # |a| = 5


# -- objective ------------------------------------------------------------------------------------


def test_lucid_notebook_objective_by_hand():
    # dot = mean(a*u) = (6 + 0) / 2 = 3; cos' = 3 / (1e-4 + 5); obj = 3 * cos'^4 (about 3 * 0.6^4 = 0.3888).
    obj, cos = objective_terms(A, torch.tensor([[2.0, 0.0]]), "lucid_notebook")
    assert cos.item() == pytest.approx(3 / (5 + EPS))
    assert obj.item() == pytest.approx(3 * (3 / (5 + EPS)) ** 4)
    assert obj.item() == pytest.approx(0.3888, abs=1e-3)


def test_lucid_notebook_objective_floor():
    # cos' = 0.15 / 5 = 0.03 < 0.1, so the floor gives 0.15 * 0.1^4.
    obj, cos = objective_terms(A, torch.tensor([[0.1, 0.0]]), "lucid_notebook")
    assert cos.item() == pytest.approx(0.15 / (5 + EPS))
    assert obj.item() == pytest.approx(0.15 * 1e-4)
    # Opposite direction: dot = -3, cos' = -0.6 is floored to 0.1, so the objective is -3e-4, not +0.39.
    obj, _ = objective_terms(A, torch.tensor([[-2.0, 0.0]]), "lucid_notebook")
    assert obj.item() == pytest.approx(-3e-4)


def test_lucid_notebook_cosine_is_not_bounded_by_one():
    # u is not normalized: cos' = dot / |a| scales with |u| / C (spec 2.6).
    _, cos = objective_terms(A, torch.tensor([[100.0, 0.0]]), "lucid_notebook")
    assert cos.item() == pytest.approx(150 / (5 + EPS))


def test_true_cosine_objective_by_hand():
    # dot = 12 + 12 = 24 (a sum), cos = 24 / ((5 + 1e-4)(5 + 1e-4)) ~ 0.96.
    obj, cos = objective_terms(A, torch.tensor([[4.0, 3.0]]), "true_cosine")
    expected_cos = 24 / ((5 + EPS) * (5 + EPS))
    assert cos.item() == pytest.approx(expected_cos)
    assert obj.item() == pytest.approx(24 * expected_cos**4)
    # Floor: dot = 3 - 4 = -1, cos ~ -0.141 -> 0.1.
    obj, _ = objective_terms(A, torch.tensor([[1.0, -1.0]]), "true_cosine")
    assert obj.item() == pytest.approx(-1e-4)


def test_dot_objective_by_hand():
    obj, cos = objective_terms(A, torch.tensor([[4.0, 3.0]]), "dot")
    assert obj.item() == pytest.approx(24.0)
    assert cos.item() == pytest.approx(24 / ((5 + EPS) * (5 + EPS)))


def test_cosine_and_match_objectives_by_hand():
    # A = (3, 4): against u = (4, 3), cos = 24 / 25 (with the eps) and |A - u|^2 = 1 + 1 = 2, |u|^2 = 25.
    obj, cos = objective_terms(A, torch.tensor([[4.0, 3.0]]), "cosine")
    assert obj.item() == pytest.approx(24 / ((5 + EPS) * (5 + EPS))) and obj.item() == cos.item()
    obj, _ = objective_terms(A, torch.tensor([[4.0, 3.0]]), "match")
    assert obj.item() == pytest.approx(-2 / (25 + EPS))
    # neither pays for size: twice the activations along u score no higher than once
    u = torch.tensor([[3.0, 4.0]])
    assert objective_terms(2 * A, u, "cosine")[0].item() == pytest.approx(objective_terms(A, u, "cosine")[0].item(), abs=1e-4)
    assert objective_terms(2 * A, u, "match")[0].item() < objective_terms(A, u, "match")[0].item() == 0.0
    assert objective_terms(2 * A, u, "true_cosine")[0].item() > objective_terms(A, u, "true_cosine")[0].item()


def test_cossim_pow_is_used():
    obj = direction_objective(A, torch.tensor([[2.0, 0.0]]), "lucid_notebook", cossim_pow=2)
    assert obj.item() == pytest.approx(3 * (3 / (5 + EPS)) ** 2)


@pytest.mark.parametrize("mode", ["lucid_notebook", "true_cosine", "dot", "cosine", "match"])
def test_objective_is_vectorized_per_row(mode):
    gen = torch.Generator().manual_seed(0)
    acts, dirs = torch.rand(5, 7, generator=gen), torch.randn(5, 7, generator=gen)
    batched = direction_objective(acts, dirs, mode)
    rows = torch.cat([direction_objective(acts[i : i + 1], dirs[i : i + 1], mode) for i in range(5)])
    assert batched.shape == (5,)
    torch.testing.assert_close(batched, rows)


def test_objective_rejects_unknown_mode_and_shapes():
    with pytest.raises(ValueError, match="objective must be one of"):
        objective_terms(A, A, "cos")
    with pytest.raises(ValueError, match="equal shape"):
        objective_terms(A, torch.ones(1, 3))


# -- FFT parameterization -------------------------------------------------------------------------


@pytest.mark.parametrize("channels", [1, 3])
@pytest.mark.parametrize("size", [28, 27])
def test_fft_image_shape_and_range(channels, size):
    image = FFTImage.random(4, channels, size, torch.Generator().manual_seed(0))
    assert image.spectrum.shape == (4, channels, size, size // 2 + 1, 2)
    x = image()
    assert x.shape == (4, channels, size, size)
    assert x.min() > 0 and x.max() < 1
    # Large spectra saturate the sigmoid but stay in [0, 1].
    big = spectrum_to_image(init_spectrum(2, channels, size, torch.Generator().manual_seed(1), sd=100.0), (size, size))
    assert big.min() >= 0 and big.max() <= 1


def test_fft_init_and_scale():
    spectrum = init_spectrum(8, 3, 32, torch.Generator().manual_seed(0))
    assert spectrum.std().item() == pytest.approx(0.01, rel=0.05)
    scale = fft_scale(32, 32)
    assert scale.shape == (32, 17)
    assert scale[0, 0].item() == pytest.approx(32.0)  # 1 / max(0, 1/32)
    assert scale[0, 1].item() == pytest.approx(32.0)  # freq 1/32
    assert scale[0, 16].item() == pytest.approx(2.0)  # freq 1/2
    # A zero spectrum is mid-grey.
    torch.testing.assert_close(spectrum_to_image(torch.zeros(1, 1, 8, 5, 2), (8, 8)), torch.full((1, 1, 8, 8), 0.5))


def test_fft_image_matches_formula():
    spectrum = init_spectrum(2, 3, 16, torch.Generator().manual_seed(3), sd=1.0)
    raw = torch.fft.irfftn(torch.view_as_complex(spectrum) * fft_scale(16, 16), s=(16, 16), norm="ortho") / 4
    matrix = torch.tensor([[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]])
    matrix = matrix / matrix.norm(dim=0).max()
    torch.testing.assert_close(color_decorrelation_matrix(), matrix)
    expected = torch.sigmoid((raw.permute(0, 2, 3, 1) @ matrix.T).permute(0, 3, 1, 2))
    torch.testing.assert_close(spectrum_to_image(spectrum, (16, 16)), expected)
    # One channel: sigmoid only, no decorrelation.
    torch.testing.assert_close(spectrum_to_image(spectrum[:, :1], (16, 16)), torch.sigmoid(raw[:, :1]))


# -- transforms -----------------------------------------------------------------------------------


def test_lucid_lists():
    assert len(LUCID_SCALES) == 125
    assert min(LUCID_SCALES) == pytest.approx(0.6730, abs=1e-4)
    assert max(LUCID_SCALES) == pytest.approx(1.0254, abs=1e-4)
    assert len(LUCID_ANGLES) == 75 and LUCID_ANGLES.count(0) == 8


def test_scaled_amounts_are_lucid_at_80_px():
    assert [repr(t) for t in lucid_transforms(80, 1.0)[:6]] == [
        "Pad(2, value=1)", "Jitter(4)", "Jitter(4)", "Jitter(8)", "Jitter(8)", "Jitter(8)"
    ]
    assert repr(lucid_transforms(80, 1.0)[-1]) == "Jitter(2)"
    assert window_range(80, lucid_transforms(80, 1.0)) == (32, 51)  # spec 2.8 size bookkeeping
    assert [scaled_amount(d, 28) for d in (2, 4, 8, 2)] == [1, 1, 3, 1]
    assert window_range(28, lucid_transforms(28, 0.0)) == (11, 18)


@pytest.mark.parametrize("channels", [1, 3])
def test_transform_shapes(channels):
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(3, channels, 28, 28)
    assert Pad(2, 0.0)(x, gen).shape == (3, channels, 32, 32)
    assert Jitter(4)(x, gen).shape == (3, channels, 24, 24)
    sizes = {RandomScale.scaled(s, 28) for s in LUCID_SCALES}
    for _ in range(5):
        assert RandomScale()(x, gen).shape[-2] in sizes
    assert RandomRotate()(x, gen).shape == x.shape
    assert Resize((32, 32))(x, gen).shape == (3, channels, 32, 32)
    for icon, out in ((28, (28, 28)), (80, (28, 28)), (32, (32, 32))):
        pipeline = lucid_transforms(icon, 0.5, output_size=out)
        lo, hi = window_range(icon, pipeline)
        for _ in range(4):
            y = apply_transforms(torch.rand(2, channels, icon, icon), pipeline, gen)
            assert y.shape == (2, channels, *out)
            partial = apply_transforms(torch.rand(1, channels, icon, icon), pipeline[:-1], gen)
            assert lo <= partial.shape[-1] <= hi and partial.shape[-1] == partial.shape[-2]


def test_pad_uses_the_value():
    y = Pad(2, 1.0)(torch.zeros(1, 1, 4, 4))
    assert y[..., 0, :].eq(1).all() and y[..., 2:6, 2:6].eq(0).all()


def test_jitter_is_a_crop_with_offsets_zero_to_d():
    x = torch.arange(100.0).view(1, 1, 10, 10)
    gen = torch.Generator().manual_seed(0)
    offsets = set()
    for _ in range(200):
        corner = Jitter(2)(x, gen)[0, 0, 0, 0].item()
        offsets.add((int(corner) // 10, int(corner) % 10))
    assert offsets == {(dy, dx) for dy in range(3) for dx in range(3)}


def test_one_draw_is_shared_by_the_batch():
    x = torch.arange(100.0).view(1, 1, 10, 10).repeat(4, 2, 1, 1)
    pipeline = [Jitter(3), RandomScale(), RandomRotate([15]), Jitter(1)]
    y = apply_transforms(x, pipeline, torch.Generator().manual_seed(1))
    assert torch.equal(y, y[:1, :1].expand_as(y))


def test_tf_bilinear_resize():
    scale = RandomScale([0.5])
    x = torch.arange(16.0).view(1, 1, 4, 4)
    # TF1 legacy: source = output * in/out, so a 2x down-sample picks pixels 0 and 2.
    torch.testing.assert_close(scale(x), x[..., ::2, ::2])
    torch.testing.assert_close(scale.resize(torch.ones(1, 2, 7, 5), 11, 3), torch.ones(1, 2, 11, 3))


def test_rotation():
    rotate = RandomRotate()
    x = torch.arange(16.0).view(1, 1, 4, 4) + 1
    assert torch.equal(rotate.rotate(x, 0), x)
    # +90 degrees is counter-clockwise: the top-right pixel goes to the top-left.
    assert rotate.rotate(x, 90)[0, 0, 0, 0].item() == x[0, 0, 0, 3].item()
    # 20 degrees: corners come from outside the image and are filled with 0.
    big = torch.ones(1, 1, 20, 20)
    rotated = rotate.rotate(big, 20)
    assert rotated[0, 0, 0, 0].item() == 0 and rotated[0, 0, 10, 10].item() == 1
    assert set(rotated.unique().tolist()) == {0.0, 1.0}  # nearest neighbour: no blending


# -- whole-icon transforms ------------------------------------------------------------------------


def test_center_fit_pads_or_crops_about_the_centre():
    x = torch.arange(16.0).view(1, 1, 4, 4)
    padded = CenterFit(6, value=-1.0)(x)
    assert padded.shape == (1, 1, 6, 6) and torch.equal(padded[..., 1:5, 1:5], x)
    assert (padded[..., 0, :] == -1).all() and (padded[..., :, 5] == -1).all()
    assert torch.equal(CenterFit(2, value=0.0)(x), x[..., 1:3, 1:3])
    for side in range(1, 9):  # odd and even differences, both ways
        assert CenterFit(5, value=0.0)(torch.zeros(1, 1, side, side)).shape == (1, 1, 5, 5)


def test_whole_icon_transforms_show_the_whole_icon_at_its_size():
    transforms = whole_icon_transforms(28, 0.0, output_size=(28, 28))
    assert window_range(28, transforms) == (28, 28)  # never a window: the whole icon
    g = torch.Generator().manual_seed(0)
    icon = torch.zeros(2, 1, 28, 28)
    icon[..., 12:16, 12:16] = 1.0
    for _ in range(20):
        out = apply_transforms(icon, transforms, g)
        assert out.shape == (2, 1, 28, 28)
        ys, xs = torch.nonzero(out[0, 0] > 0.5, as_tuple=True)
        # the bright square moves by at most 1 px (the default shift), grows or shrinks by 10 %, turns by 10 degrees
        assert len(ys) and abs(ys.float().mean() - 13.5) <= 4 and abs(xs.float().mean() - 13.5) <= 4
        assert torch.equal(out[0], out[1])  # one draw for the whole batch


@pytest.mark.parametrize("shift, most", [(0.0, 0), (0.04, 1), (0.1, 3), (0.2, 6)])
def test_whole_icon_shift_moves_the_icon_by_at_most_its_share_of_the_side(shift, most):
    transforms = whole_icon_transforms(28, 0.0, shift=shift)  # no resize: the shift alone decides the offsets
    assert shift_pixels(shift, 28) == most
    icon = torch.zeros(1, 1, 28, 28)
    icon[..., 14, 14] = 1.0  # one pixel at the rotation centre, so only the shift and the scale move it
    offsets = set()
    g = torch.Generator().manual_seed(1)
    for _ in range(200):
        plain = [t for t in transforms if not isinstance(t, RandomRotate)]
        out = apply_transforms(icon, plain, g)[0, 0]
        y, x = divmod(int(out.argmax()), 28)
        offsets.add((y - 14, x - 14))
    reach = max(max(abs(dy), abs(dx)) for dy, dx in offsets)
    assert most <= reach <= most + 1  # the scale of 0.9-1.1 about the centre moves a pixel by at most one more
    if most:
        assert any(abs(dy) == most for dy, _ in offsets) and any(abs(dx) == most for _, dx in offsets)


def test_whole_icon_shift_outside_its_range_is_refused_early():
    for bad in (-0.1, 0.5, True, "1px"):
        with pytest.raises(ValueError, match="shift must be a share of the icon's side in \\[0, 0.5\\)"):
            shift_pixels(bad, 28)
    with pytest.raises(ValueError, match="shift must be a share"):
        AtlasSettings(shift=0.6)
    with pytest.raises(ValueError, match="--shift must be a share"):
        atlas(steps=8, neurons=0, shift=-1.0)  # refused before any checkpoint is read


def test_render_icons_with_whole_transforms_raises_the_objective():
    shape = (1, 28, 28)
    net, dirs = _net_and_directions(shape)
    result = render_icons(net.features, dirs, input_shape=shape, normalize=_normalize, steps=30, objective="true_cosine",
                          transforms="whole")
    assert any("CenterFit" in t for t in result.transforms)
    assert (result.objective > result.initial_objective).all(), (result.initial_objective, result.objective)
    with pytest.raises(ValueError, match="transforms must be one of"):
        render_icons(net.features, dirs, input_shape=shape, steps=2, transforms="lucent")


def test_render_icons_matching_the_direction_moves_the_activations_towards_it():
    shape = (1, 28, 28)
    net, dirs = _net_and_directions(shape)
    result = render_icons(net.features, dirs, input_shape=shape, normalize=_normalize, steps=40, objective="match",
                          transforms="whole", lr=0.01)
    # from a random image's |a - u| ~ |u| to within 0.4 |u| (0.4^2 = 0.16) for every icon
    assert (result.initial_objective < -0.9).all() and (result.objective > -0.15).all(), result.objective
    with torch.no_grad():
        acts = net.features(_normalize(result.icons))
    torch.testing.assert_close(result.objective, -(acts - dirs).pow(2).sum(1) / (1e-4 + dirs.pow(2).sum(1)))


def test_averaged_transform_draws_and_a_decaying_rate_raise_the_objective():
    shape = (1, 28, 28)
    net, dirs = _net_and_directions(shape)
    plain = render_icons(net.features, dirs, input_shape=shape, normalize=_normalize, steps=20, objective="true_cosine")
    one = render_icons(net.features, dirs, input_shape=shape, normalize=_normalize, steps=20, objective="true_cosine",
                       transform_samples=1, lr_schedule="constant")
    assert torch.equal(plain.icons, one.icons)  # the defaults are lucid's loop exactly
    for options in (dict(transform_samples=3), dict(lr_schedule="cosine")):
        result = render_icons(net.features, dirs, input_shape=shape, normalize=_normalize, steps=20,
                              objective="true_cosine", **options)
        assert (result.objective > result.initial_objective).all(), (options, result.objective)
        assert not torch.equal(result.icons, plain.icons)
    with pytest.raises(ValueError, match="transform_samples must be an integer >= 1"):
        render_icons(net.features, dirs, input_shape=shape, steps=2, transform_samples=0)
    with pytest.raises(ValueError, match="lr_schedule must be one of"):
        render_icons(net.features, dirs, input_shape=shape, steps=2, lr_schedule="step")


# -- MACO -----------------------------------------------------------------------------------------


def _digit_like_images(count=64, size=28, seed=0):
    """Dark images with a bright random bar each: a data set with a definite amplitude spectrum."""
    g = torch.Generator().manual_seed(seed)
    images = torch.zeros(count, 1, size, size, dtype=torch.uint8)
    for k in range(count):
        row, col = torch.randint(4, size - 4, (2,), generator=g).tolist()
        images[k, 0, row - 1:row + 2, col - 6:col + 6] = 255
    return images


def test_image_statistics_are_the_mean_amplitude_spectrum_and_pixel_moments():
    images = _digit_like_images()
    stats = image_statistics(images, 28)
    pixels = images.float() / 255
    assert torch.allclose(stats.magnitude, torch.fft.rfft2(pixels.double(), norm="ortho").abs().mean(0).float())
    assert stats.mean.item() == pytest.approx(pixels.mean().item()) and stats.std.item() == pytest.approx(pixels.std().item())
    assert image_statistics(images, 80).magnitude.shape == (1, 80, 41)  # resized to the icon size
    with pytest.raises(ValueError, match="uint8"):
        image_statistics(pixels, 28)


def test_maco_keeps_its_magnitude_fixed_while_the_phase_moves():
    stats = image_statistics(_digit_like_images(), 28)
    image = MacoImage.random(3, stats, torch.Generator().manual_seed(0))
    start = image.phase.detach().clone()
    (parameter,) = image.parameters()
    assert parameter is image.phase  # the phase is all that is optimized
    optimizer = torch.optim.Adam([parameter], lr=0.1)
    for _ in range(20):  # brighten the top-left quarter
        optimizer.zero_grad()
        (-image()[..., :14, :14].mean()).backward()
        optimizer.step()
    assert (image.phase - start).abs().max() > 0.5
    # columns 1..13 of the rfft grid hold independent frequencies (columns 0 and 14 pair conjugates up)
    spectrum = torch.fft.rfft2(image.spatial().detach(), norm="ortho").abs()
    template = stats.magnitude[None].expand_as(spectrum)
    assert torch.allclose(spectrum[..., 1:14], template[..., 1:14], rtol=1e-4, atol=1e-6)
    x = image().detach()
    assert x.min() >= 0 and x.max() <= 1
    assert x[..., :14, :14].mean() > x[..., 14:, 14:].mean()  # the objective moved the picture


def test_render_icons_with_maco_raises_the_objective():
    shape = (1, 28, 28)
    net, dirs = _net_and_directions(shape)
    stats = image_statistics(_digit_like_images(), 28)
    # only the phase moves, so MACO climbs more slowly than the free spectrum: 100 steps at lr 0.2
    result = render_icons(net.features, dirs, input_shape=shape, normalize=_normalize, steps=100, lr=0.2,
                          objective="true_cosine", parameterization="maco", image_statistics=stats)
    assert result.parameterization == "maco" and result.icons.shape == (5, 1, 28, 28)
    assert (result.objective > result.initial_objective).all(), (result.initial_objective, result.objective)
    with pytest.raises(ValueError, match="needs image_statistics"):
        render_icons(net.features, dirs, input_shape=shape, steps=2, parameterization="maco")
    with pytest.raises(ValueError, match="does not fit the phase"):  # a template of another size
        render_icons(net.features, dirs, input_shape=shape, steps=2, icon_size=40, parameterization="maco",
                     image_statistics=stats)


def test_band_limit_rises_from_one_cycle_per_icon_to_all_frequencies_over_its_share_of_the_steps():
    # 100 steps, half of them coarse to fine, 28-px icons: 1/28 at step 0, the top (sqrt(0.5)) reached at step 50
    assert band_limit_at(0, 100, 0.5, 28) == pytest.approx(1 / 28)
    assert band_limit_at(25, 100, 0.5, 28) == pytest.approx((1 / 28 + math.sqrt(0.5)) / 2)
    assert band_limit_at(49, 100, 0.5, 28) < math.sqrt(0.5)
    assert band_limit_at(50, 100, 0.5, 28) is None and band_limit_at(99, 100, 0.5, 28) is None
    assert all(band_limit_at(step, 100, 0.0, 28) is None for step in (0, 50))  # off: every frequency at once


def test_maco_band_limit_keeps_the_low_frequencies_and_removes_the_high_ones():
    stats = image_statistics(_digit_like_images(), 28)
    image = MacoImage.random(2, stats, torch.Generator().manual_seed(0))
    image.band_limit = 3 / 28  # frequencies up to 3 cycles per icon; the ramp ends 2 bins above
    spectrum = torch.fft.rfft2(image.spatial().detach(), norm="ortho").abs()
    radius = torch.sqrt(torch.fft.fftfreq(28)[:, None] ** 2 + torch.fft.rfftfreq(28)[None, :] ** 2)
    template = stats.magnitude.expand_as(spectrum)
    low = radius <= 3 / 28 + 1e-6
    low[:, 0] = False  # columns 0 and 14 pair conjugates up: the independent ones are 1..13
    assert torch.allclose(spectrum[..., low], template[..., low], rtol=1e-4, atol=1e-6)
    assert spectrum[..., radius >= 5 / 28 - 1e-6].abs().max() < 1e-5
    image.band_limit = None
    full = torch.fft.rfft2(image.spatial().detach(), norm="ortho").abs()
    assert full[..., radius >= 5 / 28 - 1e-6].max() > 1e-3  # all frequencies back


def test_render_icons_coarse_to_fine_raises_the_objective_and_is_refused_without_maco():
    shape = (1, 28, 28)
    net, dirs = _net_and_directions(shape)
    stats = image_statistics(_digit_like_images(), 28)
    result = render_icons(net.features, dirs, input_shape=shape, normalize=_normalize, steps=100, lr=0.2,
                          objective="true_cosine", parameterization="maco", image_statistics=stats,
                          coarse_to_fine=0.5)
    assert (result.objective > result.initial_objective).all(), (result.initial_objective, result.objective)
    with pytest.raises(ValueError, match="coarse_to_fine=0.5 needs parameterization='maco'"):
        render_icons(net.features, dirs, input_shape=shape, steps=2, coarse_to_fine=0.5)
    for bad in (-0.1, 1.5, True):
        with pytest.raises(ValueError, match="coarse_to_fine must be a share of the steps in \\[0, 1\\]"):
            AtlasSettings(coarse_to_fine=bad)
    with pytest.raises(ValueError, match="needs parameterization='maco'"):
        AtlasSettings.from_preset("lucid_notebook", coarse_to_fine=0.25)
    with pytest.raises(ValueError, match="--coarse_to_fine must be a share of the steps"):
        atlas(steps=8, neurons=0, coarse_to_fine=2.0)
    assert AtlasSettings.from_preset().coarse_to_fine == 0.5  # the default preset's schedule
    assert AtlasSettings.from_preset(parameterization="fft").coarse_to_fine == 0.0  # dropped with its MACO image


# -- rendering ------------------------------------------------------------------------------------


def _net_and_directions(shape, count=5, seed=0):
    torch.manual_seed(seed)
    net = ConvNet(shape, 10, width=8, conv_channels=4)
    with torch.no_grad():
        acts = net.features(torch.rand(8 * count, *shape))
    return net, acts.view(count, 8, -1).mean(1)


def _normalize(x):
    return (x - 0.5) / 0.25


@pytest.mark.parametrize(
    "shape, pad_value, mode",
    [((1, 28, 28), 0.0, "lucid_notebook"), ((3, 32, 32), 1.0, "lucid_notebook"), ((1, 28, 28), 0.0, "dot"),
     ((1, 28, 28), 0.0, "cosine")],
)
def test_render_raises_every_objective(shape, pad_value, mode):
    net, dirs = _net_and_directions(shape)
    calls = []
    result = render_icons(
        net.features, dirs, input_shape=shape, normalize=_normalize, pad_value=pad_value, steps=30,
        objective=mode, progress=lambda step, total, loss: calls.append((step, total)),
    )
    assert result.icons.shape == (5, shape[0], shape[1], shape[2])
    assert result.icons.min() >= 0 and result.icons.max() <= 1
    assert result.objective.shape == result.cosine.shape == result.last_step_objective.shape == (5,)
    assert (result.objective > result.initial_objective).all(), (result.initial_objective, result.objective)
    assert calls[-1] == (30, 30) and len(calls) == 30
    # The reported objective is the un-transformed evaluation of the returned icons.
    with torch.no_grad():
        obj, cos = objective_terms(net.features(_normalize(result.icons)), dirs, mode)
    torch.testing.assert_close(result.objective, obj)
    torch.testing.assert_close(result.cosine, cos)


def test_render_with_other_icon_size_and_mlp():
    shape = (1, 28, 28)
    torch.manual_seed(0)
    net = MLP(shape, 10, depth=1, width=16)
    dirs = torch.rand(3, 16)
    result = render_icons(net.features, dirs, input_shape=shape, icon_size=40, steps=3)
    assert result.icons.shape == (3, 1, 40, 40) and result.icon_size == 40
    assert result.transforms[0] == "Pad(1, value=0)" and result.transforms[-1] == "Resize(28, 28)"


def test_model_is_frozen_and_restored():
    net, dirs = _net_and_directions((1, 28, 28), count=3)
    net.train()
    net.features[0].weight.requires_grad_(True)
    net.features[2].weight.requires_grad_(False)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    seen_modes = []
    net.features.register_forward_pre_hook(lambda module, args: seen_modes.append(module.training))
    render_icons(net.features, dirs, input_shape=(1, 28, 28), steps=5)
    assert seen_modes and not any(seen_modes)  # eval mode while rendering
    for key, value in net.state_dict().items():
        assert torch.equal(value, before[key]), key
    assert all(p.grad is None for p in net.parameters())
    assert all(m.training for m in net.modules())
    assert net.features[0].weight.requires_grad and not net.features[2].weight.requires_grad


def test_bound_method_owner_is_frozen():
    class Task(nn.Module):
        def __init__(self):
            super().__init__()
            self.net = ConvNet((1, 28, 28), 10, width=8, conv_channels=4)

        def features(self, x):
            assert not self.training and not any(p.requires_grad for p in self.parameters())
            return self.net.features(x)

    task = Task()
    render_icons(task.features, torch.rand(2, 8), input_shape=(1, 28, 28), steps=2)
    assert task.training and all(p.requires_grad for p in task.parameters())


def test_same_seed_same_icons_and_chunking_is_transparent():
    net, dirs = _net_and_directions((1, 28, 28), count=4)
    kwargs = dict(input_shape=(1, 28, 28), normalize=_normalize, steps=15)
    first = render_icons(net.features, dirs, seed=3, **kwargs)
    again = render_icons(net.features, dirs, seed=3, **kwargs)
    assert torch.equal(first.icons, again.icons) and torch.equal(first.objective, again.objective)
    other = render_icons(net.features, dirs, seed=4, **kwargs)
    assert not torch.equal(first.icons, other.icons)
    chunked = render_icons(net.features, dirs, seed=3, batch_size=3, **kwargs)
    torch.testing.assert_close(chunked.icons, first.icons, atol=1e-4, rtol=0)


def test_render_inputs_from_datamodule():
    class FakeDataModule:
        input_shape = (3, 32, 32)
        pad_value = 1.0

        def normalize(self, x):
            return x * 2 - 1

    kwargs = render_inputs(FakeDataModule())
    assert kwargs["input_shape"] == (3, 32, 32) and kwargs["pad_value"] == 1.0
    assert kwargs["normalize"](torch.ones(1)).item() == 1.0


@pytest.mark.parametrize(
    "directions, kwargs, message",
    [
        (torch.rand(8), {}, "2-D"),
        (torch.rand(2, 8, 1), {}, "2-D"),
        (torch.rand(2, 9), {}, "direction width 9 != feature width 8"),
        (torch.tensor([[0.0] * 7 + [math.nan]]), {}, "NaN or inf"),
        (torch.tensor([[math.inf] + [0.0] * 7]), {}, "NaN or inf"),
        (torch.rand(2, 8), {"steps": 0}, "steps"),
        (torch.rand(2, 8), {"icon_size": 5}, "icon_size=5 is too small"),
        (torch.rand(2, 8), {"objective": "cos"}, "objective must be one of"),
        (torch.rand(2, 8), {"batch_size": 0}, "batch_size"),
        (torch.rand(2, 8), {"lr": 0.0}, "lr must be positive"),
        (torch.rand(0, 8), {}, "empty"),
    ],
)
def test_bad_inputs(directions, kwargs, message):
    net = ConvNet((1, 28, 28), 10, width=8, conv_channels=4)
    with pytest.raises(ValueError, match=message):
        render_icons(net.features, directions, input_shape=(1, 28, 28), **{"steps": 2, **kwargs})


def test_min_icon_size_is_accepted():
    size = min_icon_size()
    net = ConvNet((1, 28, 28), 10, width=8, conv_channels=4)
    result = render_icons(net.features, torch.rand(1, 8), input_shape=(1, 28, 28), icon_size=size, steps=1)
    assert result.icons.shape[-1] == size
    with pytest.raises(ValueError, match=f"use icon_size >= {size}"):
        render_icons(net.features, torch.rand(1, 8), input_shape=(1, 28, 28), icon_size=size - 1, steps=1)


# -- individual neurons ---------------------------------------------------------------------------


def test_neuron_directions():
    indices, onehot = neuron_directions(50, 6, seed=1)
    assert indices.shape == (6,) and onehot.shape == (6, 50)
    assert len(set(indices.tolist())) == 6 and indices.tolist() == sorted(indices.tolist())
    assert torch.equal(onehot.argmax(1), indices) and torch.equal(onehot.sum(1), torch.ones(6))
    again, _ = neuron_directions(50, 6, seed=1)
    assert torch.equal(indices, again)
    assert not torch.equal(indices, neuron_directions(50, 6, seed=2)[0])
    assert neuron_directions(4, 4)[0].tolist() == [0, 1, 2, 3]
    with pytest.raises(ValueError, match="distinct"):
        neuron_directions(4, 5)
    with pytest.raises(ValueError, match="count"):
        neuron_directions(4, 0)

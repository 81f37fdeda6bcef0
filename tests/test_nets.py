import math

import pytest
import torch

from wide_lightning.nets import MLP, ConvNet, PixelLinear, constant_parameter_width, parameter_count


def test_constant_parameter_width_matches_the_paper():
    assert constant_parameter_width(1) == 2000
    assert constant_parameter_width(20) == 271  # the paper's text says "about 250"; its formula gives 271
    widths = [constant_parameter_width(depth) for depth in range(1, 21)]
    assert widths == sorted(widths, reverse=True)


def test_constant_parameter_width_solves_the_budget_equation():
    # (L-1) n^2 + (L + n0 + n_out) n = (n0 + n_out + 1) n_max, at the unrounded root
    depth, n0, n_out, n_max = 5, 784, 28, 2000
    a = depth + n0 + n_out
    n = (-a + math.sqrt(a * a + 4 * (depth - 1) * (n0 + n_out + 1) * n_max)) / (2 * (depth - 1))
    assert (depth - 1) * n * n + a * n == pytest.approx((n0 + n_out + 1) * n_max)
    assert constant_parameter_width(depth, n0, n_out, n_max) == round(n)


def test_mlp_parameter_count_stays_within_one_percent_across_depths():
    counts = [parameter_count(MLP((1, 28, 28), 28, depth)) for depth in range(1, 21)]
    reference = counts[0]
    assert reference == 784 * 2000 + 2000 + 2000 * 28 + 28
    assert max(abs(c - reference) / reference for c in counts) < 0.01


def test_mlp_shapes_and_layers():
    net = MLP((1, 28, 28), 28, depth=3, width=64)
    x = torch.rand(5, 1, 28, 28)
    assert net.features(x).shape == (5, 64)
    assert net(x).shape == (5, 28)
    linears = [m for m in net.modules() if isinstance(m, torch.nn.Linear)]
    assert len(linears) == 4 and linears[-1] is net.head
    assert parameter_count(net) == 784 * 64 + 64 + 2 * (64 * 64 + 64) + 64 * 28 + 28
    assert MLP((1, 28, 28), 28, depth=20).width == 271


@pytest.mark.parametrize("shape", [(1, 28, 28), (3, 32, 32)])
def test_conv_net_shapes_and_parameter_count(shape):
    c, h, w = shape
    net = ConvNet(shape, 10, width=20, conv_channels=8)
    x = torch.rand(4, *shape)
    assert net.features(x).shape == (4, 20)
    assert net(x).shape == (4, 10)
    torch.testing.assert_close(net(x), net.head(net.features(x)))
    convs = (c * 8 * 9 + 8) + 3 * (8 * 8 * 9 + 8)
    fc = 8 * (h // 4) * (w // 4) * 20 + 20
    assert parameter_count(net) == convs + fc + 20 * 10 + 10


def test_conv_channels_can_scale_with_width():
    net = ConvNet((3, 32, 32), 10, width=16, conv_channels="width")
    assert net.conv_channels == 16
    assert net.features[0].out_channels == 16


def test_features_are_post_relu():
    net = ConvNet((1, 28, 28), 10, width=32, conv_channels=4)
    assert (net.features(torch.randn(8, 1, 28, 28)) >= 0).all()
    assert isinstance(net.features[-1], torch.nn.ReLU)


def test_initialization_statistics():
    torch.manual_seed(0)
    net = MLP((1, 28, 28), 10, depth=2, width=1000)
    first, second = net.features[1], net.features[3]
    for layer, fan_in in ((first, 784), (second, 1000)):
        assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / fan_in), rel=0.02)
        assert layer.weight.mean().item() == pytest.approx(0.0, abs=3 * math.sqrt(2 / fan_in) / 500)
        assert torch.count_nonzero(layer.bias) == 0
    assert net.head.weight.std().item() == pytest.approx(math.sqrt(1 / 1000), rel=0.05)
    assert torch.count_nonzero(net.head.bias) == 0
    conv = ConvNet((1, 28, 28), 10, width=64, conv_channels=64)
    layer = conv.features[2]  # fan_in = 64 * 3 * 3
    assert layer.weight.std().item() == pytest.approx(math.sqrt(2 / (64 * 9)), rel=0.02)


def test_pixel_linear_is_a_linear_map_of_the_pixels():
    net = PixelLinear((1, 28, 28), 10)
    assert parameter_count(net) == 784 * 10 + 10
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(net(x), x.flatten(1) @ net.head.weight.T + net.head.bias)


@pytest.mark.parametrize(
    "build, message",
    [
        (lambda: ConvNet((1, 28, 28), 10, width=0), "width must be a positive integer, got 0"),
        (lambda: ConvNet((1, 28, 28), 10, width=8, conv_channels=-1), "conv_channels must be a positive integer"),
        (lambda: ConvNet((1, 3, 3), 10, width=8), "at least 4x4 pixels"),
        (lambda: ConvNet((28, 28), 10, width=8), "input_shape must be (channels, height, width)"),
        (lambda: MLP((1, 28, 28), 10, depth=0), "depth must be a positive integer, got 0"),
        (lambda: MLP((1, 28, 28), 10, depth=2, width=2.5), "width must be a positive integer, got 2.5"),
        (lambda: constant_parameter_width(0), "depth must be a positive number of hidden layers, got 0"),
    ],
)
def test_impossible_sizes_are_clear_errors(build, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)")):
        build()

"""The paper's networks (Appendix B.2, B.3.1), free of Lightning.

Every network exposes ``features`` (input -> penultimate activations, post-ReLU) and ``head``
(the last linear layer), so ``net(x) == net.head(net.features(x))``. Atlases read ``features``;
linear probes freeze it and replace ``head``.
"""

from __future__ import annotations

import math
from typing import Literal, Sequence

import torch
from torch import nn

InputShape = Sequence[int]


def constant_parameter_width(depth: int, n_in: int = 784, n_out: int = 28, n_max: int = 2000) -> int:
    """Width ``n(L)`` of an ``L``-hidden-layer MLP with about as many parameters as ``L = 1`` at ``n_max``.

    Appendix B.3.1: ``n = (-(L + n0 + n_out) + sqrt((L + n0 + n_out)^2 + 4 (L-1) (n0 + n_out + 1) n_max))
    / (2 (L-1))``, the positive root of ``(L-1) n^2 + (L + n0 + n_out) n = (n0 + n_out + 1) n_max``
    (weights plus biases, the output bias cancelling). ``L = 1`` is the limit ``n_max``. The result is
    rounded to the nearest integer: ``n(20) = 271`` with the paper's sizes, where the paper's text
    says "about 250".
    """
    if depth < 1:
        raise ValueError(f"depth must be a positive number of hidden layers, got {depth}.")
    if min(n_in, n_out, n_max) < 1:
        raise ValueError(f"n_in, n_out and n_max must be positive, got {n_in}, {n_out}, {n_max}.")
    if depth == 1:
        return n_max
    a = depth + n_in + n_out
    root = math.sqrt(a * a + 4 * (depth - 1) * (n_in + n_out + 1) * n_max)
    return max(1, round((-a + root) / (2 * (depth - 1))))


def init_paper_(net: nn.Module, head: nn.Linear) -> None:
    """Appendix B.2: weights N(0, 2/fan_in) in every layer but the last, N(0, 1/fan_in) in ``head``; biases 0."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            gain = 1.0 if module is head else 2.0
            fan_in = module.weight[0].numel()  # in_features, or in_channels * kernel area
            nn.init.normal_(module.weight, mean=0.0, std=math.sqrt(gain / fan_in))
            if module.bias is not None:
                nn.init.zeros_(module.bias)


def init_head_(head: nn.Linear) -> None:
    """The paper's last-layer initialization, for a fresh probe head."""
    nn.init.normal_(head.weight, mean=0.0, std=math.sqrt(1.0 / head.in_features))
    nn.init.zeros_(head.bias)


def _check_input_shape(input_shape: InputShape) -> tuple[int, int, int]:
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width) with positive sizes, got {input_shape}.")
    return shape  # type: ignore[return-value]


def _check_width(width: int, what: str = "width") -> int:
    if isinstance(width, bool) or not isinstance(width, int) or width < 1:
        raise ValueError(f"{what} must be a positive integer, got {width!r}.")
    return width


class ConvNet(nn.Module):
    """Two blocks of [conv3x3, ReLU, conv3x3, ReLU, maxpool 2], a hidden FC layer of ``width`` with ReLU, a linear head.

    ``conv_channels`` is the filter count of every conv layer; ``"width"`` makes it equal to ``width``
    (the paper scales the filters linearly with n on CIFAR-10, and Appendix A.1 describes a net whose
    "width of all layers" is one number). Convs are padded to keep the spatial size (the paper is silent).
    """

    def __init__(
        self,
        input_shape: InputShape,
        num_classes: int,
        width: int,
        conv_channels: int | Literal["width"] = 32,
    ) -> None:
        super().__init__()
        channels, height, w = _check_input_shape(input_shape)
        _check_width(width)
        _check_width(num_classes, "num_classes")
        filters = width if conv_channels == "width" else _check_width(conv_channels, "conv_channels")
        if height < 4 or w < 4:
            raise ValueError(f"the conv net pools twice by 2, so inputs need at least 4x4 pixels, got {height}x{w}.")
        self.input_shape = (channels, height, w)
        self.width = width
        self.conv_channels = filters
        self.features = nn.Sequential(
            nn.Conv2d(channels, filters, 3, padding=1), nn.ReLU(),
            nn.Conv2d(filters, filters, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(filters, filters, 3, padding=1), nn.ReLU(),
            nn.Conv2d(filters, filters, 3, padding=1), nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(filters * (height // 4) * (w // 4), width), nn.ReLU(),
        )
        self.head = nn.Linear(width, num_classes)
        init_paper_(self, self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units with ReLU, then a linear head (Section 5.1).

    With ``width=None`` the width is ``constant_parameter_width(depth, ...)`` so that the parameter
    count stays near that of one hidden layer of ``n_max`` units.
    """

    def __init__(
        self,
        input_shape: InputShape,
        num_classes: int,
        depth: int,
        width: int | None = None,
        n_max: int = 2000,
    ) -> None:
        super().__init__()
        shape = _check_input_shape(input_shape)
        _check_width(depth, "depth")
        _check_width(num_classes, "num_classes")
        n_in = math.prod(shape)
        if width is None:
            width = constant_parameter_width(depth, n_in, num_classes, n_max)
        _check_width(width)
        self.input_shape = shape
        self.depth = depth
        self.width = width
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = n_in
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(width, num_classes)
        init_paper_(self, self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class PixelLinear(nn.Module):
    """A linear classifier on the raw pixels: the dashed baseline of Figure 4 (features = flattened input)."""

    def __init__(self, input_shape: InputShape, num_classes: int) -> None:
        super().__init__()
        shape = _check_input_shape(input_shape)
        _check_width(num_classes, "num_classes")
        self.input_shape = shape
        self.width = math.prod(shape)
        self.features = nn.Flatten()
        self.head = nn.Linear(self.width, num_classes)
        init_head_(self.head)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

"""The paper's networks (Appendix B.2, B.3.1), free of Lightning.

Every network exposes ``features`` (input -> penultimate activations, post-ReLU) and ``head``
(the last linear layer), so ``net(x) == net.head(net.features(x))``. Atlases read ``features``;
linear probes freeze it and replace ``head``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Sequence

import torch
from torch import nn

from wide_lightning.parameterization import (
    MUP_BASE_WIDTH,
    check_mup_base_width,
    check_parameterization,
    head_layer,
    init_ntk_,
    set_mup_base_shapes_,
)

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


def initialize_(net: nn.Module, parameterization: str, mup_base_width: int, at_width: Any) -> None:
    """The paper's initialization of ``net`` in its ``parameterization``; ``at_width(n)``: the same network at width n."""
    if parameterization == "ntk":
        init_ntk_(net, net.head)
        return
    init_paper_(net, net.head)
    if parameterization == "mup":
        set_mup_base_shapes_(net, at_width, mup_base_width)


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
    ``parameterization`` (``wide_lightning.parameterization``) says how the weights scale with
    ``width`` (and with the filters where they are ``"width"``).
    """

    def __init__(
        self,
        input_shape: InputShape,
        num_classes: int,
        width: int,
        conv_channels: int | Literal["width"] = 32,
        parameterization: str = "standard",
        mup_base_width: int = MUP_BASE_WIDTH,
    ) -> None:
        super().__init__()
        channels, height, w = _check_input_shape(input_shape)
        _check_width(width)
        self.parameterization = check_parameterization(parameterization)
        if parameterization == "mup":
            check_mup_base_width(width, mup_base_width)
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
        self.head = head_layer(width, num_classes, parameterization)
        initialize_(self, parameterization, mup_base_width, lambda n: ConvNet(
            input_shape, num_classes, n, n if conv_channels == "width" else conv_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


class MLP(nn.Module):
    """``depth`` hidden layers of ``width`` units with ReLU, then a linear head (Section 5.1).

    With ``width=None`` the width is ``constant_parameter_width(depth, ...)`` so that the parameter
    count stays near that of one hidden layer of ``n_max`` units. ``parameterization``
    (``wide_lightning.parameterization``) scales every hidden layer with ``width``.
    """

    def __init__(
        self,
        input_shape: InputShape,
        num_classes: int,
        depth: int,
        width: int | None = None,
        n_max: int = 2000,
        parameterization: str = "standard",
        mup_base_width: int = MUP_BASE_WIDTH,
    ) -> None:
        super().__init__()
        shape = _check_input_shape(input_shape)
        self.parameterization = check_parameterization(parameterization)
        _check_width(depth, "depth")
        _check_width(num_classes, "num_classes")
        n_in = math.prod(shape)
        if width is None:
            width = constant_parameter_width(depth, n_in, num_classes, n_max)
        _check_width(width)
        if parameterization == "mup":
            check_mup_base_width(width, mup_base_width)
        self.input_shape = shape
        self.depth = depth
        self.width = width
        layers: list[nn.Module] = [nn.Flatten()]
        fan_in = n_in
        for _ in range(depth):
            layers += [nn.Linear(fan_in, width), nn.ReLU()]
            fan_in = width
        self.features = nn.Sequential(*layers)
        self.head = head_layer(width, num_classes, parameterization)
        initialize_(self, parameterization, mup_base_width, lambda n: MLP(input_shape, num_classes, depth, n))

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


def _first_conv(network: nn.Module) -> tuple[str, nn.Conv2d] | None:
    """The path and module of the first ``nn.Conv2d`` of ``network``: the layer that reads the image."""
    return next(((path, m) for path, m in network.named_modules() if isinstance(m, nn.Conv2d)), None)


def _set_submodule(network: nn.Module, path: str, module: nn.Module) -> None:
    parent, _, attribute = path.rpartition(".")
    setattr(network.get_submodule(parent) if parent else network, attribute, module)


def grey_conv(conv: nn.Conv2d) -> nn.Conv2d:
    """``conv`` for 1-channel images: its filters summed over the input channels.

    On a grey image this computes exactly what ``conv`` computes on that image repeated over its
    channels (the usual way to give an ImageNet network grey data; timm's ``adapt_input_conv`` too),
    while the network, its atlas icons and its probes stay in the data's own 1-channel space.
    """
    grey = nn.Conv2d(1, conv.out_channels, conv.kernel_size, conv.stride, conv.padding, conv.dilation,
                     bias=conv.bias is not None, padding_mode=conv.padding_mode)
    with torch.no_grad():
        grey.weight.copy_(conv.weight.sum(dim=1, keepdim=True))
        if conv.bias is not None:
            grey.bias.copy_(conv.bias)
    return grey


class TorchvisionNet(nn.Module):
    """A torchvision classification architecture in our form: ``features`` up to its last linear layer, a new ``head``.

    The last ``nn.Linear`` of the torchvision model (ResNet's ``fc``, VGG's ``classifier.6``, ViT's
    ``heads.head``) is replaced by a fresh head of ``num_classes``; its input is the penultimate layer
    that atlases and probes read by default (``width`` units; ResNet-18: 512 pooled, post-ReLU).
    For grey data, the first convolution's filters are summed over its colour channels (``grey_conv``).

    Args:
        name: a function of ``torchvision.models`` (``resnet18``, ``mobilenet_v3_small``...).
        weights: a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``; downloaded once into
            ``$TORCH_HOME``), or ``None`` for a random initialization.
    """

    def __init__(self, name: str, input_shape: InputShape, num_classes: int, weights: str | None = None,
                 parameterization: str = "standard") -> None:
        super().__init__()
        import torchvision

        if check_parameterization(parameterization) != "standard":
            raise ValueError(f"parameterization {parameterization!r} is offered for the paper's ConvNet and MLP, whose "
                             f"widths it scales; a torchvision model trains in its standard parameterization "
                             f"(leave parameterization out, or train ConvClassifier / MLPClassifier).")
        self.parameterization = parameterization
        shape = _check_input_shape(input_shape)
        _check_width(num_classes, "num_classes")
        models = torchvision.models.list_models(module=torchvision.models)
        if name not in models:
            raise ValueError(f"network {name!r} is not a classification model of torchvision.models; "
                             f"expected one of {', '.join(sorted(models))}.")
        body = torchvision.models.get_model(name, weights=weights)
        linears = [path for path, module in body.named_modules() if isinstance(module, nn.Linear)]
        if not linears:
            raise ValueError(f"torchvision.models.{name} has no final nn.Linear to replace by a head of "
                             f"{num_classes} classes; choose a model that ends in one (resnet18, vgg11, vit_b_16...).")
        last = body.get_submodule(linears[-1])
        _set_submodule(body, linears[-1], nn.Identity())
        first = _first_conv(body)
        if first is not None and first[1].in_channels != shape[0]:
            if shape[0] != 1 or first[1].groups != 1:
                raise ValueError(f"torchvision.models.{name} reads {first[1].in_channels}-channel images, the data "
                                 f"have {shape[0]} channels; only grey (1-channel) data are adapted.")
            _set_submodule(body, first[0], grey_conv(first[1]))
        self.input_shape = shape
        self.width = int(last.in_features)
        self.features = body
        self.head = nn.Linear(self.width, num_classes)
        init_head_(self.head)
        try:  # one sentence now, not a shape error deep inside the first training step
            with torch.no_grad():
                out = self.features.eval()(torch.zeros(2, *shape))
        except (RuntimeError, AssertionError, ValueError) as error:  # torchvision asserts some sizes (ViT)
            raise ValueError(f"torchvision.models.{name} cannot read inputs of shape {shape}: "
                             f"{str(error).splitlines()[0].rstrip('.!')}. Resize the data (e.g. ImageFolder's size).") from None
        finally:
            self.features.train()
        if out.shape[1:] != (self.width,):
            raise ValueError(f"torchvision.models.{name} gives features of shape {tuple(out.shape[1:])} before its "
                             f"last linear layer, expected ({self.width},).")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


def parameter_count(module: nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())

"""How a network's weights scale with its width: ``standard``, ``ntk`` or ``mup``.

- ``standard``: the paper's networks (Appendix B.2): weights N(0, gain/fan_in), gain 2 below the
  head and 1 in it, one learning rate for all.
- ``ntk`` (Jacot, Gabriel and Hongler 2018): weights N(0, 1), each layer's output scaled by
  sqrt(gain / fan_in) in the forward pass (the same gains). The function at initialization is the
  standard network's; the gradient of a weight is sqrt(gain / fan_in) times the standard one's, so
  with one learning rate the wide layers learn less the wider they are: the lazy regime. Written
  here as a ``torch.nn.utils.parametrize`` scale of each weight, as no maintained package does it.
  Biases start at 0 and are not scaled (the paper's biases; Jacot et al. scale theirs by a beta).
- ``mup`` (Yang and Hu 2021, "Feature learning in infinite-width neural networks"), through
  Microsoft's ``mup`` package, the reference implementation: a ``MuReadout`` head, ``set_base_shapes``
  against the same network at ``base_width`` (and twice it, to say which dimensions are widths), the
  paper's initialization rescaled by ``mup`` and ``MuSGD``. At the base width a ``mup`` network is the
  standard one, so a learning rate tuned there is the one every width takes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable

import torch
from torch import nn
from torch.nn.utils import parametrize

PARAMETERIZATIONS = ("standard", "ntk", "mup")

#: The width μP's base shapes are taken at: the narrowest width of the lazy-limit scans (64), where
#: its learning rate is tuned, so that every width of a scan is at least the base.
MUP_BASE_WIDTH = 64


def check_parameterization(value: Any) -> str:
    if value not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be 'standard', 'ntk' or 'mup', got {value!r}.")
    return value


def check_mup_base_width(width: int, base_width: Any, what: str = "width") -> int:
    """μP scales a network relative to its base width; a narrower network is outside what it describes."""
    if isinstance(base_width, bool) or not isinstance(base_width, int) or base_width < 1:
        raise ValueError(f"mup_base_width must be a positive integer, got {base_width!r}.")
    if width < base_width:
        raise ValueError(f"{what} {width} is below the μP base width {base_width}: μP scales a network up from its "
                         f"base; train this width with --model.init_args.mup_base_width={width} (or less), or wider.")
    return base_width


def head_layer(width: int, num_classes: int, parameterization: str) -> nn.Linear:
    """The last layer: μP's ``MuReadout`` (its output divided by the width multiplier), else ``nn.Linear``."""
    if parameterization == "mup":
        from mup import MuReadout

        return MuReadout(width, num_classes)
    return nn.Linear(width, num_classes)


class OutputScale(nn.Module):
    """A weight parametrization: the weight used in the forward pass is ``scale`` times the stored one."""

    def __init__(self, scale: float) -> None:
        super().__init__()
        self.scale = scale

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight * self.scale


def layer_gains(net: nn.Module, head: nn.Module) -> Iterable[tuple[nn.Module, float]]:
    """Every linear and conv layer of ``net`` with the gain of the paper's initialization (1 in the head, else 2)."""
    for module in net.modules():
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            yield module, 1.0 if module is head else 2.0


def fan_in(module: nn.Module) -> int:
    return module.weight[0].numel()  # in_features, or in_channels * kernel area


def init_ntk_(net: nn.Module, head: nn.Module) -> None:
    """Weights N(0, 1) scaled by sqrt(gain / fan_in) in the forward pass; biases 0.

    The draws come in the order (and from the stream) of the paper's initialization, so an ``ntk``
    network's effective weights are the ``standard`` network of the same seed.
    """
    for module, gain in list(layer_gains(net, head)):
        nn.init.normal_(module.weight)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
        parametrize.register_parametrization(module, "weight", OutputScale(math.sqrt(gain / fan_in(module))))


def set_mup_base_shapes_(net: nn.Module, build: Callable[[int], nn.Module], base_width: int) -> None:
    """Give ``net``'s parameters their μP shapes against ``build(base_width)`` and ``build(2 * base_width)``.

    ``build(width)`` makes the same network at another width (built on the meta device: no memory, no
    random draws). The shapes live on the parameters (``p.infshape``), not in a state dict, so a μP
    network is always rebuilt by its constructor and its weights loaded into it, never unpickled.
    """
    from mup import set_base_shapes

    with torch.device("meta"):
        base, delta = build(base_width), build(2 * base_width)
    set_base_shapes(net, base, delta=delta)


def is_mup(module: nn.Module) -> bool:
    return any(hasattr(p, "infshape") for p in module.parameters())


def make_sgd(parameters: list[nn.Parameter], parameterization: str, lr: float, momentum: float) -> torch.optim.Optimizer:
    """SGD with momentum; under μP ``MuSGD``, which scales each parameter's learning rate by its shape."""
    if parameterization == "mup" and any(hasattr(p, "infshape") for p in parameters):
        from mup import MuSGD

        return MuSGD(parameters, lr=lr, momentum=momentum)
    return torch.optim.SGD(parameters, lr=lr, momentum=momentum)

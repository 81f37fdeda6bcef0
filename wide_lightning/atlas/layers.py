"""Which layer an atlas reads: a callable from the network's normalized input to that layer's activations."""

from __future__ import annotations

from typing import Callable

import torch
from torch import nn


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

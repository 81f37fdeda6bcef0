"""Which layer an atlas (or a probe) reads: any module of any network, named by its module path.

``layer_reader(model, "net.features.9")`` is a callable ``normalized input -> [B, D]`` that runs
``model`` until the named module has produced its output (a forward hook catches it and stops the
pass, so the layers after it cost nothing), then turns that output into one vector per input:

* a vector layer ``[B, D]`` (our networks' penultimate layer) is taken as it is;
* a convolutional layer ``[B, C, H, W]`` gives one position per input, by ``position``:

  - ``random`` (default): when collecting, one random position per input, as the paper's footnote 1
    says ("a spatial location is also chosen at random for each input") and lucid did, edges
    avoided (lucid's ``randint(1, shape)``). The position is a hash of ``(seed, example index)``, so it
    does not depend on the batch size or on the DDP rank that reads the example. When rendering
    (no indices), the centre position, lucid's rendering objective ``layer[b, H//2, W//2]``;
  - ``centre``: the centre position, when collecting and when rendering;
  - ``mean``: the spatial average, when collecting and when rendering;
  - ``flatten``: every position, ``C*H*W`` values (what a linear probe may read; an atlas of it lays out
    whole maps);

* any other shape is flattened per input.

``model`` is anything: our LightningModules (whose network is ``.net``), someone else's
LightningModule, a torchvision model. Two names are kept for our networks: ``features`` (the
penultimate layer, post-ReLU, what the paper studies) and ``input`` (the pixels, Appendix A.2).
"""

from __future__ import annotations

from typing import Callable, Literal

import torch
from torch import nn

Position = Literal["random", "centre", "mean", "flatten"]
POSITIONS: tuple[str, ...] = ("random", "centre", "mean", "flatten")


class LayerNotFoundError(ValueError):
    """A layer name that the network does not have; the message lists the ones it has."""


def _natural(name: str) -> list:
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in name.split(".")]


def module_names(model: nn.Module) -> list[str]:
    """Every named submodule of ``model``, in natural order (``features.2`` before ``features.10``)."""
    return sorted((name for name, _ in model.named_modules() if name), key=_natural)


def find_module(model: nn.Module, path: str) -> tuple[str, nn.Module]:
    """``(full path, module)`` of ``path`` in ``model``. For our tasks a path inside the network also works
    (``features.3`` is ``net.features.3``). An unknown path raises :class:`LayerNotFoundError` listing
    the layers there are."""
    modules = dict(model.named_modules())
    for candidate in (path, f"net.{path}"):
        if candidate and candidate in modules:
            return candidate, modules[candidate]
    names = module_names(model)
    shown = names if len(names) <= 60 else names[:60] + [f"... ({len(names) - 60} more)"]
    special = "'features' (the penultimate layer), 'input' (the pixels) or " if _penultimate(model) is not None else ""
    raise LayerNotFoundError(f"layer {path!r} does not exist in {type(model).__name__}; choose {special}one of {shown}.")


def _our_network(model: nn.Module) -> nn.Module | None:
    """The network with our ``features`` and ``head`` (``model.net`` of a task, or ``model`` itself), else ``None``."""
    for owner in (getattr(model, "net", None), model):
        if isinstance(getattr(owner, "features", None), nn.Module) and isinstance(getattr(owner, "head", None), nn.Module):
            return owner
    return None


def _penultimate(model: nn.Module) -> nn.Module | None:
    """Our networks' ``features`` module (``model.net.features`` of a task, ``model.features`` of a network)."""
    network = _our_network(model)
    return None if network is None else network.features


def example_positions(indices: torch.Tensor, height: int, width: int, seed: int = 0) -> torch.Tensor:
    """The random position of each example: a flat index into ``height x width``, a hash of ``(seed, index)``.

    Edges are avoided when the map has an inside (rows and columns ``1 .. size-2``), as lucid did.
    """
    rows = torch.arange(height) if height < 3 else torch.arange(1, height - 1)
    cols = torch.arange(width) if width < 3 else torch.arange(1, width - 1)
    h = indices.detach().to("cpu", torch.int64) % 2_147_483_647
    # two rounds of a multiplicative hash, every product below 2**62 so int64 never overflows
    h = (h * 1_103_515_245 + (int(seed) % 2_147_483_647) * 12_345 + 1) % 2_147_483_647
    h = h ^ (h >> 13)
    h = (h * 1_664_525 + 1_013_904_223) % 2_147_483_647
    h = h ^ (h >> 16)
    choice = h % (len(rows) * len(cols))
    return rows[choice // len(cols)] * width + cols[choice % len(cols)]


class _Captured(Exception):
    """Raised by the hook once the layer's output is in hand: the rest of the forward pass is skipped."""


class LayerActivations(nn.Module):
    """``model``'s activations at the module ``layer``, one vector per input (see the module's docstring).

    Call it with the inputs, and with the examples' dataset ``indices`` when collecting, so that
    ``position="random"`` can draw each example's position; without indices it reads the rendering
    position (the centre, or the mean for ``position="mean"``).
    """

    #: ``collect_activations`` passes the dataset indices of each batch to readers that say this.
    reads_positions = True

    def __init__(self, model: nn.Module, layer: str, position: Position = "random", seed: int = 0) -> None:
        super().__init__()
        if position not in POSITIONS:
            raise ValueError(f"position must be one of {list(POSITIONS)}, got {position!r}.")
        self.layer, self.module = find_module(model, layer)
        self.model = model
        self.position = position
        self.seed = int(seed)

    def forward(self, x: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        captured: list[torch.Tensor] = []

        def hook(_module: nn.Module, _inputs: object, output: object) -> None:
            if isinstance(output, (tuple, list)):
                output = next((o for o in output if isinstance(o, torch.Tensor)), None)
            if not isinstance(output, torch.Tensor):
                raise TypeError(f"layer {self.layer!r} returns {type(output).__name__}, not a tensor; name another layer.")
            captured.append(output)
            raise _Captured

        handle = self.module.register_forward_hook(hook)
        try:
            self.model(x)
        except _Captured:
            pass
        finally:
            handle.remove()
        if not captured:
            raise RuntimeError(f"layer {self.layer!r} was not called by {type(self.model).__name__}'s forward pass; "
                               f"name a layer that the forward pass uses.")
        return self.vectors(captured[0], indices)

    def vectors(self, out: torch.Tensor, indices: torch.Tensor | None = None) -> torch.Tensor:
        """One vector per input from the layer's output ``out``, by ``position``."""
        if out.ndim != 4:
            return out.flatten(1)
        batch, channels, height, width = out.shape
        if self.position == "mean":
            return out.mean(dim=(2, 3))
        if self.position == "flatten":
            return out.flatten(1)
        if self.position == "random" and indices is not None:
            flat = example_positions(indices, height, width, self.seed).to(out.device)
            return out.flatten(2).gather(2, flat.view(batch, 1, 1).expand(batch, channels, 1)).squeeze(2)
        return out[:, :, height // 2, width // 2]


def layer_reader(model: nn.Module, layer: str = "features", position: Position = "random",
                 seed: int = 0) -> Callable[..., torch.Tensor]:
    """A callable: normalized input -> activations ``[B, D]`` of ``layer`` in ``model`` (any ``nn.Module``).

    ``layer``: ``features`` (our networks' penultimate layer), ``input`` (the pixels), or a module path
    such as ``net.features.9``, ``layer4`` or ``backbone.encoder`` (our tasks also take the path inside
    the network, ``features.9``). ``position`` and ``seed``: how a convolutional layer gives one vector
    per input (module docstring).
    """
    if position not in POSITIONS:
        raise ValueError(f"position must be one of {list(POSITIONS)}, got {position!r}.")
    if layer == "input":
        return nn.Flatten()
    if layer == "features":
        features = _penultimate(model)
        if features is None:
            raise LayerNotFoundError(
                f"{type(model).__name__} has no penultimate 'features' (a wide_lightning network's); name a layer "
                f"by its module path, one of {module_names(model)[:60]}.")
        return features
    return LayerActivations(model, layer, position, seed)


def describe_layer(layer: str, width: int) -> str:
    """How an atlas's title names the layer it reads."""
    return f"width {width}" if layer == "features" else f"{layer} ({width} values)"


def penultimate_head_weight(model: nn.Module, layer: str) -> torch.Tensor | None:
    """The classifier's weights ``[k, D]`` when ``layer`` is what our head reads (``features``), else ``None``:
    the classifier-subspace numbers need them."""
    network = _our_network(model) if layer == "features" else None
    return network.head.weight if network is not None and isinstance(network.head, nn.Linear) else None


def class_scores(model: nn.Module, num_classes: int, sample: torch.Tensor) -> Callable[[torch.Tensor], torch.Tensor] | None:
    """``model`` as a classifier of the atlas's classes (for the own-network agreement of the icons), or ``None``
    when its output on ``sample`` (normalized inputs) is not ``[B, num_classes]`` scores, e.g. an ImageNet
    model laid out on a folder of 3 classes."""
    with torch.no_grad():
        was_training = model.training
        try:
            out = model.eval()(sample)
        except Exception:  # noqa: BLE001 - a model that needs other inputs simply is not a classifier here
            return None
        finally:
            model.train(was_training)
    if isinstance(out, torch.Tensor) and out.ndim == 2 and out.shape[1] == num_classes:
        return model
    return None

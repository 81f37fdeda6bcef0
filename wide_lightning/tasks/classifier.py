"""Base training on the original task (Sections 4 and 5; Appendix B.2).

``num_classes``, ``input_shape``, ``lr`` and ``momentum`` are every task's: ``ClassificationTask``'s.
"""

from __future__ import annotations

from typing import Any, Literal

from wide_lightning.nets import MLP, ConvNet, TorchvisionNet
from wide_lightning.parameterization import MUP_BASE_WIDTH
from wide_lightning.tasks.base import ClassificationTask


class ConvClassifier(ClassificationTask):
    """The paper's conv net with a penultimate layer of ``width`` units.

    Args:
        width: units of the penultimate fully-connected layer (the paper's n).
        conv_channels: filters of every conv layer, or ``"width"`` to scale them with n (CIFAR-10).
        parameterization: ``standard`` (the paper's), ``ntk`` or ``mup``: how the weights scale with
            the width (``wide_lightning.parameterization``).
        mup_base_width: with ``mup``: the width its base shapes are taken at.
    """

    is_backbone = True

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], width: int = 2048,
                 conv_channels: int | Literal["width"] = 32, parameterization: str = "standard",
                 mup_base_width: int = MUP_BASE_WIDTH, **kwargs: Any) -> None:
        super().__init__(num_classes, input_shape, **kwargs)

    def configure_network(self) -> ConvNet:
        h = self.hparams
        return ConvNet(h.input_shape, h.num_classes, h.width, h.conv_channels, h.parameterization, h.mup_base_width)

    def facts(self) -> dict[str, Any]:
        # "width" (every layer scales with n) or a fixed count: two experiments, even where the counts agree
        return {**super().facts(), "conv_channels": self.hparams.conv_channels}


class MLPClassifier(ClassificationTask):
    """A fully-connected net of ``depth`` hidden layers (Section 5.1, Figure 4 left).

    Args:
        depth: hidden layers L.
        width: units per hidden layer; ``None`` takes n(L) of Appendix B.3.1 (constant parameter count).
        n_max: the width at L = 1 that fixes the parameter budget (the paper: 2000).
        parameterization, mup_base_width: as ``ConvClassifier``'s; every hidden layer is a width.
    """

    is_backbone = True

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], depth: int = 1,
                 width: int | None = None, n_max: int = 2000, parameterization: str = "standard",
                 mup_base_width: int = MUP_BASE_WIDTH, **kwargs: Any) -> None:
        super().__init__(num_classes, input_shape, **kwargs)

    def configure_network(self) -> MLP:
        h = self.hparams
        return MLP(h.input_shape, h.num_classes, h.depth, h.width, h.n_max, h.parameterization, h.mup_base_width)


class TorchvisionClassifier(ClassificationTask):
    """A torchvision architecture (ResNet-18, MobileNet...) trained like the paper's nets: your network, our instruments.

    Its ``features`` end where the torchvision model's last linear layer began, so atlases and probes
    read that penultimate layer by default, and any inner layer by its path (``net.features.layer3``:
    ``net.features`` is the torchvision model without its last linear layer).

    Args:
        network: a classification model of ``torchvision.models`` by name.
        weights: a torchvision weights name (``DEFAULT``, ``IMAGENET1K_V1``: downloaded once into
            ``$TORCH_HOME``, so not offline), or ``None`` for a random initialization.
    """

    is_backbone = True

    def __init__(self, num_classes: int, input_shape: tuple[int, int, int], network: str = "resnet18",
                 weights: str | None = None, **kwargs: Any) -> None:
        super().__init__(num_classes, input_shape, **kwargs)

    def configure_network(self) -> TorchvisionNet:
        h = self.hparams
        return TorchvisionNet(h.network, h.input_shape, h.num_classes, h.weights)

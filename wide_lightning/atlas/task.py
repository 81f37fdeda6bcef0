"""The atlas of a task: one call shared by the end-of-training callback and ``wide-lightning-atlas``.

The engine below (``pipeline.build_atlas``) takes plain tensors and functions; this is where a
DataModule and a network become them: the input shape, the normalization and the pad value of the
icons, the head that defines the classifier subspace, the network that names each icon.
"""

from __future__ import annotations

from typing import Any, Callable

import torch
from torch import nn

from wide_lightning.activations import class_scores, describe_layer, penultimate_head_weight
from wide_lightning.atlas.collect import ActivationSet
from wide_lightning.atlas.pipeline import AtlasResult, build_atlas
from wide_lightning.atlas.settings import AtlasSettings
from wide_lightning.data.base import dataset_of


def render_inputs(datamodule: Any) -> dict[str, Any]:
    """``input_shape``, ``normalize`` and ``pad_value`` of an ``ImageDataModule``, as the icon renderer takes them."""
    return {
        "input_shape": tuple(datamodule.input_shape),
        "normalize": datamodule.normalize,
        "pad_value": float(datamodule.pad_value),
    }


def render_task_atlas(
    task: nn.Module,
    datamodule: Any,
    read: Callable[[torch.Tensor], torch.Tensor],
    activations: ActivationSet,
    settings: AtlasSettings,
    *,
    layer: str,
    images: torch.Tensor,
    device: torch.device,
    log: Callable[[str], None] = print,
    note: str = "",
) -> AtlasResult:
    """The atlas of ``task`` at ``layer`` from its collected ``activations`` (``read`` gives them for an image batch).

    ``images`` are the uint8 images the activations came from (the exemplars and MACO's spectrum);
    ``note`` is added to the figure's title (e.g. ``untrained`` for a control).
    """
    sample = datamodule.batch_transform(images[:2].to(device), train=False)
    title = f"{dataset_of(type(datamodule).__name__)}, {describe_layer(layer, activations.width)}"
    return build_atlas(
        activations, read, **render_inputs(datamodule), settings=settings,
        head_weight=penultimate_head_weight(task, layer),  # the head reads the penultimate layer
        class_label=datamodule.target, device=device, log=log, images=images,
        network=class_scores(task, datamodule.num_classes, sample), label_periods=datamodule.label_periods,
        title=title + (f" ({note})" if note else ""),
    )

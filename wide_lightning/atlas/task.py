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
from wide_lightning.atlas.memory import MemoryEstimate, check_atlas_memory, command_flag, estimate_atlas_memory
from wide_lightning.atlas.pipeline import AtlasResult, build_atlas, few_valued, probe_icon_bytes
from wide_lightning.atlas.progress import Progress
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
    flag: Callable[[str, str | None], str] = command_flag,
    progress: Progress | None = None,
) -> AtlasResult:
    """The atlas of ``task`` at ``layer`` from its collected ``activations`` (``read`` gives them for an image batch).

    ``images`` are the uint8 images the activations came from (the exemplars and MACO's spectrum);
    ``note`` is added to the figure's title (e.g. ``untrained`` for a control); ``flag`` spells a
    setting in a refusal for lack of memory (``--whiten false``, or the callback's ``whiten=false``);
    ``log`` gets one line per stage, ``progress`` draws a bar of each (``progress.py``).
    """
    sample = datamodule.batch_transform(images[:2].to(device), train=False)
    title = atlas_title(dataset_of(type(datamodule).__name__), describe_layer(layer, activations.width),
                        settings.space, note)
    return build_atlas(
        activations, read, **render_inputs(datamodule), settings=settings,
        head_weight=penultimate_head_weight(task, layer),  # the head reads the penultimate layer
        class_label=datamodule.target, device=device, log=log, images=images,
        network=class_scores(task, datamodule.num_classes, sample), label_periods=datamodule.label_periods,
        title=title, memory_flag=flag, progress=progress,
    )


def atlas_title(dataset: str, layer: str, space: str, note: str = "") -> str:
    """The panel's title: the dataset, the layer, the space when it is not the whole hidden state (a layer's two
    atlases side by side must say which is which), and ``note`` (e.g. ``untrained``)."""
    title = f"{dataset}, {layer}" + (", classifier subspace" if space == "classifier_subspace" else "")
    return title + (f" ({note})" if note else "")


def estimate_task_atlas(
    datamodule: Any,
    read: Callable[[torch.Tensor], torch.Tensor],
    settings: AtlasSettings,
    *,
    dataset: Any | None = None,
    device: torch.device | str | None = None,
    collect_all: bool = False,
    world_size: int = 1,
) -> MemoryEstimate:
    """The memory an atlas of ``read`` over ``dataset`` (default: the training split) will need, before any work.

    The width comes from reading two images; what an icon costs from one optimization step of 1 and of 3
    icons (:func:`~wide_lightning.atlas.memory.icon_bytes_per_icon`), run where ``read``'s network is.
    ``collect_all``: every example is collected and ``max_points`` of them laid out afterwards (the callback).
    """
    dataset = dataset if dataset is not None else datamodule.dataset("train")
    module = read if isinstance(read, nn.Module) else getattr(read, "__self__", None)
    here = next((t.device for t in module.parameters()), torch.device("cpu")) if isinstance(module, nn.Module) \
        else torch.device("cpu")
    sample = datamodule.batch_transform(dataset.images[:2].to(here), train=False)
    with torch.no_grad():
        width = int(read(sample).flatten(1).shape[1])
    input_shape = tuple(datamodule.input_shape)
    icon_bytes = probe_icon_bytes(read, settings, width=width, input_shape=input_shape,
                                  normalize=datamodule.normalize, pad_value=float(datamodule.pad_value))
    labels = {name: torch.as_tensor(values).numpy() for name, values in dataset.labels.items()}
    return estimate_atlas_memory(
        settings, examples=len(dataset), width=width, input_shape=input_shape,
        collected=len(dataset) if collect_all else None, icon_bytes=icon_bytes, images=True,
        other_labels=bool(few_valued(labels, datamodule.target)), device=device, world_size=world_size)


def check_task_atlas(datamodule: Any, read: Callable[[torch.Tensor], torch.Tensor], settings: AtlasSettings, *,
                     device: torch.device | str | None = None, flag: Callable[[str, str | None], str] = command_flag,
                     device_free: int | None = None, **sizes: Any) -> MemoryEstimate:
    """:func:`estimate_task_atlas`, refused (``AtlasMemoryError``, one sentence) when it does not fit in the free memory."""
    estimate = estimate_task_atlas(datamodule, read, settings, device=device, **sizes)
    check_atlas_memory(estimate, device=device, device_free=device_free, flag=flag)
    return estimate

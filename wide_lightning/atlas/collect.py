"""Step 1 of an atlas (spec 2.1): one activation vector per example of a dataset, in dataset order.

Every example gives exactly one float32 vector ``features(transform(image))``: our networks'
penultimate layer is fully connected; a convolutional layer read by ``layers.LayerActivations`` gives
the vector at one position per example, drawn from the example's dataset index (the paper's
footnote 1), which is why readers that ask for them get each batch's ``indices``. The network runs in
``eval()`` mode under ``torch.no_grad()`` with no augmentation (``transform`` is the dataset's
``batch_transform(x, train=False)``), and its original train/eval mode is restored afterwards.

Several processes (DDP)
-----------------------
Each rank collects the share a ``DistributedSampler(shuffle=False, drop_last=False)`` would give it,
*including* the sampler's padding duplicates, so that every rank holds the same number of rows and a
plain ``all_gather`` works. :func:`gather_activations` gathers the rows, indices and labels of all
ranks and :func:`deduplicate` restores exactly one row per example ``0..n-1`` in index order. It is a
collective: call it on **every** rank, never inside ``if trainer.is_global_zero``::

    local = collect_activations(net.features, dataset, lambda x: dm.batch_transform(x, train=False),
                                rank=trainer.global_rank, world_size=trainer.world_size)
    full = gather_activations(local, trainer.strategy, n=len(dataset))   # on every rank
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Mapping

import torch
from torch import nn

Transform = Callable[[torch.Tensor], torch.Tensor]


@dataclass
class ActivationSet:
    """Activations ``[M, C]`` (float32, CPU) with the dataset ``indices`` ``[M]`` and ``labels`` (name -> ``[M]``) of each row.

    After :func:`collect_activations` with ``world_size=1`` or after :func:`deduplicate`, row ``k`` is
    example ``k`` (``indices == arange(n)``).
    """

    activations: torch.Tensor
    indices: torch.Tensor
    labels: dict[str, torch.Tensor]

    def __len__(self) -> int:
        return len(self.activations)

    @property
    def width(self) -> int:
        return self.activations.shape[1]

    def numpy(self) -> tuple[Any, dict[str, Any]]:
        """``(activations [M, C] float32 ndarray, {label name: int64 ndarray})``."""
        return self.activations.numpy(), {k: v.numpy() for k, v in self.labels.items()}


def shard_indices(n: int, rank: int = 0, world_size: int = 1) -> torch.Tensor:
    """The indices ``DistributedSampler(shuffle=False, drop_last=False)`` gives ``rank`` of ``world_size``.

    The index list ``0..n-1`` is padded to ``ceil(n / world_size) * world_size`` by repeating it from
    the start, then rank ``r`` takes every ``world_size``-th entry starting at ``r``. Every rank gets
    ``ceil(n / world_size)`` indices; the padding repeats a few examples on some ranks.
    """
    if n < 1:
        raise ValueError(f"cannot shard an empty dataset (n={n}).")
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"need 0 <= rank < world_size, got rank={rank}, world_size={world_size}.")
    per_rank = math.ceil(n / world_size)
    total = per_rank * world_size
    everything = torch.arange(n)
    if total > n:
        everything = torch.cat([everything, everything.repeat(math.ceil((total - n) / n))[: total - n]])
    return everything[rank:total:world_size]


def _module_device(module: Any) -> torch.device:
    if isinstance(module, nn.Module):
        for tensor in [*module.parameters(), *module.buffers()]:
            return tensor.device
    return torch.device("cpu")


def _check_finite(activations: torch.Tensor, what: str = "activations") -> None:
    bad = ~torch.isfinite(activations).all(dim=1)
    if bool(bad.any()):
        count = int(bad.sum())
        first = bad.nonzero().flatten()[:5].tolist()
        raise ValueError(
            f"{what}: {count} of {len(activations)} rows contain NaN or inf (first rows: {first}). "
            f"The network is diverged or the input transform is wrong; an atlas of it would be meaningless."
        )


def collect_activations(
    features: Callable[[torch.Tensor], torch.Tensor],
    dataset: Any,
    transform: Transform,
    *,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    rank: int = 0,
    world_size: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> ActivationSet:
    """Run ``features`` over (this rank's share of) ``dataset`` and return one float32 vector per row.

    Args:
        features: the network up to the atlas layer, e.g. ``net.features`` (post-ReLU penultimate
            activations ``[B, C]``). Outputs with more dimensions are flattened per example. If it is
            an ``nn.Module`` it is put in ``eval()`` and its mode is restored afterwards.
        dataset: anything with ``.images`` (uint8 ``[N, C, H, W]``) and ``.labels`` (name -> ``[N]``),
            e.g. ``ImageDataModule.dataset("train")``.
        transform: uint8 batch (on ``device``) -> network input, e.g.
            ``lambda x: datamodule.batch_transform(x, train=False)`` (no augmentation).
        batch_size: examples per forward pass.
        device: where to run; default the device of ``features``' first parameter (CPU if none).
        rank, world_size: collect only the ``DistributedSampler(shuffle=False)`` share of this rank,
            padding duplicates included (see :func:`shard_indices`). ``world_size=1`` is everything.
        progress: called after every batch as ``progress(batches_done, batches)`` (a bar: ``progress.py``).

    Returns:
        :class:`ActivationSet` on the CPU with ``ceil(N / world_size)`` rows: activations float32
        ``[M, C]``, dataset indices ``[M]`` and every label tensor of the dataset indexed alike.

    Raises:
        ValueError: for an empty dataset, a bad batch size, or NaN/inf activations (says how many rows).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}.")
    images = dataset.images
    n = len(images)
    indices = shard_indices(n, rank, world_size)
    device = torch.device(device) if device is not None else _module_device(features)
    was_training = features.training if isinstance(features, nn.Module) else None
    positions = getattr(features, "reads_positions", False)
    chunks = []
    try:
        if isinstance(features, nn.Module):
            features.eval()
        batches = math.ceil(len(indices) / batch_size)
        if progress is not None:
            progress(0, batches)
        with torch.no_grad():
            for start in range(0, len(indices), batch_size):
                rows = indices[start : start + batch_size]
                batch = images[rows].to(device, non_blocking=True)
                # a reader of a convolutional layer draws each example's position from its index (layers.py)
                out = features(transform(batch), indices=rows) if positions else features(transform(batch))
                if out.ndim != 2:
                    out = out.flatten(1)
                chunks.append(out.detach().to("cpu", torch.float32))
                if progress is not None:
                    progress(len(chunks), batches)
    finally:
        if was_training is not None:
            features.train(was_training)
    activations = torch.cat(chunks)
    _check_finite(activations, "collect_activations")
    labels = {name: torch.as_tensor(values)[indices].clone() for name, values in dataset.labels.items()}
    return ActivationSet(activations.contiguous(), indices.clone(), labels)


def deduplicate(
    activations: torch.Tensor,
    indices: torch.Tensor,
    labels: Mapping[str, torch.Tensor] | None,
    n: int,
) -> ActivationSet:
    """Keep exactly one row per dataset index ``0..n-1``, in index order (the first of any duplicates).

    This undoes the padding and interleaving of ``DistributedSampler``: the rows gathered from all
    ranks come back as if collected by one process.

    Raises:
        ValueError: lengths disagree, an index lies outside ``[0, n)``, or some index is missing.
    """
    indices = torch.as_tensor(indices).long().flatten().cpu()
    labels = {name: torch.as_tensor(values).cpu() for name, values in (labels or {}).items()}
    if len(activations) != len(indices):
        raise ValueError(f"{len(activations)} activation rows but {len(indices)} indices.")
    for name, values in labels.items():
        if len(values) != len(indices):
            raise ValueError(f"label {name!r} has {len(values)} entries for {len(indices)} indices.")
    if n < 1:
        raise ValueError(f"n must be positive, got {n}.")
    out_of_range = (indices < 0) | (indices >= n)
    if bool(out_of_range.any()):
        raise ValueError(
            f"{int(out_of_range.sum())} indices lie outside [0, {n}), e.g. {indices[out_of_range][:5].tolist()}: "
            f"was n the length of the dataset that was collected?"
        )
    order = torch.sort(indices, stable=True).indices
    ordered = indices[order]
    first = torch.ones_like(ordered, dtype=torch.bool)
    first[1:] = ordered[1:] != ordered[:-1]
    keep = order[first]
    if len(keep) != n:
        present = torch.zeros(n, dtype=torch.bool)
        present[indices] = True
        missing = (~present).nonzero().flatten()
        raise ValueError(
            f"{len(missing)} of {n} dataset indices are missing from the gathered activations "
            f"(e.g. {missing[:5].tolist()}): did every rank collect its DistributedSampler share "
            f"(collect_activations(..., rank=trainer.global_rank, world_size=trainer.world_size))?"
        )
    activations = torch.as_tensor(activations)
    keep_on = keep.to(activations.device)
    return ActivationSet(
        activations[keep_on].contiguous(),
        indices[keep].clone(),
        {name: values[keep].clone() for name, values in labels.items()},
    )


def _gather(strategy: Any, tensor: torch.Tensor) -> torch.Tensor:
    device = getattr(strategy, "root_device", tensor.device)
    local = tensor.to(device)
    gathered = strategy.all_gather(local)
    if gathered.ndim == local.ndim + 1:  # [world, M, ...] from a real all_gather
        gathered = gathered.reshape(-1, *local.shape[1:])
    elif gathered.shape != local.shape:
        raise RuntimeError(f"all_gather returned shape {tuple(gathered.shape)} for a local {tuple(local.shape)}.")
    return gathered.cpu()


def gather_activations(local: ActivationSet, strategy: Any, n: int) -> ActivationSet:
    """All-gather every rank's :class:`ActivationSet` through a Lightning ``strategy`` and :func:`deduplicate`.

    A collective: call it on **every** rank. Every rank must hold the same number of rows (what
    :func:`collect_activations` with ``rank``/``world_size`` guarantees). Tensors travel on
    ``strategy.root_device`` (NCCL needs CUDA tensors) and come back on the CPU. Each rank returns
    the full, deduplicated set of ``n`` rows; with one process ``all_gather`` is the identity.
    """
    activations = _gather(strategy, local.activations)
    indices = _gather(strategy, local.indices)
    labels = {name: _gather(strategy, local.labels[name]) for name in sorted(local.labels)}
    return deduplicate(activations, indices, labels, n)


def collect_from_datamodule(
    features: Callable[..., torch.Tensor],
    datamodule: Any,
    split: str = "train",
    *,
    batch_size: int = 1024,
    device: torch.device | str | None = None,
    trainer: Any | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> ActivationSet:
    """``features`` (e.g. ``net.features`` or a ``layers.layer_reader``) over a whole split of an
    ``ImageDataModule``, without augmentation.

    With a ``trainer`` the work is shared over its ranks and gathered (a collective: call on every
    rank); every rank returns all ``len(split)`` rows in dataset order. If collecting fails on any
    rank, every rank raises (after agreeing on it), so none is left waiting in the gather.
    ``progress`` is :func:`collect_activations`' (this rank's batches).
    """
    dataset = datamodule.dataset(split)

    def transform(x: torch.Tensor) -> torch.Tensor:
        return datamodule.batch_transform(x, train=False)

    if trainer is None or getattr(trainer, "world_size", 1) == 1:
        return collect_activations(features, dataset, transform, batch_size=batch_size, device=device,
                                   progress=progress)
    local, failure = None, None
    try:  # this rank's share of the split, sampler padding included
        local = collect_activations(
            features, dataset, transform, batch_size=batch_size, device=device,
            rank=trainer.global_rank, world_size=trainer.world_size, progress=progress,
        )
    except Exception as error:  # noqa: BLE001 - re-raised below once every rank knows
        failure = error
    if not trainer.strategy.reduce_boolean_decision(failure is None, all=True):
        raise failure or RuntimeError("another rank failed to collect activations; see its log.")
    return gather_activations(local, trainer.strategy, len(dataset))

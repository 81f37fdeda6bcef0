"""The GPU-resident data path: a whole split on the device, batches by one index and one gather.

These datasets are tens of megabytes, so the per-step cost of a ``DataLoader`` (worker processes,
collation, a host-to-device copy per batch) is pure overhead on a GPU. ``DeviceBatches`` keeps a
split's ``uint8`` images and labels on the device and yields each batch as one indexing operation;
the shuffle is a permutation drawn per epoch by ``EpochOrder``, and the paper's augmentation still
runs per batch on the device in ``ImageDataModule.on_after_batch_transfer``.

Batch order
-----------
``EpochOrder`` draws epoch ``e``'s permutation from a generator seeded with ``(seed, e)``, so the
order depends only on the seed and the epoch: a resumed run continues with the orders it would have
had, every DDP rank draws the same permutation and takes its own slice (padded by repetition to a
multiple of the world size, as ``DistributedSampler`` does), and a stack of models trained together
(``StackedMLPClassifier``) draws for each model exactly the order that model would see alone.
Lightning calls ``sampler.set_epoch`` on anything it iterates, which is how the epoch gets here.
"""

from __future__ import annotations

from typing import Iterator, Sequence

import torch

#: Share of the device's free memory a resident split may take; the rest is for training.
RESIDENT_MEMORY_FRACTION = 0.5


class DeviceMemoryError(RuntimeError):
    """A dataset does not fit in the device's memory for the resident data path."""


def order_generator(seed: int, epoch: int) -> torch.Generator:
    # One stream per (seed, epoch); the multiplier keeps (s, e) and (s + 1, e - K) apart.
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))


class EpochOrder:
    """The example order of one epoch, for one rank: shuffled from ``(seed, epoch)`` or in dataset order.

    With several ``seeds`` each epoch has one order per seed (a stack of models, each with its own
    batch order); ``orders()`` returns them as rows ``[S, M]``.

    Args:
        n: examples in the split.
        seeds: one seed, or one per model of a stack.
        shuffle: draw a permutation per epoch (training) or keep the dataset order (evaluation).
        rank, world_size: this process's slice; the order is padded by repeating its head to a multiple
            of ``world_size`` and rank ``r`` takes positions ``r, r + world_size, ...``.
    """

    def __init__(self, n: int, seeds: int | Sequence[int] = 0, shuffle: bool = True, rank: int = 0,
                 world_size: int = 1) -> None:
        if n < 1:
            raise ValueError(f"a split needs at least one example, got {n}.")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in 0..{world_size - 1}.")
        self.n = n
        self.seeds = [int(seeds)] if isinstance(seeds, int) else [int(s) for s in seeds]
        if not self.seeds:
            raise ValueError("seeds must name at least one seed.")
        self.shuffle = shuffle
        self.rank = rank
        self.world_size = world_size
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    @property
    def per_rank(self) -> int:
        return -(-self.n // self.world_size)

    def orders(self) -> torch.Tensor:
        """``[S, per_rank]`` example indices for this rank and epoch (CPU, int64)."""
        rows = []
        for seed in self.seeds:
            order = torch.randperm(self.n, generator=order_generator(seed, self.epoch)) if self.shuffle else torch.arange(self.n)
            padding = self.per_rank * self.world_size - self.n
            if padding:
                order = torch.cat([order, order[:padding]])
            rows.append(order[self.rank :: self.world_size])
        return torch.stack(rows)


class DeviceBatches:
    """Batches of ``(images, target)`` gathered from tensors that live on ``device``.

    A single seed yields ``[B, C, H, W]`` images and ``[B]`` targets; several seeds yield
    ``[S, B, C, H, W]`` and ``[S, B]``, batch ``k`` of each seed's own order stacked. The last batch
    may be smaller (``drop_last=False``, as the DataLoader path).
    """

    def __init__(self, images: torch.Tensor, target: torch.Tensor, batch_size: int, order: EpochOrder) -> None:
        if len(images) != len(target) or len(images) != order.n:
            raise ValueError(f"{len(images)} images, {len(target)} targets and an order over {order.n} examples differ.")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}.")
        self.images = images
        self.target = target
        self.batch_size = batch_size
        self.sampler = order  # Lightning calls ``sampler.set_epoch(epoch)`` before every epoch
        self.batch_sampler = None  # Lightning inspects DataLoader-like objects for one

    def __len__(self) -> int:
        return -(-self.sampler.per_rank // self.batch_size)

    def __iter__(self) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        orders = self.sampler.orders().to(self.images.device, non_blocking=True)
        single = len(self.sampler.seeds) == 1
        for start in range(0, orders.shape[1], self.batch_size):
            index = orders[:, start : start + self.batch_size]
            if single:
                index = index[0]
            yield self.images[index], self.target[index]


def resident_bytes(images: torch.Tensor, labels: dict[str, torch.Tensor]) -> int:
    return images.numel() * images.element_size() + sum(v.numel() * v.element_size() for v in labels.values())


def free_device_memory(device: torch.device) -> int | None:
    """Free bytes on a CUDA device; ``None`` where the data stay in host memory anyway (CPU)."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


class EpochSampler(torch.utils.data.Sampler[int]):
    """A ``DataLoader`` sampler with ``EpochOrder``'s order (one process): the batches of epoch ``e``
    depend on ``(seed, e)`` alone, not on the global random stream, so that a run resumed at an
    epoch boundary sees the batches the same run trained straight sees, and the DataLoader path
    draws the resident path's order."""

    def __init__(self, order: EpochOrder) -> None:
        if len(order.seeds) != 1 or order.world_size != 1:
            raise ValueError("EpochSampler serves one seed in one process.")
        self.order = order

    def set_epoch(self, epoch: int) -> None:
        self.order.set_epoch(epoch)

    def __len__(self) -> int:
        return self.order.n

    def __iter__(self) -> Iterator[int]:
        return iter(self.order.orders()[0].tolist())

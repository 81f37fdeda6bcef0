"""An epoch's mean loss and accuracy, for one network or for each member of a stack, in one update."""

from __future__ import annotations

import torch
from torchmetrics import Metric


class EpochLossAccuracy(Metric):
    """Sums of the per-example loss, the correct predictions and the examples; ``compute`` -> (mean loss, accuracy).

    ``update(per_example_loss [*M, B], logits [*M, B, K], target)`` with ``target`` ``[*M, B]`` or a
    ``[B]`` shared by all members; ``*M`` is empty for one network and ``[S]`` for a stack of ``S``
    (``members=S``), whose results are then ``[S]``. The states are summed over DDP ranks.

    It replaces a ``MulticlassAccuracy`` and a ``MeanMetric`` per split: one update per step instead of
    two, and no host sync (those checked their inputs on the host unless told not to), since on a
    GPU a small network's step costs less than the Python around it.
    """

    full_state_update = False

    def __init__(self, members: int | None = None) -> None:
        super().__init__()
        shape = () if members is None else (members,)
        # float32 counts are exact up to 2^24 examples per epoch, far above these datasets
        self.add_state("loss_sum", default=torch.zeros(shape), dist_reduce_fx="sum")
        self.add_state("correct", default=torch.zeros(shape), dist_reduce_fx="sum")
        self.add_state("total", default=torch.zeros(shape), dist_reduce_fx="sum")

    def update(self, per_example_loss: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        target = target.expand(per_example_loss.shape)
        self.loss_sum += per_example_loss.detach().sum(-1).to(self.loss_sum.dtype)
        self.correct += (logits.detach().argmax(-1) == target).sum(-1).to(self.correct.dtype)
        self.total += target.shape[-1]

    def compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        total = self.total.clamp(min=1)
        return self.loss_sum / total, self.correct / total


class BestSoFar(Metric):
    """The largest value seen so far (per member of a stack: ``members=S``), part of the task's state.

    Its state is persistent, so Lightning saves it in every checkpoint and a resumed run's best covers
    the epochs before the interruption too. It starts at ``-inf`` (nothing seen); ``update`` takes
    values already reduced over DDP ranks, so the ``max`` reduction changes nothing.
    """

    full_state_update = False

    def __init__(self, members: int | None = None) -> None:
        super().__init__()
        shape = () if members is None else (members,)
        self.add_state("value", default=torch.full(shape, float("-inf")), dist_reduce_fx="max", persistent=True)

    def update(self, value: torch.Tensor) -> None:
        self.value = torch.maximum(self.value, value.detach().to(self.value.dtype).reshape(self.value.shape))

    def compute(self) -> torch.Tensor:
        return self.value

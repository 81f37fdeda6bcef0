"""Several seeds of one run trained together in one process and one step (the Figure 4 scans).

``StackedMLPClassifier`` with ``seeds: [0, 1, 2, 3, 4]`` is five ``MLPClassifier`` runs with
``seed_everything`` 0..4 done at once: member ``k`` starts from exactly the weights
``MLPClassifier`` builds after ``seed_everything(seeds[k])``, sees its own batch order (the resident
data path's order for that seed, ``data/resident.py``), and gets exactly its own gradient (the loss
is the sum of the members' mean losses). ``StackedLinearProbe`` then trains one fresh head per
member on that member's frozen features. ``fit`` writes one ``summary-seed<S>.json`` per member, in
the format of a single run, so ``wide-lightning-report`` reads a stack as its ``S`` runs.

Logged: ``{split}/loss`` and ``{split}/acc`` averaged over members (what checkpointing monitors),
and every member's own ``seed<S>/{split}/acc`` and ``seed<S>/{split}/acc_best``.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.utilities.seed import isolate_rng

from wide_lightning.checkpoints import CheckpointKindError, init_arguments, read_checkpoint
from wide_lightning.nets import MLP
from wide_lightning.stack import StackedGroups, StackedNet
from wide_lightning.tasks.base import ClassificationTask
from wide_lightning.tasks.probe import ProbeNet, check_probe_input, check_probe_scaling, probe_head, with_backbone_facts


def _check_depths(depths: list[int]) -> list[int]:
    checked = [int(d) for d in depths]
    if not checked or len(set(checked)) != len(checked) or min(checked) < 1:
        raise ValueError(f"a depth scan needs a non-empty list of distinct positive depths, got {list(depths)}.")
    return checked


def _check_seeds(seeds: list[int]) -> list[int]:
    seeds = [int(s) for s in seeds]
    if not seeds or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be a non-empty list of distinct integers, got {seeds}.")
    return seeds


def member_names(seeds: list[int], depths: list[int] | None) -> list[str]:
    """The members' metric prefixes, in member order: ``seed<S>``, or ``depth<L>/seed<S>`` for a depth scan."""
    if depths is None:
        return [f"seed{seed}" for seed in seeds]
    return [f"depth{depth}/seed{seed}" for depth in depths for seed in seeds]


class StackedTask(ClassificationTask):
    """Shared by the stacked tasks: members in ``self.net`` (a ``StackedNet``, or ``StackedGroups`` for a
    depth scan), per-member metrics and logs under each member's name (``member_names``). A subclass's
    ``configure_network`` calls ``set_members`` first."""

    net: StackedNet | StackedGroups
    seeds: list[int]
    depths: list[int] | None
    member_names: list[str]

    def set_members(self, seeds: list[int], depths: list[int] | None) -> None:
        self.seeds = _check_seeds(seeds)
        self.depths = depths
        self.member_names = member_names(self.seeds, depths)
        self.members = len(self.member_names)

    def setup(self, stage: str) -> None:
        datamodule = self.trainer.datamodule if self._trainer is not None else None
        if datamodule is not None and stage == "fit":
            datamodule.stacked_seeds = list(self.seeds)  # member k's batches follow seeds[k]'s order

    def _losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        x, y = batch
        logits = self.net(x)  # [M, B, K]: M = S members, or G groups of S for a depth scan
        members, size = logits.shape[:2]
        # training targets follow each seed's order ([S, B]), shared by that seed's member in every group
        y = y.repeat(members // y.shape[0], 1) if y.dim() == 2 else y.expand(members, size)
        per_example = F.cross_entropy(logits.flatten(0, 1), y.flatten(), reduction="none").view(members, size)
        # the sum, not the mean: each member gets the gradient of its own mean loss, as when alone
        return per_example.mean(1).sum(), per_example, logits, y

    def _log_accuracy(self, split: str, best: bool) -> torch.Tensor:
        """Log the members' accuracies (and best so far); return the members' losses."""
        loss, acc = self._log_epoch(split, with_loss=True)
        acc = acc.reshape(-1)  # torchmetrics hands a one-member stack's [1] back as a scalar
        values = {f"{name}/{split}/acc": value for name, value in zip(self.member_names, acc)}
        if best:
            best_so_far = getattr(self, f"{split}_acc_best")
            best_so_far.update(acc)
            bests = best_so_far.compute().reshape(-1)
            self.log(f"{split}/acc_best", bests.mean(), prog_bar=split == "val")
            values.update({f"{name}/{split}/acc_best": value for name, value in zip(self.member_names, bests)})
        self.log_dict(values)
        return loss

    def on_train_epoch_end(self) -> None:
        self._stop_if_diverged(self._log_accuracy("train", best=False))

    def on_validation_epoch_end(self) -> None:
        for split in sorted(self._splits_seen):
            if self.trainer.sanity_checking:
                getattr(self, f"{split}_metrics").reset()
            else:
                self._log_accuracy(split, best=True)

    def on_test_epoch_end(self) -> None:
        self._log_accuracy("test", best=False)

    def facts(self) -> dict[str, Any]:
        facts = super().facts()
        members = self.member_facts()
        for key in ("width", "depth", "parameters", "trainable_parameters"):
            values = [m[key] for m in members]
            facts[key] = values[0] if len(set(map(str, values))) == 1 else values
        facts.update({"members": len(members), "seeds": list(self.seeds)})
        if self.depths is not None:
            facts["depths"] = list(self.depths)
        return facts

    def member_facts(self) -> list[dict[str, Any]]:
        """Per member, in member order: its ``name``, ``seed``, ``width``, ``depth`` and parameter counts."""
        groups = list(self.net.groups) if isinstance(self.net, StackedGroups) else [self.net]
        facts = []
        for g, group in enumerate(groups):
            sizes = [(p[0].numel(), p.requires_grad) for p in group.parameters()]  # one member's share of each
            for s, seed in enumerate(self.seeds):
                facts.append({"name": self.member_names[g * len(self.seeds) + s], "seed": seed, "width": group.width,
                              "depth": self.depths[g] if self.depths is not None else group.depth,
                              "parameters": sum(n for n, _ in sizes),
                              "trainable_parameters": sum(n for n, trainable in sizes if trainable)})
        return facts

    def marker_extras(self) -> dict[str, Any]:
        return {"stacked_seeds": list(self.seeds)}


class StackedMLPClassifier(StackedTask):
    """``len(seeds)`` runs of ``MLPClassifier`` (Section 5.1) trained together; arguments as there, plus ``seeds``.

    Member ``k`` is the ``MLPClassifier`` that ``seed_everything(seeds[k])`` would build, trained on
    batches in ``seeds[k]``'s order; ``seed_everything`` of the stacked run itself only seeds what
    the members share.

    ``depth`` may be a list: the whole depth scan of Figure 4 (left) in one run, every seed at every
    depth (``len(depth) * len(seeds)`` networks, each with a constant-parameter width n(L) unless
    ``width`` is given), all trained in one step. Member ``(L, s)`` is still the single run of depth
    ``L`` and seed ``s``; its metrics are logged as ``depth<L>/seed<s>/...`` and it gets its own summary.
    """

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        seeds: list[int] = [0, 1, 2, 3, 4],  # noqa: B006  (jsonargparse shows the default)
        depth: int | list[int] = 1,
        width: int | None = None,
        n_max: int = 2000,
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, input_shape, **kwargs)

    def configure_network(self) -> StackedNet | StackedGroups:
        h = self.hparams
        depths = _check_depths(h.depth) if isinstance(h.depth, (list, tuple)) else None
        if depths is not None and h.lr == "1/width":
            raise ValueError("lr='1/width' gives every depth its own learning rate, and a depth scan trains all "
                             "depths with one optimizer; give a number, or scan the depths as separate runs.")
        self.set_members(h.seeds, depths)

        def stack(depth: int) -> StackedNet:
            members = []
            for seed in self.seeds:
                with isolate_rng():
                    torch.manual_seed(seed)
                    members.append(MLP(h.input_shape, h.num_classes, depth, h.width, h.n_max))
            return StackedNet(members)

        return StackedGroups([stack(d) for d in depths]) if depths is not None else stack(int(h.depth))


def load_stacked_backbone(path: str) -> StackedMLPClassifier:
    """The ``StackedMLPClassifier`` saved in ``path``, in eval mode on the CPU."""
    record = read_checkpoint(path).require_ours()
    if record.seeds is None or not record.task.endswith(".StackedMLPClassifier"):
        raise CheckpointKindError(
            f"{path} is a {record.task_name} checkpoint; StackedLinearProbe needs a "
            f"StackedMLPClassifier checkpoint (use LinearProbe for a single network)."
        )
    task = record.build(StackedMLPClassifier)
    task.training_data = record.datamodule
    return task


class StackedLinearProbe(StackedTask):
    """A fresh linear head per member on the member's frozen features (Section 5, for a stack).

    Args:
        backbone_checkpoint: a ``StackedMLPClassifier`` checkpoint; the probe has its members and seeds.
        num_classes, input_shape: linked from the DataModule (the new task).
        lr, momentum: as ``LinearProbe``. Member ``k``'s head is initialized from ``seeds[k]``.
    """

    def __init__(
        self,
        backbone_checkpoint: str,
        num_classes: int,
        input_shape: tuple[int, int, int],
        **kwargs: Any,
    ) -> None:
        super().__init__(num_classes, input_shape, **kwargs)

    def configure_network(self) -> StackedNet | StackedGroups:
        h = self.hparams
        backbone = load_stacked_backbone(h.backbone_checkpoint)
        self.set_members(backbone.seeds, backbone.depths)
        check_probe_input(backbone, h.input_shape, h.backbone_checkpoint)
        groups = list(backbone.net.groups) if isinstance(backbone.net, StackedGroups) else [backbone.net]
        probes = []
        for group in groups:
            members = [ProbeNet(group.member(k).features, probe_head(group.width, h.num_classes, seed), h.input_shape)
                       for k, seed in enumerate(self.seeds)]
            probes.append(StackedNet(members, trainable=lambda name: name.startswith("head.")))
        self.backbone_hparams = init_arguments(backbone)
        self.backbone_data = backbone.training_data
        return StackedGroups(probes) if isinstance(backbone.net, StackedGroups) else probes[0]

    def setup(self, stage: str) -> None:
        super().setup(stage)
        if self._trainer is not None and self.trainer.datamodule is not None:
            check_probe_scaling(self.backbone_data, self.trainer.datamodule, self.hparams.backbone_checkpoint)

    def facts(self) -> dict[str, Any]:
        return with_backbone_facts(super().facts(), self.backbone_hparams)

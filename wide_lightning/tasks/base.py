"""What every training task of the paper shares: cross-entropy, SGD with momentum, accuracy per split."""

from __future__ import annotations

from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn

from wide_lightning.checkpoints import CHECKPOINT_KEY, marker
from wide_lightning.loggers import wandb_run_id
from wide_lightning.parameterization import make_sgd
from wide_lightning.tasks.metrics import BestSoFar, EpochLossAccuracy

LearningRate = float | Literal["1/width"]


class Diverged(ValueError):
    """The training loss stopped being a finite number: the run cannot recover, so it stops."""


def resolve_lr(lr: LearningRate, width: int) -> float:
    """A number, or ``"1/width"`` for the paper's CIFAR-10 rule lr = 1/n (Appendix B.2)."""
    if lr == "1/width":
        return 1.0 / width
    if isinstance(lr, str) or not 0 < lr < float("inf"):
        raise ValueError(f"lr must be a positive finite number or '1/width', got {lr!r}.")
    return float(lr)


class ClassificationTask(LightningModule):
    """Trains ``self.net`` (a network with ``features`` and ``head``) with cross-entropy and SGD.

    Logs ``{train,val,test}/{loss,acc}`` (epoch values over all ranks), ``train/loss_step`` and
    ``{val,test}/acc_best`` (the best epoch so far). The
    validation loop's loaders are named by the DataModule's ``val_split_names``: with
    ``test_each_epoch`` the test split is evaluated every epoch too, as the paper's probes report
    their best test accuracy.

    Args:
        num_classes, input_shape: linked from the DataModule by the CLI.
        lr: a number, or ``"1/width"`` (the paper's CIFAR-10 rule lr = 1/n).
        momentum: SGD momentum (the paper: 0.9).
    """

    #: Whether a checkpoint of this task can serve as the frozen backbone of a linear probe.
    is_backbone = False
    net: nn.Module
    #: Set by ``wide_lightning.speed.CapturedTrainingStep`` during ``fit``: its ``RecordedSteps``.
    step_graph: Any = None

    def __init__(
        self,
        num_classes: int,
        input_shape: tuple[int, int, int],
        lr: LearningRate = 0.01,
        momentum: float = 0.9,
    ) -> None:
        super().__init__()
        # the concrete task's arguments too: Lightning collects them from every __init__ up the call
        self.save_hyperparameters()
        self.net = self.configure_network()
        self.configure_metrics()
        self.lr  # noqa: B018 - a bad learning rate fails now, not at the first optimizer step
        self._splits_seen: set[str] = set()

    def configure_network(self) -> nn.Module:
        """The network this task trains, built from ``self.hparams``."""
        raise NotImplementedError

    #: How many networks ``self.net`` holds side by side (a stack's members); ``None``: one.
    members: int | None = None

    def configure_metrics(self) -> None:
        """An epoch's loss and accuracy per split, and the best accuracy so far (saved in checkpoints)."""
        for split in ("train", "val", "test"):
            setattr(self, f"{split}_metrics", EpochLossAccuracy(members=self.members))
        self.val_acc_best = BestSoFar(members=self.members)
        self.test_acc_best = BestSoFar(members=self.members)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate activations (post-ReLU), the layer atlases and probes read."""
        return self.net.features(x)

    def _losses(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``(loss to minimize, per-example loss, logits, target)`` of a batch: the step's arithmetic."""
        x, y = batch
        logits = self(x)
        per_example = F.cross_entropy(logits, y, reduction="none")
        return per_example.mean(), per_example, logits, y

    def _step(self, batch: tuple[torch.Tensor, torch.Tensor], split: str) -> torch.Tensor:
        if split != "train" and self.step_graph is not None:  # evaluation inside a fit with CapturedTrainingStep
            loss, per_example, logits, target = self.step_graph.evaluate(batch)
        else:
            loss, per_example, logits, target = self._losses(batch)
        self._track(split, per_example, logits, target)
        return loss

    def _track(self, split: str, per_example: torch.Tensor, logits: torch.Tensor, target: torch.Tensor) -> None:
        """Accumulate the epoch's loss and accuracy; in training, log ``train/loss_step`` on the logger's steps.

        Every ``self.log`` call costs Lightning about 0.3-1 ms of Python (it re-checks the stored
        result's device each time), several times a small network's step on a GPU. So the epoch
        values are accumulated in metrics and logged once per epoch (``_log_epoch``), and the step
        loss is logged only where the logger would record it (``log_every_n_steps``). The step value
        is this rank's; the epoch means cover all ranks.
        """
        getattr(self, f"{split}_metrics").update(per_example, logits, target)
        trainer = self._trainer
        # Lightning writes step metrics after the batch whose count (after the step) + 1 is a multiple
        # of log_every_n_steps; during training_step that count is still global_step.
        if split == "train" and trainer is not None and (self.global_step + 2) % trainer.log_every_n_steps == 0:
            self.log("train/loss_step", per_example.detach().mean(), prog_bar=True)

    def _log_epoch(self, split: str, with_loss: bool = False) -> Any:
        """Log ``{split}/loss`` and ``{split}/acc`` of the finished epoch (over all ranks; a stack's: the
        members' mean), reset them, and return the accuracy (a stack's: one per member), or with
        ``with_loss`` the pair ``(loss, accuracy)``."""
        metrics = getattr(self, f"{split}_metrics")
        loss, acc = metrics.compute()
        metrics.reset()
        self.log(f"{split}/loss", loss.mean())
        self.log(f"{split}/acc", acc.mean(), prog_bar=True)
        return (loss, acc) if with_loss else acc

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        if self.step_graph is not None:
            return self.step_graph.step(batch)
        return self._step(batch, "train")

    def backward(self, loss: torch.Tensor, *args: Any, **kwargs: Any) -> None:
        if self.step_graph is not None and self.step_graph.replayed:
            return  # the recorded step has run backward and the update already
        super().backward(loss, *args, **kwargs)

    def validation_step(self, batch: Any, batch_idx: int, dataloader_idx: int = 0) -> None:
        names = getattr(self.trainer.datamodule, "val_split_names", None) or ["val"]
        split = names[dataloader_idx]
        self._splits_seen.add(split)
        self._step(batch, split)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._step(batch, "test")

    def on_train_epoch_end(self) -> None:
        self._stop_if_diverged(self._log_epoch("train", with_loss=True)[0])

    def _stop_if_diverged(self, loss: torch.Tensor) -> None:
        """Stop at the first epoch whose training loss is not finite (for a stack: no member's is). One
        host sync per epoch, none per step; every later epoch would be NaN too and call itself finished."""
        if not bool(torch.isfinite(loss).any()):
            raise Diverged(
                f"the training loss of epoch {self.current_epoch} is {float(loss.reshape(-1)[0])} at learning rate "
                f"{self.lr:g}: training diverged. Lower the learning rate (e.g. --model.init_args.lr={self.lr / 10:g}) "
                f"and run again.")

    def on_validation_epoch_start(self) -> None:
        self._splits_seen = set()

    def on_validation_epoch_end(self) -> None:
        for split in sorted(self._splits_seen):
            if self.trainer.sanity_checking:
                getattr(self, f"{split}_metrics").reset()
                continue
            best = getattr(self, f"{split}_acc_best")
            best.update(self._log_epoch(split))
            self.log(f"{split}/acc_best", best.compute(), prog_bar=split == "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def lr(self) -> float:
        return resolve_lr(self.hparams.lr, self.net.width)

    @property
    def momentum(self) -> float:
        return self.hparams.momentum

    @property
    def parameterization(self) -> str:
        """How the trained network's weights scale with width (``wide_lightning.parameterization``)."""
        return getattr(self.net, "parameterization", "standard")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return make_sgd(self.trainable_parameters(), self.parameterization, self.lr, self.momentum)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        checkpoint[CHECKPOINT_KEY] = marker(self, datamodule, wandb_run_id(self.loggers), **self.marker_extras())

    def marker_extras(self) -> dict[str, Any]:
        """What a task adds to its checkpoints' ``wide_lightning`` entry (a stack: its seeds)."""
        return {}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # checkpoints written before the best-so-far accuracies were metric state carried them in the marker
        state, recorded = checkpoint.get("state_dict"), (checkpoint.get(CHECKPOINT_KEY) or {}).get("best_so_far", {})
        for split in ("val", "test"):
            best = getattr(self, f"{split}_acc_best")
            if state is not None and f"{split}_acc_best.value" not in state:
                state[f"{split}_acc_best.value"] = recorded[split].reshape(best.value.shape) if split in recorded \
                    else best.value.clone()

    def on_fit_start(self) -> None:
        # Lightning logs hparams; these are derived and matter for scans (Figure 4's x axis).
        if self.logger is not None:
            self.logger.log_hyperparams(self.facts())

    def facts(self) -> dict[str, Any]:
        """Facts about the network worth logging beside the hyper-parameters (and in the run record)."""
        return {
            "width": self.net.width,
            "depth": getattr(self.net, "depth", None),
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "trainable_parameters": sum(p.numel() for p in self.trainable_parameters()),
            "lr_resolved": self.lr,
            "parameterization": self.parameterization,
        }

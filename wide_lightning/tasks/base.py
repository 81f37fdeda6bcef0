"""What every training task of the paper shares: cross-entropy, SGD with momentum, accuracy per split."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule
from torch import nn
from torchmetrics import MaxMetric

from wide_lightning.tasks.metrics import EpochLossAccuracy

#: The checkpoint key that marks a wide_lightning checkpoint and names its task class.
CHECKPOINT_KEY = "wide_lightning"
LearningRate = float | Literal["1/width"]


class Diverged(ValueError):
    """The training loss stopped being a finite number: the run cannot recover, so it stops."""


def wandb_run_id(loggers: Any) -> str | None:
    """The id of the W&B run among ``loggers`` (``None`` without one, or before it started)."""
    from lightning.pytorch.loggers import WandbLogger

    for logger in loggers or []:
        if isinstance(logger, WandbLogger) and getattr(logger, "_experiment", None) is not None:
            run_id = getattr(logger.experiment, "id", None)
            return run_id if isinstance(run_id, str) else None
    return None


def init_arguments(module: Any) -> dict[str, Any]:
    """A module's saved init arguments without the private entries LightningCLI adds (``_class_path``...)."""
    return {k: v for k, v in dict(getattr(module, "hparams", {})).items() if not k.startswith("_")}


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
    """

    #: Whether a checkpoint of this task can serve as the frozen backbone of a linear probe.
    is_backbone = False
    net: nn.Module
    #: Set by ``wide_lightning.speed.CapturedTrainingStep`` during ``fit``: its ``RecordedSteps``.
    step_graph: Any = None

    def __init__(self, num_classes: int, lr: float, momentum: float = 0.9) -> None:
        super().__init__()
        self.lr_value = lr
        self.momentum = momentum
        self.train_metrics = EpochLossAccuracy()
        self.val_metrics = EpochLossAccuracy()
        self.test_metrics = EpochLossAccuracy()
        self.val_acc_best = MaxMetric()
        self.test_acc_best = MaxMetric()
        self._splits_seen: set[str] = set()
        self._restored_best: dict[str, torch.Tensor] = {}

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

    def on_train_start(self) -> None:
        # best-so-far starts afresh, or where the resumed checkpoint left it (a resumed run's best covers
        # the epochs before the interruption too)
        for split in ("val", "test"):
            best = getattr(self, f"{split}_acc_best")
            best.reset()
            if split in self._restored_best:
                best.update(self._restored_best[split].to(self.device))
        self._restored_best = {}

    def best_so_far(self) -> dict[str, torch.Tensor]:
        """``{split: best accuracy so far}`` for the splits that have one (stored in each checkpoint)."""
        bests = {split: getattr(self, f"{split}_acc_best") for split in ("val", "test")}
        return {split: best.compute().detach().cpu() for split, best in bests.items() if best.update_count}

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
            best(self._log_epoch(split))
            self.log(f"{split}/acc_best", best.compute(), prog_bar=split == "val")

    def on_test_epoch_end(self) -> None:
        self._log_epoch("test")

    def trainable_parameters(self) -> list[nn.Parameter]:
        return [p for p in self.parameters() if p.requires_grad]

    @property
    def lr(self) -> float:
        return resolve_lr(self.lr_value, self.net.width)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.trainable_parameters(), lr=self.lr, momentum=self.momentum)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        cls = type(self)
        marker: dict[str, Any] = {"task": f"{cls.__module__}.{cls.__qualname__}", "is_backbone": self.is_backbone}
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None:  # lets `wide-lightning-atlas` rebuild the data from the checkpoint alone
            dm_cls = type(datamodule)
            marker["datamodule"] = {"class_path": f"{dm_cls.__module__}.{dm_cls.__qualname__}",
                                    "init_args": init_arguments(datamodule),
                                    # where the files were, however they were found (flag, variable, ./data)
                                    "data_dir": str(Path(datamodule.data_dir).resolve())}
        marker["best_so_far"] = self.best_so_far()
        run_id = wandb_run_id(self.loggers)
        if run_id is not None:  # a resumed run continues this W&B run
            marker["wandb_run_id"] = run_id
        checkpoint[CHECKPOINT_KEY] = marker

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self._restored_best = dict(checkpoint.get(CHECKPOINT_KEY, {}).get("best_so_far", {}))

    def on_fit_start(self) -> None:
        # Lightning logs hparams; these are derived and matter for scans (Figure 4's x axis).
        if self.logger is not None:
            self.logger.log_hyperparams(self.summary())

    def summary(self) -> dict[str, Any]:
        """Facts about the network worth logging beside the hyper-parameters."""
        return {
            "width": self.net.width,
            "depth": getattr(self.net, "depth", None),
            "parameters": sum(p.numel() for p in self.net.parameters()),
            "trainable_parameters": sum(p.numel() for p in self.trainable_parameters()),
            "lr_resolved": self.lr,
        }

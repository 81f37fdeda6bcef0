"""Checkpoints: the best epochs by the monitored metric, and ``last.ckpt`` at the end of every epoch."""

from __future__ import annotations

from lightning.pytorch import LightningModule, Trainer
from lightning.pytorch.callbacks import ModelCheckpoint


class BestAndLastCheckpoint(ModelCheckpoint):
    """``ModelCheckpoint`` whose ``last.ckpt`` always holds the latest epoch, as ``save_last=True`` promises.

    Since Lightning 2.6, ``save_last=True`` rewrites ``last.ckpt`` only at a step where a top-k
    checkpoint is saved too; with ``save_top_k=1`` it is then a copy of the best epoch so far. A run
    resumed with ``--ckpt_path last`` would silently repeat the epochs after the best one, and a
    transfer run probing its ``last`` backbone would read the best one. This subclass writes
    ``last.ckpt`` at every point where Lightning considers saving (each validation end or training
    epoch end) when the parent did not. With Lightning < 2.6 the parent already does, and this adds
    nothing.

    ``fast_dev_run`` saves no checkpoint at all, as Lightning documents: Lightning 2.6's
    ``on_train_end`` writes ``last.ckpt`` even then (for the CIFAR-10 width-2048 net, 2.9 GB per
    smoke run), so that hook is skipped under ``fast_dev_run``.
    """

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not trainer.fast_dev_run:
            super().on_train_end(trainer, pl_module)

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        due = self._last_due(trainer, at_train_epoch_end=True)
        super().on_train_epoch_end(trainer, pl_module)
        if due:
            self._write_last(trainer)

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        due = self._last_due(trainer, at_train_epoch_end=False)
        super().on_validation_end(trainer, pl_module)
        if due:
            self._write_last(trainer)

    def _last_due(self, trainer: Trainer, at_train_epoch_end: bool) -> bool:
        # the parent's own condition for considering a save in this hook, read before it saves anything
        return (bool(self.save_last) and not self._should_skip_saving_checkpoint(trainer)
                and self._should_save_on_train_epoch_end(trainer) == at_train_epoch_end)

    def _write_last(self, trainer: Trainer) -> None:
        if self._last_global_step_saved != trainer.global_step:  # the parent saved nothing at this step
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

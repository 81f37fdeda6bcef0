"""Levers for a fast training step that a config switches on without touching the tasks.

The paper's networks are small, so on a GPU a step is dominated by per-step overhead: kernel
launches, Python, and host-device synchronizations. ``CompileNetwork`` compiles the task's network
in place with ``torch.compile`` (``mode="reduce-overhead"`` adds CUDA graphs, which replay a whole
forward and backward as one launch). The other levers are Lightning's own:
``--trainer.precision=bf16-mixed``, and fewer synchronizations: the progress bar reads the step's
loss every ``refresh_rate`` steps (``TQDM_MINITERS=50`` or ``--trainer.enable_progress_bar=false``).
``benchmarks/train_speed.py`` measures them against the plain DataLoader + Trainer baseline.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.utilities import rank_zero_info


class CompileNetwork(Callback):
    """``torch.compile`` the task's ``net`` in place before fitting, testing or predicting.

    ``nn.Module.compile`` keeps parameter names, so checkpoints stay loadable without compiling
    (a ``torch.compile(net)`` wrapper would prefix every key with ``_orig_mod.``).

    Args:
        mode: ``torch.compile`` mode: ``"default"``, ``"reduce-overhead"`` (CUDA graphs) or
            ``"max-autotune"``.
        fullgraph: fail instead of falling back to eager on a graph break.
    """

    def __init__(self, mode: Literal["default", "reduce-overhead", "max-autotune"] = "default",
                 fullgraph: bool = False) -> None:
        self.mode = mode
        self.fullgraph = fullgraph

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        net = getattr(pl_module, "net", None)
        if net is None:
            raise ValueError(f"CompileNetwork compiles a task's `net`; {type(pl_module).__name__} has none.")
        if getattr(net, "_compiled_call_impl", None) is None:
            net.compile(mode=self.mode, fullgraph=self.fullgraph)
            rank_zero_info(f"CompileNetwork: {type(net).__name__} compiled (mode={self.mode}); "
                           f"the first steps include the compilation")

    def _mark_step(self) -> None:
        # CUDA graphs reuse their output memory on the next replay; marking each batch as a new step
        # tells the graph trees where a step begins when validation forwards interleave with training.
        if self.mode == "reduce-overhead":
            torch.compiler.cudagraph_mark_step_begin()

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int) -> None:
        self._mark_step()

    def on_validation_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                                  dataloader_idx: int = 0) -> None:
        self._mark_step()

    def on_test_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                            dataloader_idx: int = 0) -> None:
        self._mark_step()

    def on_predict_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Any, batch_idx: int,
                               dataloader_idx: int = 0) -> None:
        self._mark_step()

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

from typing import Any, Callable, Literal

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


class MatmulPrecision(Callback):
    """Set ``torch.set_float32_matmul_precision`` for the fit (and test), and restore the previous setting after.

    ``"high"`` lets float32 matrix products use TF32 tensor cores (10-bit mantissa products, float32
    accumulation) on Ampere and later GPUs; PyTorch 1.7-1.11 did so by default. The networks stay
    float32 (parameters, activations, optimizer), unlike ``bf16-mixed``, and it combines with
    ``CapturedTrainingStep``. The default ``"highest"`` is exact float32, our default everywhere.

    Args:
        precision: ``"highest"``, ``"high"`` (TF32) or ``"medium"`` (bf16 products).
    """

    def __init__(self, precision: Literal["highest", "high", "medium"] = "high") -> None:
        if precision not in ("highest", "high", "medium"):
            raise ValueError(f"precision must be 'highest', 'high' or 'medium', got {precision!r}.")
        self.precision = precision
        self._previous: str | None = None

    def setup(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        self._previous = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision(self.precision)

    def teardown(self, trainer: Trainer, pl_module: LightningModule, stage: str) -> None:
        if self._previous is not None:
            torch.set_float32_matmul_precision(self._previous)
            self._previous = None


class _CUDAGraphReplay:
    """A step recorded once as a CUDA graph; ``replay`` relaunches all its kernels in one call."""

    def __init__(self, step: Callable[[], tuple[torch.Tensor, ...]]) -> None:
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph):
            self.outputs = step()  # recorded, not run: the tensors are the graph's static outputs

    def replay(self) -> tuple[torch.Tensor, ...]:
        self.graph.replay()
        return self.outputs


class _EagerReplay:
    """The CPU stand-in for ``_CUDAGraphReplay`` (CUDA graphs need a GPU): ``replay`` reruns the step.

    It runs the same static-buffer bookkeeping as the graph, which is how the tests check on the CPU
    that a captured step trains exactly like Lightning's own step.
    """

    def __init__(self, step: Callable[[], tuple[torch.Tensor, ...]]) -> None:
        self.step = step

    def replay(self) -> tuple[torch.Tensor, ...]:
        return self.step()


class CapturedTrainingStep(Callback):
    """Record the whole training step (forward, loss, backward, SGD update) once as a CUDA graph and replay it.

    ``CompileNetwork(mode="reduce-overhead")`` graphs the network's forward and backward, but
    Lightning still runs its closure, the backward call and the optimizer in Python around them,
    several milliseconds a step against a fraction of a millisecond of GPU work for these networks.
    Here one ``replay`` launches the step's every kernel, the optimizer's update included, so a step
    costs Lightning's loop and a copy of the batch into the graph's input buffers.

    Nothing about training changes: the first ``warmup_steps`` steps run eagerly (they create the
    optimizer's momentum buffers and let cuBLAS and cuDNN pick their kernels), every step after that
    is the same arithmetic replayed on the step's own batch, and a batch of another shape (the
    epoch's last, smaller batch) runs eagerly, through Lightning, on the same parameters and momentum
    buffers, which the graph updates in place. The task takes part through two hooks:
    ``training_step`` hands the batch to ``step`` and ``backward`` skips the loss the graph already
    differentiated (``ClassificationTask`` does both).

    The evaluation batches of the fit (validation, and test where the DataModule evaluates it every
    epoch) are recorded too, as forward passes: each batch shape's second occurrence is recorded
    and later ones replay it (at most ``max_eval_shapes`` shapes; others run eagerly). A stack of
    many networks (the depth scan) otherwise spends most of its evaluation in Python.

    Where it applies: one CUDA device, ``precision="32-true"``, one optimizer without a learning-rate
    scheduler (the graph holds the learning rate it was recorded with), no gradient accumulation or
    clipping. Anything else is a clear error at the start of ``fit``, naming the setting. Do not
    combine it with ``CompileNetwork(mode="reduce-overhead")``, which records graphs of its own.

    Args:
        warmup_steps: eager steps before the step is recorded (at least 1: the update must have run).
        max_eval_shapes: evaluation batch shapes recorded at most (0: evaluation stays eager).
    """

    def __init__(self, warmup_steps: int = 3, max_eval_shapes: int = 4) -> None:
        if warmup_steps < 1:
            raise ValueError(f"warmup_steps must be at least 1 (the optimizer's state must exist before "
                             f"recording), got {warmup_steps}.")
        if max_eval_shapes < 0:
            raise ValueError(f"max_eval_shapes must be 0 or more, got {max_eval_shapes}.")
        self.warmup_steps = warmup_steps
        self.max_eval_shapes = max_eval_shapes
        self.replay_factory: Callable[[Callable[[], tuple[torch.Tensor, ...]]], Any] = _CUDAGraphReplay

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        if not hasattr(pl_module, "step_graph"):
            raise TypeError(f"CapturedTrainingStep needs a wide_lightning ClassificationTask; got "
                            f"{type(pl_module).__name__}.")
        problems = []
        if self.replay_factory is _CUDAGraphReplay and pl_module.device.type != "cuda":
            problems.append(f"it needs a CUDA device (the model is on {pl_module.device}); drop the callback on the CPU")
        if trainer.world_size > 1:
            problems.append(f"it records one process's step, and this run has {trainer.world_size} (DDP's gradient "
                            f"all-reduce is not recorded); use CompileNetwork under DDP")
        if str(trainer.precision) != "32-true":
            problems.append(f"it records precision '32-true' only, not {trainer.precision!r}")
        if len(trainer.optimizers) != 1 or trainer.lr_scheduler_configs:
            problems.append(f"it needs exactly one optimizer and no scheduler (got {len(trainer.optimizers)} "
                            f"optimizer(s), {len(trainer.lr_scheduler_configs)} scheduler(s))")
        if trainer.accumulate_grad_batches != 1 or trainer.gradient_clip_val:
            problems.append("it records one full update per batch: set accumulate_grad_batches=1 and no gradient_clip_val")
        if not pl_module.automatic_optimization:
            problems.append("it replaces Lightning's automatic optimization, and this task optimizes manually")
        if problems:
            raise ValueError("CapturedTrainingStep cannot record this run's step: " + "; ".join(problems) + ".")
        pl_module.step_graph = RecordedSteps(pl_module, trainer.optimizers[0], self.warmup_steps,
                                                 self.replay_factory, self.max_eval_shapes)

    def on_train_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        pl_module.step_graph = None  # frees the graph's memory pool; a later fit records afresh


class RecordedSteps:
    """The recorded steps of one ``fit`` (the training step, and a forward per evaluation batch shape):
    their input buffers, their outputs, and when to replay them."""

    def __init__(self, task: Any, optimizer: torch.optim.Optimizer, warmup_steps: int,
                 replay_factory: Callable[[Callable[[], tuple[torch.Tensor, ...]]], Any],
                 max_eval_shapes: int = 0) -> None:
        self.task = task
        self.optimizer = optimizer
        self.warmup_steps = warmup_steps
        self.replay_factory = replay_factory
        self.params = [p for group in optimizer.param_groups for p in group["params"]]
        self.eager_steps = 0
        self.replays = 0
        self.replayed = False  # whether the current step ran as a replay (``backward`` then has nothing to do)
        self.recorded: Any = None
        self.lrs: list[float] = []
        self.max_eval_shapes = max_eval_shapes
        self.eval_seen: dict[tuple, int] = {}
        self.eval_recorded: dict[tuple, tuple[torch.Tensor, torch.Tensor, Any]] = {}
        self.eval_replays = 0

    def evaluate(self, batch: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, ...]:
        """``task._losses(batch)`` of an evaluation batch: replayed once its shape has been recorded."""
        x, y = batch
        key = (tuple(x.shape), tuple(y.shape), x.dtype, y.dtype, self.task.training)
        entry = self.eval_recorded.get(key)
        if entry is None:
            seen = self.eval_seen[key] = self.eval_seen.get(key, 0) + 1
            # the first batch of a shape runs eagerly (kernels chosen outside a recording); the second is recorded
            if seen < 2 or len(self.eval_recorded) >= self.max_eval_shapes:
                return self.task._losses(batch)
            entry = self.eval_recorded[key] = self._record_eval(x, y)
        static_x, static_y, recorded = entry
        static_x.copy_(x)
        static_y.copy_(y)
        self.eval_replays += 1
        return recorded.replay()

    def _record_eval(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, Any]:
        static_x, static_y = x.clone(), y.clone()

        def forward() -> tuple[torch.Tensor, ...]:
            return self.task._losses((static_x, static_y))

        self._warm_side_stream(forward)
        return static_x, static_y, self.replay_factory(forward)

    def step(self, batch: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
        """This batch's training step: replayed when its shape is the recorded one, else eager through Lightning."""
        x, y = batch
        self.replayed = False
        if self.recorded is None and self.eager_steps >= self.warmup_steps:
            self._record(x, y)
        if self.recorded is None or x.shape != self.x.shape or y.shape != self.y.shape:
            self.eager_steps += 1
            return self.task._step(batch, "train")
        lrs = [group["lr"] for group in self.optimizer.param_groups]
        if lrs != self.lrs:
            raise RuntimeError(f"the learning rate changed from {self.lrs} to {lrs} after the step was recorded; "
                               f"CapturedTrainingStep replays the recorded one. Drop the callback to change it.")
        self.x.copy_(x)
        self.y.copy_(y)
        self._drop_grads()  # an eager step's gradients must not add to the recorded step's
        loss, per_example, logits, target = self.recorded.replay()
        self._drop_grads()  # the update is done: nothing is left for Lightning's optimizer.step to apply again
        self.replayed = True
        self.replays += 1
        self.task._track("train", per_example, logits, target)
        return loss

    def _record(self, x: torch.Tensor, y: torch.Tensor) -> None:
        self.x, self.y = x.clone(), y.clone()
        self.lrs = [group["lr"] for group in self.optimizer.param_groups]
        self._drop_grads()  # the recorded backward then writes fresh gradients instead of accumulating

        def training_step() -> tuple[torch.Tensor, ...]:
            loss, per_example, logits, target = self.task._losses((self.x, self.y))
            loss.backward()
            self.optimizer.step()
            return loss.detach(), per_example.detach(), logits.detach(), target

        def forward_backward() -> None:  # the step without its update: only gradients, which are dropped
            self.task._losses((self.x, self.y))[0].backward()
            self._drop_grads()

        self._warm_side_stream(forward_backward)
        self.recorded = self.replay_factory(training_step)

    def _warm_side_stream(self, run: Callable[[], Any], times: int = 2) -> None:
        """PyTorch's recipe before recording a CUDA graph: run the work a few times on a side stream.

        Only work that changes nothing (a forward, gradients that are dropped) is run here, so
        training is unchanged. Nothing to do where the replay reruns the step (the CPU).
        """
        if self.replay_factory is not _CUDAGraphReplay:
            return
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(times):
                run()
        torch.cuda.current_stream().wait_stream(stream)

    def _drop_grads(self) -> None:
        for p in self.params:
            p.grad = None


#: The levers a config switches on for a fit; a transfer run's probe fit gets them too (``cli.py``).
STEP_LEVERS = (CompileNetwork, MatmulPrecision, CapturedTrainingStep)

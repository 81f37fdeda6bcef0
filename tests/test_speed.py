"""The fast-step levers: CompileNetwork (a compiled network trains, its checkpoints load without compiling)
and CapturedTrainingStep (a replayed step trains exactly as Lightning's own)."""

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from wide_lightning import MLPClassifier, StackedMLPClassifier, TranslatedMNIST
from wide_lightning.speed import CapturedTrainingStep, CompileNetwork, MatmulPrecision, _EagerReplay


@pytest.mark.slow
def test_compiled_network_trains_and_keeps_its_checkpoint_keys(fake_data_dir, tmp_path):
    model = MLPClassifier(num_classes=28, input_shape=(1, 28, 28), depth=1, width=8)
    keys = set(model.state_dict())
    before = model.net.head.weight.clone()
    trainer = Trainer(accelerator="cpu", max_steps=3, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=[CompileNetwork()])
    trainer.fit(model, datamodule=TranslatedMNIST(data_dir=fake_data_dir, train_digits=10, val_digits=2,
                                                  test_digits=2, download=False))
    assert model.net._compiled_call_impl is not None
    assert not torch.equal(model.net.head.weight, before)
    assert set(model.state_dict()) == keys  # no `_orig_mod.` prefixes
    trainer.save_checkpoint(tmp_path / "compiled.ckpt")
    plain = MLPClassifier.load_from_checkpoint(tmp_path / "compiled.ckpt", weights_only=False)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(plain.net(x), model.net(x), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("parameterization", ["ntk", "mup"])
def test_compiled_ntk_and_mup_networks_compute_what_the_eager_ones_do(parameterization):
    """torch.compile of MuReadout (which reads its weight's infshape) and of parametrized weights: one graph,
    the eager outputs and gradients."""
    seed_everything(0)
    eager = MLPClassifier(num_classes=10, input_shape=(1, 28, 28), depth=2, width=32,
                          parameterization=parameterization, mup_base_width=16).net
    seed_everything(0)
    compiled = MLPClassifier(num_classes=10, input_shape=(1, 28, 28), depth=2, width=32,
                             parameterization=parameterization, mup_base_width=16).net
    compiled.compile(fullgraph=True)
    x = torch.randn(8, 1, 28, 28)
    eager(x).square().sum().backward()
    out = compiled(x)
    out.square().sum().backward()
    torch.testing.assert_close(out, eager(x))
    for (name, p), q in zip(compiled.named_parameters(), eager.parameters()):
        torch.testing.assert_close(p.grad, q.grad, msg=name)


def test_compile_needs_a_task_with_a_network():
    with pytest.raises(ValueError, match="CompileNetwork compiles a task's `net`; LightningModule has none"):
        CompileNetwork().setup(None, LightningModule(), "fit")


@pytest.mark.parametrize("mode, marks", [("reduce-overhead", 4), ("default", 0)])
def test_cuda_graph_mode_marks_a_new_step_before_every_batch(monkeypatch, mode, marks):
    calls = []
    monkeypatch.setattr(torch.compiler, "cudagraph_mark_step_begin", lambda: calls.append(1))
    callback = CompileNetwork(mode=mode)
    callback.on_train_batch_start(None, None, None, 0)
    callback.on_validation_batch_start(None, None, None, 0)
    callback.on_test_batch_start(None, None, None, 0)
    callback.on_predict_batch_start(None, None, None, 0)
    assert len(calls) == marks


class KeptStepGraph(CapturedTrainingStep):
    """Replays by rerunning (CUDA graphs need a GPU) and keeps the fit's recorded step for inspection."""

    def __init__(self, warmup_steps: int) -> None:
        super().__init__(warmup_steps)
        self.replay_factory = _EagerReplay

    def on_train_end(self, trainer, pl_module) -> None:
        self.kept = pl_module.step_graph
        super().on_train_end(trainer, pl_module)


def _fit(task_factory, fake_data_dir, callbacks, **data_kwargs):
    seed_everything(7)
    model = task_factory()
    data = TranslatedMNIST(data_dir=fake_data_dir, train_digits=20, val_digits=4, test_digits=4, batch_size=48,
                           download=False, **data_kwargs)
    trainer = Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False, callbacks=callbacks)
    trainer.fit(model, datamodule=data)
    return model, trainer


@pytest.mark.parametrize("kind", ["single", "ntk", "mup", "stack", "depth_scan"])
def test_a_replayed_step_trains_bit_identically_to_lightnings_step(fake_data_dir, kind):
    def task():
        if kind == "single":
            return MLPClassifier(num_classes=28, input_shape=(1, 28, 28), depth=2, n_max=40)
        if kind in ("ntk", "mup"):  # a parametrized weight scale; MuReadout and MuSGD's per-shape learning rates
            return MLPClassifier(num_classes=28, input_shape=(1, 28, 28), depth=2, width=32, parameterization=kind,
                                 mup_base_width=16)
        return StackedMLPClassifier(num_classes=28, input_shape=(1, 28, 28), seeds=[0, 3],
                                    depth=2 if kind == "stack" else [1, 2], n_max=40)

    stacked = kind != "single"
    data_kwargs = {"placement": "device"} if stacked else {}
    plain, plain_trainer = _fit(task, fake_data_dir, [], **data_kwargs)
    captured = KeptStepGraph(warmup_steps=2)
    replayed, trainer = _fit(task, fake_data_dir, [captured], **data_kwargs)
    steps_per_epoch = -(-len(trainer.datamodule.dataset("train")) // 48)
    short_batches = 2 if len(trainer.datamodule.dataset("train")) % 48 else 0
    graph = captured.kept
    assert trainer.global_step == plain_trainer.global_step == 2 * steps_per_epoch
    assert graph.eager_steps == 2 + short_batches and graph.replays == 2 * steps_per_epoch - graph.eager_steps
    assert graph.replays > 0
    for (name, p), q in zip(replayed.named_parameters(), plain.parameters()):
        assert torch.equal(p, q), name
    plain_state = plain_trainer.optimizers[0].state_dict()["state"]
    for key, state in trainer.optimizers[0].state_dict()["state"].items():
        assert torch.equal(state["momentum_buffer"], plain_state[key]["momentum_buffer"])
    assert graph.eval_replays > 0  # validation batches replayed their recorded forward
    for name in ("train/acc", "train/loss", "val/acc", "val/loss", "val/acc_best"):
        assert torch.equal(trainer.callback_metrics[name], plain_trainer.callback_metrics[name]), name
    assert replayed.step_graph is None  # released at the end of fit


def test_a_changed_learning_rate_after_recording_is_an_error(fake_data_dir):
    class Decay(KeptStepGraph):
        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            if batch_idx == 4:
                trainer.optimizers[0].param_groups[0]["lr"] = 0.001

    with pytest.raises(RuntimeError, match=r"learning rate changed from \[0.01\] to \[0.001\]"):
        _fit(lambda: MLPClassifier(num_classes=28, input_shape=(1, 28, 28), width=8), fake_data_dir, [Decay(1)])


def test_a_step_that_cannot_be_recorded_is_refused_before_training(fake_data_dir):
    model = MLPClassifier(num_classes=28, input_shape=(1, 28, 28), width=8)
    with pytest.raises(ValueError, match=r"it needs a CUDA device \(the model is on cpu\).*"
                                         r"precision '32-true' only, not 'bf16-mixed'"):
        Trainer(accelerator="cpu", max_steps=2, precision="bf16-mixed", logger=False, enable_checkpointing=False,
                enable_progress_bar=False, enable_model_summary=False, callbacks=[CapturedTrainingStep()]).fit(
            model, datamodule=TranslatedMNIST(data_dir=fake_data_dir, train_digits=20, val_digits=4,
                                              test_digits=4, download=False))
    with pytest.raises(ValueError, match="warmup_steps must be at least 1"):
        CapturedTrainingStep(warmup_steps=0)
    with pytest.raises(ValueError, match="max_eval_shapes must be 0 or more, got -1"):
        CapturedTrainingStep(max_eval_shapes=-1)
    with pytest.raises(TypeError, match="needs a wide_lightning ClassificationTask; got LightningModule"):
        CapturedTrainingStep().on_train_start(None, LightningModule())


def test_matmul_precision_holds_for_the_fit_only(fake_data_dir):
    seen = []

    class Record(Callback):
        def on_train_start(self, trainer, pl_module):
            seen.append(torch.get_float32_matmul_precision())

    before = torch.get_float32_matmul_precision()
    _fit(lambda: MLPClassifier(num_classes=28, input_shape=(1, 28, 28), width=8), fake_data_dir,
         [MatmulPrecision("medium"), Record()])
    assert seen == ["medium"] and torch.get_float32_matmul_precision() == before
    with pytest.raises(ValueError, match="precision must be 'highest', 'high' or 'medium', got 'tf32'"):
        MatmulPrecision("tf32")

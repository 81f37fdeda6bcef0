"""CompileNetwork: a compiled network trains, and its checkpoints load without compiling."""

import pytest
import torch
from lightning.pytorch import LightningModule, Trainer

from wide_lightning import MLPClassifier, TranslatedMNIST
from wide_lightning.speed import CompileNetwork


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

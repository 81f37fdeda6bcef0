import pytest
import torch
from lightning.pytorch import Trainer

from wide_lightning.data import MNIST, TranslatedMNIST
from wide_lightning.checkpoints import CheckpointKindError, read_checkpoint
from wide_lightning.tasks import (
    ConvClassifier,
    LinearProbe,
    MLPClassifier,
    RawInputLinear,
    load_backbone_task,
    resolve_lr,
)
from wide_lightning.tasks.probe import probe_head
from wide_lightning.transfer import ProbeSpec, check_probe_spec


def tiny_trainer(**kwargs) -> Trainer:
    options = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                   enable_model_summary=False, enable_checkpointing=False, max_epochs=1,
                   limit_train_batches=4, limit_val_batches=2, limit_test_batches=2, num_sanity_val_steps=0)
    options.update(kwargs)
    return Trainer(**options)


def train_backbone(fake_data_dir, path, depth: int = 2, **data_options):
    """A tiny MLP trained briefly on fake translated MNIST, saved to ``path``."""
    data = TranslatedMNIST(data_dir=fake_data_dir, download=False, batch_size=64, **data_options)
    model = MLPClassifier(num_classes=data.num_classes, input_shape=data.input_shape, depth=depth, width=16)
    trainer = tiny_trainer()
    trainer.fit(model, datamodule=data)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture()
def backbone_checkpoint(fake_data_dir, tmp_path):
    return train_backbone(fake_data_dir, tmp_path / "backbone.ckpt")


def test_lr_rule_one_over_width():
    assert resolve_lr("1/width", 64) == pytest.approx(1 / 64)
    assert resolve_lr(0.0129, 64) == 0.0129
    model = ConvClassifier(num_classes=10, input_shape=(3, 32, 32), width=64, conv_channels=4, lr="1/width")
    assert model.configure_optimizers().param_groups[0]["lr"] == pytest.approx(1 / 64)
    with pytest.raises(ValueError, match="lr must be a positive finite number or '1/width', got -1"):
        ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=8, lr=-1)


def test_classifier_uses_sgd_with_momentum():
    model = MLPClassifier(num_classes=28, input_shape=(1, 28, 28), depth=20)
    optimizer = model.configure_optimizers()
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.param_groups[0]["momentum"] == 0.9 and optimizer.param_groups[0]["lr"] == 0.01
    assert model.net.width == 271


def test_training_logs_every_split_and_the_best(fake_data_dir):
    data = MNIST(data_dir=fake_data_dir, download=False, val_size=200, batch_size=64, test_each_epoch=True)
    model = ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=8, conv_channels=4)
    trainer = tiny_trainer(max_epochs=2)
    trainer.fit(model, datamodule=data)
    metrics = trainer.callback_metrics
    for key in ("train/loss", "train/acc", "val/loss", "val/acc", "val/acc_best", "test/acc", "test/acc_best"):
        assert key in metrics, key
    assert metrics["val/acc_best"] >= metrics["val/acc"]
    result = trainer.test(model, datamodule=data, verbose=False)[0]
    assert set(result) == {"test/loss", "test/acc"}


def test_epoch_values_are_exact_means_and_the_step_loss_is_logged_on_logger_steps_only(fake_data_dir, tmp_path):
    from lightning.pytorch.loggers import CSVLogger

    data = MNIST(data_dir=fake_data_dir, download=False, val_size=200, batch_size=64)
    model = ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=8, conv_channels=4)
    logged_steps = []
    log = model.log

    def spy(name, *args, **kwargs):
        if name == "train/loss_step":
            logged_steps.append(model.global_step)
        return log(name, *args, **kwargs)

    model.log = spy
    trainer = tiny_trainer(max_epochs=1, limit_train_batches=12, limit_val_batches=None, log_every_n_steps=5,
                           logger=CSVLogger(tmp_path))
    trainer.fit(model, datamodule=data)
    # Lightning writes step metrics after the 4th and 9th batches (its batch count after the step, plus one, is a
    # multiple of 5) and labels them steps 4 and 9; during those batches' training_step, global_step is 3 and 8
    assert logged_steps == [3, 8]
    rows = (tmp_path / "lightning_logs" / "version_0" / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    steps_with_loss = [int(r.split(",")[header.index("step")]) for r in rows[1:]
                       if r.split(",")[header.index("train/loss_step")]]
    assert steps_with_loss == [4, 9]
    # val/loss and val/acc of the epoch: the exact means over all 200 validation examples (batches 64, 64, 64, 8)
    model.eval()
    x, y = data.dataset("val").images, data.dataset("val").labels["digit"]
    with torch.no_grad():
        logits = model(data.batch_transform(x, train=False))
    metrics = trainer.callback_metrics
    assert metrics["val/loss"].item() == pytest.approx(torch.nn.functional.cross_entropy(logits, y).item(), rel=1e-5)
    assert metrics["val/acc"].item() == pytest.approx((logits.argmax(1) == y).float().mean().item(), abs=1e-6)


def test_probe_trains_only_the_head_and_leaves_the_backbone_bit_identical(fake_data_dir, backbone_checkpoint):
    original = load_backbone_task(backbone_checkpoint).net.features.state_dict()
    data = TranslatedMNIST(data_dir=fake_data_dir, download=False, target="digit", batch_size=64, test_each_epoch=True)
    probe = LinearProbe(str(backbone_checkpoint), num_classes=10, input_shape=(1, 28, 28))
    head_before = {k: v.clone() for k, v in probe.net.head.state_dict().items()}
    assert probe.net.head.out_features == 10  # the backbone had 28 classes
    assert {id(p) for p in probe.trainable_parameters()} == {id(p) for p in probe.net.head.parameters()}
    trainer = tiny_trainer(max_epochs=2)
    trainer.fit(probe, datamodule=data)
    for name, tensor in probe.net.features.state_dict().items():
        assert torch.equal(tensor, original[name]), name
    assert not torch.equal(probe.net.head.weight, head_before["weight"])
    assert "test/acc_best" in trainer.callback_metrics
    probe.train()
    assert probe.training and probe.net.head.training and not probe.net.features.training


@pytest.mark.parametrize("width", [16, 1024])
def test_an_ntk_probe_head_starts_as_the_standard_head_and_moves_the_logits_alike_at_every_width(width):
    standard, ntk = probe_head(width, 3, seed=5), probe_head(width, 3, seed=5, parameterization="ntk")
    h = torch.randn(1, width, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(ntk(h), standard(h), atol=1e-5)  # the same function at initialization
    # one SGD step (lr eta) on the loss sum(g * z) moves the logits by -eta (s^2 ||h||^2 + 1) g, s the weight's
    # forward scale (1 for standard, 1/sqrt(width) for ntk; the bias is not scaled): width-free under ntk
    eta, g = 0.01, torch.tensor([[1.0, -2.0, 0.5]])
    for head, s2 in ((standard, 1.0), (ntk, 1.0 / width)):
        before = head(h)
        (before * g).sum().backward()
        with torch.no_grad():
            for parameter in head.parameters():
                parameter -= eta * parameter.grad
            moved = head(h) - before
        expected = -eta * (s2 * h.square().sum() + 1) * g
        assert torch.allclose(moved, expected, rtol=1e-4, atol=1e-6), (width, s2)


def test_a_probe_head_of_another_parameterization_is_one_sentence(fake_data_dir, backbone_checkpoint):
    with pytest.raises(ValueError, match=r"^head_parameterization must be 'standard' or 'ntk', got 'mup': "):
        LinearProbe(str(backbone_checkpoint), num_classes=10, input_shape=(1, 28, 28), head_parameterization="mup")
    with pytest.raises(ValueError, match=r"probe.head_parameterization='ntk' is not available to a stacked model"):
        check_probe_spec(ProbeSpec(target="digit", head_parameterization="ntk"), "wide_lightning.StackedMLPClassifier")
    with pytest.raises(ValueError, match=r"probe.control='untrained' is not available to a stacked model .* to 'none'"):
        check_probe_spec(ProbeSpec(target="digit", control="untrained"), "wide_lightning.StackedMLPClassifier")
    check_probe_spec(ProbeSpec(target="digit", head_parameterization="ntk", control="untrained"),
                     "wide_lightning.MLPClassifier")
    check_probe_spec(ProbeSpec(target=None, head_parameterization="ntk"), "wide_lightning.StackedMLPClassifier")


def test_an_ntk_probe_trains_only_its_head_and_reloads_as_it_was_saved(fake_data_dir, backbone_checkpoint, tmp_path):
    data = TranslatedMNIST(data_dir=fake_data_dir, download=False, target="digit", batch_size=64, test_each_epoch=True)
    probe = LinearProbe(str(backbone_checkpoint), num_classes=10, input_shape=(1, 28, 28), head_parameterization="ntk")
    weight_before = probe.net.head.weight.clone()
    trainer = tiny_trainer(max_epochs=1)
    trainer.fit(probe, datamodule=data)
    assert {id(p) for p in probe.trainable_parameters()} == {id(p) for p in probe.net.head.parameters()}
    assert not torch.equal(probe.net.head.weight, weight_before)
    trainer.save_checkpoint(tmp_path / "probe.ckpt")
    reloaded = read_checkpoint(tmp_path / "probe.ckpt").build(LinearProbe)
    x = torch.randn(4, 1, 28, 28)
    probe.eval(), reloaded.eval()
    assert reloaded.hparams.head_parameterization == "ntk" and torch.equal(reloaded(x), probe(x))


def test_an_untrained_probe_freezes_the_backbone_as_its_seed_initialized_it(fake_data_dir, backbone_checkpoint):
    trained = load_backbone_task(backbone_checkpoint)
    probe = LinearProbe(str(backbone_checkpoint), num_classes=10, input_shape=(1, 28, 28), untrained_seed=3)
    torch.manual_seed(3)
    fresh = MLPClassifier(num_classes=28, input_shape=(1, 28, 28), depth=2, width=16)
    state = probe.net.features.state_dict()
    assert state.keys() == fresh.net.features.state_dict().keys()
    for name, tensor in fresh.net.features.state_dict().items():
        assert torch.equal(state[name], tensor), name
        if name.endswith("weight"):
            assert not torch.equal(state[name], trained.net.features.state_dict()[name]), name
    assert {id(p) for p in probe.trainable_parameters()} == {id(p) for p in probe.net.head.parameters()}


def test_probe_rejects_checkpoints_of_the_wrong_kind(fake_data_dir, backbone_checkpoint, tmp_path):
    with pytest.raises(CheckpointKindError, match="does not exist"):
        LinearProbe(str(tmp_path / "missing.ckpt"), num_classes=10, input_shape=(1, 28, 28))
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointKindError, match="cannot be read"):
        LinearProbe(str(garbage), num_classes=10, input_shape=(1, 28, 28))
    foreign = tmp_path / "foreign.ckpt"
    torch.save({"state_dict": {}}, foreign)
    with pytest.raises(CheckpointKindError, match="not a wide_lightning checkpoint"):
        LinearProbe(str(foreign), num_classes=10, input_shape=(1, 28, 28))
    probe = LinearProbe(str(backbone_checkpoint), num_classes=10, input_shape=(1, 28, 28))
    probe_path = tmp_path / "probe.ckpt"
    trainer = tiny_trainer(max_epochs=1, limit_train_batches=1)
    trainer.fit(probe, datamodule=TranslatedMNIST(data_dir=fake_data_dir, download=False, target="digit"))
    trainer.save_checkpoint(probe_path)
    with pytest.raises(CheckpointKindError, match="is a LinearProbe checkpoint; a linear probe needs a base-training"):
        LinearProbe(str(probe_path), num_classes=10, input_shape=(1, 28, 28))
    with pytest.raises(ValueError, match=r"takes inputs of shape \(1, 28, 28\), but the data give \(3, 32, 32\)"):
        LinearProbe(str(backbone_checkpoint), num_classes=15, input_shape=(3, 32, 32))


def test_raw_input_linear_is_a_linear_classifier_on_pixels(fake_data_dir):
    model = RawInputLinear(num_classes=10, input_shape=(1, 28, 28))
    assert sum(p.numel() for p in model.parameters()) == 784 * 10 + 10
    data = TranslatedMNIST(data_dir=fake_data_dir, download=False, target="digit", test_each_epoch=True)
    trainer = tiny_trainer()
    trainer.fit(model, datamodule=data)
    assert "test/acc_best" in trainer.callback_metrics


def test_checkpoint_round_trip_restores_the_same_network(backbone_checkpoint):
    task = load_backbone_task(backbone_checkpoint)
    assert isinstance(task, MLPClassifier) and not task.training
    again = load_backbone_task(backbone_checkpoint)
    x = torch.rand(3, 1, 28, 28)
    torch.testing.assert_close(task(x), again(x))

"""Width parameterizations: standard (today's networks, bit for bit), NTK (Jacot et al. 2018) and μP (mup)."""

from __future__ import annotations

import math

import pytest
import torch

from tests.conftest import checkpoint_file
from tests.test_faults import NO_WANDB, data_env, fit  # noqa: F401 - data_env is a fixture
from wide_lightning.checkpoints import read_checkpoint
from wide_lightning.nets import MLP, ConvNet, TorchvisionNet
from wide_lightning.parameterization import fan_in, layer_gains
from wide_lightning.tasks.classifier import ConvClassifier, MLPClassifier

SHAPE = (1, 6, 6)


def test_standard_is_todays_network_bit_for_bit():
    # |weights| sums of MLP((1, 6, 6), 4, 2, 8) at seed 0, computed with the networks before parameterizations existed
    torch.manual_seed(0)
    state = MLP(SHAPE, 4, 2, 8).state_dict()
    assert list(state) == ["features.1.weight", "features.1.bias", "features.3.weight", "features.3.bias",
                           "head.weight", "head.bias"]
    sums = {k: float(v.double().abs().sum()) for k, v in state.items() if k.endswith("weight")}
    assert sums == {"features.1.weight": 55.77761080302298, "features.3.weight": 28.252506643824745,
                    "head.weight": 11.21151180472225}


@pytest.mark.parametrize("build", [lambda p: MLP(SHAPE, 4, 2, 16, parameterization=p),
                                   lambda p: ConvNet((1, 8, 8), 3, 12, "width", parameterization=p)])
def test_ntk_computes_the_standard_function_and_its_gradients_carry_the_scale(build):
    torch.manual_seed(3)
    standard = build("standard")
    torch.manual_seed(3)
    ntk = build("ntk")
    x = torch.randn(5, *standard.input_shape)
    for (s_module, gain), (n_module, _) in zip(layer_gains(standard, standard.head), layer_gains(ntk, ntk.head)):
        scale = math.sqrt(gain / fan_in(n_module))
        stored = n_module.parametrizations.weight.original
        assert stored.std().item() == pytest.approx(1.0, rel=0.5)  # drawn N(0, 1)
        torch.testing.assert_close(stored * scale, s_module.weight)  # the standard weights = NTK weights x scale
    torch.testing.assert_close(ntk(x), standard(x))
    standard(x).square().sum().backward()
    ntk(x).square().sum().backward()
    for (s_module, gain), (n_module, _) in zip(layer_gains(standard, standard.head), layer_gains(ntk, ntk.head)):
        scale = math.sqrt(gain / fan_in(n_module))
        torch.testing.assert_close(n_module.parametrizations.weight.original.grad, scale * s_module.weight.grad,
                                   rtol=1e-4, atol=1e-6)


def test_mup_at_its_base_width_is_the_standard_network_and_wider_scales_by_shape():
    x = torch.randn(4, *SHAPE)
    torch.manual_seed(1)
    standard = MLP(SHAPE, 4, 2, 64)
    torch.manual_seed(1)
    base = MLP(SHAPE, 4, 2, 64, parameterization="mup")
    torch.testing.assert_close(base(x), standard(x))
    task = MLPClassifier(4, SHAPE, depth=2, width=256, parameterization="mup", lr=0.01)
    shapes = {name: p.infshape.ninf() for name, p in task.net.named_parameters()}
    assert shapes == {"features.1.weight": 1, "features.1.bias": 1, "features.3.weight": 2, "features.3.bias": 1,
                      "head.weight": 1, "head.bias": 0}
    groups = sorted((g["lr"], len(g["params"])) for g in task.configure_optimizers().param_groups)
    # MuSGD: vector-like parameters (one width dimension) at lr x 256/64; hidden matrices and the output bias at lr
    assert groups == [(0.01, 1), (0.01, 1), (pytest.approx(0.04), 4)]
    assert task.facts()["parameterization"] == "mup"


def test_a_mup_checkpoint_reloads_with_its_base_shapes(tmp_path):
    from lightning.pytorch import Trainer

    torch.manual_seed(0)
    task = ConvClassifier(3, (1, 8, 8), width=128, conv_channels=4, parameterization="mup")
    trainer = Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False)
    trainer.strategy.connect(task)
    trainer.save_checkpoint(tmp_path / "mup.ckpt")
    record = read_checkpoint(str(tmp_path / "mup.ckpt"))
    assert record.parameterization == "mup"
    reloaded = record.build(ConvClassifier)
    assert all(hasattr(p, "infshape") for p in reloaded.net.parameters())  # rebuilt, not unpickled
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(reloaded.eval()(x), task.eval()(x))


def test_bad_parameterizations_are_one_sentence():
    with pytest.raises(ValueError, match=r"parameterization must be 'standard', 'ntk' or 'mup', got 'nkt'"):
        MLP(SHAPE, 4, 1, 8, parameterization="nkt")
    with pytest.raises(ValueError, match=r"width 32 is below the μP base width 64.*mup_base_width=32"):
        MLP(SHAPE, 4, 1, 32, parameterization="mup")
    with pytest.raises(ValueError, match=r"parameterization 'mup' is offered for the paper's ConvNet and MLP"):
        TorchvisionNet("resnet18", (3, 32, 32), 10, parameterization="mup")


def test_a_mup_checkpoint_serves_the_atlas_and_the_probe(data_env):
    """The base shapes are not in the checkpoint: the atlas command and the probe rebuild the μP network."""
    from wide_lightning.atlas.command import atlas as atlas_command

    mup = ["--model.init_args.parameterization=mup", "--model.init_args.mup_base_width=16"]
    base = fit(*NO_WANDB, *mup, epochs=1, root="runs/mup")
    tiny = dict(grid_size=4, min_density=2, steps=4, neurons=2, reducer="pca", max_points=500, device="cpu")
    for space in ("hidden", "classifier_subspace"):
        out = atlas_command(str(checkpoint_file(base)), space=space, **tiny)
        assert (out / "panel.png").is_file()
    probe = fit(*NO_WANDB, "--model.class_path=wide_lightning.LinearProbe",
                f"--model.init_args.backbone_checkpoint={checkpoint_file(base)}", "--data.init_args.target=digit",
                epochs=1, root="runs/probe")
    assert probe["status"] == "finished" and probe["model"] == "LinearProbe" and probe["base"]["test/acc"] > 0


def test_a_depth_one_mlps_initial_features_are_the_same_under_every_parameterization():
    """So one untrained control (an atlas's, a probe's) is the floor of all three at depth 1."""
    x = torch.randn(4, *SHAPE)
    features = []
    for p in ("standard", "ntk", "mup"):
        torch.manual_seed(2)
        net = MLP(SHAPE, 4, 1, 32, parameterization=p, mup_base_width=16)
        with torch.no_grad():
            features.append(net.features(x))
    assert torch.equal(features[0], features[1]) and torch.equal(features[0], features[2])

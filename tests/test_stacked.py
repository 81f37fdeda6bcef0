"""Many seeds in one process: each member of a stack trains exactly as it would alone."""

import json

import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from tests.conftest import REPO, run_folders
from wide_lightning import MLPClassifier, StackedLinearProbe, StackedMLPClassifier, TranslatedMNIST
from wide_lightning.cli import build_cli
from wide_lightning.nets import MLP
from wide_lightning.stack import StackedNet
from wide_lightning.checkpoints import CheckpointKindError
from wide_lightning.tasks.probe import LinearProbe
from wide_lightning.tasks.metrics import EpochLossAccuracy

SHAPE = (1, 28, 28)


def data(fake_data_dir, **kwargs):
    return TranslatedMNIST(data_dir=fake_data_dir, train_digits=20, val_digits=4, test_digits=4, batch_size=64,
                           placement="device", download=False, **kwargs)


def trainer(**kwargs):
    return Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                   enable_model_summary=False, **kwargs)


def test_stacked_net_matches_its_members_and_checks_inputs():
    members = [MLP(SHAPE, 5, depth=2, width=8) for _ in range(3)]
    stack = StackedNet(members)
    x = torch.randn(4, *SHAPE)
    out = stack(x)
    assert out.shape == (3, 4, 5) and stack.features(x).shape == (3, 4, 8)
    per_member = torch.randn(3, 4, *SHAPE)
    stacked_out = stack(per_member)
    for k, member in enumerate(members):
        torch.testing.assert_close(out[k], member(x))
        torch.testing.assert_close(stacked_out[k], member(per_member[k]))
        torch.testing.assert_close(stack.member(k)(x), member(x))
    with pytest.raises(ValueError, match=r"expected inputs \[B, 1, 28, 28\] or \[3, B, ...\], got \(2, 4, 1, 28, 28\)"):
        stack(torch.randn(2, 4, *SHAPE))
    with pytest.raises(ValueError, match="member 1 does not have the structure of member 0"):
        StackedNet([MLP(SHAPE, 5, depth=2, width=8), MLP(SHAPE, 5, depth=2, width=9)])


def test_epoch_loss_accuracy_against_hand_counts():
    metric = EpochLossAccuracy(members=2)
    logits = torch.tensor([[[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]],    # member 0 predicts 0, 1, 0
                           [[0.0, 1.0], [0.0, 1.0], [0.0, 1.0]]])   # member 1 predicts 1, 1, 1
    metric.update(torch.tensor([[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]]), logits, torch.tensor([0, 1, 1]))  # shared targets
    metric.update(torch.tensor([[2.0], [7.0]]), logits[:, :1], torch.tensor([[0], [0]]))  # per-member targets
    loss, acc = metric.compute()
    torch.testing.assert_close(loss, torch.tensor([8 / 4, 22 / 4]))
    torch.testing.assert_close(acc, torch.tensor([3 / 4, 2 / 4]))
    single = EpochLossAccuracy()  # one network: scalar results
    single.update(torch.tensor([0.5, 1.5]), logits[0, :2], torch.tensor([0, 0]))
    loss, acc = single.compute()
    assert loss.shape == acc.shape == () and loss.item() == 1.0 and acc.item() == 0.5


def test_members_start_as_seeded_single_runs_and_train_exactly_as_alone(fake_data_dir):
    seeds = [0, 3]
    stack = StackedMLPClassifier(num_classes=28, input_shape=SHAPE, seeds=seeds, depth=2, n_max=50)
    start = [stack.net.member(k).state_dict() for k in range(len(seeds))]
    trainer(max_steps=6, limit_val_batches=0).fit(stack, datamodule=data(fake_data_dir))
    for k, seed in enumerate(seeds):
        seed_everything(seed)  # what `wide-lightning fit --seed_everything=<seed>` does first
        single = MLPClassifier(num_classes=28, input_shape=SHAPE, depth=2, n_max=50)
        for name, value in single.net.state_dict().items():
            assert torch.equal(value, start[k][name]), name  # the same initialization
        trainer(max_steps=6, limit_val_batches=0).fit(single, datamodule=data(fake_data_dir))
        trained = stack.net.member(k).state_dict()
        for name, value in single.net.state_dict().items():
            assert not torch.equal(value, start[k][name])  # it trained...
            torch.testing.assert_close(trained[name], value, rtol=1e-5, atol=1e-6)  # ...exactly as alone


def test_stacked_probe_trains_only_heads_and_keeps_each_backbone_bit_identical(fake_data_dir, tmp_path):
    stack = StackedMLPClassifier(num_classes=28, input_shape=SHAPE, seeds=[1, 2], depth=2, n_max=50)
    fit = trainer(max_steps=2, limit_val_batches=0)
    fit.fit(stack, datamodule=data(fake_data_dir))
    path = tmp_path / "stack.ckpt"
    fit.save_checkpoint(path)
    probe = StackedLinearProbe(str(path), num_classes=10, input_shape=SHAPE, lr=0.05)
    frozen = {n: p.clone() for n, p in probe.net.weights.items() if n.startswith("features")}
    heads = {n: p.clone() for n, p in probe.net.weights.items() if n.startswith("head")}
    assert frozen and heads and probe.seeds == [1, 2]
    trainer(max_epochs=2).fit(probe, datamodule=data(fake_data_dir, target="digit", test_each_epoch=True))
    for name, value in frozen.items():
        assert torch.equal(probe.net.weights[name], value), name
    assert all(not torch.equal(probe.net.weights[n], v) for n, v in heads.items())
    for k in range(2):  # the probe's frozen features are member k's trained features
        for name, value in stack.net.member(k).features.state_dict().items():
            assert torch.equal(probe.net.member(k).features.state_dict()[name], value)
    with pytest.raises(CheckpointKindError, match="StackedLinearProbe needs a StackedMLPClassifier checkpoint"):
        single = Trainer(logger=False, max_steps=1, enable_progress_bar=False, enable_model_summary=False,
                         limit_val_batches=0, default_root_dir=tmp_path)
        single.fit(MLPClassifier(num_classes=28, input_shape=SHAPE, width=4), datamodule=data(fake_data_dir))
        single.save_checkpoint(tmp_path / "single.ckpt")
        StackedLinearProbe(str(tmp_path / "single.ckpt"), num_classes=10, input_shape=SHAPE)
    with pytest.raises(CheckpointKindError, match="a linear probe needs a base-training checkpoint"):
        LinearProbe(str(path), num_classes=10, input_shape=SHAPE)


def test_a_seeded_probe_head_is_the_members_head_whatever_ran_before(fake_data_dir, tmp_path):
    """A transfer run seeds its probe's head, so the head does not depend on the random stream base training left."""
    fit = trainer(max_steps=1, limit_val_batches=0)
    fit.fit(MLPClassifier(num_classes=28, input_shape=SHAPE, depth=2, n_max=30), datamodule=data(fake_data_dir))
    fit.save_checkpoint(tmp_path / "single.ckpt")
    stack = StackedMLPClassifier(num_classes=28, input_shape=SHAPE, seeds=[3, 8], depth=2, n_max=30)
    fit = trainer(max_steps=1, limit_val_batches=0)
    fit.fit(stack, datamodule=data(fake_data_dir))
    fit.save_checkpoint(tmp_path / "stack.ckpt")
    member_head = StackedLinearProbe(str(tmp_path / "stack.ckpt"), num_classes=10, input_shape=SHAPE).net.member(1).head
    heads = []
    for state in (1, 2):
        torch.manual_seed(state)  # two different leftovers of base training
        heads.append(LinearProbe(str(tmp_path / "single.ckpt"), num_classes=10, input_shape=SHAPE, head_seed=8).net.head)
    for head in heads:
        assert torch.equal(head.weight, member_head.weight) and torch.equal(head.bias, member_head.bias)
    unseeded = [LinearProbe(str(tmp_path / "single.ckpt"), num_classes=10, input_shape=SHAPE).net.head for _ in range(2)]
    assert not torch.equal(unseeded[0].weight, unseeded[1].weight)  # without a seed: the global stream
    assert heads[0].weight.std().item() == pytest.approx(heads[0].in_features ** -0.5, rel=0.1)  # variance 1/width


def test_duplicate_seeds_are_refused():
    with pytest.raises(ValueError, match="distinct integers, got \\[1, 1\\]"):
        StackedMLPClassifier(num_classes=28, input_shape=SHAPE, seeds=[1, 1])


def test_stacked_config_writes_one_summary_per_member_equal_to_the_single_run(fake_data_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("WIDE_LIGHTNING_DATA", str(fake_data_dir))
    common = ["--model.init_args.depth=3", "--model.init_args.n_max=40", "--data.init_args.train_digits=20",
              "--data.init_args.val_digits=4", "--data.init_args.test_digits=4", "--trainer.max_epochs=1",
              "--probe.max_epochs=1", "--trainer.logger=false", "--trainer.enable_progress_bar=false"]
    build_cli(["fit", "--config", str(REPO / "configs/translated_mnist/transfer_mlp_stacked.yaml"),
               "--model.init_args.seeds=[4,7]", *common, f"--trainer.default_root_dir={tmp_path / 'run'}"])
    [run] = run_folders(tmp_path / "run")
    assert run.name.startswith("seeds4-7-")
    records = {s: json.loads((run / f"summary-seed{s}.json").read_text()) for s in (4, 7)}
    # the sweep's single run of seed 7 on the same data path: the same numbers, base and probe
    build_cli(["fit", "--config", str(REPO / "configs/translated_mnist/transfer_mlp.yaml"), "--seed_everything=7",
               "--data.init_args.placement=device", *common, f"--trainer.default_root_dir={tmp_path / 'single'}"])
    single = json.loads((run_folders(tmp_path / "single")[0] / "summary.json").read_text())
    for stage, metric in [("base", "val/acc"), ("base", "test/acc"), ("probe", "val/acc"), ("probe", "test/acc_best")]:
        assert records[7][stage][metric] == pytest.approx(single[stage][metric], abs=1e-6), (stage, metric)
    for seed, record in records.items():
        assert record["seed"] == seed and record["depth"] == 3 and record["kind"] == "transfer"
        assert record["model"] == "StackedMLPClassifier" and record["member_of_stack"]["seeds"] == [4, 7]
        assert 0 <= record["base"]["test/acc"] <= 1 and 0 <= record["probe"]["test/acc_best"] <= 1
        assert record["parameters"] == sum(p.numel() for p in MLP(SHAPE, 28, depth=3, n_max=40).parameters())
    means = records[4]["member_of_stack"]["means"]["base"]["test/acc"]
    assert means == pytest.approx((records[4]["base"]["test/acc"] + records[7]["base"]["test/acc"]) / 2)


def test_a_depth_scan_trains_each_depth_exactly_as_its_own_stack(fake_data_dir):
    scan = StackedMLPClassifier(num_classes=28, input_shape=SHAPE, seeds=[0, 3], depth=[1, 3], n_max=40)
    assert scan.net.num_members == 4 and scan.member_names == ["depth1/seed0", "depth1/seed3", "depth3/seed0", "depth3/seed3"]
    trainer(max_steps=5, limit_val_batches=0).fit(scan, datamodule=data(fake_data_dir))
    for g, depth in enumerate([1, 3]):
        alone = StackedMLPClassifier(num_classes=28, input_shape=SHAPE, seeds=[0, 3], depth=depth, n_max=40)
        trainer(max_steps=5, limit_val_batches=0).fit(alone, datamodule=data(fake_data_dir))
        for name, weights in alone.net.weights.items():
            torch.testing.assert_close(scan.net.groups[g].weights[name], weights, rtol=0, atol=1e-6)
    widths = [m["width"] for m in scan.member_facts()]
    assert widths == [MLP(SHAPE, 28, depth=1, n_max=40).width] * 2 + [MLP(SHAPE, 28, depth=3, n_max=40).width] * 2
    assert [m["parameters"] for m in scan.member_facts()] == [
        sum(p.numel() for p in MLP(SHAPE, 28, depth=d, n_max=40).parameters()) for d in (1, 1, 3, 3)]
    with pytest.raises(TypeError, match="penultimate layers differ in width"):
        scan.net.features(torch.zeros(2, *SHAPE))
    with pytest.raises(ValueError, match="distinct positive depths, got \\[2, 2\\]"):
        StackedMLPClassifier(num_classes=28, input_shape=SHAPE, depth=[2, 2])
    with pytest.raises(ValueError, match="lr='1/width' gives every depth its own learning rate"):
        StackedMLPClassifier(num_classes=28, input_shape=SHAPE, depth=[1, 2], lr="1/width")


def test_the_depth_scan_config_writes_a_summary_per_depth_and_seed_that_the_report_plots(fake_data_dir, tmp_path,
                                                                                        monkeypatch):
    from wide_lightning.report import figure4, load_runs

    monkeypatch.setenv("WIDE_LIGHTNING_DATA", str(fake_data_dir))
    build_cli(["fit", "--config", str(REPO / "configs/translated_mnist/transfer_mlp_scan.yaml"),
               "--model.init_args.seeds=[4,7]", "--model.init_args.depth=[1,2]", "--model.init_args.n_max=40",
               "--data.init_args.train_digits=20", "--data.init_args.val_digits=4", "--data.init_args.test_digits=4",
               "--trainer.max_epochs=1", "--probe.max_epochs=1", "--trainer.logger=false",
               "--trainer.enable_progress_bar=false", f"--trainer.default_root_dir={tmp_path}"])
    for depth in (1, 2):
        for seed in (4, 7):
            record = json.loads((run_folders(tmp_path)[0] / f"summary-depth{depth}-seed{seed}.json").read_text())
            assert (record["depth"], record["seed"], record["kind"]) == (depth, seed, "transfer")
            assert record["width"] == MLP(SHAPE, 28, depth=depth, n_max=40).width
            assert record["member_of_stack"] == {**record["member_of_stack"], "depths": [1, 2], "seeds": [4, 7]}
            assert 0 <= record["base"]["test/acc"] <= 1 and 0 <= record["probe"]["test/acc_best"] <= 1
    figure = figure4(load_runs([str(tmp_path)]).runs)
    assert [(p.x, p.seeds) for p in figure.points] == [(1, [4, 7]), (2, [4, 7])]


def test_a_transfer_runs_probe_gets_the_fits_speed_levers(fake_data_dir, tmp_path, monkeypatch):
    settings = []
    set_precision = torch.set_float32_matmul_precision
    monkeypatch.setattr(torch, "set_float32_matmul_precision", lambda p: (settings.append(p), set_precision(p)))
    monkeypatch.setenv("WIDE_LIGHTNING_DATA", str(fake_data_dir))
    build_cli(["fit", "--config", str(REPO / "configs/translated_mnist/transfer_mlp_stacked.yaml"),
               "--model.init_args.seeds=[4]", "--model.init_args.n_max=20", "--data.init_args.train_digits=20",
               "--data.init_args.val_digits=4", "--data.init_args.test_digits=4", "--trainer.max_epochs=1",
               "--probe.max_epochs=1", "--trainer.logger=false", "--trainer.enable_progress_bar=false",
               "--trainer.callbacks+=wide_lightning.speed.MatmulPrecision", "--trainer.callbacks.precision=medium",
               f"--trainer.default_root_dir={tmp_path}"])
    before = torch.get_float32_matmul_precision()
    # set for the base fit, its test and the probe's fit, and each time restored after
    assert settings == ["medium", before] * 3
    assert (run_folders(tmp_path)[0] / "summary-seed4.json").exists()

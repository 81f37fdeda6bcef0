"""Two processes (gloo, CPU) through the command line users type: `--trainer.strategy=ddp --trainer.devices=2`."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from tests.conftest import REPO, run_folders
from wide_lightning.atlas.command import atlas as atlas_command
from wide_lightning.data.base import DATA_ENV

# the config's own ActivationAtlas callback, made tiny
ATLAS = ["--trainer.callbacks.init_args.grid_size=5",
         "--trainer.callbacks.init_args.min_density=3", "--trainer.callbacks.init_args.steps=3",
         "--trainer.callbacks.init_args.neurons=2", "--trainer.callbacks.init_args.reducer=pca"]


# 1,999 training images (12,000 fake minus the 10,001 held out) split over 2 ranks; 3 + 3 steps
MNIST_DDP_FIT = ["fit", "--config", str(REPO / "configs/mnist/conv_n20.yaml"), "--trainer.strategy=ddp",
                 "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
                 "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
                 "--trainer.enable_progress_bar=false", "--model.init_args.conv_channels=4",
                 "--data.init_args.val_size=10001", *ATLAS]


def _wide_lightning(arguments: list[str], cwd, fake_data_dir) -> subprocess.CompletedProcess:
    """``python -m wide_lightning ...`` as a user types it; a rank left waiting would hit the timeout."""
    env = {**os.environ, DATA_ENV: str(fake_data_dir), "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "wide_lightning", *arguments], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.mark.slow
def test_ddp_fit_gathers_one_activation_per_training_example(fake_data_dir, tmp_path):
    result = _wide_lightning(MNIST_DDP_FIT, tmp_path, fake_data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    [root] = run_folders(tmp_path / "runs/mnist/conv_n20")  # one folder: the second process wrote into the first's
    saved = np.load(root / "atlas" / "atlas.npz")
    n_train = 12_000 - 10_001  # odd: the DistributedSampler pads one duplicate, which must be dropped
    assert len(saved["label_digit"]) == n_train == len(saved["xy"])
    assert not (root / "atlas-v1").exists()  # rank 0 alone wrote the atlas
    assert "test/acc" in result.stderr + result.stdout
    # the same final weights, one process, through the command: the same activations, layout and cells
    single = atlas_command(str(root / "checkpoints" / "last.ckpt"), data_dir=str(fake_data_dir), grid_size=5,
                           min_density=3, steps=3, neurons=2, reducer="pca", device="cpu",
                           out_dir=str(tmp_path / "single"))
    one = np.load(single / "atlas.npz")
    np.testing.assert_array_equal(one["label_digit"], saved["label_digit"])
    np.testing.assert_array_equal(one["cells"], saved["cells"])
    np.testing.assert_array_equal(one["counts"], saved["counts"])
    np.testing.assert_allclose(one["directions"], saved["directions"], rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_ddp_atlas_failing_on_rank_0_leaves_no_rank_waiting_and_keeps_the_run(fake_data_dir, tmp_path):
    """Rank 0 alone renders; when that fails, rank 1 (waiting at the callback's barrier) is released,
    the run tests its best checkpoint and ends normally, and the error is on disk."""
    result = _wide_lightning([*MNIST_DDP_FIT, "--trainer.callbacks.init_args.min_density=5000"], tmp_path, fake_data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    [root] = run_folders(tmp_path / "runs/mnist/conv_n20")
    assert "no cell of the 5x5 grid has more than min_density=5000" in (root / "atlas" / "atlas_error.txt").read_text()
    assert "ActivationAtlas failed" in result.stderr + result.stdout
    summary = json.loads((root / "summary.json").read_text())
    assert summary["status"] == "finished" and 0 <= summary["base"]["test/acc"] <= 1
    assert (root / "checkpoints" / "last.ckpt").is_file() and not (root / "atlas" / "atlas.npz").exists()


@pytest.mark.slow
def test_ddp_run_on_the_resident_path_resumes_from_last(fake_data_dir, tmp_path):
    """An interrupted 2-process run resumed with --ckpt_path last continues where it stopped, global batch 128 = 2 x 64."""
    command = ["fit", "--config", str(REPO / "configs/translated_mnist/mlp_shift.yaml"), "--trainer.logger=false",
               "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
               "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
               "--trainer.enable_progress_bar=false", "--model.init_args.n_max=16",
               "--data.init_args.train_digits=40", "--data.init_args.placement=device"]
    first = _wide_lightning([*command, "--trainer.max_epochs=1"], tmp_path, fake_data_dir)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "training batches from device memory (64 per process x 2 processes)" in first.stderr + first.stdout
    [root] = run_folders(tmp_path / "runs/translated_mnist/mlp_shift")
    last = root / "checkpoints/last.ckpt"
    assert torch.load(last, weights_only=False)["global_step"] == 3
    resumed = _wide_lightning([*command, "--trainer.max_epochs=2", "--ckpt_path=last"], tmp_path, fake_data_dir)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    state = torch.load(last, weights_only=False)
    assert state["global_step"] == 6 and state["epoch"] == 1  # one more epoch of 3 steps, not a restart
    assert "Restoring states from the checkpoint path" in resumed.stderr + resumed.stdout


def test_more_gpus_than_the_machine_has_is_a_clear_error(monkeypatch):
    from wide_lightning.cli import check_devices

    monkeypatch.setattr("torch.cuda.is_available", lambda: True)
    monkeypatch.setattr("torch.cuda.device_count", lambda: 2)
    with pytest.raises(ValueError, match=r"--trainer.devices=4 but this machine has 2 CUDA device\(s\); use --trainer.devices=2"):
        check_devices("gpu", 4)
    check_devices("gpu", 2)
    check_devices("cpu", 8)  # CPU processes are not limited by GPUs
    monkeypatch.setattr("torch.cuda.is_available", lambda: False)
    with pytest.raises(ValueError, match="--trainer.accelerator=cuda but this machine has no CUDA device"):
        check_devices("cuda", 1)


def _transfer_summaries(config: str, fake_data_dir, root, devices: int) -> dict[str, dict]:
    ddp = ["--trainer.strategy=ddp", "--trainer.devices=2"] if devices == 2 else ["--trainer.devices=1"]
    command = ["fit", "--config", str(REPO / config), *ddp,
               "--trainer.logger=false", "--trainer.accelerator=cpu", "--trainer.max_epochs=1", "--probe.max_epochs=1",
               "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
               "--trainer.enable_progress_bar=false", "--model.init_args.n_max=16", "--data.init_args.train_digits=40",
               "--data.init_args.placement=device", f"--trainer.default_root_dir={root}"]
    result = _wide_lightning(command, root.parent, fake_data_dir)
    assert result.returncode == 0, result.stderr[-3000:]
    return {path.name: {**json.loads(path.read_text()), "run_folder": path.parent} for path in root.glob("*/summary*.json")}


def _epoch_metrics(record: dict) -> set[str]:
    """``[seed<S>/]{train,val,test}/...`` keys of a summary, less the per-step values of rank 0."""
    return {k for k in record if k.split("/")[-2:-1] in (["train"], ["val"], ["test"]) and not k.endswith("_step")}


@pytest.mark.slow
@pytest.mark.parametrize("config", ["configs/translated_mnist/transfer_mlp.yaml",
                                    "configs/translated_mnist/transfer_mlp_stacked.yaml"])
def test_ddp_transfer_run_matches_one_process(config, fake_data_dir, tmp_path):
    """Base training and the linear probe on 2 processes give what 1 process gives, metrics synced over ranks.

    On the resident path both ranks draw the same permutation and take alternate positions, so global
    batch k of 2 x 64 holds the examples of batch k of 1 x 128, and DDP's gradient average is the
    mean over the 128: the two runs differ only by float rounding. Validation and test sets split
    evenly over the ranks (no padding duplicates), so a synced accuracy equals the 1-process one;
    rank 0's share alone would not.
    """
    one = _transfer_summaries(config, fake_data_dir, tmp_path / "one", devices=1)
    two = _transfer_summaries(config, fake_data_dir, tmp_path / "two", devices=2)
    assert sorted(one) == sorted(two) and one
    for name, single in one.items():
        double = two[name]
        assert double["kind"] == single["kind"] == "transfer"
        for stage in ("base", "probe"):
            # epoch values over all ranks: rank 0's half alone would give other numbers
            metrics = _epoch_metrics(single[stage])
            assert {"train/acc", "val/acc", "test/acc" if stage == "base" else "test/acc_best"} <= metrics
            assert metrics == _epoch_metrics(double[stage])
            for metric in metrics:
                assert double[stage][metric] == pytest.approx(single[stage][metric], abs=1e-5), (name, stage, metric)
        for stage, path in (("base", single["checkpoints"]["best"]), ("probe", single["probe"]["checkpoint"])):
            weights_one = torch.load(single["run_folder"] / path, weights_only=False)["state_dict"]
            weights_two = torch.load(double["run_folder"] / path, weights_only=False)["state_dict"]
            assert weights_one.keys() == weights_two.keys()
            for key in weights_one:
                torch.testing.assert_close(weights_two[key], weights_one[key], rtol=1e-4, atol=1e-6, msg=f"{stage} {key}")

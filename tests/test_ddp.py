"""Two processes (gloo, CPU) through the command line users type: `--trainer.strategy=ddp --trainer.devices=2`."""

import os
import subprocess
import sys

import numpy as np
import pytest

from tests.conftest import REPO
from wide_lightning.atlas.command import atlas as atlas_command
from wide_lightning.data.base import DATA_ENV

# the config's own ActivationAtlas callback, made tiny
ATLAS = ["--trainer.callbacks.init_args.grid_size=5",
         "--trainer.callbacks.init_args.min_density=3", "--trainer.callbacks.init_args.steps=3",
         "--trainer.callbacks.init_args.neurons=2", "--trainer.callbacks.init_args.reducer=pca"]


@pytest.mark.slow
def test_ddp_fit_gathers_one_activation_per_training_example(fake_data_dir, tmp_path):
    env = {**os.environ, DATA_ENV: str(fake_data_dir), "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    # 2,000 training images (12,000 fake minus the 10,000 held out) split over 2 ranks; 3 + 3 steps
    command = [sys.executable, "-m", "wide_lightning", "fit", "--config", str(REPO / "configs/mnist/conv_n20.yaml"),
               "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu", "--trainer.max_epochs=1",
               "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
               "--trainer.enable_progress_bar=false", "--model.init_args.conv_channels=4",
               "--data.init_args.val_size=10001", *ATLAS]
    result = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    root = tmp_path / "runs/mnist/conv_n20"
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
def test_ddp_run_on_the_resident_path_resumes_from_last(fake_data_dir, tmp_path):
    """An interrupted 2-process run resumed with --ckpt_path last continues where it stopped, global batch 128 = 2 x 64."""
    env = {**os.environ, DATA_ENV: str(fake_data_dir), "WANDB_MODE": "offline", "PYTHONPATH": str(REPO)}
    command = [sys.executable, "-m", "wide_lightning", "fit", "--config",
               str(REPO / "configs/translated_mnist/mlp_shift.yaml"), "--trainer.logger=false",
               "--trainer.strategy=ddp", "--trainer.devices=2", "--trainer.accelerator=cpu",
               "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
               "--trainer.enable_progress_bar=false", "--model.init_args.n_max=16",
               "--data.init_args.train_digits=40", "--data.init_args.placement=device"]
    first = subprocess.run([*command, "--trainer.max_epochs=1"], cwd=tmp_path, env=env, capture_output=True,
                           text=True, timeout=600)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "training batches from device memory (64 per process x 2 processes)" in first.stderr + first.stdout
    last = tmp_path / "runs/translated_mnist/mlp_shift/checkpoints/last.ckpt"
    import torch

    assert torch.load(last, weights_only=False)["global_step"] == 3
    resumed = subprocess.run([*command, "--trainer.max_epochs=2", "--ckpt_path=last"], cwd=tmp_path, env=env,
                             capture_output=True, text=True, timeout=600)
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

"""Runs that survive interruption and tell the truth (issue #12): exact resume, signals, atomic files,
W&B without a network, degenerate runs. Each test reproduces a failure a user met."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.conftest import REPO
from wide_lightning import files
from wide_lightning.cli import build_cli, main
from wide_lightning.data import MNIST
from wide_lightning.data.base import DATA_ENV
from wide_lightning.errors import DEBUG_ENV
from wide_lightning.files import AtomicCheckpointIO, DiskFull, atomic_path
from wide_lightning.interruption import Interrupted, received, signals_recorded, stop_promptly
from wide_lightning.loggers import REACH_TIMEOUT_ENV, WandbLogger
from wide_lightning.resume import NothingToTrain, ResumeMismatch
from wide_lightning.tasks.base import Diverged

CONFIG = str(REPO / "configs/translated_mnist/mlp_shift.yaml")
#: a small MLP on fake translated MNIST, a few batches per epoch, no W&B (unless a test wants it)
TINY = ["--model.init_args.width=32", "--trainer.limit_train_batches=4", "--trainer.limit_val_batches=2",
        "--trainer.limit_test_batches=2", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false", "--trainer.callbacks=[]"]
NO_WANDB = ["--trainer.logger=false"]


@pytest.fixture()
def data_env(fake_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    return fake_data_dir


def fit(*args: str, epochs: int = 2, root: str = "runs/tiny") -> dict:
    build_cli(["fit", "--config", CONFIG, *TINY, f"--trainer.max_epochs={epochs}",
               f"--trainer.default_root_dir={root}", *args])
    return json.loads(sorted(Path(root).glob("summary*.json"), key=os.path.getmtime)[-1].read_text())


# -- resume must be exact ------------------------------------------------------------------------------


def test_a_checkpoint_of_another_width_is_refused_not_trained(data_env, tmp_path):
    narrow = fit(*NO_WANDB, "--model.init_args.width=16", epochs=1, root="runs/narrow")
    with pytest.raises(ResumeMismatch) as refused:
        fit(*NO_WANDB, "--ckpt_path", narrow["checkpoints"]["last"], epochs=2, root="runs/wide")
    message = str(refused.value)
    assert "model.init_args.width: checkpoint 16, config 32" in message
    assert "leave out --ckpt_path" in message and "change the config" in message
    assert not Path("runs/wide/summary.json").exists()  # nothing trained, nothing reported


def test_ckpt_path_last_with_another_width_gives_the_same_error(data_env, capsys):
    fit(*NO_WANDB, epochs=1)
    with pytest.raises(ResumeMismatch, match="model.init_args.width: checkpoint 32, config 64"):
        fit(*NO_WANDB, "--model.init_args.width=64", "--ckpt_path=last", epochs=2)
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", CONFIG, *TINY, *NO_WANDB, "--trainer.default_root_dir=runs/tiny",
              "--model.init_args.width=64", "--ckpt_path=last"])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "size mismatch" not in err and "Traceback" not in err and "width: checkpoint 32, config 64" in err


def test_a_run_split_2_plus_2_reports_what_the_straight_run_reports(data_env):
    straight = fit(*NO_WANDB, epochs=4, root="runs/straight")
    fit(*NO_WANDB, epochs=2, root="runs/split")
    resumed = fit(*NO_WANDB, "--ckpt_path=last", epochs=4, root="runs/split")
    assert resumed["status"] == straight["status"] == "finished"
    assert resumed["base"] == straight["base"]  # val/acc_best covers epochs 1-4, not only 3-4
    straight_weights = torch.load(straight["checkpoints"]["last"], weights_only=True)["state_dict"]
    resumed_weights = torch.load(resumed["checkpoints"]["last"], weights_only=True)["state_dict"]
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)


def test_the_best_so_far_is_in_the_checkpoint(data_env):
    summary = fit(*NO_WANDB, epochs=2)
    state = torch.load(summary["checkpoints"]["last"], weights_only=True)["state_dict"]
    assert float(state["test_acc_best.value"]) == float("-inf")  # no test split in the validation loop: none seen
    assert float(state["val_acc_best.value"]) == pytest.approx(summary["base"]["val/acc_best"])


def test_ckpt_path_last_with_nothing_to_resume_says_so_in_one_line(data_env, capsys):
    summary = fit(*NO_WANDB, "--ckpt_path=last", epochs=1)
    assert summary["status"] == "finished"
    lines = [line for line in capsys.readouterr().err.splitlines() if "nothing to resume" in line]
    assert lines == [f"--ckpt_path last: nothing to resume in {os.path.join('runs/tiny', 'checkpoints')}; "
                     f"training from the start."]


def test_a_resumed_run_continues_its_wandb_run(data_env):
    first = fit(epochs=1)
    resumed = fit("--ckpt_path=last", epochs=2)
    assert first["wandb"]["id"] and resumed["wandb"]["id"] == first["wandb"]["id"]


def test_a_file_that_is_not_a_checkpoint_is_named(data_env, tmp_path):
    bogus = tmp_path / "notes.ckpt"
    bogus.write_text("not a checkpoint")
    with pytest.raises(ValueError, match=rf"--ckpt_path {bogus} cannot be read as a checkpoint"):
        fit(*NO_WANDB, "--ckpt_path", str(bogus), epochs=1)
    with pytest.raises(FileNotFoundError, match="--ckpt_path nowhere.ckpt: no such file"):
        fit(*NO_WANDB, "--ckpt_path", "nowhere.ckpt", epochs=1)


def test_the_same_command_twice_gives_the_same_numbers_and_weights(data_env):
    first = fit(*NO_WANDB, epochs=2, root="runs/first")
    second = fit(*NO_WANDB, epochs=2, root="runs/second")
    assert first["base"] == second["base"]
    a = torch.load(first["checkpoints"]["last"], weights_only=True)["state_dict"]
    b = torch.load(second["checkpoints"]["last"], weights_only=True)["state_dict"]
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# -- degenerate runs are not "finished" ----------------------------------------------------------------


@pytest.mark.parametrize("flag", ["--trainer.max_epochs=0", "--trainer.max_steps=0"])
def test_zero_epochs_is_refused(data_env, flag):
    with pytest.raises(ValueError, match=f"{flag} trains nothing"):
        build_cli(["fit", "--config", CONFIG, *TINY, *NO_WANDB, flag])


def _refused(capsys, *args: str) -> str:
    """``main`` with the tiny run's arguments must end in exit status 2 and one sentence: that sentence."""
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", CONFIG, *TINY, *NO_WANDB, "--trainer.default_root_dir=runs/tiny", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and len(err) <= 3, err
    return err[-1]


@pytest.mark.parametrize("value", ["0", "0.0"])
def test_zero_training_batches_is_refused_before_anything_is_built(data_env, capsys, value):
    # it used to test the untrained network (11% on MNIST) and record it "finished", with no checkpoint
    sentence = _refused(capsys, f"--trainer.limit_train_batches={value}", "--trainer.max_epochs=1")
    assert sentence == ("--trainer.limit_train_batches=0 trains nothing (no training batch: the run would test an "
                        "untrained network and call it finished); give a positive number of batches (e.g. "
                        "--trainer.limit_train_batches=4), a fraction of each epoch (e.g. 0.5), or leave it out to "
                        "train on every batch.")
    assert not Path("runs/tiny").exists()


def test_a_fraction_of_an_epoch_that_is_no_batch_is_refused_before_training(data_env, capsys):
    sentence = _refused(capsys, "--trainer.limit_train_batches=0.001", "--trainer.max_epochs=1")
    match = re.fullmatch(r"--trainer.limit_train_batches=0.001 leaves no training batch: an epoch has (\d+) batches "
                         r"and 0.001 of them is less than one; give --trainer.limit_train_batches=(\S+) or more, or a "
                         r"whole number of batches \(e.g. 1\)\.", sentence)
    assert match, sentence
    batches, least = int(match.group(1)), float(match.group(2))
    assert int(batches * least) >= 1 and int(batches * 0.001) == 0  # the fraction it advises is at least one batch
    assert not list(Path("runs/tiny").glob("summary*.json")) and not Path("runs/tiny/checkpoints").exists()


def test_a_probe_of_zero_epochs_is_refused(data_env):
    with pytest.raises(NothingToTrain, match=r"^--probe.max_epochs=0 trains no probe .*; give --probe.max_epochs a "
                                             r"positive number, or leave it out for the base run's epochs\.$"):
        build_cli(["fit", "--config", str(REPO / "configs/translated_mnist/transfer_mlp.yaml"), *TINY, *NO_WANDB,
                   "--probe.max_epochs=0", "--trainer.default_root_dir=runs/transfer"])
    assert not Path("runs/transfer").exists()


def test_a_resume_with_nothing_left_to_train_says_so_and_keeps_the_summary(data_env, capsys):
    # it used to train nothing and write a new "finished" summary with max_epochs 1 and the 2-epoch network's accuracy
    fit(*NO_WANDB, epochs=2)
    before = {p.name: p.read_bytes() for p in Path("runs/tiny").rglob("*") if p.is_file()}
    last = os.path.join("runs/tiny", "checkpoints", "last.ckpt")
    for epochs in (1, 2):  # fewer epochs than the checkpoint's, and as many
        sentence = _refused(capsys, f"--trainer.max_epochs={epochs}", "--ckpt_path", "last")
        assert sentence == (f"--ckpt_path {last} has already trained 2 epochs, so --trainer.max_epochs={epochs} leaves "
                            f"nothing to train; give --trainer.max_epochs=3 or more to train on (or leave out "
                            f"--ckpt_path to start a new run).")
    # 2 epochs of 4 batches: max_steps=8 leaves nothing either, whatever max_epochs says
    sentence = _refused(capsys, "--trainer.max_epochs=5", "--trainer.max_steps=8", f"--ckpt_path={last}")
    assert sentence == (f"--ckpt_path {last} has already trained 8 steps, so --trainer.max_steps=8 leaves nothing to "
                        f"train; give --trainer.max_steps=9 or more to train on (or leave out --ckpt_path to start a "
                        f"new run).")
    after = {p.name: p.read_bytes() for p in Path("runs/tiny").rglob("*") if p.is_file()}
    assert after == before  # the earlier summary.json byte for byte, and no new file
    assert json.loads(after["summary.json"])["max_epochs"] == 2


def test_a_diverging_run_stops_at_the_first_non_finite_epoch(data_env, capsys):
    with pytest.raises(Diverged) as diverged:
        fit(*NO_WANDB, "--model.init_args.lr=1e6", epochs=5)
    message = str(diverged.value)
    epoch = int(re.search(r"the training loss of epoch (\d) is nan", message).group(1))
    assert epoch < 4 and "learning rate 1e+06" in message and "--model.init_args.lr=100000" in message
    summary = json.loads(Path("runs/tiny/summary.json").read_text())
    assert summary["status"] == "diverged" and summary["error"] == message
    assert "test/acc" not in summary["base"]  # the untrained-by-NaN net is not tested as a result


def test_a_batch_larger_than_the_training_split_is_named(data_env):
    examples = len(MNIST(val_size=10_000).dataset("train"))
    with pytest.warns(UserWarning, match=rf"batch_size={examples + 1} is larger than the training split "
                                         rf"\({examples} examples\)"):
        MNIST(val_size=10_000, batch_size=examples + 1).setup("fit")


def test_a_failure_after_training_started_leaves_a_failed_summary_and_the_checkpoints(data_env, monkeypatch):
    from wide_lightning.tasks.classifier import MLPClassifier

    def broken(self):
        if self.current_epoch == 1:
            raise RuntimeError("a bug in epoch 1")
        self._log_epoch("train")
    monkeypatch.setattr(MLPClassifier, "on_train_epoch_end", broken)
    with pytest.raises(RuntimeError, match="a bug in epoch 1"):
        fit(*NO_WANDB, epochs=3)
    summary = json.loads(Path("runs/tiny/summary.json").read_text())
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: a bug in epoch 1"
    assert Path(summary["checkpoints"]["last"]).exists()


def test_sigterm_during_the_probe_is_an_interrupted_transfer_run(data_env, monkeypatch):
    from wide_lightning.tasks.probe import LinearProbe

    monkeypatch.setattr(LinearProbe, "on_train_start", lambda self: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(SystemExit) as exited:
        build_cli(["fit", "--config", str(REPO / "configs/translated_mnist/transfer_mlp.yaml"), *TINY, *NO_WANDB,
                   "--trainer.max_epochs=1", "--probe.max_epochs=3", "--trainer.default_root_dir=runs/transfer"])
    assert exited.value.code == 128 + signal.SIGTERM
    summary = json.loads(Path("runs/transfer/summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted"]["signal"] == "SIGTERM"
    assert "test/acc" in summary["base"]  # the base run had finished and been tested


# -- artifacts are atomic ------------------------------------------------------------------------------


def _fill_the_disk_after(nbytes: int):
    def save(obj, path, *args, **kwargs):
        with open(path, "wb") as f:
            f.write(b"\0" * nbytes)
        raise OSError(errno.ENOSPC, "No space left on device")
    return save


def test_a_full_disk_leaves_no_partial_checkpoint(tmp_path, monkeypatch):
    monkeypatch.setattr(files.torch, "save", _fill_the_disk_after(1000))
    monkeypatch.setattr(files.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**12, 10**12 - 1200, 1200))
    checkpoint = {"state_dict": {"w": torch.zeros(1000, 1000)}}
    with pytest.raises(DiskFull) as full:
        AtomicCheckpointIO().save_checkpoint(checkpoint, tmp_path / "epoch001.ckpt")
    assert list(tmp_path.iterdir()) == []
    assert str(full.value) == (f"no space left on the disk of {tmp_path} for epoch001.ckpt: it needs about 3.8 MB with 1.2 KB "
                               f"free; free some space (or write elsewhere) and run again. The partial file was removed.")


def test_a_fit_on_a_full_disk_ends_in_one_line_and_keeps_no_partial_file(data_env, monkeypatch, capsys):
    monkeypatch.setattr(files.torch, "save", _fill_the_disk_after(100))
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", CONFIG, *TINY, *NO_WANDB, "--trainer.max_epochs=1",
              "--trainer.default_root_dir=runs/full"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("no space left on the disk of ") and "it needs about" in err[-1]
    assert list(Path("runs/full/checkpoints").glob("*ckpt*")) == []
    assert not [p for p in Path("runs/full").rglob("*") if ".partial-" in p.name]


def test_an_interrupted_write_keeps_the_earlier_file(tmp_path):
    target = tmp_path / "summary.json"
    files.write_text(target, "earlier")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


# -- W&B without a network -----------------------------------------------------------------------------


def test_wandb_with_credentials_and_no_route_logs_offline(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE")
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", "http://127.0.0.1:9")  # the discard port: connection refused
    monkeypatch.setenv(REACH_TIMEOUT_ENV, "2")
    started = time.perf_counter()
    logger = WandbLogger(save_dir=str(tmp_path))
    assert time.perf_counter() - started < 5
    assert logger._offline
    err = capsys.readouterr().err
    assert "W&B: the server cannot be reached (127.0.0.1:9" in err and "wandb sync" in err


# -- signals -------------------------------------------------------------------------------------------


def test_stop_promptly_raises_at_the_signal_and_restores_the_handlers():
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Interrupted) as interrupted, stop_promptly():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(5)  # not reached: the handler raises as soon as the signal is delivered
    assert interrupted.value.exit_code == 143 and str(interrupted.value) == "stopped by SIGTERM"
    assert signal.getsignal(signal.SIGTERM) is before


def test_signals_recorded_notes_sigterm_and_forgets_it_afterwards():
    with signals_recorded():
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        assert received() == signal.SIGTERM
        with pytest.raises(Interrupted):  # work that starts after the signal stops at once
            with stop_promptly():
                pass
    assert received() is None


def test_sigterm_stops_the_atlas_command_at_once(tmp_path, monkeypatch, capsys):
    from wide_lightning.atlas import command as atlas_command

    def work_that_is_signalled(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(30)  # not reached
    monkeypatch.setattr(atlas_command, "load_network", work_that_is_signalled)
    started = time.monotonic()
    with pytest.raises(SystemExit) as exited:
        atlas_command.main(["--checkpoint", str(tmp_path / "any.ckpt"), "--out_dir", str(tmp_path / "atlas")])
    assert exited.value.code == 143 and time.monotonic() - started < 10
    assert "stopped by SIGTERM; nothing was written" in capsys.readouterr().err
    assert not (tmp_path / "atlas").exists()


# -- signals (subprocesses on tiny fake data) ----------------------------------------------------------


def _start_fit(args: list[str], cwd: Path, data: Path) -> subprocess.Popen:
    env = {**os.environ, DATA_ENV: str(data), "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "wide_lightning", "fit", "--config", CONFIG, *args], cwd=cwd,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_for(path_glob: Path, process: subprocess.Popen, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not list(path_glob.parent.glob(path_glob.name)):
        assert process.poll() is None, process.communicate()[0][-3000:]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.2)


SLOW = ["--model.init_args.width=32", "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
        "--trainer.max_epochs=1000", "--trainer.logger=false", "--trainer.callbacks=[]"]


@pytest.mark.slow
def test_sigterm_during_fit_checkpoints_says_how_to_resume_and_exits_143(fake_data_dir, tmp_path, monkeypatch):
    process = _start_fit([*SLOW, "--trainer.default_root_dir=runs/t"], tmp_path, fake_data_dir)
    _wait_for(tmp_path / "runs/t/checkpoints/last.ckpt", process)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, out[-3000:]
    summary = json.loads((tmp_path / "runs/t/summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted"]["signal"] == "SIGTERM"
    resume = summary["interrupted"]["resume"]
    assert resume.endswith("--ckpt_path last") and resume in out
    # the resume command picks up where the checkpoint left off (here: one more epoch)
    epoch = torch.load(tmp_path / "runs/t/checkpoints/last.ckpt", weights_only=True)["epoch"]
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    build_cli(["fit", "--config", CONFIG, *SLOW, "--trainer.default_root_dir=runs/t", "--trainer.limit_train_batches=2",
               "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2", f"--trainer.max_epochs={epoch + 2}",
               "--ckpt_path", "last"])
    finished = json.loads(sorted((tmp_path / "runs/t").glob("summary*.json"), key=os.path.getmtime)[-1].read_text())
    assert finished["status"] == "finished"
    assert torch.load(finished["checkpoints"]["last"], weights_only=True)["epoch"] == epoch + 1


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_finishes_the_run(fake_data_dir, tmp_path, monkeypatch):
    process = _start_fit([*SLOW, "--trainer.default_root_dir=runs/k"], tmp_path, fake_data_dir)
    _wait_for(tmp_path / "runs/k/checkpoints/last.ckpt", process)
    time.sleep(0.3)
    process.kill()
    process.communicate(timeout=30)
    assert not [p for p in (tmp_path / "runs/k").rglob("*") if ".partial-" in p.name]  # or removed on next save
    checkpoint = torch.load(tmp_path / "runs/k/checkpoints/last.ckpt", weights_only=True)  # loadable, whole
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    summary = fit("--trainer.logger=false", "--ckpt_path=last", epochs=checkpoint["epoch"] + 2, root="runs/k")
    assert summary["status"] == "finished" and summary["max_epochs"] == checkpoint["epoch"] + 2


@pytest.mark.slow
def test_sigterm_during_the_atlas_stops_promptly_and_says_how_to_render_it(fake_data_dir, tmp_path):
    atlas = ('--trainer.callbacks=[{"class_path": "wide_lightning.callbacks.ActivationAtlas", "init_args": '
             '{"steps": 100000, "reducer": "pca", "max_points": 500, "grid_size": 4, "min_density": 1, "neurons": 2}}]')
    args = [*SLOW[:-1], atlas, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=2", "--trainer.default_root_dir=runs/a"]
    process = _start_fit(args, tmp_path, fake_data_dir)
    _wait_for(tmp_path / "runs/a/checkpoints/last.ckpt", process)
    time.sleep(4)  # into the atlas's rendering
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    out, _ = process.communicate(timeout=60)
    assert time.monotonic() - signalled < 15
    assert process.returncode == 128 + signal.SIGTERM, out[-3000:]
    summary = json.loads((tmp_path / "runs/a/summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted"]["during"] == "atlas"
    assert summary["interrupted"]["resume"].startswith("wide-lightning-atlas --checkpoint ")
    assert "wide-lightning-atlas --checkpoint" in out
    assert not (tmp_path / "runs/a/atlas/atlas.npz").exists()

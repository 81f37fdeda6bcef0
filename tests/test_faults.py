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

from tests.conftest import REPO, checkpoint_file, newest_summary, run_folders
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
    return newest_summary(root)


# -- resume must be exact ------------------------------------------------------------------------------


def test_a_checkpoint_of_another_width_is_refused_not_trained(data_env, tmp_path):
    narrow = fit(*NO_WANDB, "--model.init_args.width=16", epochs=1, root="runs/narrow")
    with pytest.raises(ResumeMismatch) as refused:
        fit(*NO_WANDB, "--ckpt_path", str(checkpoint_file(narrow)), epochs=2, root="runs/wide")
    message = str(refused.value)
    assert "model.init_args.width: checkpoint 16, config 32" in message
    assert "leave out --ckpt_path" in message and "change the config" in message
    # nothing trained, nothing reported, and the narrow run's folder as it was
    assert not list(Path("runs/wide").rglob("summary*.json"))
    assert [p.name for p in Path(narrow["run_folder"]).glob("summary*.json")] == ["summary.json"]


def test_a_checkpoint_of_another_seed_or_trainer_setting_is_refused(data_env):
    # every setting the result depends on is compared, not only the model's and the data's arguments
    first = fit(*NO_WANDB, epochs=1)
    last = str(checkpoint_file(first))
    with pytest.raises(ResumeMismatch, match=r"seed: checkpoint 0, config 1"):
        fit(*NO_WANDB, "--seed_everything=1", "--ckpt_path", last, epochs=2)
    with pytest.raises(ResumeMismatch, match=r"trainer.limit_train_batches: checkpoint 4(\.0)?, config 3(\.0)?"):
        fit(*NO_WANDB, "--trainer.limit_train_batches=3", "--ckpt_path", last, epochs=2)
    with pytest.raises(ResumeMismatch, match=r"data.init_args.batch_size: checkpoint \d+, config 7"):
        fit(*NO_WANDB, "--data.init_args.batch_size=7", "--ckpt_path", last, epochs=2)


def test_ckpt_path_last_resumes_only_its_own_run(data_env, capsys):
    # a seed scan into one root: seed 1's `last` used to resume seed 0's newest checkpoint and overwrite its files
    seed0 = fit(*NO_WANDB, epochs=1)
    before = {p: p.read_bytes() for p in Path(seed0["run_folder"]).rglob("*") if p.is_file()}
    seed1 = fit(*NO_WANDB, "--seed_everything=1", "--ckpt_path=last", epochs=1)
    assert seed1["seed"] == 1 and seed1["run_folder"] != seed0["run_folder"] and "resumed" not in seed1
    line = [line for line in capsys.readouterr().err.splitlines() if "nothing to resume" in line]
    assert line == [f"--ckpt_path last: nothing to resume in {seed1['run_folder']}; training from the start. Other "
                    f"runs in runs/tiny: {Path(seed0['run_folder']).name} (differs in seed)."]
    resumed = fit(*NO_WANDB, "--ckpt_path=last", epochs=2)  # seed 0 again, 1 epoch more: its own run
    assert resumed["run_folder"] == seed0["run_folder"] and resumed["seed"] == 0
    assert resumed["resumed"] == {"checkpoint": "checkpoints/last.ckpt", "epochs_done": 1, "steps_done": 4,
                                  "max_epochs": {"before": 1, "now": 2}}
    assert all(p.read_bytes() == content for p, content in before.items() if p.name != "last.ckpt"
               and not p.name.startswith("epoch"))  # its earlier record and config kept as they were
    assert len(run_folders("runs/tiny")) == 2


def test_a_second_fit_of_a_finished_run_is_refused_not_mixed_in(data_env, capsys):
    fit(*NO_WANDB, epochs=1)
    sentence = _refused(capsys, "--trainer.max_epochs=1")
    folder = run_folders("runs/tiny")[0]
    assert sentence == (f"{folder} already holds this run (the same settings); resume it with --ckpt_path last, or "
                        f"start another beside it with --run_name NAME (or move that folder away).")
    again = fit(*NO_WANDB, "--run_name=again", epochs=1)
    assert again["run_folder"] == os.path.join("runs/tiny", "again")


def test_a_run_folder_in_use_by_another_fit_is_refused(data_env, capsys):
    folder = Path("runs/tiny/busy")
    folder.mkdir(parents=True)
    (folder / ".lock").write_text(json.dumps({"host": "elsewhere", "pid": 1, "started": "2026-12-07 02:00:00"}))
    sentence = _refused(capsys, "--run_name=busy", "--trainer.max_epochs=1")
    assert sentence.startswith(f"{folder} is in use by another fit (pid 1 on elsewhere, started 2026-12-07 02:00:00); "
                               f"wait for it to end, or give this fit a folder of its own with --run_name NAME.")
    # a lock left on this host by a process that is gone is taken over
    (folder / ".lock").write_text(json.dumps({"host": __import__("socket").gethostname(), "pid": 2 ** 22 + 7}))
    assert fit(*NO_WANDB, "--run_name=busy", epochs=1)["status"] == "finished"
    assert not (folder / ".lock").exists()


def test_a_moved_run_folder_resumes_and_reports(data_env):
    first = fit(*NO_WANDB, epochs=1)
    moved = Path("elsewhere/moved")
    moved.parent.mkdir()
    shutil.move(first["run_folder"], moved)
    with pytest.raises(AssertionError, match="no summary under runs/tiny"):  # it resumes where the folder is now
        fit(*NO_WANDB, "--ckpt_path", str(moved / "checkpoints" / "last.ckpt"), epochs=2)
    resumed = newest_summary("elsewhere")
    assert resumed["status"] == "finished" and resumed["run_folder"] == str(moved)
    assert resumed["resumed"]["checkpoint"] == "checkpoints/last.ckpt"
    assert checkpoint_file(resumed, "best").is_file() and checkpoint_file(resumed).is_file()
    assert torch.load(checkpoint_file(resumed), weights_only=True)["epoch"] == 1


def test_a_run_split_2_plus_2_reports_what_the_straight_run_reports(data_env):
    straight = fit(*NO_WANDB, epochs=4, root="runs/straight")
    fit(*NO_WANDB, epochs=2, root="runs/split")
    resumed = fit(*NO_WANDB, "--ckpt_path=last", epochs=4, root="runs/split")
    assert resumed["status"] == straight["status"] == "finished"
    assert resumed["base"] == straight["base"]  # val/acc_best covers epochs 1-4, not only 3-4
    straight_weights = torch.load(checkpoint_file(straight), weights_only=True)["state_dict"]
    resumed_weights = torch.load(checkpoint_file(resumed), weights_only=True)["state_dict"]
    assert all(torch.equal(straight_weights[k], resumed_weights[k]) for k in straight_weights)


def test_the_best_so_far_is_in_the_checkpoint(data_env):
    summary = fit(*NO_WANDB, epochs=2)
    state = torch.load(checkpoint_file(summary), weights_only=True)["state_dict"]
    assert float(state["test_acc_best.value"]) == float("-inf")  # no test split in the validation loop: none seen
    assert float(state["val_acc_best.value"]) == pytest.approx(summary["base"]["val/acc_best"])


def test_ckpt_path_last_with_nothing_to_resume_says_so_in_one_line(data_env, capsys):
    summary = fit(*NO_WANDB, "--ckpt_path=last", epochs=1)
    assert summary["status"] == "finished"
    lines = [line for line in capsys.readouterr().err.splitlines() if "nothing to resume" in line]
    assert lines == [f"--ckpt_path last: nothing to resume in {summary['run_folder']}; training from the start."]


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
    a = torch.load(checkpoint_file(first), weights_only=True)["state_dict"]
    b = torch.load(checkpoint_file(second), weights_only=True)["state_dict"]
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
    assert not list(Path("runs/tiny").rglob("summary*.json")) and not list(Path("runs/tiny").rglob("*.ckpt"))


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
    last = os.path.join(run_folders("runs/tiny")[0], "checkpoints", "last.ckpt")
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
    summary = newest_summary("runs/tiny")
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
    summary = newest_summary("runs/tiny")
    assert summary["status"] == "failed" and summary["error"] == "RuntimeError: a bug in epoch 1"
    assert checkpoint_file(summary).exists()


def test_sigterm_during_the_probe_is_an_interrupted_transfer_run(data_env, monkeypatch):
    from wide_lightning.tasks.probe import LinearProbe

    monkeypatch.setattr(LinearProbe, "on_train_start", lambda self: os.kill(os.getpid(), signal.SIGTERM))
    with pytest.raises(SystemExit) as exited:
        build_cli(["fit", "--config", str(REPO / "configs/translated_mnist/transfer_mlp.yaml"), *TINY, *NO_WANDB,
                   "--trainer.max_epochs=1", "--probe.max_epochs=3", "--trainer.default_root_dir=runs/transfer"])
    assert exited.value.code == 128 + signal.SIGTERM
    summary = newest_summary("runs/transfer")
    assert summary["status"] == "interrupted" and summary["interrupted"]["signal"] == "SIGTERM"
    assert "test/acc" in summary["base"]  # the base run had finished and been tested
    assert summary["interrupted"]["during"] == "probe"


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_validation_is_recorded_where_it_arrived(data_env, monkeypatch, signum):
    # SIGTERM stops the loop at the next training batch; the record used to say "training"
    from wide_lightning.tasks.classifier import MLPClassifier

    validation_step = MLPClassifier.validation_step

    def step(self, batch, batch_idx):
        if self.current_epoch == 1 and batch_idx == 0 and not self.trainer.sanity_checking:
            os.kill(os.getpid(), signum)
        return validation_step(self, batch, batch_idx)
    monkeypatch.setattr(MLPClassifier, "validation_step", step)
    with pytest.raises(SystemExit) as exited:
        fit(*NO_WANDB, epochs=3)
    assert exited.value.code == 128 + signum
    summary = newest_summary("runs/tiny")
    assert summary["status"] == "interrupted" and summary["interrupted"]["during"] == "validation"
    assert summary["interrupted"]["epoch"] in (1, 2)  # SIGTERM: noticed at the next epoch's first batch


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
    assert str(full.value) == (f"no space left on the disk of {tmp_path} for epoch001.ckpt: it needs about 3.8 MiB with 1.2 KiB "
                               f"free; free some space (or write elsewhere) and run again. The partial file was removed.")


def test_a_fit_on_a_full_disk_ends_in_one_line_and_keeps_no_partial_file(data_env, monkeypatch, capsys):
    monkeypatch.setattr(files.torch, "save", _fill_the_disk_after(100))
    with pytest.raises(SystemExit) as exited:
        main(["fit", "--config", CONFIG, *TINY, *NO_WANDB, "--trainer.max_epochs=1",
              "--trainer.default_root_dir=runs/full"])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("no space left on the disk of ") and "it needs about" in err[-1]
    assert list(Path("runs/full").rglob("*ckpt*")) == []
    assert not [p for p in Path("runs/full").rglob("*") if ".partial-" in p.name]


def test_an_interrupted_write_keeps_the_earlier_file(tmp_path):
    target = tmp_path / "summary.json"
    files.write_text(target, "earlier")
    with pytest.raises(RuntimeError), atomic_path(target) as temporary:
        temporary.write_text("half")
        raise RuntimeError("killed")
    assert target.read_text() == "earlier" and [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_the_temporary_a_killed_write_left_is_removed_by_the_next_write(tmp_path):
    import socket

    host = socket.gethostname()
    dead = tmp_path / f".last.ckpt.partial-{host}-{2 ** 22 + 7}"  # no such process
    alive = tmp_path / f".last.ckpt.partial-{host}-{os.getppid()}"  # a writer still running
    elsewhere = tmp_path / f".last.ckpt.partial-otherhost-{2 ** 22 + 7}"  # another host's: not judged from here
    for path in (dead, alive, elsewhere):
        path.write_bytes(b"half a checkpoint")
    files.write_text(tmp_path / "last.ckpt", "whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["last.ckpt", alive.name, elsewhere.name])


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


#: the tiny run, for many epochs (a resume gives the same settings, or it is another run)
SLOW = [*TINY[:-1], "--trainer.max_epochs=1000", "--trainer.logger=false", "--run_name=r", "--trainer.callbacks=[]"]


@pytest.mark.slow
def test_sigterm_during_fit_checkpoints_says_how_to_resume_and_exits_143(fake_data_dir, tmp_path, monkeypatch):
    process = _start_fit([*SLOW, "--trainer.default_root_dir=runs/t"], tmp_path, fake_data_dir)
    _wait_for(tmp_path / "runs/t/r/checkpoints/last.ckpt", process)
    time.sleep(0.5)
    process.send_signal(signal.SIGTERM)
    out, _ = process.communicate(timeout=60)
    assert process.returncode == 128 + signal.SIGTERM, out[-3000:]
    summary = json.loads((tmp_path / "runs/t/r/summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted"]["signal"] == "SIGTERM"
    resume = summary["interrupted"]["resume"]
    assert resume.endswith("--ckpt_path last") and resume in out
    # the resume command picks up where the checkpoint left off (here: one more epoch)
    epoch = torch.load(tmp_path / "runs/t/r/checkpoints/last.ckpt", weights_only=True)["epoch"]
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    build_cli(["fit", "--config", CONFIG, *SLOW, "--trainer.default_root_dir=runs/t", f"--trainer.max_epochs={epoch + 2}",
               "--ckpt_path", "last"])
    finished = newest_summary(tmp_path / "runs/t")
    assert finished["status"] == "finished" and finished["resumed"]["epochs_done"] == epoch + 1
    assert torch.load(checkpoint_file(finished), weights_only=True)["epoch"] == epoch + 1


@pytest.mark.slow
def test_kill_9_mid_epoch_then_resume_finishes_the_run(fake_data_dir, tmp_path, monkeypatch):
    process = _start_fit([*SLOW, "--trainer.default_root_dir=runs/k"], tmp_path, fake_data_dir)
    _wait_for(tmp_path / "runs/k/r/checkpoints/last.ckpt", process)
    time.sleep(0.3)
    process.kill()
    process.communicate(timeout=30)
    # a kill in the middle of a save leaves at most the temporary file, never a truncated last.ckpt
    checkpoint = torch.load(tmp_path / "runs/k/r/checkpoints/last.ckpt", weights_only=True)  # loadable, whole
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    # the lock the killed process left is taken over: that process is gone
    summary = fit("--trainer.logger=false", "--run_name=r", "--ckpt_path=last", epochs=checkpoint["epoch"] + 2,
                  root="runs/k")
    assert summary["status"] == "finished" and summary["max_epochs"] == checkpoint["epoch"] + 2
    assert summary["resumed"]["epochs_done"] == checkpoint["epoch"] + 1
    assert not [p for p in (tmp_path / "runs/k").rglob("*") if ".partial-" in p.name]  # the next save removed it


@pytest.mark.slow
def test_sigterm_during_the_atlas_stops_promptly_and_says_how_to_render_it(fake_data_dir, tmp_path):
    atlas = ('--trainer.callbacks=[{"class_path": "wide_lightning.callbacks.ActivationAtlas", "init_args": '
             '{"steps": 100000, "reducer": "pca", "max_points": 500, "grid_size": 4, "min_density": 1, "neurons": 2}}]')
    args = [*SLOW[:-1], atlas, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
            "--trainer.limit_val_batches=2", "--trainer.default_root_dir=runs/a"]
    process = _start_fit(args, tmp_path, fake_data_dir)
    _wait_for(tmp_path / "runs/a/r/checkpoints/last.ckpt", process)
    time.sleep(4)  # into the atlas's rendering
    process.send_signal(signal.SIGTERM)
    signalled = time.monotonic()
    out, _ = process.communicate(timeout=60)
    assert time.monotonic() - signalled < 15
    assert process.returncode == 128 + signal.SIGTERM, out[-3000:]
    summary = json.loads((tmp_path / "runs/a/r/summary.json").read_text())
    assert summary["status"] == "interrupted" and summary["interrupted"]["during"] == "atlas"
    assert summary["interrupted"]["resume"].startswith("wide-lightning-atlas --checkpoint ")
    assert "wide-lightning-atlas --checkpoint" in out
    assert not (tmp_path / "runs/a/r/atlas/atlas.npz").exists()

"""Each run its own folder (issue #26): what identifies a run, its folder's name, the lock, the short checkpoint
path, and the report's newest record of a resumed run. The CLI's cases (a seed scan into one root, a moved folder,
a second fit refused) are in tests/test_faults.py."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from jsonargparse import Namespace

from wide_lightning.checkpoints import BestAndLastCheckpoint, CheckpointKindError, find_checkpoint
from wide_lightning.report.sources import current_records
from wide_lightning.resume import place_run
from wide_lightning.run_folder import (LOCK_FILE, RUN_FILE, RunFolderInUse, RunLock, flat, run_name, run_settings,
                                       setting_differences)


def namespace(value):
    return Namespace(**{k: namespace(v) for k, v in value.items()}) if isinstance(value, dict) else value


def config(seed=0, width=64, max_epochs=10, data_dir="data", limit_train_batches=None, root="runs/x", **trainer):
    return namespace({
        "seed_everything": seed,
        "trainer": {"max_epochs": max_epochs, "default_root_dir": root, "limit_train_batches": limit_train_batches,
                    "logger": False, "callbacks": None, "precision": None, **trainer},
        "model": {"class_path": "wide_lightning.tasks.classifier.MLPClassifier",
                  "init_args": {"width": width, "lr": 0.1, "num_classes": None}},
        "data": {"class_path": "wide_lightning.data.mnist.MNISTDataModule",
                 "init_args": {"batch_size": 128, "data_dir": data_dir, "num_workers": 0, "placement": "auto"}},
        "checkpoint": {"monitor": "val/acc", "mode": "max", "dirpath": None},
        "probe": {"target": None, "lr": None},
        "ckpt_path": None,
        "run_name": None,
    })


def test_a_run_is_named_by_its_seed_and_every_setting_its_result_depends_on():
    base = run_name(run_settings(config()))
    assert base.startswith("seed0-") and len(base) == len("seed0-") + 8
    # another seed, width, batch limit or precision is another run
    others = {run_name(run_settings(c)) for c in (config(seed=1), config(width=32), config(limit_train_batches=4),
                                                  config(precision="bf16-mixed"))}
    assert len(others) == 4 and base not in others
    assert run_name(run_settings(config(seed=1))).startswith("seed1-")
    # the length (a resume may train longer), where the data is read from and the logger are not
    assert run_name(run_settings(config(max_epochs=20, data_dir="/elsewhere", logger=True))) == base


def test_a_stack_is_named_by_its_seeds():
    stacked = config()
    stacked.model.init_args.seeds = [4, 7]
    assert run_name(run_settings(stacked)).startswith("seeds4-7-")


def test_setting_differences_name_each_key_and_both_values():
    recorded, wanted = run_settings(config()), run_settings(config(seed=3, width=32))
    assert setting_differences(recorded, wanted) == ["model.init_args.width: checkpoint 64, config 32",
                                                     "seed: checkpoint 0, config 3"]
    assert flat({"a": {"b": 1, "c": [1, 2]}, "d": {}}) == {"a.b": 1, "a.c": [1, 2], "d": {}}


def test_the_run_folder_becomes_the_runs_root_and_a_sweep_run_is_named_by_its_id(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for key in ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "LOCAL_RANK", "NODE_RANK", "RANK"):
        monkeypatch.delenv(key, raising=False)
    plain = config()
    placement = place_run(plain)
    assert placement.folder == Path("runs/x") / run_name(run_settings(config()))
    assert plain.trainer.default_root_dir == str(placement.folder)
    assert plain.checkpoint.dirpath == str(placement.folder / "checkpoints")
    monkeypatch.setenv("WANDB_SWEEP_ID", "sweep1")
    monkeypatch.setenv("WANDB_RUN_ID", "abc123")
    assert place_run(config()).folder == Path("runs/x/abc123")
    named = config()
    named.run_name = "second"
    assert place_run(named).folder == Path("runs/x/second")  # --run_name wins


def test_a_lock_keeps_a_second_fit_out_and_is_taken_over_when_its_process_is_gone(tmp_path, monkeypatch):
    monkeypatch.delenv("SLURM_JOB_ID", raising=False)
    lock = RunLock(tmp_path)
    lock.claim()
    lock.claim()  # the same process again (a CLI built twice in one process)
    holder = json.loads((tmp_path / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    lock.release()
    assert not (tmp_path / LOCK_FILE).exists()
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "node7", "pid": 1, "started": "then"}))
    with pytest.raises(RunFolderInUse, match=rf"^{tmp_path} is in use by another fit \(pid 1 on node7, started then\)"):
        RunLock(tmp_path).claim()
    # the same SLURM job, requeued on another node: its own earlier allocation's lock
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": "node7", "pid": 1, "slurm_job_id": "42"}))
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    RunLock(tmp_path).claim()
    monkeypatch.delenv("SLURM_JOB_ID")
    # a process of this host that is gone
    (tmp_path / LOCK_FILE).write_text(json.dumps({"host": socket.gethostname(), "pid": 2 ** 22 + 7}))
    taken = RunLock(tmp_path)
    taken.claim()
    assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    taken.release()


def _run_with_last(root: Path, name: str) -> Path:
    folder = root / name
    (folder / "checkpoints").mkdir(parents=True)
    (folder / RUN_FILE).write_text("{}")
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    return folder / "checkpoints" / "last.ckpt"


def test_the_short_checkpoint_path_is_found_in_the_one_run_that_has_it(tmp_path):
    short = tmp_path / "runs/x/checkpoints/last.ckpt"
    assert find_checkpoint(short) == short  # nothing there: the reader says it does not exist
    first = _run_with_last(tmp_path / "runs/x", "seed0-aaaaaaaa")
    assert find_checkpoint(short) == first
    second = _run_with_last(tmp_path / "runs/x", "seed1-bbbbbbbb")
    with pytest.raises(CheckpointKindError) as refused:
        find_checkpoint(short)
    assert str(refused.value) == (f"{short} is in 2 runs' folders under {tmp_path / 'runs/x'}: {first}, {second}; "
                                  f"give the one you mean.")


def test_the_report_reads_the_newest_record_of_a_resumed_run(tmp_path):
    run = tmp_path / "seed0-aaaaaaaa"
    run.mkdir()
    (run / RUN_FILE).write_text("{}")
    names = ["summary.json", "summary-v1.json", "summary-v2.json", "summary-seed4.json", "summary-seed4-v1.json",
             "summary-seed7.json"]
    for name in names:
        (run / name).write_text("{}")
    loose = tmp_path / "old" / "summary-v1.json"  # a folder from before run folders: every record counts
    loose.parent.mkdir()
    loose.write_text("{}")
    (loose.parent / "summary.json").write_text("{}")
    kept, superseded = current_records(sorted([*(run / n for n in names), loose, loose.parent / "summary.json"]))
    assert [str(p.relative_to(tmp_path)) for p in kept] == [
        "old/summary-v1.json", "old/summary.json", "seed0-aaaaaaaa/summary-seed4-v1.json",
        "seed0-aaaaaaaa/summary-seed7.json", "seed0-aaaaaaaa/summary-v2.json"]
    assert superseded == 3


def test_a_moved_folders_checkpoint_state_is_read_in_the_folder_it_is_in_now(tmp_path):
    old, new = tmp_path / "old/checkpoints", tmp_path / "new/checkpoints"
    new.mkdir(parents=True)
    for name in ("epoch001.ckpt", "last.ckpt"):
        (new / name).write_bytes(b"x")
    state = {"dirpath": str(old), "best_model_path": str(old / "epoch001.ckpt"), "best_model_score": 0.9,
             "kth_best_model_path": str(old / "epoch001.ckpt"), "kth_value": 0.9, "last_model_path": str(old / "last.ckpt"),
             "best_k_models": {str(old / "epoch001.ckpt"): 0.9}, "monitor": "val/acc"}
    callback = BestAndLastCheckpoint(dirpath=new, monitor="val/acc", mode="max")
    callback.load_state_dict(state)
    assert callback.best_model_path == str(new / "epoch001.ckpt") and callback.last_model_path == str(new / "last.ckpt")
    assert callback.best_k_models == {str(new / "epoch001.ckpt"): 0.9} and callback.best_model_score == 0.9
    # files that were not moved along: Lightning's own rule (only the best path, as it was)
    elsewhere = BestAndLastCheckpoint(dirpath=tmp_path / "third", monitor="val/acc", mode="max")
    elsewhere.load_state_dict(state)
    assert elsewhere.best_model_path == str(old / "epoch001.ckpt") and elsewhere.best_k_models == {}


def test_slurms_requeue_of_the_same_command_resumes_its_hpc_checkpoint_not_refused(monkeypatch, tmp_path):
    import torch
    from lightning.pytorch.plugins.environments import SLURMEnvironment

    from wide_lightning.resume import RunExists
    from wide_lightning.run_folder import RUN_KEY

    monkeypatch.chdir(tmp_path)
    for key in ("WANDB_SWEEP_ID", "LOCAL_RANK", "NODE_RANK", "RANK"):
        monkeypatch.delenv(key, raising=False)
    folder = place_run(config()).folder
    (folder / "checkpoints").mkdir(parents=True)
    (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
    with pytest.raises(RunExists, match="already holds this run"):
        place_run(config())
    torch.save({RUN_KEY: {"settings": run_settings(config()), "max_epochs": 10}, "global_step": 30,
                "loops": {"fit_loop": {"epoch_progress": {"current": {"processed": 3}}}}}, folder / "hpc_ckpt_2.ckpt")
    monkeypatch.setattr(SLURMEnvironment, "detect", staticmethod(lambda: True))
    placement = place_run(config())  # what Lightning will resume, checked like any resume
    assert placement.resumed == {"checkpoint": "hpc_ckpt_2.ckpt", "epochs_done": 3, "steps_done": 30}
    with pytest.raises(ValueError, match="seed: checkpoint 0, config 5"):
        place_run(_with_name(config(seed=5), folder.name))  # another seed in this run's folder


def _with_name(namespace_config, name):
    namespace_config.run_name = name
    return namespace_config


def test_nothing_to_resume_names_each_other_run_and_how_it_differs(tmp_path):
    from wide_lightning.resume import _nothing_to_resume

    settings = run_settings(config())
    for name, recorded in (("a", run_settings(config(seed=1, width=32))), ("b", settings), ("c", None)):
        folder = tmp_path / name
        (folder / "checkpoints").mkdir(parents=True)
        (folder / "checkpoints" / "last.ckpt").write_bytes(b"x")
        (folder / RUN_FILE).write_text(json.dumps({"settings": recorded}) if recorded else "not json")
    line = _nothing_to_resume(tmp_path / "mine", settings)
    assert line == (f"--ckpt_path last: nothing to resume in {tmp_path / 'mine'}; training from the start. Other runs in "
                    f"{tmp_path}: a (differs in model.init_args.width, seed), b (the same settings: resume it with "
                    f"--run_name b), c (settings unknown).")

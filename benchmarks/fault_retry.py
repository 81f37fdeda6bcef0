"""Issue #26's cases, re-tried as a new user would: real commands in a fresh folder, one table.

    WIDE_LIGHTNING_DATA=../shared/datasets python benchmarks/fault_retry.py [--keep DIR]

Each case runs the console commands (``wide-lightning``, ``wide-lightning-report``,
``wide-lightning-atlas``) on real MNIST with tiny limits (2 batches, 1-2 epochs, the paper's n = 20
conv net, no W&B), then checks what a user needs to be true: the exit status, the last line, and
that nothing an earlier command wrote was changed. It prints one row per case: its name, the
exit statuses, whether every check held, and the last line of the last command. The record of a
run of it is docs/studies/2026-12-07-run-folders.md.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONFIG = str(REPO / "configs/mnist/conv_n20.yaml")
TRANSFER = [str(REPO / "configs/translated_mnist/transfer_mlp.yaml"), "--model.init_args.depth=2",
            "--probe.max_epochs=1"]
TINY = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
        "--trainer.logger=false", "--trainer.callbacks=[]", "--trainer.enable_progress_bar=false",
        "--trainer.enable_model_summary=false"]


def run(*command: str, cwd: Path) -> subprocess.CompletedProcess:
    return subprocess.run(list(command), cwd=cwd, capture_output=True, text=True, timeout=900)


def fit(cwd: Path, *args: str, epochs: int = 1, root: str = "runs/r", transfer: bool = False
        ) -> subprocess.CompletedProcess:
    config = TRANSFER if transfer else [CONFIG, "--model.init_args.conv_channels=4"]
    return run("wide-lightning", "fit", "--config", *config, *TINY, f"--trainer.max_epochs={epochs}",
               f"--trainer.default_root_dir={root}", *args, cwd=cwd)


def last_line(result: subprocess.CompletedProcess) -> str:
    """The sentence a failed command ended in, or where a finished run's record is."""
    if result.returncode != 0:
        lines = result.stderr.strip().splitlines()
    else:
        lines = [line for line in (result.stdout + result.stderr).splitlines() if line.startswith(("summary", "wrote"))]
        lines = lines or (result.stdout + result.stderr).strip().splitlines()
    return lines[-1].strip() if lines else ""


def contents(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` and its hash: what a later command must not change."""
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file() and p.name != ".lock"}


def runs_under(root: Path) -> dict[str, Path]:
    return {json.loads((p.parent / "run.json").read_text())["settings"]["seed"]: p.parent
            for p in root.glob("*/run.json")}


def case_seed_scan(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    first = fit(cwd)
    second = fit(cwd, "--seed_everything=1")
    folders = runs_under(cwd / "runs/r")
    seed1_before = contents(folders[1])
    third = fit(cwd, "--ckpt_path", "last", epochs=2)
    newest = max(folders[0].glob("summary*.json"), key=os.path.getmtime)
    record = json.loads(newest.read_text())
    ok = (contents(folders[1]) == seed1_before and record["seed"] == 0
          and record["resumed"]["epochs_done"] == 1 and record["status"] == "finished")
    return [first, second, third], ok


def case_same_command_twice(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    first = fit(cwd)
    before = contents(cwd / "runs/r")
    second = fit(cwd)
    return [first, second], second.returncode == 2 and contents(cwd / "runs/r") == before


def case_nothing_left_to_train(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    first = fit(cwd, epochs=2)
    before = contents(cwd / "runs/r")
    second = fit(cwd, "--ckpt_path", "last", epochs=1)
    return [first, second], second.returncode == 2 and contents(cwd / "runs/r") == before


def case_zero_batches(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    result = fit(cwd, "--trainer.limit_train_batches=0")
    return [result], result.returncode == 2 and not (cwd / "runs").exists()


def case_two_at_once(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    # a whole epoch (390 batches): the second starts while the first trains its first epoch
    args = ["wide-lightning", "fit", "--config", CONFIG, "--model.init_args.conv_channels=4", *TINY,
            "--trainer.limit_train_batches=1.0", "--trainer.max_epochs=1", "--trainer.default_root_dir=runs/r"]
    first = subprocess.Popen(args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not list((cwd / "runs/r").glob("*/.lock")) and time.monotonic() < deadline:
        time.sleep(0.2)
    second = run(*args, cwd=cwd)
    out, err = first.communicate(timeout=900)
    first_done = subprocess.CompletedProcess(args, first.returncode, out, err)
    return [first_done, second], first.returncode == 0 and second.returncode == 2 and "in use" in last_line(second)


def case_moved_folder(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    first = fit(cwd, transfer=True)
    [folder] = runs_under(cwd / "runs/r").values()
    moved = cwd / "elsewhere" / folder.name
    moved.parent.mkdir()
    shutil.move(str(folder), moved)
    resumed = fit(cwd, "--ckpt_path", str(moved / "checkpoints" / "last.ckpt"), epochs=2, transfer=True)
    report = run("wide-lightning-report", "--runs", str(moved.parent), "--out", str(cwd / "fig"), cwd=cwd)
    newest = max(moved.glob("summary*.json"), key=os.path.getmtime)
    record = json.loads(newest.read_text())
    ok = (resumed.returncode == 0 and report.returncode == 0 and (moved / record["checkpoints"]["best"]).is_file()
          and not list((cwd / "runs").rglob("*.ckpt")) and "\ndepth,2,1,0," in (cwd / "fig.csv").read_text())
    return [first, resumed, report], ok


def case_truncated_summary(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    first = fit(cwd, transfer=True)
    second = fit(cwd, "--seed_everything=1", transfer=True)
    [summary] = runs_under(cwd / "runs/r")[1].glob("summary.json")
    summary.write_text(summary.read_text()[:100])
    report = run("wide-lightning-report", "--runs", "runs", "--strict", "--out", "fig", cwd=cwd)
    return [first, second, report], report.returncode == 2


def case_config_errors(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    width = fit(cwd, "--model.init_args.width=1.5")
    misspelt = fit(cwd, "--model", "wide_lightning.ConvClasifier")
    tab = cwd / "tab.yaml"
    tab.write_text("model:\n\tinit_args:\n    width: 3\n")
    tabbed = fit(cwd, "--config", str(tab))
    empty = cwd / "empty.yaml"
    empty.write_text("# nothing\n")
    blank = fit(cwd, "--config", str(empty))
    results = [width, misspelt, tabbed, blank]
    ok = (all(r.returncode == 2 and "Traceback" not in r.stderr for r in results)
          and "1.5" in last_line(width) and "ConvClassifier" in last_line(misspelt)
          and "tab.yaml" in last_line(tabbed) and "empty.yaml" in last_line(blank))
    return results, ok


def case_atlas_too_big(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    first = fit(cwd)
    atlas = run("wide-lightning-atlas", "--checkpoint", "runs/r/checkpoints/last.ckpt", "--grid_size", "1000",
                "--min_density", "0", "--device", "cpu", cwd=cwd)
    return [first, atlas], atlas.returncode == 2 and "GiB free" in last_line(atlas)


def case_short_path_two_runs(cwd: Path) -> tuple[list[subprocess.CompletedProcess], bool]:
    first = fit(cwd)
    second = fit(cwd, "--seed_everything=1")
    atlas = run("wide-lightning-atlas", "--checkpoint", "runs/r/checkpoints/last.ckpt", "--device", "cpu", cwd=cwd)
    return [first, second, atlas], atlas.returncode == 2 and "give the one you mean" in last_line(atlas)


CASES = {
    "seed 0, seed 1, seed 0 again with --ckpt_path last": case_seed_scan,
    "the same command twice": case_same_command_twice,
    "resume a 2-epoch run with max_epochs=1": case_nothing_left_to_train,
    "limit_train_batches=0": case_zero_batches,
    "two fits of the same run at once": case_two_at_once,
    "a moved run folder: resume, report": case_moved_folder,
    "report --strict with a truncated summary": case_truncated_summary,
    "config errors: width 1.5, a misspelt class, a tab, an empty file": case_config_errors,
    "an atlas too big for memory (grid 1000, min_density 0)": case_atlas_too_big,
    "<root>/checkpoints/last.ckpt with two runs under <root>": case_short_path_two_runs,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", help="keep each case's folder under DIR (default: a temporary folder, removed)")
    parser.add_argument("--only", action="append", help="run the cases whose name contains this text (repeatable)")
    args = parser.parse_args()
    if not os.environ.get("WIDE_LIGHTNING_DATA"):
        sys.exit("set WIDE_LIGHTNING_DATA to the folder that holds MNIST (e.g. ../shared/datasets)")
    base = Path(args.keep or tempfile.mkdtemp(prefix="fault_retry_")).resolve()
    print(f"| case | exit statuses | checks | seconds | last line |\n|---|---|---|---|---|")
    failures = 0
    for k, (name, case) in enumerate(CASES.items()):
        if args.only and not any(text in name for text in args.only):
            continue
        cwd = base / f"case{k}"
        cwd.mkdir(parents=True)
        started = time.perf_counter()
        results, ok = case(cwd)
        failures += not ok
        line = last_line(results[-1]).replace("|", "\\|")
        print(f"| {name} | {', '.join(str(r.returncode) for r in results)} | {'held' if ok else 'FAILED'} | "
              f"{time.perf_counter() - started:.0f} | {line[:220]}{'...' if len(line) > 220 else ''} |", flush=True)
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()

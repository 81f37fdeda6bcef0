"""``wide-lightning-report``: the command around the steps."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Literal

from wide_lightning.report.figure4 import Figure4, figure4
from wide_lightning.report.grid import expected_grid
from wide_lightning.report.outputs import draw, write_csv
from wide_lightning.report.runs import ReportError
from wide_lightning.report.sources import Loaded, load_runs

# -- the command ----------------------------------------------------------------------------------------


def report(
    runs: list[str] | None = None,
    wandb_dir: list[str] | None = None,
    wandb_project: str | None = None,
    sweep_id: str | None = None,
    sweep: str | None = None,
    x: Literal["auto", "depth", "width"] = "auto",
    dataset: str | None = None,
    model: str | None = None,
    out: str | None = None,
    strict: bool = False,
) -> Figure4:
    """Draw Figure 4 from finished runs and list every missing, failed or duplicate run.

    Args:
        runs: directories searched for ``summary*.json`` (what every ``fit`` writes); ``--runs DIR [DIR ...]``.
            Default (no source given): ``runs``.
        wandb_dir: directories searched for W&B run directories' ``files/wandb-summary.json``.
        wandb_project: ``entity/project`` on the W&B server (needs network and a login).
        sweep_id: only the runs of this W&B sweep (with ``wandb_project``).
        sweep: the sweep YAML that planned the runs (e.g. ``sweeps/figure4_left.yaml``): its (x, seed)
            grid is what is expected, and its config names the dataset and model.
        x: the x axis: ``depth`` (Figure 4 left), ``width`` (right), or ``auto`` (from the sweep, else
            depth for MLPs and width otherwise).
        dataset: DataModule name (``TranslatedMNIST``, ``CIFAR100Coarse``) when runs of several are found.
        model: model name when transfer runs of several are found.
        out: output path without suffix (default: the sweep's name, else ``figure4_<dataset>``):
            ``<out>.png``, ``<out>.csv``, ``<out>.missing.txt``.
        strict: exit non-zero if any planned point, seed or the baseline is missing.
    """
    grid = expected_grid(sweep, x) if sweep else None
    loaded = loaded_runs(runs, wandb_dir, wandb_project, sweep_id)
    result = figure4(loaded.runs, x=x, dataset=dataset, model=model, grid=grid)
    result.notes.extend(f"unreadable: {path}: {why}" for path, why in loaded.unreadable)
    result.notes.append("searched: " + "; ".join(loaded.searched))
    png, table, missing = output_paths(out or (Path(sweep).stem if sweep else f"figure4_{result.dataset}"))
    draw(result, png)
    write_csv(result, table)
    write_text(result.text(), missing, png, table)
    if strict and not result.complete:
        problems = len(result.missing) + (result.baseline is None)
        raise SystemExit(f"--strict: {problems} planned point(s) or baseline missing; see {missing}")
    return result


def loaded_runs(runs: list[str] | None, wandb_dir: list[str] | None, wandb_project: str | None,
                sweep_id: str | None) -> Loaded:
    """The runs of every source given (``runs`` by default), or a sentence naming where nothing was found."""
    if not (runs or wandb_dir or wandb_project):
        runs = ["runs"]
    loaded = load_runs(runs or [], wandb_dir or [], wandb_project, sweep_id)
    if not loaded.runs:
        raise ReportError(
            "no runs found. Searched: " + "; ".join(loaded.searched)
            + ". Expected summary*.json files (written by `wide-lightning fit` into trainer.default_root_dir) "
              "for --runs, or W&B run directories with files/wandb-summary.json for --wandb_dir."
            + "".join(f"\n  unreadable: {path}: {why}" for path, why in loaded.unreadable))
    return loaded


def output_paths(out: str | Path) -> tuple[Path, Path, Path]:
    """``<out>.png``, ``<out>.csv`` and ``<out>.missing.txt`` (a ``.png`` or ``.csv`` suffix of ``out`` is dropped)."""
    stem = Path(out)
    if stem.suffix in (".png", ".csv"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    return tuple(stem.parent / f"{stem.name}{suffix}" for suffix in (".png", ".csv", ".missing.txt"))


def write_text(text: str, missing: Path, *written: Path) -> None:
    missing.write_text(text + "\n")
    print(text)
    print("wrote " + ", ".join(str(path) for path in (*written, missing)))


LIST_OPTIONS = ("--runs", "--wandb_dir")
FLAG_OPTIONS = ("--strict",)


def shell_style(args: list[str]) -> list[str]:
    """``--runs A B C`` (e.g. a shell glob) -> ``--runs=["A", "B", "C"]`` and a bare ``--strict`` -> ``--strict=true``.

    jsonargparse itself wants ``--runs '[A, B]'`` (or ``--runs+ A``) and ``--strict true``.
    """
    rewritten: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        name, equals, value = arg.partition("=")
        if arg in FLAG_OPTIONS and (i + 1 == len(args) or args[i + 1].startswith("--")):
            rewritten.append(f"{arg}=true")
        elif name in LIST_OPTIONS and equals and not value.lstrip().startswith("["):
            rewritten.append(f"{name}={json.dumps([value])}")
        elif arg in LIST_OPTIONS:
            values = []
            while i + 1 < len(args) and not args[i + 1].startswith("--"):
                values.append(args[i + 1])
                i += 1
            joined = values[0] if len(values) == 1 and values[0].lstrip().startswith("[") else json.dumps(values)
            rewritten.append(f"{arg}={joined}")
        else:
            rewritten.append(arg)
        i += 1
    return rewritten


def main(args: list[str] | None = None) -> None:
    """``wide-lightning-report``; a user error (no runs, a wrong sweep, ``--strict`` and points missing) ends in
    its sentence on stderr and exit status 2."""
    from jsonargparse import CLI

    from wide_lightning.errors import exit_for_people

    try:
        CLI(report, args=shell_style(sys.argv[1:] if args is None else list(args)), as_positional=False)
    except ReportError as error:
        exit_for_people("wide-lightning-report", str(error))
    except SystemExit as stop:
        if isinstance(stop.code, str):  # `--strict` (a status of 0 or 2 from the parser passes on as it is)
            exit_for_people("wide-lightning-report", stop.code)
        raise


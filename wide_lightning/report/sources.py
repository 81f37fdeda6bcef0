"""Reading runs from the three sources: ``summary*.json`` files, W&B run folders, the W&B API."""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Iterable

from wide_lightning.report.runs import (
    _WANDB_RUN_DIR,
    NO_WANDB_SUMMARY,
    SUMMARY_GLOB,
    WANDB_SUMMARY_GLOB,
    ReportError,
    Run,
    _wandb_dir_facts,
    run_from_summary,
    run_from_wandb_summary,
    unreadable_run,
)
from wide_lightning.run_folder import RUN_FILE

# -- reading the sources ---------------------------------------------------------------------------


@dataclass
class Loaded:
    """The runs read, where from, and what could not be read (said in the report, never dropped silently).

    After ``load_runs`` every unreadable record is also among ``runs`` (unless no run at all could be read), as a
    run with status ``unreadable``: it may be any planned point, so a report counts it as missing rather than
    averaging what it could read.
    """

    runs: list[Run] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


_VERSION = re.compile(r"-v(\d+)$")


def current_records(files: list[Path]) -> tuple[list[Path], int]:
    """The files without the records a resume superseded, and how many those were.

    In a run folder (``run.json`` beside the records: ``run_folder.py``) ``summary.json``, ``summary-v1.json``...
    are one run recorded again each time it was resumed; its newest record (the highest version) is the run.
    A stack's members (``summary-seed3.json``) are different networks, each with its own versions.
    """
    newest: dict[tuple[Path, str], tuple[int, Path]] = {}
    kept = []
    for path in files:
        if not (path.parent / RUN_FILE).is_file():
            kept.append(path)
            continue
        match = _VERSION.search(path.stem)
        key = (path.parent, _VERSION.sub("", path.stem))
        version = int(match.group(1)) if match else 0
        if key not in newest or version > newest[key][0]:
            newest[key] = (version, path)
    kept += [path for _, path in newest.values()]
    return sorted(kept), len(files) - len(kept)


def read_local_summaries(directories: Iterable[str | os.PathLike], loaded: Loaded) -> None:
    """Every current ``summary*.json`` under ``directories`` (``summary.json``, ``summary-seed3.json``...)."""
    for directory in directories:
        exists = Path(directory).is_dir()
        files, superseded = current_records(sorted(Path(directory).glob(SUMMARY_GLOB)) if exists else [])
        loaded.searched.append(f"{directory} ({SUMMARY_GLOB}: {len(files)} file(s)"
                               + (f", {superseded} earlier record(s) of resumed runs left out" if superseded else "")
                               + f"{'' if exists else '; no such directory'})")
        for path in files:
            try:
                summary = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                loaded.unreadable.append((str(path), str(error)))
                continue
            if not isinstance(summary, dict) or "kind" not in summary or "model" not in summary:
                loaded.unreadable.append((str(path), "not a wide-lightning summary (no 'kind'/'model')"))
                continue
            loaded.runs.append(run_from_summary(summary, str(path), path.stat().st_mtime))


def read_wandb_dirs(directories: Iterable[str | os.PathLike], loaded: Loaded) -> None:
    """W&B run directories (``[offline-]run-<date>-<id>/``) under ``directories``, via ``files/wandb-summary.json``.

    wandb 0.31 offline runs do not write that file (checked: ``files/`` holds only ``requirements.txt``,
    ``output.log`` and our ``lightning_config.yaml``); their summary is only in the binary ``run-<id>.wandb``. Those directories are listed as unreadable (unless the same run
    was read from its ``summary*.json``), never ignored.
    """
    for directory in directories:
        root = Path(directory)
        exists = root.is_dir()
        files = sorted(root.glob(WANDB_SUMMARY_GLOB)) if exists else []
        run_dirs = sorted(p for p in root.glob("**/*run-*") if p.is_dir() and _WANDB_RUN_DIR.match(p.name)) if exists else []
        loaded.searched.append(f"{directory} ({WANDB_SUMMARY_GLOB}: {len(files)} file(s) in {len(run_dirs)} W&B run "
                               f"dir(s){'' if exists else '; no such directory'})")
        for path in files:
            run_dir = path.parent.parent
            run_id, started = _wandb_dir_facts(run_dir)
            try:
                summary = json.loads(path.read_text())
            except (OSError, ValueError) as error:
                loaded.unreadable.append((str(path), str(error)))
                continue
            loaded.runs.append(run_from_wandb_summary(summary, str(run_dir), run_id, started or path.stat().st_mtime))
        read = {p.parent.parent for p in files}
        for run_dir in run_dirs:
            if run_dir not in read:
                loaded.unreadable.append((str(run_dir), NO_WANDB_SUMMARY))


def read_wandb_api(project: str, sweep_id: str | None, loaded: Loaded) -> None:
    """Runs of ``entity/project`` (only those of ``sweep_id`` if given) from the W&B public API. Needs network and a login."""
    import wandb  # lazily: the offline paths need no W&B at all

    api = wandb.Api()
    runs = api.sweep(f"{project}/{sweep_id}").runs if sweep_id else api.runs(project)
    count = 0
    for run in runs:
        created = datetime.fromisoformat(str(run.created_at).replace("Z", "+00:00")).timestamp() if run.created_at else 0.0
        summary = dict(getattr(run.summary, "_json_dict", None) or run.summary)
        source = "wandb:" + "/".join(run.path)  # entity/project/run id
        loaded.runs.append(run_from_wandb_summary(summary, source, run.id, created, run.state))
        count += 1
    loaded.searched.append(f"W&B {project}" + (f" sweep {sweep_id}" if sweep_id else "") + f" ({count} run(s))")


def _merge_same_runs(runs: list[Run]) -> list[Run]:
    """One network read from several sources counts once (the first source read wins: local summaries are richest).

    A network is a W&B run, a depth and a seed: the members of a stacked run (a depth scan's too) share the run id.
    """
    seen: set[tuple[str, int | None, int | None]] = set()
    merged = []
    for run in runs:
        key = (run.run_id, run.depth, run.seed) if run.run_id else None
        if key in seen:
            continue
        if key:
            seen.add(key)
        merged.append(run)
    return merged


def load_runs(runs: Iterable[str] = (), wandb_dir: Iterable[str] = (), wandb_project: str | None = None,
              sweep_id: str | None = None) -> Loaded:
    """Read every source given; a W&B offline directory without a summary is kept only if no other source covered it,
    and every record that could not be read is among the runs too (``Loaded``)."""
    if sweep_id and not wandb_project:
        raise ReportError("--sweep_id needs --wandb_project ENTITY/PROJECT (sweep ids are looked up on the W&B server).")
    loaded = Loaded()
    read_local_summaries(runs, loaded)
    read_wandb_dirs(wandb_dir, loaded)
    if wandb_project:
        read_wandb_api(wandb_project, sweep_id, loaded)
    loaded.runs = _merge_same_runs(loaded.runs)
    ids = {run.run_id for run in loaded.runs if run.run_id}
    loaded.unreadable = [(path, why) for path, why in loaded.unreadable if _wandb_dir_facts(path)[0] not in ids]
    if loaded.runs:  # with nothing read, the commands' "no runs found" lists the unreadable records themselves
        loaded.runs += [unreadable_run(path, why) for path, why in loaded.unreadable]
    return loaded



"""One run of Figure 4, as every source describes it: the record and how each source's fields map to it."""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from wide_lightning.run_folder import METRIC_SECTIONS

BASE_METRIC = "base/test/acc"  # the original task: test accuracy of the best-validation checkpoint
PROBE_METRIC = "probe/test/acc_best"  # the new task: the probe's best test accuracy (Section 5.2)
BASELINE_METRIC = "base/test/acc_best"  # the raw-input linear classifier, same protocol as the probes
BASELINE_MODEL = "RawInputLinear"
SWEEP_KEYS = {"depth": "model.init_args.depth", "width": "model.init_args.width"}
SEED_KEY = "seed_everything"
SUMMARY_GLOB = "**/summary*.json"
WANDB_SUMMARY_GLOB = "**/files/wandb-summary.json"
_WANDB_RUN_DIR = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-([A-Za-z0-9]+)$")
#: What a run records that changes its result, besides the model, the dataset, the x axis and the seed (the
#: replicate): the runs averaged into one point must agree on these. Keys of W&B's flat summary; ``summary.json``
#: has them at its top level and in its ``probe`` section (``probe/backbone`` is its ``weights.probe.reads``).
#: ``parameters`` stands for the architecture's settings that no other field records; ``config`` names the config
#: files (their contents are not recorded), and the batch size and data arguments given on the command line are in
#: no run record.
RESULT_SETTINGS = ("target", "parameterization", "lr", "max_epochs", "parameters", "conv_channels", "config",
                   "probe/target", "probe/lr", "probe/max_epochs", "probe/backbone", "probe/head_parameterization")
#: The status of a run whose record could not be read: its point is unknown, so a report counts it as missing.
UNREADABLE = "unreadable"
NO_WANDB_SUMMARY = ("no files/wandb-summary.json (a wandb offline run keeps its summary only in run-<id>.wandb): "
                    "read this run's summary*.json with --runs, or `wandb sync` it and use --wandb_project")


class ReportError(Exception):
    """Nothing to report, or an ambiguous request: the message says what was searched and what to do."""


# -- one run, from whichever source ----------------------------------------------------------------


@dataclass
class Run:
    """The facts of one finished (or failed) ``fit``, flattened to the W&B summary's keys.

    ``metrics`` holds ``base/<metric>`` and ``probe/<metric>``; ``settings`` the ``RESULT_SETTINGS`` the
    source records (a setting it does not record is absent, not ``None``); ``time`` (seconds since the
    epoch) orders duplicates: the newest run of an (x, seed) point is kept. A record that could not be
    read is a run too, with status ``unreadable`` and the reason in ``error``.
    """

    source: str
    run_id: str | None = None
    kind: str | None = None
    status: str | None = None
    error: str | None = None
    model: str | None = None
    dataset: str | None = None
    target: str | None = None
    probe_target: str | None = None
    width: int | None = None
    depth: int | None = None
    seed: int | None = None
    parameterization: str | None = None
    metrics: dict[str, float] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    time: float = 0.0

    @property
    def finished(self) -> bool:
        return self.status == "finished"

    def value(self, x: str) -> int | None:
        return self.depth if x == "depth" else self.width

    def describe(self, x: str | None = None) -> str:
        point = f"{x}={self.value(x)} seed={self.seed}" if x else f"{self.model} seed={self.seed}"
        return f"{point} ({self.source})"


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _int(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def _comparable(value: Any) -> Any:
    """A recorded setting as a value that can be compared and grouped by (``config`` is a list of files)."""
    if isinstance(value, (list, tuple)):
        return tuple(_comparable(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value, sort_keys=True, default=str)
    return value


def _recorded_settings(flat: dict[str, Any]) -> dict[str, Any]:
    """The ``RESULT_SETTINGS`` a flat summary records; only present keys: a missing one is unknown, not ``None``."""
    return {name: _comparable(flat[name]) for name in RESULT_SETTINGS if name in flat}


def _wandb_dir_facts(path: str | os.PathLike | None) -> tuple[str | None, float | None]:
    """(run id, start time) from a W&B run directory name such as ``offline-run-20261122_140405-q3kkucn9``."""
    match = _WANDB_RUN_DIR.match(Path(path).name) if path else None
    if not match:
        return None, None
    return match.group(2), datetime.strptime(match.group(1), "%Y%m%d_%H%M%S").timestamp()


def run_from_summary(summary: dict[str, Any], source: str, time: float = 0.0) -> Run:
    """A run from the nested ``summary.json`` that ``wide-lightning fit`` writes (``cli._summary``)."""
    wandb_facts = summary.get("wandb") or {}
    run_id, started = _wandb_dir_facts(wandb_facts.get("dir"))
    metrics = {f"{section}/{k}": v for section in METRIC_SECTIONS
               for k, v in (summary.get(section) or {}).items() if _number(v) is not None}
    flat = {**summary, **{f"probe/{k}": v for k, v in (summary.get("probe") or {}).items()}}
    backbone = ((summary.get("weights") or {}).get("probe") or {}).get("reads")
    if backbone is not None:
        flat["probe/backbone"] = backbone
    return Run(
        source=source, run_id=wandb_facts.get("id") or run_id, kind=summary.get("kind"),
        status=summary.get("status"), error=summary.get("error"), model=summary.get("model"),
        dataset=summary.get("dataset"), target=summary.get("target"),
        probe_target=(summary.get("probe") or {}).get("target"), width=_int(summary.get("width")),
        depth=_int(summary.get("depth")), seed=_int(summary.get("seed")),
        parameterization=summary.get("parameterization"),
        metrics={k: float(v) for k, v in metrics.items()}, settings=_recorded_settings(flat), time=started or time,
    )


def run_from_wandb_summary(summary: dict[str, Any], source: str, run_id: str | None = None,
                           time: float = 0.0, state: str | None = None) -> Run:
    """A run from a W&B run summary: flat keys ``kind, status, ..., base/<metric>, probe/<metric>``.

    ``state`` is W&B's own run state (``finished``, ``failed``, ``crashed``, ``running``), used when the
    run died before it could record its ``status``.
    """
    status = summary.get("status") or state
    if state in ("failed", "crashed", "killed", "running") and status == "finished":
        status = state  # the run recorded success but W&B saw it die, or it is still going
    metrics = {k: float(v) for k, v in summary.items()
               if k.split("/", 1)[0] in METRIC_SECTIONS and _number(v) is not None}
    return Run(
        source=source, run_id=run_id, kind=summary.get("kind"), status=status, model=summary.get("model"),
        dataset=summary.get("dataset"), target=summary.get("target"), width=_int(summary.get("width")),
        depth=_int(summary.get("depth")), seed=_int(summary.get("seed")),
        parameterization=summary.get("parameterization"), metrics=metrics, settings=_recorded_settings(summary),
        time=time or float(summary.get("_timestamp") or 0.0),
    )


def unreadable_run(path: str, why: str) -> Run:
    """The run whose record at ``path`` could not be read (``why``): which point it is, nobody can tell."""
    return Run(source=path, run_id=_wandb_dir_facts(path)[0], status=UNREADABLE, error=why)



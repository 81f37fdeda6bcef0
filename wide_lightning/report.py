"""``wide-lightning-report``: Figure 4 from finished runs, saying plainly what is missing.

    wide-lightning-report --runs runs/translated_mnist --sweep sweeps/figure4_left.yaml
    wide-lightning-report --runs runs/cifar100_coarse --sweep sweeps/figure4_right.yaml --strict true
    wide-lightning-report --wandb_dir runs/translated_mnist --x depth --dataset TranslatedMNIST
    wide-lightning-report --wandb_project me/wide_lightning --sweep_id abc123 --sweep sweeps/figure4_left.yaml

Each point of Figure 4 is one transfer run (``fit`` with a ``probe``: base training on the original
task, then a linear probe on the frozen features for the new task). The report groups them by the
x variable (depth or width); the seeds are the replicates. It plots the mean and standard deviation
over seeds of the original-task test accuracy (``base/test/acc``) and of the new-task probe's best
test accuracy (``probe/test/acc_best``), plus the raw-input linear classifier (``RawInputLinear``
runs, ``base/test/acc_best``, mean over runs) as a dashed line, and writes ``<out>.png``,
``<out>.csv`` and ``<out>.missing.txt``.

A mean over 3 seeds where 5 were planned looks just like a mean over 5, so the report never averages
silently: it lists every missing (x, seed) point of the sweep's grid (or, without ``--sweep``, of
every x with every seed seen), every failed or unfinished run, every x with fewer seeds than the
others and every duplicate (the newest run of a point is kept). ``--strict true`` exits non-zero if
anything is missing, for CI or a cluster job that must not publish a partial figure.

Runs are read from (a) the ``summary*.json`` files every ``fit`` writes (``--runs``; the complete
record, and the only one for offline runs), (b) W&B run directories' ``files/wandb-summary.json``
(``--wandb_dir``; W&B writes that file when it uploads a run: wandb 0.31 offline runs keep their
summary only inside the binary ``run-<id>.wandb``, and are listed as unreadable unless their
``summary*.json`` was read too), or (c) the W&B public API (``--wandb_project``, online only). One
run read from several sources counts once (same W&B run id).
"""

from __future__ import annotations

import csv
import json
import math
import os
import re
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any, Iterable, Literal

import yaml

BASE_METRIC = "base/test/acc"  # the original task: test accuracy of the best-validation checkpoint
PROBE_METRIC = "probe/test/acc_best"  # the new task: the probe's best test accuracy (Section 5.2)
BASELINE_METRIC = "base/test/acc_best"  # the raw-input linear classifier, same protocol as the probes
BASELINE_MODEL = "RawInputLinear"
SWEEP_KEYS = {"depth": "model.init_args.depth", "width": "model.init_args.width"}
SEED_KEY = "seed_everything"
SUMMARY_GLOB = "**/summary*.json"
WANDB_SUMMARY_GLOB = "**/files/wandb-summary.json"
_WANDB_RUN_DIR = re.compile(r"^(?:offline-)?run-(\d{8}_\d{6})-([A-Za-z0-9]+)$")
NO_WANDB_SUMMARY = ("no files/wandb-summary.json (a wandb offline run keeps its summary only in run-<id>.wandb): "
                    "read this run's summary*.json with --runs, or `wandb sync` it and use --wandb_project")


class ReportError(Exception):
    """Nothing to report, or an ambiguous request: the message says what was searched and what to do."""


# -- one run, from whichever source ----------------------------------------------------------------


@dataclass
class Run:
    """The facts of one finished (or failed) ``fit``, flattened to the W&B summary's keys.

    ``metrics`` holds ``base/<metric>`` and ``probe/<metric>``; ``time`` (seconds since the epoch)
    orders duplicates: the newest run of an (x, seed) point is kept.
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
    metrics: dict[str, float] = field(default_factory=dict)
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
    metrics = {f"{section}/{k}": v for section in ("base", "probe")
               for k, v in (summary.get(section) or {}).items() if _number(v) is not None}
    return Run(
        source=source, run_id=wandb_facts.get("id") or run_id, kind=summary.get("kind"),
        status=summary.get("status"), error=summary.get("error"), model=summary.get("model"),
        dataset=summary.get("dataset"), target=summary.get("target"),
        probe_target=(summary.get("probe") or {}).get("target"), width=_int(summary.get("width")),
        depth=_int(summary.get("depth")), seed=_int(summary.get("seed")),
        metrics={k: float(v) for k, v in metrics.items()}, time=started or time,
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
               if k.startswith(("base/", "probe/")) and _number(v) is not None}
    return Run(
        source=source, run_id=run_id, kind=summary.get("kind"), status=status, model=summary.get("model"),
        dataset=summary.get("dataset"), target=summary.get("target"), width=_int(summary.get("width")),
        depth=_int(summary.get("depth")), seed=_int(summary.get("seed")), metrics=metrics,
        time=time or float(summary.get("_timestamp") or 0.0),
    )


# -- reading the sources ---------------------------------------------------------------------------


@dataclass
class Loaded:
    """The runs read, where from, and what could not be read (said in the report, never dropped silently)."""

    runs: list[Run] = field(default_factory=list)
    searched: list[str] = field(default_factory=list)
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (path, why)


def read_local_summaries(directories: Iterable[str | os.PathLike], loaded: Loaded) -> None:
    """Every ``summary*.json`` under ``directories`` (``summary.json``, ``summary-v1.json``, ``summary-<run id>.json``)."""
    for directory in directories:
        exists = Path(directory).is_dir()
        files = sorted(Path(directory).glob(SUMMARY_GLOB)) if exists else []
        loaded.searched.append(f"{directory} ({SUMMARY_GLOB}: {len(files)} file(s){'' if exists else '; no such directory'})")
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
    """Read every source given; a W&B offline directory without a summary is kept only if no other source covered it."""
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
    return loaded


# -- the planned grid --------------------------------------------------------------------------------


@dataclass
class Grid:
    """The (x, seed) points a sweep plans; ``seeds=None``: the sweep fixes the seed (any one run per x)."""

    x: str
    values: list[int]
    seeds: list[int] | None
    source: str
    dataset: str | None = None
    model: str | None = None

    @property
    def size(self) -> int:
        return len(self.values) * len(self.seeds or [None])


def _grid_values(key: str, spec: dict[str, Any], sweep: str) -> list[Any]:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    if spec.get("distribution") == "int_uniform" and "min" in spec and "max" in spec:
        return list(range(int(spec["min"]), int(spec["max"]) + 1))
    raise ReportError(f"{sweep}: parameter {key} is not a grid (values, value or int_uniform min/max): {spec}.")


def _config_of_sweep(config: dict[str, Any], sweep_path: Path) -> dict[str, Any] | None:
    """The training config the sweep's command names (``--config X`` / ``--config=X``), if it can be read."""
    command = [str(c) for c in config.get("command") or []]
    names = [command[i + 1] for i, c in enumerate(command[:-1]) if c == "--config"]
    names += [c.split("=", 1)[1] for c in command if c.startswith("--config=")]
    for name in names:
        for candidate in (Path(name), sweep_path.resolve().parent.parent / name):
            if candidate.is_file():
                return yaml.safe_load(candidate.read_text())
    return None


def expected_grid(sweep: str | os.PathLike, x: str = "auto") -> Grid:
    """The (x, seed) grid of a Figure 4 sweep (``sweeps/figure4_*.yaml``), and its dataset and model from the config it runs."""
    path = Path(sweep)
    try:
        config = yaml.safe_load(path.read_text())
    except OSError as error:
        raise ReportError(f"cannot read the sweep {sweep}: {error}") from error
    parameters = (config or {}).get("parameters") or {}
    swept = {key: _grid_values(key, spec, str(sweep)) for key, spec in parameters.items()}
    names = [name for name, key in SWEEP_KEYS.items() if key in swept]
    if len(names) != 1:
        raise ReportError(f"{sweep}: a Figure 4 sweep varies exactly one of {sorted(SWEEP_KEYS.values())}; "
                          f"it has {sorted(swept)}.")
    if x not in ("auto", names[0]):
        raise ReportError(f"--x {x} but the sweep {sweep} varies {names[0]}.")
    others = {k: v for k, v in swept.items() if k not in (SWEEP_KEYS[names[0]], SEED_KEY) and len(v) > 1}
    if others:
        raise ReportError(f"{sweep} also varies {', '.join(f'{k} ({len(v)} values)' for k, v in others.items())}; "
                          f"the report averages over seeds at each {names[0]} only, so it would mix them.")
    facts = _config_of_sweep(config, path) or {}
    class_name = lambda section: (((facts.get(section) or {}).get("class_path")) or "").rpartition(".")[2] or None  # noqa: E731
    # a stacked model (StackedMLPClassifier) trains the seeds its config lists in every run
    stacked_seeds = ((facts.get("model") or {}).get("init_args") or {}).get("seeds")
    seeds = swept.get(SEED_KEY) or stacked_seeds
    return Grid(x=names[0], values=sorted(int(v) for v in swept[SWEEP_KEYS[names[0]]]),
                seeds=sorted(int(s) for s in seeds) if seeds else None,
                source=str(sweep), dataset=class_name("data"), model=class_name("model"))


# -- grouping, statistics, problems -------------------------------------------------------------------


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; NaN for fewer than 2 values: one seed has no spread)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


@dataclass
class Point:
    x: int
    runs: dict[int | None, Run]  # seed -> the run kept

    @property
    def seeds(self) -> list[int | None]:
        return sorted(self.runs, key=lambda s: (s is None, s or 0))

    def stats(self, metric: str) -> tuple[float, float]:
        return mean_std([self.runs[s].metrics[metric] for s in self.seeds])

    @property
    def widths(self) -> list[int]:
        return sorted({r.width for r in self.runs.values() if r.width is not None})


@dataclass
class Baseline:
    mean: float
    std: float
    runs: list[Run]
    target: str | None


@dataclass
class Figure4:
    """Everything the figure, the CSV and the missing-runs list say, computed once."""

    dataset: str
    model: str
    x: str
    points: list[Point]
    baseline: Baseline | None
    grid: Grid | None
    missing: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)
    fewer_seeds: list[str] = field(default_factory=list)
    duplicates: list[str] = field(default_factory=list)
    outside_grid: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def complete(self) -> bool:
        """Nothing planned is missing: every point has every seed, and the baseline exists."""
        return not (self.missing or self.fewer_seeds or self.baseline is None)

    def text(self) -> str:
        grid = (f"{self.grid.source}: {len(self.grid.values)} {self.x} value(s) x "
                + (f"{len(self.grid.seeds)} seed(s) = {self.grid.size} point(s)" if self.grid.seeds else "any seed")
                if self.grid else "no --sweep given: expected every " + self.x + " found with every seed found")
        kept = sum(len(p.runs) for p in self.points)
        lines = [f"Figure 4: {self.dataset}, {self.model}, x = {self.x}",
                 f"expected grid: {grid}",
                 f"averaged: {kept} finished run(s) at {sum(1 for p in self.points if p.runs)} {self.x} value(s)"]
        if self.baseline is not None:
            lines.append(f"baseline ({BASELINE_MODEL}, {BASELINE_METRIC}, target {self.baseline.target}): "
                         f"{self.baseline.mean:.4f}" + ("" if math.isnan(self.baseline.std) else f" +- {self.baseline.std:.4f}")
                         + f" over {len(self.baseline.runs)} run(s)")
        else:
            lines.append(f"BASELINE MISSING: no finished {BASELINE_MODEL} run of {self.dataset} with {BASELINE_METRIC}")
        for title, items in (("MISSING (x, seed) points", self.missing), ("FAILED OR UNFINISHED runs (not averaged)", self.failed),
                             ("FEWER SEEDS than planned", self.fewer_seeds), ("DUPLICATES (the newest kept)", self.duplicates),
                             ("OUTSIDE THE SWEEP GRID (not averaged)", self.outside_grid), ("NOTES", self.notes)):
            if items:
                lines.append(f"{title} ({len(items)}):")
                lines.extend(f"  {item}" for item in items)
        lines.append("complete: nothing missing." if self.complete else "INCOMPLETE: the means above use fewer runs than planned.")
        return "\n".join(lines)


def _choose(kind: str, given: str | None, found: set[str], hint: str) -> str:
    if given is not None:
        return given
    if len(found) == 1:
        return next(iter(found))
    raise ReportError(f"transfer runs of several {kind}s were found ({', '.join(sorted(found))}): choose one with {hint}.")


def _keep_newest(runs: list[Run], key, describe, duplicates: list[str]) -> dict[Any, Run]:
    kept: dict[Any, Run] = {}
    for run in sorted(runs, key=lambda r: r.time):
        if key(run) in kept:
            duplicates.append(f"{describe(run)}: kept the newer {run.source}, dropped {kept[key(run)].source}")
        kept[key(run)] = run
    return kept


def figure4(runs: list[Run], x: Literal["auto", "depth", "width"] = "auto", dataset: str | None = None,
            model: str | None = None, grid: Grid | None = None) -> Figure4:
    """Group the transfer runs by ``x`` (seeds are replicates) and list everything missing, failed or duplicated."""
    dataset = dataset or (grid.dataset if grid else None)
    model = model or (grid.model if grid else None)
    transfers = [r for r in runs if r.kind == "transfer" and r.model != BASELINE_MODEL]
    if not transfers:
        kinds = sorted({f"{r.kind} {r.model} {r.dataset}" for r in runs})
        raise ReportError(f"none of the {len(runs)} run(s) read is a transfer run (kind 'transfer', a fit with a probe); "
                          f"found: {', '.join(kinds) or 'nothing'}.")
    found = sorted({f"{r.model} on {r.dataset}" for r in transfers})
    dataset = _choose("dataset", dataset, {r.dataset for r in transfers}, "--dataset")
    transfers = [r for r in transfers if r.dataset == dataset]
    model = _choose("model", model, {r.model for r in transfers}, "--model") if transfers else model
    transfers = [r for r in transfers if r.model == model]
    if not transfers:
        raise ReportError(f"no transfer runs of {model or 'any model'} on {dataset} among the {len(runs)} run(s) "
                          f"read; the transfer runs found are of {', '.join(found)}.")
    if grid is not None and x not in ("auto", grid.x):
        raise ReportError(f"--x {x} but the sweep {grid.source} varies {grid.x}.")
    x = grid.x if grid is not None else (x if x != "auto" else ("depth" if model in ("MLPClassifier", "StackedMLPClassifier") else "width"))
    result = Figure4(dataset=dataset, model=model, x=x, points=[], baseline=None, grid=grid)
    ignored = [r for r in runs if r.dataset == dataset and r.model == model and r.kind != "transfer"]
    if ignored:
        result.notes.append(f"{len(ignored)} {model} run(s) of {dataset} without a probe (kind fit) are not part of Figure 4.")

    usable: list[Run] = []
    failed: list[tuple[Run, str]] = []
    for run in transfers:
        lacking = [m for m in (BASE_METRIC, PROBE_METRIC) if m not in run.metrics]
        if run.value(x) is None:
            result.notes.append(f"{run.source}: no {x} recorded, not averaged.")
        elif not run.finished:
            failed.append((run, f"status {run.status}" + (f": {run.error}" if run.error else "")))
        elif lacking:
            failed.append((run, f"finished without {', '.join(lacking)}"))
        elif grid is not None and (run.value(x) not in grid.values or (grid.seeds is not None and run.seed not in grid.seeds)):
            result.outside_grid.append(run.describe(x))
        else:
            usable.append(run)
    kept = _keep_newest(usable, lambda r: (r.value(x), r.seed), lambda r: f"{x}={r.value(x)} seed={r.seed}", result.duplicates)
    for run, why in failed:
        other = kept.get((run.value(x), run.seed))
        result.failed.append(f"{run.describe(x)}: {why}" + (f" (the point uses {other.source})" if other else ""))

    values = grid.values if grid is not None else sorted({r.value(x) for r in transfers if r.value(x) is not None})
    seeds = (grid.seeds if grid is not None else sorted({r.seed for r in transfers if r.seed is not None})) or None
    for value in values:
        point = Point(value, {seed: run for (v, seed), run in kept.items() if v == value})
        result.points.append(point)
        lacking = [s for s in seeds if s not in point.runs] if seeds is not None else ([] if point.runs else ["any"])
        result.missing.extend(f"{x}={value} seed={s}" for s in lacking)
        if lacking and point.runs:
            result.fewer_seeds.append(f"{x}={value}: {len(point.runs)} of {len(seeds or [])} seed(s), "
                                      f"missing seed(s) {', '.join(map(str, lacking))}")
        elif lacking:
            result.fewer_seeds.append(f"{x}={value}: no finished run at all")
    result.baseline = _baseline(runs, dataset, {r.probe_target for r in transfers if r.probe_target}, result)
    return result


def _baseline(runs: list[Run], dataset: str, probe_targets: set[str], result: Figure4) -> Baseline | None:
    """The raw-input linear classifier on the new task: mean of ``base/test/acc_best`` over its runs (newest per seed)."""
    candidates = [r for r in runs if r.model == BASELINE_MODEL and r.dataset == dataset
                  and (not probe_targets or r.target in probe_targets)]
    usable = []
    for run in candidates:
        if not run.finished:
            result.failed.append(f"baseline {run.describe()}: status {run.status}" + (f": {run.error}" if run.error else ""))
        elif BASELINE_METRIC not in run.metrics:
            result.failed.append(f"baseline {run.describe()}: finished without {BASELINE_METRIC}")
        else:
            usable.append(run)
    kept = _keep_newest(usable, lambda r: r.seed, lambda r: f"baseline seed={r.seed}", result.duplicates)
    if not kept:
        return None
    values = [run.metrics[BASELINE_METRIC] for run in kept.values()]
    targets = {run.target for run in kept.values()}
    return Baseline(*mean_std(values), runs=list(kept.values()), target=", ".join(sorted(t or "?" for t in targets)))


# -- outputs ----------------------------------------------------------------------------------------------


CSV_COLUMNS = ["x_name", "x", "n_seeds", "seeds", "width", "base_mean", "base_std", "probe_mean", "probe_std",
               "baseline_mean", "baseline_std", "baseline_runs"]


def write_csv(result: Figure4, path: str | os.PathLike) -> Path:
    """One row per x (rows with ``n_seeds`` 0 are planned points with no finished run); the baseline on every row."""
    baseline = result.baseline
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS)
        writer.writeheader()
        for point in result.points:
            base, probe = point.stats(BASE_METRIC), point.stats(PROBE_METRIC)
            writer.writerow({
                "x_name": result.x, "x": point.x, "n_seeds": len(point.runs),
                "seeds": " ".join(map(str, point.seeds)), "width": " ".join(map(str, point.widths)),
                "base_mean": base[0], "base_std": base[1], "probe_mean": probe[0], "probe_std": probe[1],
                "baseline_mean": baseline.mean if baseline else math.nan,
                "baseline_std": baseline.std if baseline else math.nan,
                "baseline_runs": len(baseline.runs) if baseline else 0,
            })
    return Path(path)


def draw(result: Figure4, path: str | os.PathLike) -> Path:
    """Figure 4 style: both tasks with error bars (std over seeds), the raw-input linear classifier dashed."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    figure = Figure(figsize=(5.0, 4.0), layout="constrained")
    FigureCanvasAgg(figure)  # no pyplot: nothing global, safe in threads and tests
    axes = figure.add_subplot()
    points = [p for p in result.points if p.runs]
    xs = [p.x for p in points]
    handles = []  # in the paper's legend order (matplotlib would put the dashed line first)
    for metric, label, color in ((BASE_METRIC, "Original task", "tab:blue"),
                                 (PROBE_METRIC, "Fine-tuned on new task", "tab:orange")):
        stats = [p.stats(metric) for p in points]
        handles.append(axes.errorbar(xs, [m for m, _ in stats], yerr=[0.0 if math.isnan(s) else s for _, s in stats],
                                     color=color, marker="o", markersize=3, capsize=3, label=label))
    if result.baseline is not None:
        handles.append(axes.axhline(result.baseline.mean, color="tab:green", linestyle="--",
                                    label="Linear classifier on new task"))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(result.x.capitalize())
    axes.set_ylabel("Test accuracy")
    axes.set_title(f"{result.dataset}" + ("" if result.complete else " (incomplete: see .missing.txt)"))
    axes.legend(handles=handles, loc="best", fontsize="small")
    figure.savefig(path, dpi=150)
    return Path(path)


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
    if not (runs or wandb_dir or wandb_project):
        runs = ["runs"]
    grid = expected_grid(sweep, x) if sweep else None
    loaded = load_runs(runs or [], wandb_dir or [], wandb_project, sweep_id)
    if not loaded.runs:
        raise ReportError(
            "no runs found. Searched: " + "; ".join(loaded.searched)
            + ". Expected summary*.json files (written by `wide-lightning fit` into trainer.default_root_dir) "
              "for --runs, or W&B run directories with files/wandb-summary.json for --wandb_dir."
            + "".join(f"\n  unreadable: {path}: {why}" for path, why in loaded.unreadable))
    result = figure4(loaded.runs, x=x, dataset=dataset, model=model, grid=grid)
    result.notes.extend(f"unreadable: {path}: {why}" for path, why in loaded.unreadable)
    result.notes.append("searched: " + "; ".join(loaded.searched))
    stem = Path(out) if out else Path(Path(sweep).stem if sweep else f"figure4_{result.dataset}")
    if stem.suffix in (".png", ".csv"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    png, table, missing = (stem.parent / f"{stem.name}{suffix}" for suffix in (".png", ".csv", ".missing.txt"))
    draw(result, png)
    write_csv(result, table)
    text = result.text()
    missing.write_text(text + "\n")
    print(text)
    print(f"wrote {png}, {table}, {missing}")
    if strict and not result.complete:
        problems = len(result.missing) + (result.baseline is None)
        raise SystemExit(f"--strict: {problems} planned point(s) or baseline missing; see {missing}")
    return result


LIST_OPTIONS = ("--runs", "--wandb_dir")
FLAG_OPTIONS = ("--strict",)


def _shell_style(args: list[str]) -> list[str]:
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
    from jsonargparse import CLI

    try:
        CLI(report, args=_shell_style(sys.argv[1:] if args is None else list(args)), as_positional=False)
    except ReportError as error:
        raise SystemExit(f"wide-lightning-report: {error}") from None


if __name__ == "__main__":
    main()

"""Grouping runs into Figure 4's points: statistics over seeds, the baseline, and every problem found.

A point is an x (a depth or a width); its runs are its seeds, the replicates, and only runs that
agree on every other setting that changes the result are averaged. The report never averages what
differs, nor hides what it could not read:

* An unreadable record (a truncated ``summary.json``, a W&B run folder without its summary) may be any
  point: it is listed with the missing points, so the figure is incomplete and ``--strict`` fails.
* Duplicates: of several runs of one (x, seed), the newest is kept (a rerun replaces its run).
* Differing settings: the runs of one point (and the baseline's runs) are compared on every
  ``RESULT_SETTINGS`` entry they all record (``runs.py``: the target and the probe's target, the
  parameterization, the learning rate, ``max_epochs``, the parameter count, the config files'
  names, the probe's learning rate, epochs and backbone), and on the network's other dimension (the
  width at a depth, the depth at a width). If they differ, the point keeps the runs of the setting most of its
  seeds share (on a tie, the setting of its newest run); the others are not averaged. The point is
  listed under DIFFERING SETTINGS, naming each differing setting and the values with their seeds and
  files, and the seeds set aside are listed as missing, so the figure is incomplete and ``--strict``
  fails. A setting that some run of the point does not record (a W&B summary has no config files)
  is not compared; the batch size and data arguments given on the command line are in no record.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Iterable, Literal

from wide_lightning.report.grid import Grid
from wide_lightning.report.runs import (
    BASE_METRIC,
    BASELINE_METRIC,
    BASELINE_MODEL,
    PROBE_METRIC,
    UNREADABLE,
    ReportError,
    Run,
)

# -- grouping, statistics, problems -------------------------------------------------------------------


def seed_order(seed: int | None) -> tuple[bool, int]:
    """Seeds in ascending order, an unknown seed (``None``) last."""
    return seed is None, seed or 0


def seeds_text(seeds: Iterable[int | None]) -> str:
    """``seed 3`` or ``seeds 0, 1, 2``."""
    ordered = sorted(seeds, key=seed_order)
    return ("seed " if len(ordered) == 1 else "seeds ") + ", ".join(map(str, ordered))


def mean_std(values: list[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (n - 1; NaN for fewer than 2 values: one seed has no spread)."""
    n = len(values)
    if n == 0:
        return math.nan, math.nan
    mean = sum(values) / n
    if n < 2:
        return mean, math.nan
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))


def level_crossing(xs: list[float], ys: list[float], level: float) -> float | None:
    """The first x (in ascending x) where the piecewise-linear curve through ``(xs, ys)`` reaches
    ``level``, interpolated linearly; ``None`` if it stays on one side."""
    pairs = sorted(zip(xs, ys))
    for (x0, y0), (x1, y1) in zip(pairs, pairs[1:]):
        if y0 == level:
            return float(x0)
        if (y0 - level) * (y1 - level) <= 0:
            return x0 + (level - y0) * (x1 - x0) / (y1 - y0)
    return float(pairs[-1][0]) if pairs and pairs[-1][1] == level else None


@dataclass
class Point:
    x: int
    runs: dict[int | None, Run]  # seed -> the run kept

    @property
    def seeds(self) -> list[int | None]:
        return sorted(self.runs, key=seed_order)

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
    differing: list[str] = field(default_factory=list)
    outside_grid: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def input_dimension(self) -> int | None:
        """w* of Section 5.1: the raw-input linear classifier's width, the input's dimension (784 for MNIST)."""
        widths = {run.width for run in self.baseline.runs if run.width} if self.baseline is not None else set()
        return widths.pop() if len(widths) == 1 else None

    def widths(self) -> list[tuple[int, float]]:
        """``(x, width)`` of each point with runs (a depth scan's width n(L); a width scan's x)."""
        pairs = []
        for point in self.points:
            if point.runs and (self.x == "width" or len(point.widths) == 1):
                pairs.append((point.x, float(point.x if self.x == "width" else point.widths[0])))
        return pairs

    def probe_crossing_width(self) -> float | None:
        """The width at which the probe's mean accuracy reaches the raw-input line (interpolated in width)."""
        if self.baseline is None:
            return None
        width_of = dict(self.widths())
        points = [p for p in self.points if p.runs and p.x in width_of]
        return level_crossing([width_of[p.x] for p in points], [p.stats(PROBE_METRIC)[0] for p in points],
                              self.baseline.mean)

    def crossing_line(self) -> str | None:
        """What the text says of Section 5.1's claim: where the probe curve meets the raw-input line."""
        if self.baseline is None or not self.widths():
            return None
        where = self.probe_crossing_width()
        w_star = self.input_dimension
        paper = f" (the paper: at w* = {w_star}, the input dimension)" if w_star else ""
        if where is not None:
            return f"the probe curve meets the raw-input line at width {where:.0f}, interpolated{paper}"
        width_of = dict(self.widths())
        above = all(p.stats(PROBE_METRIC)[0] > self.baseline.mean for p in self.points if p.runs and p.x in width_of)
        return f"the probe curve does not meet the raw-input line: {'above' if above else 'below'} it at every width{paper}"

    @property
    def complete(self) -> bool:
        """Nothing planned is missing or unreadable, every point has every seed in one setting, and the baseline exists."""
        return not (self.missing or self.fewer_seeds or self.differing or self.baseline is None)

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
        crossing = self.crossing_line()
        if crossing:
            lines.append(crossing)
        # the command adds every unreadable record to the notes; those listed as missing are said once
        notes = [note for note in self.notes if note not in self.missing]
        for title, items in (("MISSING (x, seed) points and unreadable runs", self.missing),
                             ("FAILED OR UNFINISHED runs (not averaged)", self.failed),
                             ("FEWER SEEDS than planned", self.fewer_seeds), ("DUPLICATES (the newest kept)", self.duplicates),
                             ("DIFFERING SETTINGS within a point (one setting averaged, the others missing)",
                              self.differing),
                             ("OUTSIDE THE SWEEP GRID (not averaged)", self.outside_grid), ("NOTES", notes)):
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


def unreadable_line(run: Run) -> str:
    """How a missing-runs list names an unreadable record (as the command's notes do: said once, ``Figure4.text``)."""
    return f"unreadable: {run.source}: {run.error}"


def _compared_settings(run: Run, x: str | None) -> dict[str, Any]:
    """What the runs of one point must agree on: the recorded settings, and the network's dimension that is not
    the x axis (the width at a depth, the depth at a width; both for the baseline, which has no x)."""
    dimensions = {"width": run.width, "depth": run.depth}
    dimensions.pop(x, None)
    return {**run.settings, **dimensions}


def _one_setting(runs: dict[Any, Run], label: str, x: str | None, result: Figure4) -> tuple[dict[Any, Run], list[Any]]:
    """The runs (by seed) of one point that share one setting, and the seeds set aside (module doc: the setting
    most seeds share, on a tie the newest run's); a point whose runs differ is described in ``result.differing``."""
    settings = {seed: _compared_settings(run, x) for seed, run in runs.items()}
    recorded_by_all = set.intersection(*(set(s) for s in settings.values())) if settings else set()
    differ = sorted(name for name in recorded_by_all if len({s[name] for s in settings.values()}) > 1)
    if not differ:
        return runs, []
    groups: dict[tuple, dict[Any, Run]] = {}
    for seed, run in runs.items():
        groups.setdefault(tuple(settings[seed][name] for name in differ), {})[seed] = run
    kept = max(groups.values(), key=lambda group: (len(group), max(run.time for run in group.values())))
    tie = sum(len(group) == len(kept) for group in groups.values()) > 1
    described = "; ".join(
        f"{seeds_text(group)} {'has' if len(group) == 1 else 'have'} "
        + ", ".join(f"{name}={value}" for name, value in zip(differ, values))
        + ("" if group is kept else f" ({', '.join(run.source for run in group.values())})")
        for values, group in groups.items())
    result.differing.append(f"{label}: runs differ in {', '.join(differ)}: {described}; averaged only "
                            f"{seeds_text(kept)} ({'the newest run' if tie else 'the most seeds'}), the others are missing")
    return kept, [seed for seed in runs if seed not in kept]


def figure4(runs: list[Run], x: Literal["auto", "depth", "width"] = "auto", dataset: str | None = None,
            model: str | None = None, grid: Grid | None = None) -> Figure4:
    """Group the transfer runs by ``x`` (seeds are replicates) and list everything missing, failed or duplicated."""
    dataset = dataset or (grid.dataset if grid else None)
    model = model or (grid.model if grid else None)
    unreadable = [r for r in runs if r.status == UNREADABLE]
    runs = [r for r in runs if r.status != UNREADABLE]
    transfers = [r for r in runs if r.kind == "transfer" and r.model != BASELINE_MODEL]
    if not transfers:
        kinds = sorted({f"{r.kind} {r.model} {r.dataset}" for r in runs})
        unread = f"; {len(unreadable)} record(s) could not be read: {', '.join(r.source for r in unreadable)}" if unreadable else ""
        raise ReportError(f"none of the {len(runs)} run(s) read is a transfer run (kind 'transfer', a fit with a probe); "
                          f"found: {', '.join(kinds) or 'nothing'}{unread}.")
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

    values = grid.values if grid is not None else sorted({r.value(x) for r in transfers if r.value(x) is not None})
    seeds = (grid.seeds if grid is not None else sorted({r.seed for r in transfers if r.seed is not None})) or None
    for value in values:
        averaged, set_aside = _one_setting({seed: run for (v, seed), run in kept.items() if v == value},
                                           f"{x}={value}", x, result)
        point = Point(value, averaged)
        result.points.append(point)
        lacking = [s for s in seeds if s not in point.runs] if seeds is not None else ([] if point.runs else ["any"])
        # a sweep that fixes the seed (seeds None) expects any one run: a run set aside is missing all the same
        result.missing.extend(f"{x}={value} seed={s}" for s in lacking + [s for s in set_aside if s not in lacking])
        if lacking and point.runs:
            result.fewer_seeds.append(f"{x}={value}: {len(point.runs)} of {len(seeds or [])} seed(s), "
                                      f"missing seed(s) {', '.join(map(str, lacking))}")
        elif lacking:
            result.fewer_seeds.append(f"{x}={value}: no finished run at all")
    in_points = {(point.x, seed): run for point in result.points for seed, run in point.runs.items()}
    for run, why in failed:
        other = in_points.get((run.value(x), run.seed))
        result.failed.append(f"{run.describe(x)}: {why}" + (f" (the point uses {other.source})" if other else ""))
    result.baseline = _baseline(runs, dataset, {r.probe_target for r in transfers if r.probe_target}, result)
    result.missing.extend(unreadable_line(run) for run in unreadable)
    return result


def _baseline(runs: list[Run], dataset: str, probe_targets: set[str], result: Figure4) -> Baseline | None:
    """The raw-input linear classifier on the new task: mean of ``base/test/acc_best`` over its runs (newest per seed,
    in one setting as a point's: module doc)."""
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
    kept, set_aside = _one_setting(_keep_newest(usable, lambda r: r.seed, lambda r: f"baseline seed={r.seed}",
                                                result.duplicates), "baseline", None, result)
    result.missing.extend(f"baseline seed={seed}" for seed in set_aside)
    if not kept:
        return None
    values = [run.metrics[BASELINE_METRIC] for run in kept.values()]
    targets = {run.target for run in kept.values()}
    return Baseline(*mean_std(values), runs=list(kept.values()), target=", ".join(sorted(t or "?" for t in targets)))



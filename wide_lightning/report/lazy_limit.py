"""The lazy-limit report: how far the features moved, and the accuracy reached, against width, per parameterization.

    wide-lightning-report-lazy --runs runs/lazy_limit/mlp_mnist --sweep sweeps/lazy_limit_mlp.yaml --depth 1

Each point is one ``fit`` with the ``FeatureMovement`` callback (``configs/lazy_limit/*.yaml``); the
seeds are the replicates. For each parameterization the report fits ``movement ~ c * width^a`` by least
squares on log-log axes over the widths ``>= min_width`` (theory: ``a = -1/2`` under ``ntk``, ``a = 0``
under ``mup``) and gives the exponent's standard error. The atlases found beside a run's
``summary.json`` (``wide-lightning-atlas --checkpoint <run>/checkpoints/last.ckpt``, with
``--space classifier_subspace`` and ``--control untrained``) give how recognizable its icons are.
It writes ``<out>.png`` (relative movement of the whole hidden state and of its
classifier-subspace projection; the share of unchanged ReLU patterns and CKA; the share of icons
the judge names as their cell's class, for the hidden state, the classifier subspace and the
untrained floor; test accuracy, and a transfer run's probe accuracy with its untrained floor; each against width), ``<out>.csv`` and ``<out>.missing.txt``
(every planned point without a finished run, every failed run), as the Figure 4 report does.
"""

from __future__ import annotations

import csv
import math
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import yaml

from wide_lightning.report.command import loaded_runs, output_paths, shell_style, write_text
from wide_lightning.report.figure4 import mean_std
from wide_lightning.report.grid import config_of_sweep, read_sweep
from wide_lightning.report.runs import SEED_KEY, UNREADABLE, ReportError, Run

#: The atlases of a run, read from the folders beside its ``summary.json`` (``wide-lightning-atlas`` and the
#: end-of-training callback write them there): the hidden state, its classifier-subspace projection and the
#: untrained network of the same width (``--control untrained``), the floor.
ATLAS_KINDS = ("hidden", "classifier_subspace", "untrained")
ATLAS_MEASURES = {"judge": "atlas/icons/judge_agreement", "network": "atlas/icons/network_agreement"}
MOVEMENT = "base/movement/relative"
HEAD_SPAN = "base/movement/relative_trained_head_span"
PATTERNS = "base/movement/unchanged_patterns"
CKA = "base/movement/cka"
COLLAPSED = "base/movement/collapsed"
ACCURACY = "base/test/acc"
PROBE = "probe/test/acc_best"  # a transfer run's new task (configs/lazy_limit/transfer_mlp.yaml), as in Figure 4
PROBE_UNTRAINED = "probe_untrained/test/acc_best"  # the same probe of the network at initialization: the floor
METRICS = (MOVEMENT, HEAD_SPAN, PATTERNS, CKA, ACCURACY, PROBE, PROBE_UNTRAINED)
PREDICTED_EXPONENT = {"standard": None, "ntk": -0.5, "mup": 0.0}
COLORS = {"standard": "tab:blue", "ntk": "tab:orange", "mup": "tab:green"}


def fit_exponent(widths: list[float], values: list[float]) -> tuple[float, float]:
    """Slope ``a`` of ``log(value) = a log(width) + b`` by least squares, and its standard error (NaN with 2 points)."""
    pairs = [(math.log(w), math.log(v)) for w, v in zip(widths, values) if w > 0 and v > 0]
    n = len(pairs)
    if n < 2 or len({x for x, _ in pairs}) < 2:
        raise ValueError(f"an exponent needs values at two widths or more, got {n}.")
    mx, my = sum(x for x, _ in pairs) / n, sum(y for _, y in pairs) / n
    sxx = sum((x - mx) ** 2 for x, _ in pairs)
    slope = sum((x - mx) * (y - my) for x, y in pairs) / sxx
    if n == 2:
        return slope, math.nan
    residual = sum((y - my - slope * (x - mx)) ** 2 for x, y in pairs)
    return slope, math.sqrt(residual / (n - 2) / sxx)


@dataclass
class Planned:
    """The (parameterization, width, seed) points a sweep plans, at ``depth``."""

    parameterizations: list[str]
    widths: list[int]
    seeds: list[int]
    depths: list[int | None]  # [None]: a network without depth (the conv contrast)


def planned_points(sweep: str | os.PathLike) -> Planned:
    """The grid of a lazy-limit sweep (``sweeps/lazy_limit_*.yaml``); values it fixes come from its ``value``."""
    config, values = read_sweep(sweep)
    if "model.init_args.width" not in values:
        raise ReportError(f"{sweep}: a lazy-limit sweep varies model.init_args.width; it has {sorted(values)}.")
    parameterizations = [str(v) for v in values.get("model.init_args.parameterization", [])]
    for name in values.get("config", []):  # a config per parameterization (configs/lazy_limit/ntk.yaml)
        path = Path(name) if Path(name).is_file() else Path(sweep).resolve().parent.parent / name
        try:
            chosen = ((yaml.safe_load(path.read_text()) or {}).get("model") or {}).get("init_args", {}).get("parameterization")
        except OSError as error:
            raise ReportError(f"{sweep}: cannot read its config {name}: {error}") from error
        parameterizations.append(chosen or "standard")
    return Planned(parameterizations=parameterizations or ["standard"],
                   widths=sorted(int(v) for v in values["model.init_args.width"]),
                   seeds=sorted(int(v) for v in values.get(SEED_KEY, [0])),
                   depths=sorted(int(v) for v in values["model.init_args.depth"]) if "model.init_args.depth" in values
                   else [base_depth(config_of_sweep(config, Path(sweep)))])


def base_depth(config: dict[str, Any] | None) -> int | None:
    """The depth of the network a sweep's base config trains: its ``depth`` (the MLP's default 1), none for a model
    without one (the conv net)."""
    model = (config or {}).get("model") or {}
    if str(model.get("class_path", "")).rpartition(".")[2] != "MLPClassifier":
        return None
    return int((model.get("init_args") or {}).get("depth", 1))


@dataclass
class LazyLimit:
    """Everything the figure, the CSV and the missing-runs list say, computed once."""

    depth: int | None
    points: dict[tuple[str, int], dict[int | None, Run]]  # (parameterization, width) -> seed -> run
    min_width: int
    model: str | None = None
    conv_channels: int | str | None = None  # a conv net's filters: a count, or "width" (every layer wide)
    missing: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def parameterizations(self) -> list[str]:
        order = list(PREDICTED_EXPONENT)
        return sorted({p for p, _ in self.points}, key=lambda p: (
            order.index(parameterization_of(p)) if parameterization_of(p) in order else len(order), p))

    def widths(self, parameterization: str) -> list[int]:
        return sorted(w for p, w in self.points if p == parameterization and self.points[(p, w)])

    def stats(self, parameterization: str, width: int, metric: str) -> tuple[float, float]:
        runs = self.points.get((parameterization, width)) or {}
        return mean_std([r.metrics[metric] for r in runs.values() if metric in r.metrics])

    def exponent(self, parameterization: str, metric: str = MOVEMENT) -> tuple[float, float] | None:
        """The fitted exponent over the widths ``>= min_width`` with a finite mean, or ``None`` with fewer than two."""
        pairs = [(w, self.stats(parameterization, w, metric)[0]) for w in self.widths(parameterization)
                 if w >= self.min_width]
        pairs = [(w, m) for w, m in pairs if math.isfinite(m) and m > 0]
        if len(pairs) < 2:
            return None
        return fit_exponent([w for w, _ in pairs], [m for _, m in pairs])

    @property
    def network(self) -> str:
        """The network the points are of: ``MLPClassifier, depth 2``, or the model alone where it has no depth."""
        return ", ".join([self.model or "network"] + ([f"depth {self.depth}"] if self.depth is not None else [])
                         + ([f"conv channels {self.conv_channels}"] if self.conv_channels is not None else []))

    @property
    def theory(self) -> str:
        """What the predicted exponents are of: a network with every layer wide; a conv net with fixed filters and a
        wide penultimate layer is its contrast."""
        every_layer_wide = self.model in (None, "MLPClassifier") or self.conv_channels == "width"
        return "theory" if every_layer_wide else "all-wide theory"

    def text(self) -> str:
        lines = [f"lazy limit, {self.network}: relative movement ~ width^a over widths >= {self.min_width}"]
        for p in self.parameterizations:
            fitted = self.exponent(p)
            predicted = PREDICTED_EXPONENT.get(parameterization_of(p))
            theory = f" ({self.theory} {predicted:+.1f})" if predicted is not None else ""
            lines.append(f"  {p}: " + (f"a = {fitted[0]:+.3f} +- {fitted[1]:.3f}{theory}" if fitted else
                                         "fewer than two widths: no exponent") + f"; widths {self.widths(p)}")
        for p in self.parameterizations:
            for w in self.widths(p):
                judged = {kind: self.stats(p, w, f"atlas/{kind}/judge")[0] for kind in ATLAS_KINDS}
                if any(math.isfinite(v) for v in judged.values()):
                    lines.append(f"  {p} width {w}: icons the judge names, " + ", ".join(
                        f"{kind.replace('_', ' ')} {v:.1%}" for kind, v in judged.items() if math.isfinite(v)))
        for p in self.parameterizations:
            probed = [(w, *(self.stats(p, w, m)[0] for m in (PROBE, ACCURACY, PROBE_UNTRAINED))) for w in self.widths(p)]
            probed = [point for point in probed if math.isfinite(point[1])]
            if probed:
                floor = any(math.isfinite(point[3]) for point in probed)
                lines.append(f"  {p}: probe accuracy (original task{'; untrained floor' if floor else ''}) " + ", ".join(
                    f"{probe:.1%} ({base:.1%}" + (f"; {untrained:.1%}" if math.isfinite(untrained) else "") + f") at {w}"
                    for w, probe, base, untrained in probed))
        lines += [f"missing: {m}" for m in self.missing] or ["missing: none"]
        return "\n".join(lines + self.notes)


#: What makes two runs of one parameterization and width different experiments rather than replicates.
SERIES_SETTINGS = ("lr", "max_epochs", "probe/lr", "probe/max_epochs", "probe/head_parameterization")


def parameterization_of(series: str) -> str:
    """``ntk`` for the series ``ntk`` and ``ntk (lr 0.316)``."""
    return series.split(" (", 1)[0]


def series_names(runs: list[Run]) -> Callable[[Run], str]:
    """Each run's series: its parameterization, plus the ``SERIES_SETTINGS`` that differ among that
    parameterization's runs (``ntk (lr 0.316)``), so that runs of another learning rate or training length are
    drawn and fitted as a series of their own, never averaged with the others."""
    differing: dict[str, list[str]] = {}
    for p in {r.parameterization or "standard" for r in runs}:
        values = {key: {r.settings.get(key) for r in runs if (r.parameterization or "standard") == p}
                  for key in SERIES_SETTINGS}
        differing[p] = [key for key in SERIES_SETTINGS if len(values[key]) > 1]

    def name(run: Run) -> str:
        p = run.parameterization or "standard"
        parts = [f"lr {run.settings.get('lr'):g}" if key == "lr" and isinstance(run.settings.get("lr"), (int, float))
                 else f"{key.replace('_', ' ')} {run.settings.get(key)}" for key in differing.get(p, [])]
        return f"{p} ({', '.join(parts)})" if parts else p

    return name


def collapsed(run: Run) -> bool:
    """The run's measured layer died in training: its movement (1, each row's whole norm) is not a point of the scan.
    Records from before ``movement/collapsed`` say so by a CKA that is undefined (not a number, so not read)."""
    return run.metrics.get(COLLAPSED) == 1.0 or (COLLAPSED not in run.metrics and CKA not in run.metrics)


def lazy_limit(runs: list[Run], depth: int | None = None, min_width: int = 256,
               planned: Planned | None = None) -> LazyLimit:
    """Group the finished runs that measured movement into points; name every failed run and planned gap."""
    if planned and depth is None and len(planned.depths) == 1:
        depth = planned.depths[0]
    unreadable = [r for r in runs if r.status == UNREADABLE]  # missing, whatever point it was: never averaged past
    measured = [r for r in runs if (MOVEMENT in r.metrics or not r.finished) and r.status != UNREADABLE]
    depths = sorted({r.depth for r in measured if r.depth is not None})
    if depth is None and len(depths) > 1:
        raise ReportError(f"runs of depths {depths} were found; choose one with --depth.")
    depth = depth if depth is not None else (depths[0] if depths else None)
    result = LazyLimit(depth=depth, points={}, min_width=min_width,
                       missing=[f"unreadable: {r.source}: {r.error}" for r in unreadable])
    # an MLP's and a conv net's movements, MNIST's and translated MNIST's, a conv net with only its penultimate
    # layer wide and one with every layer wide: different experiments
    at_depth = [r for r in measured if r.depth == depth and r.model]
    experiments = sorted({(r.model or "?", r.dataset or "?", r.target or "?", str(r.settings.get("conv_channels", "")))
                          for r in at_depth})
    if len(experiments) > 1:
        named = "; ".join(" on ".join(e[:2]) + f" ({e[2]}" + (f", conv channels {e[3]}" if e[3] else "") + ")"
                          for e in experiments)
        raise ReportError(f"runs of {len(experiments)} experiments were found at depth {depth}: {named}; give each "
                          f"one's runs apart, e.g. --runs runs/lazy_limit/<its folder>.")
    result.model = experiments[0][0] if experiments else None
    result.conv_channels = next((r.settings["conv_channels"] for r in at_depth if "conv_channels" in r.settings), None)
    name = series_names([r for r in measured if r.finished and r.depth == depth])
    failed: set[tuple[str, int, int | None]] = set()
    for run in sorted(measured, key=lambda r: r.time):
        if run.depth != depth or run.width is None:
            continue
        if not run.finished or collapsed(run):
            failed.add((run.parameterization or "standard", run.width, run.seed))
            why = (f"the layer collapsed (every image gives the same features; test accuracy "
                   f"{run.metrics.get(ACCURACY, math.nan):.1%})" if run.finished else run.error)
            result.missing.append(f"{'collapsed' if run.finished else run.status or 'unfinished'}: {run.parameterization} "
                                  f"width={run.width} seed={run.seed} ({run.source})" + (f": {why}" if why else ""))
            continue
        if Path(run.source).name == "summary.json":  # a run's own folder: its atlases are the folders beside it
            run.metrics.update(atlas_metrics(run.source))
        seeds = result.points.setdefault((name(run), run.width), {})
        if run.seed in seeds:
            result.notes.append(f"duplicate: {run.describe('width')} replaces {seeds[run.seed].source}")
        seeds[run.seed] = run  # the newest run of a point is kept
    if planned:
        for p in planned.parameterizations:
            # the sweep plans one rate per parameterization: its series is the plain name, or the one variant
            variants = sorted({q for q, _ in result.points if parameterization_of(q) == p})
            series = p if p in variants or len(variants) != 1 else variants[0]
            for w in planned.widths:
                have = result.points.get((series, w)) or {}
                lost = [s for s in planned.seeds if s not in have and (p, w, s) not in failed]
                if lost:
                    result.missing.append(f"not run: {p} width={w} seed(s) {lost}")
                result.points.setdefault((series, w), have)
    if not any(result.points.values()):
        raise ReportError("no finished run with movement/relative (a fit with wide_lightning.movement.FeatureMovement) "
                          f"at depth {depth}.")
    return result


def atlas_kind(directory: Path) -> str | None:
    """``hidden``, ``classifier_subspace`` or ``untrained`` for an atlas folder (its ``settings.txt`` says the space),
    ``None`` for another control or a folder without a finished atlas."""
    if not (directory / "atlas.npz").is_file():
        return None
    if directory.name.startswith("atlas_"):  # atlas_untrained, atlas_raw_input, atlas_<layer>
        return "untrained" if directory.name.split("-v")[0] == "atlas_untrained" else None
    settings = (directory / "settings.txt").read_text() if (directory / "settings.txt").is_file() else ""
    return "classifier_subspace" if "space: classifier_subspace" in settings else "hidden"


def atlas_metrics(summary: str | os.PathLike) -> dict[str, float]:
    """``atlas/<kind>/<judge|network>`` from the atlases beside a run's ``summary.json``; the newest of a kind wins."""
    import numpy as np

    found: dict[str, float] = {}
    folders = sorted(Path(summary).parent.glob("atlas*"), key=lambda d: (d / "atlas.npz").stat().st_mtime
                     if (d / "atlas.npz").is_file() else 0.0)
    for directory in folders:
        kind = atlas_kind(directory)
        if kind is None:
            continue
        with np.load(directory / "atlas.npz") as arrays:
            metrics = dict(zip(arrays["metric_names"].tolist(), arrays["metric_values"].tolist()))
        for short, name in ATLAS_MEASURES.items():
            if name in metrics:
                found[f"atlas/{kind}/{short}"] = float(metrics[name])
    return found


def column(metric: str) -> str:
    """The CSV column of a metric: ``base/movement/cka`` -> ``movement/cka``, ``atlas/hidden/judge`` -> itself."""
    return metric.split("/", 1)[1] if metric.startswith("base/") else metric


ATLAS_METRICS = tuple(f"atlas/{kind}/{short}" for kind in ATLAS_KINDS for short in ATLAS_MEASURES)
CSV_COLUMNS = ["parameterization", "depth", "width", "n_seeds", "seeds"] + [
    f"{column(m)}_{s}" for m in METRICS + ATLAS_METRICS for s in ("mean", "std")] + ["exponent", "exponent_stderr"]


def write_lazy_csv(result: LazyLimit, path: str | os.PathLike) -> Path:
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, CSV_COLUMNS)
        writer.writeheader()
        for p in result.parameterizations:
            fitted = result.exponent(p) or (math.nan, math.nan)
            for w in sorted(w for q, w in result.points if q == p):
                runs = result.points[(p, w)]
                row: dict[str, Any] = {"parameterization": p, "depth": result.depth, "width": w, "n_seeds": len(runs),
                                       "seeds": " ".join(str(s) for s in sorted(runs, key=lambda s: s or 0)),
                                       "exponent": fitted[0], "exponent_stderr": fitted[1]}
                for m in METRICS + ATLAS_METRICS:
                    row[f"{column(m)}_mean"], row[f"{column(m)}_std"] = result.stats(p, w, m)
                writer.writerow(row)
    return Path(path)


def colour_of(series: str, every: list[str]) -> str:
    """The parameterization's colour; a second series of it (another rate) a darker shade of the same hue."""
    from matplotlib.colors import to_rgb

    base = COLORS.get(parameterization_of(series), "tab:gray")
    shade = [q for q in every if parameterization_of(q) == parameterization_of(series)].index(series)
    return base if shade == 0 else tuple(c * 0.55 ** shade for c in to_rgb(base))


def line_key(styles: list[tuple[str, str]]) -> list[Any]:
    """A panel's key: one grey line per measure, its style as drawn (the colours have the figure's key)."""
    from matplotlib.lines import Line2D

    return [Line2D([], [], color="gray", linestyle=style, label=label) for style, label in styles]


def colour_key(result: LazyLimit) -> list[Any]:
    """The figure's key: one colour per parameterization, with its fitted movement exponent and theory's."""
    from matplotlib.lines import Line2D

    handles = []
    for p in result.parameterizations:
        fitted, predicted = result.exponent(p), PREDICTED_EXPONENT.get(parameterization_of(p))
        label = p
        if fitted:
            spread = f" ± {fitted[1]:.3f}" if math.isfinite(fitted[1]) else ""
            label += f": movement exponent a = {fitted[0]:+.3f}{spread}"
            label += f" ({result.theory} {predicted:+.1f})" if predicted is not None else ""
        handles.append(Line2D([], [], color=colour_of(p, result.parameterizations), marker="o", markersize=3,
                              label=label))
    return handles


def lazy_limit_figure(result: LazyLimit) -> Any:
    """Four panels against width (log axis): relative movement (log-log, with the fitted exponent), the share of
    unchanged ReLU patterns and CKA, the atlases' recognizability (hidden state, classifier subspace, untrained
    floor), test accuracy; mean and standard deviation over seeds. The keys sit below the panels, where they
    cover no curve: the colours (one per parameterization) under the figure, each panel's line styles under it."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(17.0, 5.0), layout="constrained")
    FigureCanvasAgg(figure)
    movement, patterns, atlases, accuracy = figure.subplots(1, 4, sharex=True)  # one width axis for all four
    for p in result.parameterizations:
        widths, color = result.widths(p), colour_of(p, result.parameterizations)

        def curve(axes: Any, metric: str, **style: Any) -> None:
            stats = [result.stats(p, w, metric) for w in widths]
            kept = [(w, m, s) for w, (m, s) in zip(widths, stats) if math.isfinite(m)]
            if kept:
                axes.errorbar([w for w, _, _ in kept], [m for _, m, _ in kept],
                              yerr=[0.0 if math.isnan(s) else s for _, _, s in kept], color=color, marker="o",
                              markersize=3, capsize=3, **style)

        curve(movement, MOVEMENT)
        curve(movement, HEAD_SPAN, linestyle="--")
        predicted = PREDICTED_EXPONENT.get(parameterization_of(p))
        fitted_widths = [w for w in widths if w >= result.min_width and math.isfinite(result.stats(p, w, MOVEMENT)[0])]
        if predicted is not None and fitted_widths:  # theory's slope through the narrowest fitted point
            anchor, level = fitted_widths[0], result.stats(p, fitted_widths[0], MOVEMENT)[0]
            movement.plot(fitted_widths, [level * (w / anchor) ** predicted for w in fitted_widths], color=color,
                          linestyle=":", alpha=0.6)
        curve(patterns, PATTERNS)
        curve(patterns, CKA, linestyle="--")
        curve(atlases, "atlas/hidden/judge")
        curve(atlases, "atlas/classifier_subspace/judge", linestyle="--")
        curve(atlases, "atlas/untrained/judge", linestyle=":")
        curve(accuracy, ACCURACY)
        curve(accuracy, PROBE, linestyle="--")
        curve(accuracy, PROBE_UNTRAINED, linestyle=":")
    transfer = any(math.isfinite(result.stats(p, w, PROBE)[0]) for p, w in result.points)
    keys = {movement: [("-", "hidden state"), ("--", "classifier subspace (trained head)"),
                       (":", f"{result.theory}: n^a through the first fitted width")],
            patterns: [("-", "unchanged ReLU patterns"), ("--", "CKA(h0, hT)")],
            atlases: [("-", "hidden state"), ("--", "classifier subspace"), (":", "untrained network (floor)")],
            accuracy: [("-", "original task")] + ([("--", "probe (new task)"),
                                                    (":", "probe of the untrained network (floor)")]
                                                   if transfer else [])}
    for axes, styles in keys.items():
        axes.set_xscale("log", base=2)
        axes.set_xlabel("Width n")
        if axes.has_data():
            axes.legend(handles=line_key(styles), fontsize="x-small", loc="upper center",
                        bbox_to_anchor=(0.5, -0.14), frameon=False)
        else:  # say so, rather than leave an empty frame that reads like a zero
            axes.text(0.5, 0.5, "no runs with these numbers" + ("\n(wide-lightning-atlas writes them)"
                                                                if axes is atlases else ""),
                      ha="center", va="center", transform=axes.transAxes, color="gray")
    figure.legend(handles=colour_key(result), loc="outside lower center", ncol=min(3, len(result.parameterizations)),
                  fontsize="small", frameon=False)
    movement.set_yscale("log")
    movement.set_ylabel("mean ||h_T - h_0|| / ||h_0||")
    patterns.set_ylabel("share / CKA")
    accuracy.set_ylabel("Test accuracy")
    network = f"({result.network})"
    movement.set_title("How far the features moved" + ("\n" if len(network) > 24 else " ") + network)
    patterns.set_title("Unchanged since initialization")
    atlases.set_ylabel("icons the judge names as their cell's class")
    atlases.set_ylim(0.0, 1.05)  # a share: its whole range, so one point does not fill the panel
    atlases.set_title("Atlas recognizability")
    accuracy.set_title(("Original task and probe" if transfer else "Original task")
                       + ("" if not result.missing else " (incomplete: see .missing.txt)"))
    return figure


def draw_lazy_limit(result: LazyLimit, path: str | os.PathLike) -> Path:
    lazy_limit_figure(result).savefig(path, dpi=150)
    return Path(path)


def report_lazy_limit(runs: list[str] | None = None, wandb_dir: list[str] | None = None,
                      wandb_project: str | None = None, sweep_id: str | None = None, sweep: str | None = None,
                      depth: int | None = None, min_width: int = 256, out: str = "lazy_limit",
                      strict: bool = False) -> LazyLimit:
    """Draw the lazy-limit figure from finished runs and list every missing or failed run.

    Args:
        runs: directories searched for ``summary*.json`` (default, with no other source: ``runs``).
        wandb_dir: directories searched for W&B run directories' ``files/wandb-summary.json``.
        wandb_project: ``entity/project`` on the W&B server (needs network and a login).
        sweep_id: only the runs of this W&B sweep (with ``wandb_project``).
        sweep: the sweep YAML that planned the runs (``sweeps/lazy_limit_mlp.yaml``): its grid is what is expected.
        depth: the depth to report when runs of several are found.
        min_width: the narrowest width in the exponent's fit (theory describes the wide end).
        out: output path without suffix: ``<out>.png``, ``<out>.csv``, ``<out>.missing.txt``.
        strict: exit non-zero if any planned run is missing or failed.
    """
    loaded = loaded_runs(runs, wandb_dir, wandb_project, sweep_id)
    result = lazy_limit(loaded.runs, depth, min_width, planned_points(sweep) if sweep else None)
    png, table, missing = output_paths(out)
    draw_lazy_limit(result, png)
    write_lazy_csv(result, table)
    write_text(result.text(), missing, png, table)
    if strict and result.missing:
        raise SystemExit(f"--strict: {len(result.missing)} planned or failed run(s); see {missing}")
    return result


def main(args: list[str] | None = None) -> None:
    from jsonargparse import CLI

    from wide_lightning.errors import exit_for_people

    try:
        CLI(report_lazy_limit, args=shell_style(sys.argv[1:] if args is None else list(args)),
            as_positional=False)
    except ReportError as error:  # a user error: its sentence on stderr, exit status 2
        exit_for_people("wide-lightning-report-lazy", str(error))
    except SystemExit as stop:
        if isinstance(stop.code, str):  # `--strict` (a status of 0 or 2 from the parser passes on as it is)
            exit_for_people("wide-lightning-report-lazy", stop.code)
        raise

"""What the report writes: the CSV table and the figure."""

from __future__ import annotations

import csv
import math
import os
from pathlib import Path

from wide_lightning.report.figure4 import Figure4, level_crossing
from wide_lightning.report.runs import BASE_METRIC, PROBE_METRIC

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
    w_star = result.input_dimension
    widths = result.widths()
    if result.x == "width" and w_star:
        handles.append(axes.axvline(w_star, color="gray", linestyle=":", label=f"w* = {w_star} (input dimension)"))
    elif result.x == "depth" and widths:
        # Section 5.1's claim is about width: the widths n(L) on a second axis, and w* where n(L) = w*
        top = axes.twiny()
        top.set_xlim(axes.get_xlim())
        top.set_xticks([x for x, _ in widths], [f"{w:.0f}" for _, w in widths], fontsize="x-small", rotation=90)
        top.set_xlabel("Width n(L)")
        at = level_crossing([x for x, _ in widths], [w for _, w in widths], w_star) if w_star else None
        if at is not None:
            handles.append(axes.axvline(at, color="gray", linestyle=":", label=f"width w* = {w_star} (input dimension)"))
    axes.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes.set_xlabel(result.x.capitalize())
    axes.set_ylabel("Test accuracy")
    axes.set_title(f"{result.dataset}" + ("" if result.complete else " (incomplete: see .missing.txt)"))
    axes.legend(handles=handles, loc="best", fontsize="small")
    figure.savefig(path, dpi=150)
    return Path(path)



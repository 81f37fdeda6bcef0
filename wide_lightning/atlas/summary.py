"""What an atlas prints when it is done: the few numbers a reader checks first, and where the figures are.

:func:`summary_lines` is the short table the command and the callback end with::

    atlas: 32 of 100 cells kept (100% of the points), in 1m 07s
      cell purity       digit 0.96
      network names     31 of 32 icons as their cell's label (97%)
      judge names       30 of 32 icons as their cell's label (94%)
      objective raised  32 of 32 icons (100%)
      panel             runs/lr_scan/standard_lr0.00316228/atlas/panel.png
      every number      runs/lr_scan/standard_lr0.00316228/atlas/atlas.npz (metric_names, metric_values); --verbose true prints them
    atlas written to runs/lr_scan/standard_lr0.00316228/atlas

(a ``--preview`` atlas of a width-64 MLP trained on MNIST).

Every count is read from the atlas's numbers (``result.metrics``): a share times the cells kept. The full list
(about 40 numbers) stays in ``atlas.npz`` and the loggers; :func:`metric_lines` prints it (``--verbose true``).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

#: What a reader needs to know to read a number the command prints.
EXPLANATIONS = {
    "atlas/whitening_log10_cond": (lambda v: v == float("inf"), "dead units (never active) make A^T A / N singular; "
                                   "the ridge (--whiten_ridge) keeps the whitening finite"),
}


def metric_lines(metrics: Mapping[str, float]) -> list[str]:
    """``name = value`` per metric, sorted, with an explanation where a value needs one."""
    lines = []
    for name, value in sorted(metrics.items()):
        condition, note = EXPLANATIONS.get(name, (lambda v: False, ""))
        lines.append(f"{name} = {value:.4g}" + (f"  ({note})" if condition(value) else ""))
    return lines


def duration(seconds: float) -> str:
    """``12.3s``, ``3m 12s``, ``1h 04m``."""
    if seconds < 60:
        return f"{seconds:.1f}s"
    minutes, seconds = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes}m {seconds:02d}s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h {minutes:02d}m"


def percent(share: float) -> str:
    """``43%``; ``99.7%``, not ``100%``, for a share short of 1 (and ``0.3%``, not ``0%``, above 0)."""
    text = f"{share:.0%}"
    if (text == "100%" and share < 1) or (text == "0%" and share > 0):
        text = f"{share:.1%}"
    return text


def _share(metrics: Mapping[str, float], name: str, cells: int, what: str) -> str | None:
    value = metrics.get(name)
    if value is None or not math.isfinite(value):
        return None
    return f"{round(value * cells)} of {cells} icons{what} ({percent(value)})"


def summary_rows(result: Any, directory: str | Path | None = None) -> list[tuple[str, str]]:
    """``(what, value)`` rows of :func:`summary_lines` (after its headline), from ``result.metrics``."""
    metrics = result.metrics
    cells = int(metrics.get("atlas/cells_kept", len(result.layout.cells)))
    rows = []
    purity = [f"{name.rpartition('/')[2]} {value:.2f}" for name, value in sorted(metrics.items())
              if name.startswith("atlas/cell_purity/")]
    if purity:
        rows.append(("cell purity", ", ".join(purity)))
    for what, name in (("network names", "atlas/icons/network_agreement"), ("judge names", "atlas/icons/judge_agreement")):
        value = _share(metrics, name, cells, " as their cell's label")
        if value is not None:
            rows.append((what, value))
    raised = _share(metrics, "atlas/icon_objective_raised", cells, "")
    if raised is not None:
        rows.append(("objective raised", raised))
    if directory is not None:
        rows.append(("panel", str(Path(directory) / "panel.png")))
    return rows


def summary_lines(result: Any, directory: str | Path | None = None, *, more: str = "--verbose true prints them",
                  where: str = "") -> list[str]:
    """The short table an atlas ends with (module docstring): cells kept, their purity, how many icons the
    network and the judge name as their cell's label, how many icons the optimization improved, the panel,
    where every number is. ``more`` says how to print them all; ``where`` adds where else they are (`` and W&B``)."""
    metrics = result.metrics
    grid = result.layout.grid_size
    cells = int(metrics.get("atlas/cells_kept", len(result.layout.cells)))
    head = f"atlas: {cells} of {grid * grid} cells kept"
    if "atlas/points_in_kept_cells" in metrics:
        head += f" ({percent(metrics['atlas/points_in_kept_cells'])} of the points)"
    if "atlas/seconds/total" in metrics:
        head += f", in {duration(metrics['atlas/seconds/total'])}"
    rows = summary_rows(result, directory)
    numbers = str(Path(directory) / "atlas.npz") if directory is not None else "atlas.npz"
    rows.append(("every number", f"{numbers} (metric_names, metric_values){where}; {more}"))
    width = max(len(what) for what, _ in rows)
    lines = [head, *(f"  {what.ljust(width)}  {value}" for what, value in rows)]
    if directory is not None:
        lines.append(f"atlas written to {directory}")
    return lines

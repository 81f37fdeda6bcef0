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

The package follows the report's steps, one module each: ``runs`` (the record of one run),
``sources`` (reading the three sources), ``grid`` (what a sweep plans), ``figure4`` (grouping,
statistics, problems), ``outputs`` (CSV and figure) and ``command`` (the command line).
"""

from wide_lightning.report.command import main, report
from wide_lightning.report.figure4 import Baseline, Figure4, Point, figure4, mean_std
from wide_lightning.report.grid import Grid, expected_grid
from wide_lightning.report.outputs import draw, write_csv
from wide_lightning.report.runs import ReportError, Run, run_from_summary, run_from_wandb_summary
from wide_lightning.report.sources import Loaded, load_runs

__all__ = [
    "Baseline", "Figure4", "Grid", "Loaded", "Point", "ReportError", "Run", "draw", "expected_grid", "figure4",
    "load_runs", "main", "mean_std", "report", "run_from_summary", "run_from_wandb_summary", "write_csv",
]

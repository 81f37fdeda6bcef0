"""``wide-lightning-report`` on summaries written by hand: statistics, baseline, and every missing run said out loud."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import matplotlib.image
import pytest

from tests.conftest import REPO
from wide_lightning.report import (
    ReportError,
    expected_grid,
    figure4,
    load_runs,
    main,
    mean_std,
    report,
    run_from_summary,
    run_from_wandb_summary,
)

FIGURE4_LEFT = str(REPO / "sweeps/figure4_left.yaml")


def write_summary(directory: Path, *, depth: int | None = 1, seed: int = 0, base: float | None = 0.5,
                  probe: float | None = 0.8, status: str = "finished", model: str = "MLPClassifier",
                  dataset: str = "TranslatedMNIST", kind: str = "transfer", target: str = "shift",
                  started: str = "20260101_000000", run_id: str | None = None, test_acc_best: float | None = None,
                  **extra) -> Path:
    """A ``summary.json`` as ``wide-lightning fit`` writes it (only the fields the report reads matter)."""
    run_id = run_id or f"d{depth}s{seed}t{started.replace('_', '')}"
    summary = {
        "kind": kind, "status": status, "model": model, "dataset": dataset, "target": target,
        "width": 784 if depth is None else 2000 - 50 * depth, "depth": depth, "parameters": 1_600_000,
        "lr": 0.01, "seed": seed, "max_epochs": 10, "config": ["configs/translated_mnist/transfer_mlp.yaml"],
        "base": {"val/acc": 0.5} | ({"test/acc": base} if base is not None else {})
                | ({"test/acc_best": test_acc_best} if test_acc_best is not None else {}),
        "checkpoints": {"best": "", "last": ""},
        "wandb": {"id": run_id, "project": "wide_lightning", "url": None,
                  "dir": f"runs/x/wandb/offline-run-{started}-{run_id}"},
        **extra,
    }
    if kind == "transfer" and probe is not None:
        summary["probe"] = {"target": "digit", "test/acc_best": probe, "test/acc": probe - 0.01}
    path = directory / run_id / "summary.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(summary))
    return path


def write_baseline(directory: Path, acc: float, seed: int, target: str = "digit", dataset: str = "TranslatedMNIST",
                   status: str = "finished") -> Path:
    """A raw-input linear classifier's run: the dashed line, read from ``base/test/acc_best``."""
    return write_summary(directory, depth=None, seed=seed, probe=None, kind="fit", model="RawInputLinear",
                         target=target, dataset=dataset, status=status, run_id=f"raw{seed}{target}{dataset[:3]}",
                         test_acc_best=acc)


# depth -> seed -> (base/test/acc, probe/test/acc_best)
ACCURACIES = {1: {0: (0.5, 0.8), 1: (0.6, 0.9), 2: (0.7, 1.0)},
              2: {0: (0.4, 0.2), 1: (0.4, 0.4), 2: (0.4, 0.9)}}


@pytest.fixture()
def runs_dir(tmp_path) -> Path:
    root = tmp_path / "runs"
    for depth, seeds in ACCURACIES.items():
        for seed, (base, probe) in seeds.items():
            write_summary(root, depth=depth, seed=seed, base=base, probe=probe)
    write_baseline(root, 0.3, seed=0)
    write_baseline(root, 0.5, seed=1)
    write_baseline(root, 0.99, seed=0, dataset="CIFAR100Coarse", target="fine")  # another figure's baseline
    write_baseline(root, 0.01, seed=0, target="shift")  # not the new task
    write_summary(root, depth=7, seed=0, kind="fit", probe=None, run_id="plainfit")  # base training only
    return root


def read_csv(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_mean_std_is_the_sample_standard_deviation():
    assert mean_std([0.5, 0.6, 0.7]) == pytest.approx((0.6, 0.1))
    mean, std = mean_std([0.9])
    assert mean == 0.9 and math.isnan(std)  # one seed: no spread to show
    assert all(math.isnan(v) for v in mean_std([]))


def test_means_stds_and_baseline_against_hand_computed_values(runs_dir, tmp_path, capsys):
    result = report(runs=[str(runs_dir)], out=str(tmp_path / "out" / "fig"))
    assert (result.dataset, result.model, result.x) == ("TranslatedMNIST", "MLPClassifier", "depth")
    rows = read_csv(tmp_path / "out" / "fig.csv")
    assert [(r["x_name"], int(r["x"]), int(r["n_seeds"]), r["seeds"]) for r in rows] == [
        ("depth", 1, 3, "0 1 2"), ("depth", 2, 3, "0 1 2")]
    first, second = ({k: float(v) for k, v in r.items() if k.endswith(("_mean", "_std"))} for r in rows)
    assert first == pytest.approx({"base_mean": 0.6, "base_std": 0.1, "probe_mean": 0.9, "probe_std": 0.1,
                                   "baseline_mean": 0.4, "baseline_std": math.sqrt(0.02)})
    assert second["base_mean"] == pytest.approx(0.4) and second["base_std"] == pytest.approx(0.0, abs=1e-12)
    assert second["probe_mean"] == pytest.approx(0.5)
    assert second["probe_std"] == pytest.approx(math.sqrt((0.3 ** 2 + 0.1 ** 2 + 0.4 ** 2) / 2))
    # the baseline: RawInputLinear on the same dataset and the probes' target only (0.3 and 0.5)
    assert result.baseline.mean == pytest.approx(0.4) and len(result.baseline.runs) == 2
    assert rows[0]["baseline_runs"] == "2" and result.complete
    out = capsys.readouterr().out
    assert "complete: nothing missing." in out and "without a probe (kind fit)" in out


def test_png_and_csv_are_written_and_readable(runs_dir, tmp_path):
    report(runs=[str(runs_dir)], out=str(tmp_path / "fig4"))
    image = matplotlib.image.imread(tmp_path / "fig4.png")
    assert image.ndim == 3 and image.shape[0] > 300 and image.shape[1] > 300
    assert image[..., :3].std() > 0.05  # something was drawn
    assert len(read_csv(tmp_path / "fig4.csv")) == 2
    assert "complete" in (tmp_path / "fig4.missing.txt").read_text()


def test_missing_points_of_the_sweep_are_listed(runs_dir, tmp_path):
    """figure4_left.yaml plans depths 1..20 x seeds 0..4: 6 points found, 94 missing, each named."""
    result = report(runs=[str(runs_dir)], sweep=FIGURE4_LEFT, out=str(tmp_path / "left"))
    assert len(result.missing) == 94 and not result.complete
    assert "depth=1 seed=3" in result.missing and "depth=20 seed=4" in result.missing
    assert "depth=1: 3 of 5 seed(s), missing seed(s) 3, 4" in result.fewer_seeds
    assert "depth=3: no finished run at all" in result.fewer_seeds
    text = (tmp_path / "left.missing.txt").read_text()
    assert "MISSING (x, seed) points and unreadable runs (94):" in text and "  depth=17 seed=2" in text and "INCOMPLETE" in text
    assert "sweeps/figure4_left.yaml: 20 depth value(s) x 5 seed(s) = 100 point(s)" in text
    rows = read_csv(tmp_path / "left.csv")
    assert len(rows) == 20 and rows[2]["n_seeds"] == "0" and math.isnan(float(rows[2]["probe_mean"]))


def test_a_run_outside_the_sweep_grid_is_listed_not_averaged(runs_dir, tmp_path):
    write_summary(runs_dir, depth=1, seed=9, base=0.0, probe=0.0)
    result = report(runs=[str(runs_dir)], sweep=FIGURE4_LEFT, out=str(tmp_path / "left"))
    assert len(result.outside_grid) == 1 and "depth=1 seed=9" in result.outside_grid[0]
    assert result.points[0].stats("probe/test/acc_best")[0] == pytest.approx(0.9)


def test_failed_runs_are_listed_and_not_averaged(runs_dir, tmp_path):
    write_summary(runs_dir, depth=1, seed=3, base=0.0, probe=0.0, status="failed", error="RuntimeError: out of memory")
    write_summary(runs_dir, depth=2, seed=0, base=0.1, probe=None, started="20260102_000000")  # no probe metric
    result = report(runs=[str(runs_dir)], out=str(tmp_path / "fig"))
    assert any("depth=1 seed=3" in f and "status failed: RuntimeError: out of memory" in f for f in result.failed)
    assert any("depth=2 seed=0" in f and "finished without probe/test/acc_best" in f for f in result.failed)
    point = result.points[0]
    assert point.seeds == [0, 1, 2] and point.stats("probe/test/acc_best")[0] == pytest.approx(0.9)
    # without a sweep, every seed seen is expected at every depth: seed 3 is missing at both
    assert result.missing == ["depth=1 seed=3", "depth=2 seed=3"]
    assert "FAILED OR UNFINISHED runs (not averaged) (2):" in (tmp_path / "fig.missing.txt").read_text()


def test_failed_baseline_is_listed_and_its_absence_is_incomplete(tmp_path):
    root = tmp_path / "runs"
    write_summary(root, depth=1, seed=0)
    write_baseline(root, 0.4, seed=0, status="failed")
    result = report(runs=[str(root)], out=str(tmp_path / "fig"))
    assert result.baseline is None and not result.complete
    assert any(f.startswith("baseline RawInputLinear seed=0") for f in result.failed)
    assert "BASELINE MISSING" in (tmp_path / "fig.missing.txt").read_text()
    assert math.isnan(float(read_csv(tmp_path / "fig.csv")[0]["baseline_mean"]))


def test_duplicates_keep_the_newest_and_say_so(runs_dir, tmp_path):
    newer = write_summary(runs_dir, depth=1, seed=0, base=0.9, probe=0.5, started="20270101_000000")
    result = report(runs=[str(runs_dir)], out=str(tmp_path / "fig"))
    assert len(result.duplicates) == 1 and f"kept the newer {newer}" in result.duplicates[0]
    kept = result.points[0].runs[0]
    assert kept.metrics["probe/test/acc_best"] == 0.5 and len(result.points[0].runs) == 3


def test_offline_wandb_run_directories(tmp_path):
    """W&B's layout: <save_dir>/wandb/[offline-]run-<date>-<id>/files/wandb-summary.json, flat keys."""
    wandb_root = tmp_path / "save_dir" / "wandb"
    for index, (seed, probe) in enumerate([(0, 0.7), (1, 0.8)]):
        run_dir = wandb_root / f"offline-run-2026010{index + 1}_120000-wb{seed}"
        (run_dir / "files").mkdir(parents=True)
        (run_dir / "files" / "wandb-summary.json").write_text(json.dumps({
            "kind": "transfer", "status": "finished", "model": "ConvClassifier", "dataset": "CIFAR100Coarse",
            "target": "coarse", "width": 500, "depth": None, "parameters": 123, "lr": 0.0129, "seed": seed,
            "max_epochs": 100, "base/test/acc": 0.6, "base/val/acc_best": 0.6, "probe/test/acc_best": probe,
            "_step": 10, "_runtime": 3.5, "_wandb": {"runtime": 3}, "trainer/global_step": 10}))
    raw_dir = wandb_root / "run-20260103_120000-raw0" / "files"
    raw_dir.mkdir(parents=True)
    (raw_dir / "wandb-summary.json").write_text(json.dumps({
        "kind": "fit", "status": "finished", "model": "RawInputLinear", "dataset": "CIFAR100Coarse", "target": "fine",
        "seed": 0, "base/test/acc_best": 0.375}))
    lost = wandb_root / "offline-run-20260104_120000-nosum"  # what wandb 0.31 leaves offline: no summary file
    (lost / "files").mkdir(parents=True)
    (lost / "run-nosum.wandb").write_bytes(b"")

    result = report(wandb_dir=[str(tmp_path / "save_dir")], out=str(tmp_path / "fig"))
    assert (result.dataset, result.model, result.x) == ("CIFAR100Coarse", "ConvClassifier", "width")
    assert result.points[0].x == 500 and result.points[0].stats("probe/test/acc_best")[0] == pytest.approx(0.75)
    assert result.baseline.mean == pytest.approx(0.375)
    assert any("nosum" in n and "no files/wandb-summary.json" in n for n in result.notes)
    # the same run read from its summary.json too counts once, and its W&B directory is then not "unreadable"
    write_summary(tmp_path / "local", depth=None, seed=5, run_id="nosum", model="ConvClassifier", dataset="CIFAR100Coarse")
    write_summary(tmp_path / "local", depth=None, seed=0, run_id="wb0", model="ConvClassifier", dataset="CIFAR100Coarse")
    loaded = load_runs(runs=[str(tmp_path / "local")], wandb_dir=[str(tmp_path / "save_dir")])
    assert sorted(r.run_id for r in loaded.runs) == ["nosum", "raw0", "wb0", "wb1"] and loaded.unreadable == []


def test_strict_exits_non_zero_when_points_are_missing(runs_dir, tmp_path, capsys):
    args = ["--runs", str(runs_dir), "--out", str(tmp_path / "fig")]
    main([*args, "--strict", "true"])  # complete: no exit
    with pytest.raises(SystemExit) as exit_info:
        main([*args, "--sweep", FIGURE4_LEFT, "--strict"])  # a bare --strict works too
    assert exit_info.value.code == 2 and "--strict: 94 planned point(s)" in str(exit_info.value)  # a user error
    assert "depth=20 seed=4" in capsys.readouterr().out
    main([*args, "--sweep", FIGURE4_LEFT])  # without --strict: reported, no exit
    assert "INCOMPLETE" in capsys.readouterr().out


def test_several_directories_as_the_shell_gives_them(runs_dir, tmp_path):
    other = tmp_path / "more"
    write_summary(other, depth=3, seed=0)
    main(["--runs", str(runs_dir), str(other), "--out", str(tmp_path / "fig")])
    assert [r["x"] for r in read_csv(tmp_path / "fig.csv")] == ["1", "2", "3"]


def test_no_runs_is_a_clear_error(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(SystemExit) as exit_info:
        main(["--runs", str(tmp_path / "empty"), str(tmp_path / "absent"), "--wandb_dir", str(tmp_path / "empty")])
    message = str(exit_info.value)
    assert exit_info.value.code == 2 and "no runs found" in message and str(tmp_path / "empty") in message
    assert "absent (**/summary*.json: 0 file(s); no such directory)" in message
    assert "summary*.json" in message and "files/wandb-summary.json" in message


def test_ambiguous_or_unsupported_requests_are_clear_errors(runs_dir, tmp_path):
    write_summary(runs_dir, depth=None, seed=0, model="ConvClassifier", dataset="CIFAR100Coarse", run_id="conv")
    loaded = load_runs(runs=[str(runs_dir)])
    with pytest.raises(ReportError, match="several datasets.*CIFAR100Coarse, TranslatedMNIST.*--dataset"):
        figure4(loaded.runs)
    assert figure4(loaded.runs, dataset="TranslatedMNIST").x == "depth"
    with pytest.raises(ReportError, match="also varies model.init_args.lr"):
        report(runs=[str(runs_dir)], sweep=str(REPO / "sweeps/lr_scan_cifar100.yaml"))
    with pytest.raises(ReportError, match="--x width but the sweep .* varies depth"):
        report(runs=[str(runs_dir)], sweep=FIGURE4_LEFT, x="width")


def test_members_of_stacked_runs_count_as_their_seeds(tmp_path):
    """A stacked sweep varies only the depth; its seeds are the config's model.init_args.seeds, and the members
    of one W&B run (one id) are kept apart by their seed."""
    root = tmp_path / "runs"
    for depth in (1, 2):
        for seed in range(5):
            path = write_summary(root, depth=depth, seed=seed, model="StackedMLPClassifier", run_id=f"stack{depth}",
                                 probe=0.5 + 0.1 * depth + 0.01 * seed)
            path.rename(path.with_name(f"summary-stack{depth}-seed{seed}.json"))
    for seed in range(2):
        write_baseline(root, 0.7, seed)
    result = figure4(load_runs(runs=[str(root)]).runs, grid=expected_grid(REPO / "sweeps/figure4_left_stacked.yaml"))
    assert result.grid.seeds == [0, 1, 2, 3, 4] and result.grid.values[:2] == [1, 2]
    assert [len(point.runs) for point in result.points if point.runs] == [5, 5]
    mean, _ = [p for p in result.points if p.x == 2][0].stats("probe/test/acc_best")
    assert mean == pytest.approx(0.7 + 0.02)


def test_level_crossing_on_a_hand_made_curve():
    from wide_lightning.report.figure4 import level_crossing

    # the CPU scan of docs/results.md: widths 271..2000, the raw-pixel line at 0.695
    widths, probe = [2000, 721, 544, 271], [0.88, 0.771, 0.586, 0.149]
    assert level_crossing(widths, probe, 0.695) == pytest.approx(544 + (0.695 - 0.586) * 177 / (0.771 - 0.586))
    assert level_crossing([1, 2, 3], [2000.0, 1000.0, 500.0], 784.0) == pytest.approx(2 + 216 / 500)  # falling
    assert level_crossing([1, 2], [0.8, 0.9], 0.5) is None
    assert level_crossing([1, 2], [0.5, 0.9], 0.5) == 1.0


@pytest.mark.parametrize("x", ["depth", "width"])
def test_the_report_says_where_the_probe_curve_meets_the_raw_input_line(tmp_path, capsys, x):
    root = tmp_path / "runs"
    for depth, probe in ((1, 0.88), (10, 0.77), (20, 0.5)):  # widths 1950, 1500, 1000
        write_summary(root, depth=depth, seed=0, probe=probe)
    write_baseline(root, 0.695, seed=0)  # RawInputLinear: width 784, the input dimension
    result = report(runs=[str(root)], x=x, out=str(tmp_path / "fig"))
    assert result.input_dimension == 784
    assert result.probe_crossing_width() == pytest.approx(1000 + 0.195 * 500 / 0.27)
    assert ("the probe curve meets the raw-input line at width 1361, interpolated (the paper: at w* = 784, "
            "the input dimension)") in capsys.readouterr().out
    assert matplotlib.image.imread(tmp_path / "fig.png")[..., :3].std() > 0.05


def test_a_probe_curve_above_the_line_everywhere_is_said_so(runs_dir, tmp_path, capsys):
    report(runs=[str(runs_dir)], out=str(tmp_path / "fig"))
    assert "does not meet the raw-input line: above it at every width" in capsys.readouterr().out


def test_an_unreadable_summary_counts_as_missing_and_fails_strict(runs_dir, tmp_path, capsys):
    truncated = runs_dir / "cut_short" / "summary.json"
    truncated.parent.mkdir()
    truncated.write_text('{"kind": "transfer", "status": "finished", "model": "MLPCl')  # a copy that stopped
    result = report(runs=[str(runs_dir)], out=str(tmp_path / "fig"))
    [line] = [m for m in result.missing if str(truncated) in m]
    assert line.startswith(f"unreadable: {truncated}: Unterminated string") and not result.complete
    assert result.points[0].stats("probe/test/acc_best")[0] == pytest.approx(0.9)  # what could be read is drawn
    text = (tmp_path / "fig.missing.txt").read_text()
    assert text.count(str(truncated)) == 1 and "MISSING (x, seed) points and unreadable runs (1):" in text
    assert "INCOMPLETE" in text and "complete: nothing missing" not in text
    capsys.readouterr()
    with pytest.raises(SystemExit, match="--strict: 1 planned point"):
        main(["--runs", str(runs_dir), "--out", str(tmp_path / "fig"), "--strict", "true"])


def test_only_unreadable_summaries_say_no_runs_found_and_name_them(tmp_path):
    truncated = tmp_path / "runs" / "a" / "summary.json"
    truncated.parent.mkdir(parents=True)
    truncated.write_text("{")
    with pytest.raises(SystemExit, match=f"no runs found(.|\n)*unreadable: {truncated}: Expecting property name"):
        main(["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "fig")])


def test_runs_of_one_point_that_trained_longer_are_not_averaged(runs_dir, tmp_path, capsys):
    longer = write_summary(runs_dir, depth=1, seed=2, base=0.7, probe=1.0, max_epochs=20)  # replaces its 10-epoch run
    result = report(runs=[str(runs_dir)], out=str(tmp_path / "fig"))
    assert result.differing == [f"depth=1: runs differ in max_epochs: seeds 0, 1 have max_epochs=10; seed 2 has "
                                f"max_epochs=20 ({longer}); averaged only seeds 0, 1 (the most seeds), the others are missing"]
    point = result.points[0]
    assert point.seeds == [0, 1] and point.stats("probe/test/acc_best")[0] == pytest.approx(0.85)
    assert result.missing == ["depth=1 seed=2"] and result.fewer_seeds == ["depth=1: 2 of 3 seed(s), missing seed(s) 2"]
    assert result.points[1].seeds == [0, 1, 2] and not result.complete
    assert "DIFFERING SETTINGS within a point" in capsys.readouterr().out
    with pytest.raises(SystemExit, match="--strict: 1 planned point"):
        main(["--runs", str(runs_dir), "--out", str(tmp_path / "fig"), "--strict"])


def test_on_a_tie_the_newest_setting_is_kept_and_every_differing_setting_is_named(tmp_path):
    root = tmp_path / "runs"
    write_summary(root, depth=1, seed=0, probe=0.6, lr=0.01, started="20260101_000000")
    newer = write_summary(root, depth=1, seed=1, probe=0.9, lr=0.1, target="digit", started="20260102_000000")
    write_summary(root, depth=2, seed=0, parameterization="mup")  # each point compares its own runs
    write_summary(root, depth=2, seed=1, parameterization="mup")
    write_summary(root, depth=None, seed=0, probe=None, kind="fit", model="RawInputLinear", target="digit",
                  run_id="raw0", test_acc_best=0.4, started="20260101_000000")
    write_summary(root, depth=None, seed=1, probe=None, kind="fit", model="RawInputLinear", target="digit",
                  run_id="raw1", test_acc_best=0.6, started="20260102_000000", max_epochs=3)
    result = figure4(load_runs(runs=[str(root)]).runs)
    older = root / "d1s0t20260101000000" / "summary.json"
    assert result.differing[0] == (f"depth=1: runs differ in lr, target: seed 0 has lr=0.01, target=shift ({older}); "
                                   f"seed 1 has lr=0.1, target=digit; averaged only seed 1 (the newest run), "
                                   f"the others are missing")
    assert result.points[0].runs == {1: result.points[0].runs[1]} and result.points[0].runs[1].source == str(newer)
    assert result.points[1].seeds == [0, 1]  # both mup: nothing differs
    assert result.differing[1].startswith("baseline: runs differ in max_epochs: seed 0 has max_epochs=10 (")
    assert result.baseline.mean == pytest.approx(0.6) and "baseline seed=0" in result.missing
    assert result.missing == ["depth=1 seed=0", "baseline seed=0"]


def test_a_setting_one_source_does_not_record_is_not_compared():
    summary = {"kind": "transfer", "status": "finished", "model": "ConvClassifier", "dataset": "CIFAR100Coarse",
               "target": "coarse", "width": 500, "depth": None, "parameters": 123, "lr": 0.01, "seed": 0,
               "max_epochs": 100, "config": ["configs/cifar100_coarse/transfer_conv.yaml"],
               "base": {"test/acc": 0.6}, "probe": {"target": "fine", "lr": 0.01, "max_epochs": 100, "test/acc_best": 0.7},
               "weights": {"probe": {"reads": "last", "checkpoint": "x.ckpt"}}}
    local = run_from_summary(summary, "summary.json")
    assert local.settings == {"target": "coarse", "lr": 0.01, "max_epochs": 100, "parameters": 123,
                              "config": ("configs/cifar100_coarse/transfer_conv.yaml",), "probe/target": "fine",
                              "probe/lr": 0.01, "probe/max_epochs": 100, "probe/backbone": "last"}
    # W&B's flat summary: the record's scalars and the sections' numbers, no config files, no probe target
    flat = {k: v for k, v in summary.items() if not isinstance(v, (dict, list))} | {
        "seed": 1, "base/test/acc": 0.5, "probe/test/acc_best": 0.8, "probe/lr": 0.01, "probe/max_epochs": 100}
    from_wandb = run_from_wandb_summary(flat, "wandb:me/project/abc", "abc")
    assert set(from_wandb.settings) == {"target", "lr", "max_epochs", "parameters", "probe/lr", "probe/max_epochs"}
    result = figure4([local, from_wandb])
    assert result.points[0].seeds == [0, 1] and not result.differing
    shorter = run_from_wandb_summary(flat | {"probe/max_epochs": 50}, "wandb:me/project/abc", "abc")
    result = figure4([local, shorter])
    assert len(result.points[0].runs) == 1 and "runs differ in probe/max_epochs" in result.differing[0]

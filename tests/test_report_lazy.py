"""The lazy-limit report (wide_lightning/report/lazy_limit.py): the exponent of known power laws, the planned
grid of the shipped sweep, and every missing or failed run named."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import REPO
from wide_lightning.report.lazy_limit import fit_exponent, lazy_limit_figure, planned_points, report_lazy_limit
from wide_lightning.report.runs import ReportError


def summary(parameterization: str, width: int, seed: int, movement: float, status: str = "finished") -> dict:
    return {"kind": "fit", "status": status, "model": "MLPClassifier", "dataset": "MNIST", "target": "digit",
            "width": width, "depth": 1, "seed": seed, "parameterization": parameterization,
            "base": {"movement/relative": movement, "movement/relative_trained_head_span": 2 * movement,
                     "movement/unchanged_patterns": 0.9, "movement/cka": 0.8, "test/acc": 0.97}}


def write_runs(root, laws: dict[str, tuple[float, float]], widths, seeds=(0, 1)) -> None:
    for p, (c, a) in laws.items():
        for w in widths:
            for s in seeds:
                folder = root / p / f"w{w}_s{s}"
                folder.mkdir(parents=True)
                wobble = 1 + 0.01 * (s - 0.5)  # seeds differ by a factor constant in width: the exponent is exact
                (folder / "summary.json").write_text(json.dumps(summary(p, w, s, c * w ** a * wobble)))


def test_fit_exponent_of_a_power_law_and_its_uncertainty():
    widths = [256, 1024, 4096, 16384]
    slope, error = fit_exponent(widths, [3.0 * w ** -0.5 for w in widths])
    assert slope == pytest.approx(-0.5) and error == pytest.approx(0.0, abs=1e-12)
    noisy = [3.0 * w ** -0.5 * f for w, f in zip(widths, (1.1, 0.9, 1.1, 0.9))]
    slope, error = fit_exponent(widths, noisy)
    assert -0.6 < slope < -0.4 and 0 < error < 0.1
    assert math.isnan(fit_exponent([64, 256], [1.0, 0.5])[1])  # two points: a slope, no spread
    with pytest.raises(ValueError, match="two widths or more"):
        fit_exponent([64], [1.0])


def test_the_report_fits_each_parameterizations_exponent_and_names_what_is_missing(tmp_path, capsys):
    widths = [64, 256, 1024, 4096]
    write_runs(tmp_path / "runs", {"ntk": (2.0, -0.5), "mup": (1.5, 0.0)}, widths)
    failed = tmp_path / "runs/ntk/w8192_s0"
    failed.mkdir()
    (failed / "summary.json").write_text(json.dumps(summary("ntk", 8192, 0, math.nan, status="diverged")))
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("parameters:\n  model.init_args.width: {values: [64, 256, 1024, 4096, 8192]}\n"
                     "  model.init_args.parameterization: {values: [ntk, mup]}\n  seed_everything: {values: [0, 1]}\n")
    result = report_lazy_limit(runs=[str(tmp_path / "runs")], sweep=str(sweep), out=str(tmp_path / "lazy"))
    assert result.exponent("ntk")[0] == pytest.approx(-0.5) and result.exponent("mup")[0] == pytest.approx(0.0, abs=1e-9)
    assert result.widths("ntk") == widths  # the width-64 point is shown, but below min_width it is not fitted
    assert "diverged: ntk width=8192 seed=0" in "\n".join(result.missing)
    assert "not run: mup width=8192 seed(s) [0, 1]" in result.missing
    assert "not run: ntk width=8192 seed(s) [1]" in result.missing
    printed = capsys.readouterr().out
    assert "ntk: a = -0.500 +- 0.000 (theory -0.5)" in printed
    rows = (tmp_path / "lazy.csv").read_text().splitlines()
    assert len(rows) == 1 + 2 * 5 and rows[0].startswith("parameterization,depth,width,n_seeds")
    assert (tmp_path / "lazy.png").stat().st_size > 10_000
    with pytest.raises(SystemExit, match="--strict: 3 planned or failed run"):
        report_lazy_limit(runs=[str(tmp_path / "runs")], sweep=str(sweep), out=str(tmp_path / "lazy"), strict=True)


def test_the_shipped_sweep_plans_three_parameterizations_and_no_runs_is_one_sentence(tmp_path):
    planned = planned_points(REPO / "sweeps/lazy_limit_mlp.yaml")
    assert planned.parameterizations == ["standard", "ntk", "mup"] and planned.depths == [1, 2]
    assert planned.widths[0] == 64 and planned.widths[-1] == 65536 and planned.seeds == [0, 1, 2]
    conv = planned_points(REPO / "sweeps/lazy_limit_conv.yaml")  # its base config's conv net has no depth
    assert conv.parameterizations == ["standard", "ntk", "mup"] and conv.depths == [None]
    assert conv.widths[0] == 64 and conv.widths[-1] == 32768 and conv.seeds == [0, 1, 2]
    with pytest.raises(ReportError, match="no runs found"):
        report_lazy_limit(runs=[str(tmp_path)], out=str(tmp_path / "lazy"))


def write_atlas(folder, judge: float, network: float, space: str = "hidden") -> None:
    import numpy as np

    folder.mkdir()
    (folder / "settings.txt").write_text(f"grid_size: 15\nspace: {space}\n")
    np.savez_compressed(folder / "atlas.npz", metric_names=np.array(["atlas/icons/judge_agreement", "atlas/icons/network_agreement"]),
                        metric_values=np.array([judge, network]))


def test_the_atlases_beside_a_run_give_its_recognizability_by_kind(tmp_path, capsys):
    write_runs(tmp_path / "runs", {"ntk": (2.0, -0.5)}, [256, 1024], seeds=(0,))
    run = tmp_path / "runs/ntk/w1024_s0"
    write_atlas(run / "atlas", 0.40, 0.90)
    write_atlas(run / "atlas-v1", 0.85, 1.00, space="classifier_subspace")
    write_atlas(run / "atlas_untrained", 0.30, 0.20)
    write_atlas(run / "atlas_raw_input", 0.99, 0.99)  # another control: not one of the three
    (run / "atlas_unfinished").mkdir()  # no atlas.npz: a render that did not finish
    result = report_lazy_limit(runs=[str(tmp_path / "runs")], out=str(tmp_path / "lazy"))
    assert result.stats("ntk", 1024, "atlas/hidden/judge")[0] == pytest.approx(0.40)
    assert result.stats("ntk", 1024, "atlas/classifier_subspace/judge")[0] == pytest.approx(0.85)
    assert result.stats("ntk", 1024, "atlas/untrained/network")[0] == pytest.approx(0.20)
    assert math.isnan(result.stats("ntk", 256, "atlas/hidden/judge")[0])  # no atlas at that width
    assert "ntk width 1024: icons the judge names, hidden 40.0%, classifier subspace 85.0%, untrained 30.0%" in \
        capsys.readouterr().out
    header, *rows = (tmp_path / "lazy.csv").read_text().splitlines()
    assert "atlas/classifier_subspace/judge_mean" in header.split(",")


def test_an_unreadable_summary_is_missing_and_fails_strict(tmp_path):
    write_runs(tmp_path / "runs", {"ntk": (2.0, -0.5)}, [256, 1024])
    (tmp_path / "runs/ntk/w1024_s1/summary.json").write_text('{"kind": "fit", "sta')  # cut off mid-write
    result = report_lazy_limit(runs=[str(tmp_path / "runs")], out=str(tmp_path / "lazy"))
    assert any(m.startswith("unreadable: ") and "w1024_s1" in m for m in result.missing)
    assert sorted(result.points[("ntk", 1024)]) == [0]  # the readable seed only
    with pytest.raises(SystemExit, match="--strict: 1 planned or failed run"):
        report_lazy_limit(runs=[str(tmp_path / "runs")], out=str(tmp_path / "lazy"), strict=True)


def test_runs_of_another_learning_rate_are_a_series_of_their_own_not_averaged(tmp_path):
    write_runs(tmp_path / "runs/a", {"ntk": (2.0, -0.3)}, [256, 1024, 4096])
    write_runs(tmp_path / "runs/b", {"ntk": (1.0, -0.5)}, [256, 1024, 4096])
    for path in (tmp_path / "runs").rglob("summary.json"):
        summary = json.loads(path.read_text())
        summary["lr"] = 3.16 if "/a/" in str(path) else 0.316
        path.write_text(json.dumps(summary))
    result = report_lazy_limit(runs=[str(tmp_path / "runs")], out=str(tmp_path / "lazy"))
    assert result.parameterizations == ["ntk (lr 0.316)", "ntk (lr 3.16)"]
    assert result.exponent("ntk (lr 3.16)")[0] == pytest.approx(-0.3)
    assert result.exponent("ntk (lr 0.316)")[0] == pytest.approx(-0.5)
    assert len(result.points[("ntk (lr 0.316)", 1024)]) == 2  # its two seeds, and none of the other rate's


def test_a_conv_net_without_depth_is_reported_and_never_mixed_with_an_mlp(tmp_path, capsys):
    """The conv contrast has no depth: it is its own report, and runs of two models at one depth are refused."""
    write_runs(tmp_path / "conv", {"ntk": (1.0, -0.1)}, [256, 1024, 4096])
    for path in (tmp_path / "conv").rglob("summary.json"):
        summary = json.loads(path.read_text())
        summary.update(model="ConvClassifier", depth=None)
        path.write_text(json.dumps(summary))
    result = report_lazy_limit(runs=[str(tmp_path / "conv")], out=str(tmp_path / "lazy"))
    assert result.network == "ConvClassifier" and result.exponent("ntk")[0] == pytest.approx(-0.1)
    printed = capsys.readouterr().out
    assert "lazy limit, ConvClassifier: relative movement" in printed
    assert "ntk: a = -0.100 +- 0.000 (all-wide theory -0.5)" in printed  # the MLP's prediction, as the contrast
    write_runs(tmp_path / "conv/mlp", {"ntk": (2.0, -0.5)}, [256])
    for path in (tmp_path / "conv/mlp").rglob("summary.json"):
        path.write_text(path.read_text().replace('"depth": 1', '"depth": null'))
    with pytest.raises(ReportError, match=r"runs of 2 experiments were found at depth None: ConvClassifier on MNIST "
                                          r"\(digit\); MLPClassifier on MNIST \(digit\)"):
        report_lazy_limit(runs=[str(tmp_path / "conv")], out=str(tmp_path / "lazy"))


def test_a_conv_net_with_every_layer_wide_is_an_experiment_apart_from_the_contrast(tmp_path, capsys):
    """conv_channels "width" and a fixed count make the same net at one width but are two scans: never one series."""
    def as_conv(folder, conv_channels):
        for path in folder.rglob("summary.json"):
            path.write_text(json.dumps({**json.loads(path.read_text()), "model": "ConvClassifier", "depth": None,
                                        "conv_channels": conv_channels}))

    write_runs(tmp_path / "all_wide", {"ntk": (1.0, -0.3)}, [16, 32, 64])
    as_conv(tmp_path / "all_wide", "width")
    result = report_lazy_limit(runs=[str(tmp_path / "all_wide")], out=str(tmp_path / "lazy"), min_width=16)
    assert result.network == "ConvClassifier, conv channels width"
    assert "ntk: a = -0.300 +- 0.000 (theory -0.5)" in capsys.readouterr().out  # every layer wide: theory's case
    write_runs(tmp_path / "all_wide/contrast", {"ntk": (1.0, -0.1)}, [32])
    as_conv(tmp_path / "all_wide/contrast", 32)
    with pytest.raises(ReportError, match=r"runs of 2 experiments were found at depth None: ConvClassifier on MNIST "
                                          r"\(digit, conv channels 32\); ConvClassifier on MNIST \(digit, conv "
                                          r"channels width\)"):
        report_lazy_limit(runs=[str(tmp_path / "all_wide")], out=str(tmp_path / "lazy"), min_width=16)
    write_runs(tmp_path / "all_wide/mlp", {"ntk": (1.0, -0.5)}, [16, 32])  # an MLP at depth 1 beside them
    mlp = report_lazy_limit(runs=[str(tmp_path / "all_wide")], out=str(tmp_path / "lazy"), min_width=16, depth=1)
    assert mlp.network == "MLPClassifier, depth 1"  # the conv runs' filters are not the MLP's


def test_a_collapsed_run_is_named_and_left_out_of_the_fit(tmp_path):
    """A layer that died in training moved by exactly 1 (its whole norm): a collapse, not a point of the power law."""
    write_runs(tmp_path / "runs", {"ntk": (2.0, -0.5)}, [256, 1024, 4096])
    for path, flag in ((tmp_path / "runs/ntk/w1024_s0/summary.json", True), (tmp_path / "runs/ntk/w4096_s1/summary.json", False)):
        summary = json.loads(path.read_text())
        summary["base"].update({"movement/relative": 1.0, "test/acc": 0.113})
        if flag:
            summary["base"]["movement/collapsed"] = 1.0
        else:  # a record from before the flag: its undefined CKA was written as NaN
            summary["base"]["movement/cka"] = math.nan
        path.write_text(json.dumps(summary))
    result = report_lazy_limit(runs=[str(tmp_path / "runs")], out=str(tmp_path / "lazy"))
    assert result.exponent("ntk")[0] == pytest.approx(-0.5, abs=0.01)  # with them (at 1.0) it would be -0.3
    assert sorted(result.points[("ntk", 1024)]) == [1] and sorted(result.points[("ntk", 4096)]) == [0]
    named = [m for m in result.missing if m.startswith("collapsed: ntk width=")]
    assert len(named) == 2 and "test accuracy 11.3%" in named[0]


def test_a_transfer_scans_probe_accuracy_is_read_drawn_and_said_beside_the_original_task(tmp_path, capsys):
    """configs/lazy_limit/transfer_mlp.yaml: the probe's best test accuracy (the new task) against width."""
    write_runs(tmp_path / "runs", {"ntk": (2.0, -0.5), "mup": (1.0, 0.0)}, [256, 1024])
    for path in (tmp_path / "runs").rglob("summary.json"):
        summary = json.loads(path.read_text())
        width = summary["width"]
        summary.update(kind="transfer", dataset="TranslatedMNIST", target="shift",
                       probe={"target": "digit", "lr": 1.0, "head_parameterization": "ntk",
                              "test/acc_best": 0.5 + width / 4096 + 0.01 * summary["seed"]},
                       probe_untrained={"target": "digit", "test/acc_best": 0.4})
        path.write_text(json.dumps(summary))
    result = report_lazy_limit(runs=[str(tmp_path / "runs")], out=str(tmp_path / "lazy"))
    mean, std = result.stats("ntk", 1024, "probe/test/acc_best")
    assert mean == pytest.approx(0.755) and std == pytest.approx(0.00707, abs=1e-4)  # seeds 0 and 1
    assert ("  ntk: probe accuracy (original task; untrained floor) 56.8% (97.0%; 40.0%) at 256, 75.5% (97.0%; 40.0%) "
            "at 1024") in capsys.readouterr().out
    header, first = (tmp_path / "lazy.csv").read_text().splitlines()[:2]
    assert {"probe/test/acc_best_mean", "probe_untrained/test/acc_best_mean"} <= set(header.split(","))
    assert float(dict(zip(header.split(","), first.split(",")))["probe/test/acc_best_mean"]) == pytest.approx(0.5675)


def test_the_keys_sit_outside_the_panels_and_the_colour_key_carries_each_exponent(tmp_path):
    """With three parameterizations a panel holds up to nine curves: a key inside it would hide some of them."""
    write_runs(tmp_path / "runs", {"standard": (1.0, -0.1), "ntk": (2.0, -0.5), "mup": (1.5, 0.0)},
               [64, 256, 1024, 4096])
    figure = lazy_limit_figure(report_lazy_limit(runs=[str(tmp_path / "runs")], out=str(tmp_path / "lazy")))
    renderer = figure.canvas.get_renderer()
    figure.draw(renderer)
    panel_keys = [(axes, axes.get_legend()) for axes in figure.axes if axes.get_legend() is not None]
    assert len(panel_keys) == 3  # movement, patterns, accuracy (the atlas panel has no runs and says so)
    for axes, key in panel_keys:
        assert not key.get_window_extent(renderer).overlaps(axes.get_window_extent(renderer))
    (colours,) = figure.legends
    labels = [text.get_text() for text in colours.get_texts()]
    assert labels[1] == "ntk: movement exponent a = -0.500 ± 0.000 (theory -0.5)" and labels[0] == (
        "standard: movement exponent a = -0.100 ± 0.000")  # no theory for standard
    assert not any(colours.get_window_extent(renderer).overlaps(axes.get_window_extent(renderer))
                   for axes in figure.axes)

"""The benchmark scripts run end to end on tiny settings and print their side-by-side tables.

Nothing here is timed (timings belong in ``docs/``); these runs make sure a GPU session, when one is
lent, does not spend its minutes on a script that no longer runs.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def run_benchmark(script: str, *arguments: str, cwd) -> str:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), *arguments], cwd=cwd, env=env,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def table_rows(output: str) -> list[list[str]]:
    """The cells of every markdown table row below a header (the ``|---|`` line is dropped)."""
    rows = [[cell.strip() for cell in line.strip().strip("|").split("|")] for line in output.splitlines()
            if line.startswith("|") and not set(line) <= set("|- ")]
    return [row for row in rows if row[0] not in ("variant", "depth", "method", "layout")]


def tiny_mnist_checkpoint(fake_data_dir, path):
    """A width-8 MNIST conv net trained 2 steps on the fake data, saved at ``path``: what the atlas benchmarks read."""
    from lightning.pytorch import Trainer

    from wide_lightning import MNIST, ConvClassifier

    data = MNIST(data_dir=fake_data_dir, download=False, batch_size=32)
    trainer = Trainer(accelerator="cpu", max_steps=2, limit_val_batches=0, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=8, conv_channels=2), datamodule=data)
    trainer.save_checkpoint(path)
    return path


def test_train_speed_prints_every_variant_with_its_accuracy(fake_data_dir, tmp_path):
    # resident_compile warms the timed net itself before the fit (the path that had crashed on a GPU)
    variants = ["baseline", "bare_loop", "resident", "resident_compile"]
    output = run_benchmark("train_speed.py", "--data-dir", str(fake_data_dir), "--epochs", "1", "--limit-batches", "2",
                           "--width", "4", "--workers", "0", "--warmup-steps", "1", "--variants", ",".join(variants),
                           "--compile-mode", "default", cwd=tmp_path)
    assert "failed" not in output, output
    rows = table_rows(output)
    assert [row[0] for row in rows] == variants
    assert rows[0][-1] == "1.00x"  # the first variant is the baseline of the speed-up column
    for row in rows:
        assert 0.0 <= float(row[4]) <= 1.0  # val acc after the 2 timed steps


def test_stacked_scan_prints_each_depth_and_the_total(fake_data_dir, tmp_path):
    output = run_benchmark("stacked_scan.py", "--data-dir", str(fake_data_dir), "--depths", "1,2", "--seeds", "0,1",
                           "--epochs", "1", "--limit-batches", "2", cwd=tmp_path)
    rows = table_rows(output)
    assert [row[0] for row in rows] == ["1", "2", "all"]
    for row in rows[:2]:
        assert all(0.0 <= float(acc) <= 1.0 for acc in row[-2:])  # probe accuracies, one at a time and stacked


def test_atlas_render_batched_icons_equal_one_at_a_time(tmp_path):
    output = run_benchmark("atlas_render.py", "--icons", "3", "--steps", "4", "--width", "4", "--conv-channels", "2",
                           "--baseline-icons", "2", "--device", "cpu", cwd=tmp_path)
    assert len(table_rows(output)) == 2  # the baseline and ours
    check = re.search(r"max \|baseline icon - batched icon\| over the 2 shared icons = (\S+);", output)
    assert check is not None, output
    assert float(check.group(1)) < 1e-4
    assert "objective raised on 100% of the batched icons" in output


def test_atlas_layout_prints_both_neighbour_graphs(fake_data_dir, tmp_path):
    checkpoint = tiny_mnist_checkpoint(fake_data_dir, tmp_path / "tiny.ckpt")
    output = run_benchmark("atlas_layout.py", "--checkpoint", str(checkpoint),
                           "--data-dir", str(fake_data_dir), "--points", "300", "--device", "cpu", cwd=tmp_path)
    rows = table_rows(output)
    assert [row[0] for row in rows] == ["baseline: UMAP's NN-descent (L-NB)", "ours: exact kNN graph"]
    for row in rows:
        assert 0.0 <= float(row[3]) <= 1.0  # the classes' kNN accuracy on each layout
    recall = re.search(r"NN-descent found (\S+)% of the exact 20 neighbours", output)
    assert recall is not None and 0.0 <= float(recall.group(1)) <= 100.0, output


def test_atlas_judge_ceiling_names_real_images_beside_icons(fake_data_dir, tmp_path):
    from wide_lightning.atlas.command import atlas

    checkpoint = tiny_mnist_checkpoint(fake_data_dir, tmp_path / "run" / "checkpoints" / "tiny.ckpt")
    folder = atlas(str(checkpoint), data_dir=str(fake_data_dir), grid_size=3,
                   min_density=2, steps=2, neurons=0, reducer="pca", device="cpu")
    output = run_benchmark("atlas_judge_ceiling.py", "--data-dir", str(fake_data_dir), "--atlas", f"tiny n=8={folder}",
                           "--network", f"itself={checkpoint}", "--validation-images", "50", cwd=tmp_path)
    header = next(row for row in table_rows(output) if row[0] == "atlas")
    rows = [row for row in table_rows(output) if row[0] not in ("atlas", "dataset")]
    assert rows[0][0] == "tiny n=8" and int(rows[0][1]) >= 1
    assert all(0.0 <= float(value) <= 1.0 for value in rows[0][2:])
    # the atlas's own network, given as another network, names the icons as the atlas itself recorded
    saved = np.load(Path(folder) / "atlas.npz")
    own = dict(zip(saved["metric_names"], saved["metric_values"]))["atlas/icons/network_agreement"]
    assert header[-1] == "named by itself" and float(rows[0][-1]) == pytest.approx(own, abs=1e-3)
    assert rows[1][:2] == ["MNIST", "50"] and 0.0 <= float(rows[1][2]) <= 1.0


def test_atlas_icon_study_draws_each_variant_per_seed_and_their_spread(fake_data_dir, tmp_path):
    checkpoint = tiny_mnist_checkpoint(fake_data_dir, tmp_path / "tiny.ckpt")
    output = run_benchmark("atlas_icon_study.py", "--checkpoint", f"tiny={checkpoint}",
                           "--data-dir", str(fake_data_dir), "--variants", "recognizable; lucid_notebook",
                           "--steps", "2", "--neurons", "0", "--max-points", "300", "--seeds", "0,1",
                           # 300 points in 25 cells, 12 a cell on average: kept cells whatever the layout of the
                           # fake data (15 x 15 with min_density 10 could leave none, at random)
                           "--grid-size", "5", "--min-density", "2",
                           "--out", str(tmp_path / "study"), cwd=tmp_path)
    rows = [row for row in table_rows(output) if row[0] != "network"]
    assert [(row[1], row[2]) for row in rows] == [("recognizable", "0"), ("recognizable", "1"),
                                                  ("recognizable", "2 seeds"), ("lucid_notebook", "0"),
                                                  ("lucid_notebook", "1"), ("lucid_notebook", "2 seeds")]
    for seeds, spread in ((rows[0:2], rows[2]), (rows[3:5], rows[5])):
        judged = [float(row[4]) for row in seeds]
        mean, _, sd = spread[4].partition(" +- ")
        assert float(mean) == pytest.approx(sum(judged) / 2, abs=5e-3)  # the spread row is the seeds' mean +- sd
        assert float(sd) == pytest.approx(abs(judged[0] - judged[1]) / 2, abs=1e-2)  # printed to 2 digits
    assert (tmp_path / "study" / "tiny" / "recognizable.png").is_file()
    assert len((tmp_path / "study" / "study.csv").read_text().splitlines()) == 1 + 6
    for variant, spread in (("recognizable", rows[2]), ("lucid_notebook", rows[5])):
        line = re.search(rf"# tiny, {variant}: judge (\S+) over 2 seeds, (\S+) for each cell's seed", output)
        assert line is not None, output
        assert float(line.group(1)) == pytest.approx(float(spread[4].partition(" +- ")[0]), abs=5e-3)
        assert 0.0 <= float(line.group(2)) <= 1.0


def test_atlas_two_copies_reads_a_digit_drawn_once_more_at_offset_zero_as_itself(fake_data_dir, tmp_path):
    checkpoint = tiny_mnist_checkpoint(fake_data_dir, tmp_path / "tiny.ckpt")
    output = run_benchmark("atlas_two_copies.py", "--checkpoint", f"tiny={checkpoint}", "--data-dir",
                           str(fake_data_dir), "--offsets", "0,14", "--images", "50", cwd=tmp_path)
    rows = [row for row in table_rows(output) if row[0] != "network"]
    assert [(row[0], row[1]) for row in rows] == [("tiny", "0"), ("tiny", "14")]
    named_x, named_x2, cos_x2, cos_moved, cos_same, cos_other = (float(v) for v in rows[0][2:])
    # at offset 0 the "second copy" is the image itself: max(x, x) = x and roll(x, 0) = x
    assert named_x2 == named_x and cos_x2 == 1.0 and cos_moved == 1.0
    assert all(-1.0 <= float(v) <= 1.0 for v in rows[1][4:]) and 0.0 <= float(rows[1][3]) <= 1.0
    assert rows[1][2] == rows[0][2] and rows[1][6:] == rows[0][6:]  # the single images' numbers do not move


def test_coord_check_records_each_width_and_step_and_the_base_width_mup_net_is_the_standard_one():
    from benchmarks.coord_check import batch, coordinates

    data = batch(None, 16)  # random inputs: no data folder
    widths, steps = [16, 64], 3
    coords = {p: coordinates("mlp", p, widths, 0.05, steps, data) for p in ("standard", "ntk", "mup")}
    for values in coords.values():
        assert {(m, w, t) for m, w, t in values} == {(m, w, t) for m in ("last_hidden", "change", "net.head")
                                                   for w in widths for t in range(1, steps + 1)}
        assert all(values[("change", w, 1)] == 0 for w in widths)  # step 1 is the initial network
    # ntk computes the standard network's function at initialization; mup at its base width is the standard net
    assert coords["ntk"][("last_hidden", 64, 1)] == pytest.approx(coords["standard"][("last_hidden", 64, 1)], rel=1e-5)
    for t in range(1, steps + 1):
        assert coords["mup"][("change", 16, t)] == pytest.approx(coords["standard"][("change", 16, t)], rel=1e-5)
    assert coords["mup"][("net.head", 64, 1)] < coords["standard"][("net.head", 64, 1)]  # MuReadout's smaller logits


def test_coord_checks_first_step_terms_add_up_to_the_change_and_the_base_mup_net_is_the_standard_one():
    from benchmarks.coord_check import batch, first_step

    data = batch(None, 16)
    terms = {p: first_step(p, [16, 64], 0.05, data) for p in ("standard", "mup")}
    for p, by_width in terms.items():
        for t in by_width.values():
            assert t["residual"] < 1e-5 * t["carried"] + 1e-7  # dW2 h1 + db2 + W2 dh1 + dW2 dh1 is the change
            assert t["dh2"] > 0 and t["dh1"] > 0 and t["cross"] < t["carried"]
    for key in ("dh2", "own", "carried", "cross", "dh1"):  # at the base width, the same net
        assert terms["mup"][16][key] == pytest.approx(terms["standard"][16][key], rel=1e-5)
    zeroed = first_step("mup", [16, 64], 0.05, data, zero_logits=True)
    assert zeroed[16]["dh2"] != pytest.approx(terms["mup"][16]["dh2"], rel=1e-3)  # the initial logits are set aside


def test_fault_retry_runs_its_cases_through_the_console_commands_and_checks_them(fake_data_dir, tmp_path):
    env = {**os.environ, "WIDE_LIGHTNING_DATA": str(fake_data_dir),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    result = subprocess.run([sys.executable, str(REPO / "benchmarks" / "fault_retry.py"), "--only", "limit_train",
                             "--only", "two runs under", "--keep", str(tmp_path / "cases")], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-3000:]
    rows = table_rows(result.stdout)
    assert [row[0] for row in rows[1:]] == ["limit_train_batches=0", "<root>/checkpoints/last.ckpt with two runs under <root>"]
    assert [row[1:3] for row in rows[1:]] == [["2", "held"], ["0, 0, 2", "held"]]
    assert "give the one you mean" in rows[-1][-1]


def test_mlp_memory_counts_the_parameters_and_extrapolates_its_fitted_line(fake_data_dir, tmp_path, monkeypatch):
    sys.path.insert(0, str(REPO / "benchmarks"))
    try:
        from mlp_memory import parameters
    finally:
        sys.path.pop(0)
    from wide_lightning.nets import MLP

    for depth, width in ((1, 48), (2, 64), (3, 20)):
        net = MLP((1, 28, 28), 10, depth=depth, width=width)
        assert parameters(width, depth) == sum(p.numel() for p in net.parameters())
    monkeypatch.setenv("WIDE_LIGHTNING_DATA", str(fake_data_dir))
    output = run_benchmark("mlp_memory.py", "--widths", "16", "64", "--extrapolate", "4096", "--parameterization",
                           "standard", cwd=tmp_path)
    rows = table_rows(output)
    assert [row[0] for row in rows[1:]] == ["16", "64", "4,096"] and rows[-1][2] == "(not run)"
    measured = [float(row[2]) for row in rows[1:3]]
    assert all(0.1 < m < 8 for m in measured)  # GiB: an interpreter with torch and MNIST, not nothing
    fixed, per_parameter = re.search(r"fit: ([\d.]+) GiB \+ (-?[\d.]+) bytes per parameter", output).groups()
    assert float(rows[-1][3]) == pytest.approx(float(fixed) + float(per_parameter) * parameters(4096, 2) / 2**30, abs=0.06)

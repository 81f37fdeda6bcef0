"""What an atlas shows while it works (bars where a person watches, nothing in CI or a log) and the short
table it ends with."""

from __future__ import annotations

import re
import sys
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer

from wide_lightning.atlas import AtlasSettings, build_atlas
from wide_lightning.atlas.collect import collect_activations
from wide_lightning.atlas.pipeline import reducer_name
from wide_lightning.atlas.progress import Progress, draws_progress
from wide_lightning.atlas.summary import duration, metric_lines, percent, summary_lines
from wide_lightning.callbacks import shows_progress_bar
from wide_lightning.nets import ConvNet

TINY = AtlasSettings(grid_size=4, min_density=2, steps=4, neurons=2, reducer="pca")
BARS = ("collect:", "layout (PCA)", "icons:", "neuron icons:", "metrics", "judge:")


def tiny_atlas(log=None, progress=None, reducer=None, settings=TINY):
    """An atlas of an untrained conv net over 300 random images, with a 'digit' label: seconds on a CPU."""
    torch.manual_seed(0)
    net = ConvNet((1, 28, 28), 10, width=8, conv_channels=4).eval()
    data = SimpleNamespace(images=torch.randint(0, 256, (300, 1, 28, 28), dtype=torch.uint8),
                           labels={"digit": torch.randint(0, 10, (300,))})
    normalize = lambda x: (x - 0.13) / 0.3  # noqa: E731
    transform = lambda x: normalize(x.float() / 255)  # noqa: E731
    progress = progress or Progress.off()
    with progress.bar("collect", unit="batch") as tick:
        acts = collect_activations(net.features, data, transform, batch_size=100, progress=tick)
    return build_atlas(acts, net.features, input_shape=(1, 28, 28), normalize=normalize, pad_value=0.0,
                       settings=settings, class_label="digit", images=data.images, network=net, log=log,
                       progress=progress, reducer=reducer)


def as_terminal(monkeypatch, stream):
    monkeypatch.setattr(stream, "isatty", lambda: True)


# -- the table ------------------------------------------------------------------------------------------


def test_the_table_names_what_a_reader_checks_first_from_the_results_numbers(tmp_path):
    result = tiny_atlas()
    metrics, judged = result.metrics, result.judgement
    k = len(result.layout.cells)
    lines = summary_lines(result, tmp_path / "atlas")
    assert len(lines) <= 9 and not any(re.match(r"atlas/\S+ = ", line) for line in lines)  # not the 40 numbers
    assert lines[0].startswith(f"atlas: {k} of 16 cells kept (")
    assert lines[-1] == f"atlas written to {tmp_path / 'atlas'}"
    rows = {line[2:20].strip(): line[20:] for line in lines[1:-1]}
    assert list(rows) == ["cell purity", "network names", "judge names", "objective raised", "panel", "every number"]
    assert rows["cell purity"] == f"digit {metrics['atlas/cell_purity/digit']:.2f}"
    # the counts are the shares of the kept cells, and agree with the per-cell labels behind them
    network = int((judged.network_label == judged.majority).sum())
    judge = int((judged.judge_label == judged.majority).sum())
    raised = int((result.icons.objective > result.icons.initial_objective).sum())
    assert rows["network names"] == (f"{round(metrics['atlas/icons/network_agreement'] * k)} of {k} icons as their "
                                     f"cell's label ({percent(metrics['atlas/icons/network_agreement'])})")
    assert rows["network names"].startswith(f"{network} of {k} icons")
    assert rows["judge names"].startswith(f"{judge} of {k} icons")
    assert rows["objective raised"].startswith(f"{raised} of {k} icons (")
    assert rows["panel"] == str(tmp_path / "atlas" / "panel.png")
    assert rows["every number"].startswith(f"{tmp_path / 'atlas' / 'atlas.npz'} (metric_names, metric_values)")
    assert "--verbose true" in rows["every number"]
    # every number is still one line away
    assert len(metric_lines(metrics)) == len(metrics) >= 30


def test_percent_and_duration_do_not_round_to_what_is_not_so():
    assert percent(0.9967) == "99.7%" and percent(1.0) == "100%" and percent(0.0) == "0%" and percent(0.001) == "0.1%"
    assert percent(0.4286) == "43%"
    assert duration(12.34) == "12.3s" and duration(192) == "3m 12s" and duration(3840) == "1h 04m"


# -- the bars -------------------------------------------------------------------------------------------


def test_no_bar_is_drawn_where_stderr_is_not_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    assert not draws_progress()  # pytest's captured stderr is no terminal
    lines = []
    tiny_atlas(log=lines.append, progress=Progress())
    captured = capsys.readouterr()
    assert captured.err == "" and captured.out == ""
    # one line per stage, as before the bars; the layout's names the reducer used
    assert len(lines) == 3 and [line.split()[1] for line in lines] == ["laying", "rendering", "judging"]
    assert lines[0] == "atlas: laying out 300 activations of width 8 (PCA)"


def test_no_bar_is_drawn_in_ci_even_on_a_terminal(monkeypatch, capfd):
    as_terminal(monkeypatch, sys.stderr)
    for ci in ("1", "yes"):
        monkeypatch.setenv("CI", ci)
        assert not draws_progress()
    monkeypatch.setenv("CI", "true")
    tiny_atlas(progress=Progress())
    assert capfd.readouterr().err == ""


def test_bars_are_drawn_on_a_terminal(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    as_terminal(monkeypatch, sys.stderr)
    assert draws_progress()
    result = tiny_atlas(progress=Progress())
    err = capsys.readouterr().err
    for bar in BARS:
        assert bar in err, bar
    assert "icons: 100%|" in err and f"| {TINY.steps}/{TINY.steps} [" in err  # every step, with the objective
    assert re.search(r"objective=-?[0-9.e+-]+\]", err)
    assert "layout (PCA) done [" in err and "judge: 100%|" in err
    assert "collect: 100%|" in err and "3/3" in err  # 300 images in batches of 100
    assert len(result.layout.cells) > 0
    # the same Progress told not to draw (the callback without enable_progress_bar) draws nothing
    tiny_atlas(progress=Progress(False))
    assert capsys.readouterr().err == ""


def test_ci_false_is_not_ci(monkeypatch, capsys):
    monkeypatch.setenv("CI", "false")
    as_terminal(monkeypatch, sys.stderr)
    assert draws_progress()


def test_the_spinner_says_whether_the_work_ended(monkeypatch, capsys):
    monkeypatch.delenv("CI", raising=False)
    as_terminal(monkeypatch, sys.stderr)
    with pytest.raises(RuntimeError):
        with Progress().spinner("layout (UMAP)"):
            raise RuntimeError("stop")
    assert "layout (UMAP) stopped [" in capsys.readouterr().err


def test_the_callback_draws_only_where_the_trainer_shows_its_bar():
    assert shows_progress_bar(Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False))
    assert not shows_progress_bar(Trainer(logger=False, enable_checkpointing=False, enable_model_summary=False,
                                          enable_progress_bar=False))


# -- the layout line -------------------------------------------------------------------------------------


def test_the_layout_line_names_the_reducer_used():
    def random_projection(x):
        return x @ np.random.default_rng(0).standard_normal((x.shape[1], 2))

    lines = []
    tiny_atlas(log=lines.append, reducer=random_projection)
    assert lines[0].endswith("(random_projection)")
    assert reducer_name(AtlasSettings()) == "UMAP" and reducer_name(AtlasSettings(reducer="pca")) == "PCA"

"""The W&B sweeps in ``sweeps/``: valid for W&B, every run they launch parses with our CLI, one runs end to end.

A sweep cannot run offline (it needs the W&B server), so these tests do what the server and the
agent would: ``sweeps`` (the server's own validator and grid search) enumerates the runs, the
agent's macro expansion builds each command line, and our LightningCLI parses it. A misspelt key
then fails here, not after a cluster job has started.
"""

from __future__ import annotations

import json
import math
from argparse import ArgumentError
import sys
import warnings
from pathlib import Path

import pytest
import yaml

with warnings.catch_warnings():  # sweeps 0.3 declares a pydantic v1 config key: a UserWarning at import
    warnings.simplefilter("ignore")
    import sweeps
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args  # internal, but a pure function

from tests.conftest import REPO, newest_summary
from wide_lightning.cli import build_cli
from wide_lightning.data.base import DATA_ENV
from wide_lightning.report import expected_grid, report

SWEEPS = sorted((REPO / "sweeps").glob("*.yaml"))
EXPECTED_RUNS = {"figure4_left": 100, "figure4_left_stacked": 20, "figure4_right": 45, "figures1_3": 6,
                 "lr_scan_translated_mnist": 30, "lr_scan_cifar100": 50, "lazy_limit_mlp": 198, "lazy_limit_conv": 90, "lazy_limit_transfer": 198,
                 "lr_scan_lazy_limit": 27}
# limit_*_batches=1 would mean 100%: jsonargparse parses Lightning's Union[float, int] as the float 1.0
QUICK = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
         "--trainer.max_epochs=1", "--probe.max_epochs=1"]


def load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def grid_runs(config: dict) -> list[dict]:
    """Every run of a grid sweep, as the W&B server hands them out: ``{key: {"value": v}}`` each."""
    runs: list[sweeps.SweepRun] = []
    while (run := sweeps.next_run(config, runs)) is not None:
        run.state = sweeps.RunState.finished
        runs.append(run)
    return [run.config for run in runs]


def agent_command(config: dict, run_config: dict) -> list[str]:
    """The command line ``wandb agent`` runs (wandb 0.31 ``wandb_agent.py``: each ``${macro}`` list element replaced)."""
    macros = create_sweep_command_args({"args": run_config})
    macros.update(interpreter=["python"], program=[config["program"]], env=["/usr/bin/env"])
    command = []
    for element in map(str, config["command"]):
        is_macro = element.startswith("${") and element.endswith("}")
        command += (macros.get(element[2:-1]) or []) if is_macro else [element]
    return command


def covering(runs: list[dict]) -> list[dict]:
    """A few runs in which every value of every parameter occurs at least once (and the first and last run)."""
    seen, chosen = set(), []
    for index, run in enumerate(runs):
        values = {(key, json.dumps(spec["value"])) for key, spec in run.items()}
        if values - seen or index in (0, len(runs) - 1):
            chosen.append(run)
            seen |= values
    return chosen


def lookup(printed: dict, key: str):
    for part in key.split("."):
        printed = printed[part]
    return printed


@pytest.fixture()
def repo_configs(tmp_path, monkeypatch):
    """The sweeps name ``configs/...`` relative to the repository root: make them resolve in the test's folder."""
    (tmp_path / "configs").symlink_to(REPO / "configs", target_is_directory=True)
    monkeypatch.setattr(sys, "argv", ["wide-lightning"])  # LightningCLI warns when pytest's own argv is present


def check_runs(config: dict, runs: list[dict], capsys) -> list[str]:
    """Parse each run's command with ``fit --print_config``; the problems found (empty: every run parses as planned)."""
    problems = []
    for run in runs:
        command = agent_command(config, run)
        if command[:4] != ["/usr/bin/env", "python", "-m", "wide_lightning"]:
            problems.append(f"{command}: not `python -m wide_lightning`")
            continue
        argv = command[command.index("fit"):]
        # build_cli raises what the parser refuses (main turns it into one readable line); --print_config exits 0
        try:
            build_cli([*argv, "--print_config"])
            refused = "--print_config did not exit"
        except SystemExit as exit_info:
            refused = None if exit_info.code in (0, None) else f"exit {exit_info.code}"
        except ArgumentError as error:
            refused = f"refused: {error}"
        out, err = capsys.readouterr()
        if refused:
            problems.append(f"{' '.join(argv)}: {refused}: {err.strip()[-400:]}")
            continue
        printed = yaml.safe_load(out)
        for key, spec in run.items():
            if key == "config":  # an overlay after the base: every value it sets is in the resolved config
                overlay = load(REPO / spec["value"])["model"]["init_args"]
                landed = all(printed["model"]["init_args"][k] == v for k, v in overlay.items())
            else:
                landed = lookup(printed, key) == spec["value"]
            if not landed:
                problems.append(f"{' '.join(argv)}: {key}={spec['value']} did not reach the resolved config")
    return problems


def test_the_paper_sweeps_are_all_here():
    assert sorted(p.stem for p in SWEEPS) == sorted(EXPECTED_RUNS)


@pytest.mark.parametrize("path", SWEEPS, ids=lambda p: p.stem)
def test_sweep_is_valid_for_wandb_and_plans_the_paper_grid(path):
    config = load(path)
    assert sweeps.schema_violations_from_proposed_config(config) == []
    assert config["method"] == "grid" and config["program"] and (REPO / config["program"]).is_file()
    assert config["metric"]["name"].startswith(("base/", "probe/"))
    command = [str(c) for c in config["command"]]
    assert command[:5] == ["${env}", "${interpreter}", "-m", "wide_lightning", "fit"]
    assert command[-1] == "${args}"  # after --config: the sweep's values win
    assert path.read_text().startswith("#")  # the header says what figure and how to run it
    for name in [c for c in command if c.startswith("configs/")] + list(config["parameters"].get("config", {}).get("values", [])):
        assert (REPO / name).is_file(), name
    assert all("." in key or key in ("config", "seed_everything") for key in config["parameters"])  # flat dotted keys
    assert len(grid_runs(config)) == EXPECTED_RUNS[path.stem]


def test_figure4_grids_match_the_paper():
    left = load(REPO / "sweeps/figure4_left.yaml")["parameters"]
    assert left["model.init_args.depth"]["values"] == list(range(1, 21))
    assert left["seed_everything"]["values"] == list(range(5))
    right = load(REPO / "sweeps/figure4_right.yaml")["parameters"]
    widths = right["model.init_args.width"]["values"]
    assert widths[0] == 100 and widths[-1] == 2000 and widths == sorted(widths) and 7 <= len(widths) <= 9
    assert right["seed_everything"]["values"] == list(range(5))
    assert expected_grid(REPO / "sweeps/figure4_right.yaml").dataset == "CIFAR100Coarse"


@pytest.mark.parametrize(("name", "count", "top"),
                         [("lr_scan_translated_mnist", 5, -1), ("lr_scan_cifar100", 10, -1), ("lr_scan_lazy_limit", 9, 1)])
def test_lr_scans_are_evenly_spaced_exponents(name, count, top):
    """Appendix B.3: lr = 10^x for ``count`` evenly spaced x in [-3, -1] (the lazy-limit scan: [-3, 1])."""
    values = load(REPO / f"sweeps/{name}.yaml")["parameters"]["model.init_args.lr"]["values"]
    assert values == pytest.approx([10 ** (-3 + (top + 3) * k / (count - 1)) for k in range(count)], rel=1e-5)
    if count == 10:
        assert 0.0129 == pytest.approx(values[5], rel=2e-3)  # the paper's CIFAR-100 rate, 10^(-1.888...)


def test_every_key_of_every_sweep_parses(repo_configs, capsys):
    """The first and last run of each sweep: every key, as the agent passes it, reaches the resolved config."""
    for path in SWEEPS:
        config = load(path)
        runs = grid_runs(config)
        assert check_runs(config, [runs[0], runs[-1]], capsys) == [], path.name


@pytest.mark.slow
def test_every_value_of_every_sweep_parses(repo_configs, capsys):
    """Each value of each parameter in at least one parsed run (~70 parses, ~25 s); all runs would take minutes."""
    for path in SWEEPS:
        config = load(path)
        assert check_runs(config, covering(grid_runs(config)), capsys) == [], path.name


def test_a_misspelt_sweep_key_is_rejected(repo_configs, capsys):
    config = load(REPO / "sweeps/figure4_left.yaml")
    config["parameters"]["model.init_args.dept"] = config["parameters"].pop("model.init_args.depth")
    assert sweeps.schema_violations_from_proposed_config(config) == []  # W&B cannot know our keys...
    problems = check_runs(config, grid_runs(config)[:1], capsys)  # ...the CLI does
    assert len(problems) == 1 and "dept" in problems[0]


def test_args_before_the_config_are_caught(repo_configs, capsys):
    """``${args}`` before ``--config``: the config would override the sweep's values (here jsonargparse refuses)."""
    config = load(REPO / "sweeps/figure4_left.yaml")
    command = config["command"]
    config["command"] = command[:5] + ["${args}", "--config", "configs/translated_mnist/transfer_mlp.yaml"]
    run = {"model.init_args.depth": {"value": 7}, "seed_everything": {"value": 0}}
    problems = check_runs(config, [run], capsys)
    assert len(problems) == 1 and "--model.init_args.depth=7" in problems[0]


def test_one_point_of_figure4_end_to_end(repo_configs, fake_data_dir, monkeypatch, tmp_path):
    """The exact command the Figure 4 (left) sweep builds for depth 3, seed 1, on fake data with quick limits."""
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    config = load(REPO / "sweeps/figure4_left.yaml")
    run = next(r for r in grid_runs(config)
               if r["model.init_args.depth"]["value"] == 3 and r["seed_everything"]["value"] == 1)
    command = agent_command(config, run)
    assert command == ["/usr/bin/env", "python", "-m", "wide_lightning", "fit", "--config",
                       "configs/translated_mnist/transfer_mlp.yaml", "--model.init_args.depth=3", "--seed_everything=1"]
    cli = build_cli(command[command.index("fit"):] + QUICK)
    summary = newest_summary(tmp_path / "runs/translated_mnist/transfer_mlp")
    assert summary["kind"] == "transfer" and summary["status"] == "finished"
    assert summary["model"] == "MLPClassifier" and summary["dataset"] == "TranslatedMNIST"
    assert (summary["depth"], summary["seed"]) == (3, 1)
    assert summary["width"] == cli.model.net.width and summary["parameters"] > 0
    assert 0.0 <= summary["base"]["test/acc"] <= 1.0
    assert summary["probe"]["target"] == "digit" and 0.0 <= summary["probe"]["test/acc_best"] <= 1.0
    assert all(math.isfinite(v) for v in summary["base"].values())
    # ... and the report finds it as point (3, 1) of the sweep's grid, and the other 99 missing
    result = report(runs=["runs"], sweep=str(REPO / "sweeps/figure4_left.yaml"), out="fig")
    assert [(p.x, p.seeds) for p in result.points if p.runs] == [(3, [1])]
    assert len(result.missing) == 99 and "depth=3 seed=0" in result.missing

"""The runs a sweep plans: its (x, seed) grid."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from wide_lightning.data.base import dataset_of
from wide_lightning.report.runs import SEED_KEY, SWEEP_KEYS, ReportError

# -- the planned grid --------------------------------------------------------------------------------


@dataclass
class Grid:
    """The (x, seed) points a sweep plans; ``seeds=None``: the sweep fixes the seed (any one run per x)."""

    x: str
    values: list[int]
    seeds: list[int] | None
    source: str
    dataset: str | None = None
    model: str | None = None

    @property
    def size(self) -> int:
        return len(self.values) * len(self.seeds or [None])


def _grid_values(key: str, spec: dict[str, Any], sweep: str) -> list[Any]:
    if "values" in spec:
        return list(spec["values"])
    if "value" in spec:
        return [spec["value"]]
    if spec.get("distribution") == "int_uniform" and "min" in spec and "max" in spec:
        return list(range(int(spec["min"]), int(spec["max"]) + 1))
    raise ReportError(f"{sweep}: parameter {key} is not a grid (values, value or int_uniform min/max): {spec}.")


def config_of_sweep(config: dict[str, Any], sweep_path: Path) -> dict[str, Any] | None:
    """The training config the sweep's command names (``--config X`` / ``--config=X``), if it can be read."""
    command = [str(c) for c in config.get("command") or []]
    names = [command[i + 1] for i, c in enumerate(command[:-1]) if c == "--config"]
    names += [c.split("=", 1)[1] for c in command if c.startswith("--config=")]
    for name in names:
        for candidate in (Path(name), sweep_path.resolve().parent.parent / name):
            if candidate.is_file():
                return yaml.safe_load(candidate.read_text())
    return None


def read_sweep(sweep: str | os.PathLike) -> tuple[dict[str, Any], dict[str, list[Any]]]:
    """A W&B sweep file, and every key it sets with the values its grid takes (a fixed ``value`` as one)."""
    try:
        config = yaml.safe_load(Path(sweep).read_text()) or {}
    except OSError as error:
        raise ReportError(f"cannot read the sweep {sweep}: {error}") from error
    parameters = config.get("parameters") or {}
    return config, {key: _grid_values(key, spec, str(sweep)) for key, spec in parameters.items()}


def expected_grid(sweep: str | os.PathLike, x: str = "auto") -> Grid:
    """The (x, seed) grid of a Figure 4 sweep (``sweeps/figure4_*.yaml``), and its dataset and model from the config it runs."""
    path = Path(sweep)
    config, swept = read_sweep(path)
    names = [name for name, key in SWEEP_KEYS.items() if key in swept]
    if len(names) != 1:
        raise ReportError(f"{sweep}: a Figure 4 sweep varies exactly one of {sorted(SWEEP_KEYS.values())}; "
                          f"it has {sorted(swept)}.")
    if x not in ("auto", names[0]):
        raise ReportError(f"--x {x} but the sweep {sweep} varies {names[0]}.")
    others = {k: v for k, v in swept.items() if k not in (SWEEP_KEYS[names[0]], SEED_KEY) and len(v) > 1}
    if others:
        raise ReportError(f"{sweep} also varies {', '.join(f'{k} ({len(v)} values)' for k, v in others.items())}; "
                          f"the report averages over seeds at each {names[0]} only, so it would mix them.")
    facts = config_of_sweep(config, path) or {}
    class_name = lambda section: (((facts.get(section) or {}).get("class_path")) or "").rpartition(".")[2] or None  # noqa: E731
    # a stacked model (StackedMLPClassifier) trains the seeds its config lists in every run
    stacked_seeds = ((facts.get("model") or {}).get("init_args") or {}).get("seeds")
    seeds = swept.get(SEED_KEY) or stacked_seeds
    return Grid(x=names[0], values=sorted(int(v) for v in swept[SWEEP_KEYS[names[0]]]),
                seeds=sorted(int(s) for s in seeds) if seeds else None,
                source=str(sweep), dataset=class_name("data") and dataset_of(class_name("data")), model=class_name("model"))



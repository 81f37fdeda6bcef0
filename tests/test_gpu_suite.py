"""``benchmarks/gpu_suite.py`` at ``--tiny`` sizes on the CPU: one table, numbers in each row, failures in their row.

Nothing here is timed; these runs make sure that a GPU session spends its minutes on numbers, not on a
script that stopped at its first error.
"""

import importlib
import re

import pytest
import torch

from tests.conftest import REPO

pytestmark = pytest.mark.slow

NUMBER = r"\d+\.\d+"


@pytest.fixture
def gpu_suite(monkeypatch):
    # the benchmark scripts import each other as top-level modules, as they do when run as scripts
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    return importlib.import_module("gpu_suite")


def run_suite(gpu_suite, capsys, data_dir, *arguments: str) -> tuple[int, dict[str, dict[str, str]]]:
    """The exit status, and the printed table's rows by name, each a dict of its cells by column."""
    status = gpu_suite.main(["--tiny", "--device", "cpu", "--data-dir", str(data_dir), *arguments])
    output = capsys.readouterr().out
    lines = [line for line in output.splitlines() if line.startswith("|")]
    header = [cell.strip() for cell in lines[0].strip("|").split("|")]
    assert header == ["row", "what", "sizes", "seconds", "result", "device"], output
    assert set(lines[1]) <= set("|- "), output  # the markdown separator
    rows = [dict(zip(header, (cell.strip() for cell in line.strip().strip("|").split("|")))) for line in lines[2:]]
    assert all(len(row) == len(header) for row in rows), output
    # stdout is the table alone: a title line above it, the rows' own output went to stderr
    assert not [line for line in output.splitlines()[1:] if line and not line.startswith("|")
                and not line.startswith("failed:")], output
    return status, {row["row"]: row for row in rows}


def numbers(cell: str) -> list[float]:
    return [float(value) for value in re.findall(NUMBER, cell)]


def test_every_row_prints_its_seconds_and_result(gpu_suite, capsys, fake_data_dir):
    status, rows = run_suite(gpu_suite, capsys, fake_data_dir)
    assert status == 0
    assert list(rows) == ["fit", "scan", "atlas", "lazy"]
    for row in rows.values():
        assert numbers(row["seconds"])[0] > 0 and min(numbers(row["seconds"])) >= 0, row
        assert row["device"].startswith("CPU"), row
        assert "failed" not in row["result"], row
    # the fit: ours and plain, each its wall time and test accuracy; the speed-up is plain / ours
    ours, plain, speed_up = numbers(rows["fit"]["seconds"])
    assert speed_up == pytest.approx(plain / ours, rel=0.05, abs=0.01)
    assert len(numbers(rows["fit"]["result"])) == 2
    assert all(0.0 <= accuracy <= 1.0 for accuracy in numbers(rows["fit"]["result"]))
    # the scan: one mean probe accuracy per depth (--tiny: depths 1 and 2)
    assert "depths 1-2" in rows["scan"]["sizes"]
    assert len(numbers(rows["scan"]["result"])) == 2
    assert all(0.0 <= accuracy <= 1.0 for accuracy in numbers(rows["scan"]["result"]))
    # the atlas: the default preset at --tiny's grid and layout; the share of its icons the network names right
    assert "recognizable preset" in rows["atlas"]["sizes"]
    assert "4x4 grid" in rows["atlas"]["sizes"] and "pca layout" in rows["atlas"]["sizes"]
    icons = int(re.match(r"(\d+) icons", rows["atlas"]["result"]).group(1))
    assert 1 <= icons <= 16
    assert 0.0 <= numbers(rows["atlas"]["result"])[-1] <= 1.0
    # the widest MLP: an epoch time and a peak memory for each parameterization
    assert [name for name in re.findall(r"[a-z]+(?= \d)", rows["lazy"]["seconds"])] == ["standard", "ntk", "mup"]
    memory = re.findall(rf"(standard|ntk|mup) ({NUMBER}) GiB", rows["lazy"]["result"])
    assert [name for name, _ in memory] == ["standard", "ntk", "mup"]
    assert all(float(gib) > 0 for _, gib in memory)


def test_a_failing_row_is_reported_and_the_others_still_run(gpu_suite, capsys, fake_data_dir, monkeypatch):
    def crash(*args, **kwargs):
        raise RuntimeError("CUDA error: an illegal memory access was encountered\nCUDA kernel errors ...")

    mlp_epoch = gpu_suite.mlp_epoch

    def ntk_does_not_fit(parameterization, *args):
        if parameterization == "ntk":
            raise torch.cuda.OutOfMemoryError("CUDA out of memory. Tried to allocate 16.00 GiB")
        return mlp_epoch(parameterization, *args)

    monkeypatch.setattr(gpu_suite.stacked_scan, "all_depths", crash)
    monkeypatch.setattr(gpu_suite, "mlp_epoch", ntk_does_not_fit)
    status, rows = run_suite(gpu_suite, capsys, fake_data_dir, "--only", "lazy", "--only", "scan")
    assert status == 1  # a row failed
    assert list(rows) == ["scan", "lazy"]  # the table's order, whatever the flags' order
    # the failure, on one line, in its row's result
    assert rows["scan"]["result"] == "failed: RuntimeError: CUDA error: an illegal memory access was encountered"
    assert not numbers(rows["scan"]["seconds"])
    # the row after it ran; a parameterization that does not fit is that row's measurement, not its failure
    assert re.fullmatch(rf"standard {NUMBER}, ntk -, mup {NUMBER} per epoch", rows["lazy"]["seconds"])
    assert re.fullmatch(rf"peak RSS of the process so far: standard {NUMBER} GiB, ntk out of memory, mup {NUMBER} GiB",
                        rows["lazy"]["result"])

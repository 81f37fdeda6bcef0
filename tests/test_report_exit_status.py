"""``wide-lightning-report`` and ``wide-lightning-report-lazy``: a user error (no runs, ``--strict`` and runs
missing) ends in its sentence on stderr and exit status 2, as every command's does; 1 is a bug's."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tests.test_report import FIGURE4_LEFT, runs_dir  # noqa: F401  (runs_dir: a fixture)
from tests.test_report_lazy import write_runs
from wide_lightning.report.command import main as report_main
from wide_lightning.report.lazy_limit import main as lazy_main


def user_error(capsys, command, *args: str) -> str:
    """Run a report that must fail as a user error: exit status 2, its one sentence on stderr; that sentence."""
    with pytest.raises(SystemExit) as exit_info:
        command(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and str(exit_info.value) == err  # the exit says it too, for a caller in Python
    return err


@pytest.mark.parametrize("command, program", [(report_main, "wide-lightning-report"),
                                              (lazy_main, "wide-lightning-report-lazy")])
def test_no_runs_is_a_user_error(tmp_path, capsys, command, program):
    err = user_error(capsys, command, "--runs", str(tmp_path / "absent"), "--out", str(tmp_path / "out"))
    assert err.startswith(f"{program}: no runs found. Searched: {tmp_path / 'absent'}")


def test_report_strict_with_points_missing_is_a_user_error(runs_dir, tmp_path, capsys):  # noqa: F811
    args = ["--runs", str(runs_dir), "--out", str(tmp_path / "fig")]
    report_main([*args, "--strict"])  # complete: no exit
    capsys.readouterr()
    err = user_error(capsys, report_main, *args, "--sweep", FIGURE4_LEFT, "--strict")
    missing = tmp_path / "fig.missing.txt"
    assert err == f"wide-lightning-report: --strict: 94 planned point(s) or baseline missing; see {missing}"


def test_lazy_report_strict_with_runs_missing_is_a_user_error(tmp_path, capsys):
    write_runs(tmp_path / "runs", {"ntk": (2.0, -0.5), "mup": (1.5, 0.0)}, [64, 256, 1024])
    sweep = tmp_path / "sweep.yaml"
    sweep.write_text("parameters:\n  model.init_args.width: {values: [64, 256, 1024, 4096]}\n"
                     "  model.init_args.parameterization: {values: [ntk, mup]}\n  seed_everything: {values: [0, 1]}\n")
    args = ["--runs", str(tmp_path / "runs"), "--out", str(tmp_path / "lazy")]
    lazy_main([*args, "--strict"])  # no sweep: nothing planned is missing
    capsys.readouterr()
    err = user_error(capsys, lazy_main, *args, "--sweep", str(sweep), "--strict")
    assert err == f"wide-lightning-report-lazy: --strict: 2 planned or failed run(s); see {tmp_path / 'lazy.missing.txt'}"


def test_the_parser_keeps_its_statuses(tmp_path, capsys):
    for command in (report_main, lazy_main):
        with pytest.raises(SystemExit) as exit_info:
            command(["--no_such_option", "1"])
        assert exit_info.value.code == 2
        with pytest.raises(SystemExit) as exit_info:
            command(["--help"])
        assert exit_info.value.code in (0, None)


def test_the_process_exits_2_and_prints_the_sentence_once(tmp_path):
    done = subprocess.run([sys.executable, "-c", "from wide_lightning.report.command import main; main()",
                           "--runs", str(tmp_path / "absent"), "--out", str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr
    assert done.stderr.count("wide-lightning-report: no runs found.") == 1 and "Traceback" not in done.stderr

"""A ``--config`` file is read as written or refused in one sentence: YAML keeps the last of a key given
twice without a word, an empty file was "Unexpected config:", a tab a parser message. No data needed:
the files are checked before anything is parsed or built."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import REPO
from wide_lightning.cli import build_cli, main
from wide_lightning.errors import DEBUG_ENV, ConfigFileError, check_config_file, config_paths

CONFIG = REPO / "configs/translated_mnist/mlp_shift.yaml"


@pytest.fixture(autouse=True)
def _no_traceback(monkeypatch):
    monkeypatch.delenv(DEBUG_ENV, raising=False)


def refused(capsys, *args: str) -> str:
    """``wide-lightning fit ...`` must end in exit status 2 and one sentence, no traceback: that sentence."""
    with pytest.raises(SystemExit) as exited:
        main(["fit", *args])
    assert exited.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err) and len(err) == 2, err
    return err[-1]


def with_lines(text: str, after: str, added: str) -> str:
    """``text`` with the line ``added`` inserted after the first line that is ``after``."""
    lines = text.splitlines()
    at = lines.index(after) + 1
    return "\n".join([*lines[:at], added, *lines[at:]]) + "\n"


def test_a_key_given_twice_is_refused_with_both_lines(capsys, tmp_path):
    # the shipped config with a second lr under model.init_args: YAML would train with lr 0.5
    config = tmp_path / "two_lrs.yaml"
    config.write_text(with_lines(CONFIG.read_text(), "    lr: 0.01", "    lr: 0.5"))
    first = CONFIG.read_text().splitlines().index("    lr: 0.01") + 1
    sentence = refused(capsys, "--config", str(config))
    assert sentence == (f"--config {config} gives 'model.init_args.lr' twice, on lines {first} and {first + 1} (YAML "
                        f"would silently keep only the second); keep one of them.")


def test_a_section_given_twice_is_refused_with_both_lines(capsys, tmp_path):
    config = tmp_path / "two_models.yaml"
    config.write_text("model:\n  class_path: wide_lightning.MLPClassifier\n"
                      "trainer:\n  max_epochs: 1\n"
                      "model:\n  init_args:\n    width: 8\n")
    for args in (["--config", str(config)], [f"--config={config}"], ["-c", str(config)]):
        sentence = refused(capsys, *args)
        assert sentence == (f"--config {config} gives 'model' twice, on lines 1 and 5 (YAML would silently keep only "
                            f"the second); keep one of them.")


def test_an_empty_config_says_so(capsys, tmp_path):
    for text in ("", "# only a comment\n\n"):
        config = tmp_path / "empty.yaml"
        config.write_text(text)
        sentence = refused(capsys, "--config", str(CONFIG), "--config", str(config))
        assert sentence == (f"--config {config} is empty (no options, at most comments); write the options into it "
                            f"(the configs in configs/ show the sections: trainer, model, data) or leave it out.")


def test_a_tab_is_named_with_its_file_and_line(capsys, tmp_path):
    config = tmp_path / "tab.yaml"
    config.write_text("trainer:\n  max_epochs: 1\nmodel:\n  init_args:\n\twidth: 8\n")
    sentence = refused(capsys, "--config", str(config))
    assert sentence == (f"--config {config}, line 5 has a tab character where YAML accepts only spaces; replace the "
                        f"tab with spaces.")


def test_other_broken_yaml_and_a_list_are_named(tmp_path):
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer:\n  callbacks: [1, 2\n")
    with pytest.raises(ConfigFileError, match=rf"^--config {broken}, line 3 is not valid YAML \(.*\); correct that "
                                              rf"line\.$"):
        check_config_file(str(broken))
    listed = tmp_path / "list.yaml"
    listed.write_text("- trainer\n- model\n")
    with pytest.raises(ConfigFileError, match=r"holds a list, not options; a config is a mapping of sections"):
        check_config_file(str(listed))


def test_what_yaml_means_to_repeat_is_accepted(tmp_path):
    # the same key in two mappings, a tab inside a quoted value, a merge key overridden on purpose
    config = tmp_path / "fine.yaml"
    config.write_text("defaults: &defaults\n  lr: 0.1\n  width: 8\n"
                      "model:\n  init_args:\n    <<: *defaults\n    lr: 0.2\n    name: \"a\\tb\\t\"\n"
                      "data:\n  init_args:\n    name: x\n")
    check_config_file(str(config))


def test_every_shipped_config_passes():
    configs = sorted((REPO / "configs").rglob("*.yaml"))
    assert configs
    for config in configs:
        check_config_file(str(config))


def test_only_files_given_to_config_are_read(tmp_path):
    config = tmp_path / "c.yaml"
    config.write_text("trainer: {}\n")
    args = ["fit", "--config", str(config), "--model=model.yaml", "--config=trainer: {max_epochs: 1}",
            "-c", str(config), "--config"]
    assert config_paths(args) == [str(config), str(config)]  # inline YAML and a missing value: jsonargparse's


def test_the_check_comes_before_anything_is_parsed(tmp_path):
    config = tmp_path / "two.yaml"
    config.write_text("seed_everything: 0\nseed_everything: 1\n")
    with pytest.raises(ConfigFileError, match="'seed_everything' twice, on lines 1 and 2"):
        build_cli(["fit", "--config", str(config)])
    assert [p.name for p in Path(".").iterdir()] == ["two.yaml"]  # nothing written (the test runs in tmp_path)

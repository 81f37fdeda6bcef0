"""Errors a person can read: the sentence that matters last, a few lines, no traceback; and the newcomer's path."""

from __future__ import annotations

import logging

import pytest
import torch
import yaml

from tests.conftest import REPO, run_folders
from wide_lightning.atlas import command as atlas_command
from wide_lightning.checkpoints import read_checkpoint
from wide_lightning.cli import main
from wide_lightning.data.base import DATA_ENV
from wide_lightning.errors import DEBUG_ENV, config_file_of, explain, finite_spellings, unknown_option

CONFIG = str(REPO / "configs/mnist/conv_n20.yaml")
QUICK = ["--trainer.logger=false", "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
         "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2", "--trainer.enable_progress_bar=false",
         "--trainer.callbacks=[]"]


@pytest.fixture()
def data_env(fake_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    monkeypatch.delenv(DEBUG_ENV, raising=False)
    return fake_data_dir


def fails(capsys, *args: str, command=main) -> list[str]:
    """Run a command that must fail as a user error: exit status 2, a short message; its lines."""
    with pytest.raises(SystemExit) as exit_info:
        command(list(args))
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert "Traceback" not in "\n".join(err)
    return err


@pytest.mark.parametrize("option, sentence", [
    ("--model.init_args.width=0", "width must be a positive integer, got 0."),
    ("--model.init_args.lr=-0.1", "lr must be a positive finite number or '1/width', got -0.1."),
    ("--model.init_args.lr=nan", "lr must be a positive finite number or '1/width', got nan."),
    ("--model.init_args.lr=inf", "lr must be a positive finite number or '1/width', got inf."),
    ("--data.init_args.batch_size=0", "batch_size must be positive, got 0."),
])
def test_a_wrong_value_ends_in_its_sentence(data_env, capsys, option, sentence):
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, option)
    assert len(err) <= 3 and err[-1] == sentence, err  # without "Expected a <class 'NoneType'>" after it


def test_mlp_depth_zero_and_yaml_nan_say_the_same(data_env, capsys, tmp_path):
    err = fails(capsys, "fit", "--config", str(REPO / "configs/translated_mnist/mlp_shift.yaml"), *QUICK,
                "--model.init_args.depth=0")
    assert "depth must be a positive integer, got 0." in err[-1]
    override = tmp_path / "nan.yaml"
    override.write_text("model:\n  init_args:\n    lr: .nan\n")
    from_yaml = fails(capsys, "fit", "--config", CONFIG, "--config", str(override), *QUICK)
    from_flag = fails(capsys, "fit", "--config", CONFIG, *QUICK, "--model.init_args.lr", "NaN")
    assert from_flag[-1] == "lr must be a positive finite number or '1/width', got nan."
    assert from_yaml[-1] == f"lr must be a positive finite number or '1/width', got nan (in --config {override})."


def test_a_range_error_in_a_config_names_the_file(data_env, capsys, tmp_path):
    override = tmp_path / "batch.yaml"
    override.write_text("data:\n  init_args:\n    batch_size: 0\n")
    err = fails(capsys, "fit", "--config", CONFIG, "--config", str(override), *QUICK)
    assert err[-1] == f"batch_size must be positive, got 0 (in --config {override})."


def test_a_width_that_is_not_an_integer(data_env, capsys, tmp_path):
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, "--model.init_args.width=1.5")
    assert err[-1] == "model.init_args.width must be an integer, got 1.5; give a whole number instead."
    override = tmp_path / "width.yaml"
    override.write_text("model:\n  init_args:\n    width: 1.5\n")
    err = fails(capsys, "fit", "--config", CONFIG, "--config", str(override), *QUICK)
    assert err[-1] == (f"model.init_args.width must be an integer, got 1.5 (in --config {override}); "
                       f"give a whole number instead.")
    # each file is checked as it is read: an option after it does not save it
    err = fails(capsys, "fit", "--config", CONFIG, "--config", str(override), *QUICK, "--model.width=3")
    assert f"got 1.5 (in --config {override})" in err[-1]
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, "--model.init_args.lr=abc")
    assert err[-1] == "model.init_args.lr must be a number or '1/width', got 'abc'; give a number or '1/width' instead."
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, "--trainer.max_epochs=1.5")
    assert err[-1] == "trainer.max_epochs must be an integer, got 1.5; give a whole number instead."


@pytest.mark.parametrize("yaml_text, args, sentence", [
    ("model:\n  class_path: wide_lightning.ConvClasifier\n", [],
     "unknown class path 'wide_lightning.ConvClasifier' for model (in --config {file}); "
     "did you mean 'wide_lightning.ConvClassifier'?"),
    (None, ["--model", "wide_lightning.ConvClasifier"],
     "unknown class path 'wide_lightning.ConvClasifier' for model; did you mean 'wide_lightning.ConvClassifier'?"),
    (None, ["--model.class_path=wide_lightning.tasks.ConvClasifier"],
     "unknown class path 'wide_lightning.tasks.ConvClasifier' for model; "
     "did you mean 'wide_lightning.tasks.ConvClassifier'?"),
    (None, ["--model=wide_lightnin.ConvClassifier"],
     "unknown class path 'wide_lightnin.ConvClassifier' for model; did you mean 'wide_lightning.ConvClassifier'?"),
    (None, ["--data", "MNISTDataModul"],
     "unknown class path 'MNISTDataModul' for data; "
     "did you mean 'MNISTDataModule', 'KMNISTDataModule' or 'EMNISTDataModule'?"),
    ("data:\n  class_path: MNISTDataModul\n", [],
     "unknown class path 'MNISTDataModul' for data (in --config {file}); "
     "did you mean 'MNISTDataModule', 'KMNISTDataModule' or 'EMNISTDataModule'?"),
])
def test_a_misspelt_class_path_gets_the_closest_ones(data_env, capsys, tmp_path, yaml_text, args, sentence):
    override = tmp_path / "class.yaml"
    files = []
    if yaml_text is not None:
        override.write_text(yaml_text)
        files = ["--config", str(override)]
    err = fails(capsys, "fit", "--config", CONFIG, *files, *QUICK, *args)
    assert err[-1] == sentence.format(file=override), err
    assert "NoneType" not in "\n".join(err)


def test_a_class_of_the_wrong_kind_or_far_from_any(data_env, capsys):
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, "--model", "wide_lightning.MNISTDataModule")
    assert err[-1].startswith("'wide_lightning.MNISTDataModule' is not a ClassificationTask, which model needs; "
                              "the known ones are wide_lightning.ConvClassifier, ")
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, "--model", "Conv")
    assert err[-1].startswith("unknown class path 'Conv' for model; the known ones are ConvClassifier, LinearProbe, ")


def test_the_file_a_value_came_from(tmp_path):
    first, second = tmp_path / "a.yaml", tmp_path / "b.yaml"
    first.write_text("model:\n  class_path: X\n  init_args:\n    width: 1.5\n")
    second.write_text("fit:\n  model:\n    init_args:\n      width: 3\n")
    assert config_file_of(["fit", "--config", str(first)], "model.init_args.width", "1.5") == str(first)
    assert config_file_of(["fit", "-c", str(first)], "model.width", "1.5") == str(first)
    assert config_file_of(["fit", "--config", str(first)], "model.class_path", "X") == str(first)
    # the first to give the value refused (jsonargparse checks each file as it reads it); not a file with another
    assert config_file_of(["fit", "--config", str(first), "--model.width=1.5"], "model.width", "1.5") == str(first)
    assert config_file_of(["fit", "--model.width=1.5", "--config", str(first)], "model.init_args.width", "1.5") is None
    assert config_file_of(["--config", str(second), "fit", "--config", str(first)], "model.width", "1.5") == str(first)
    assert config_file_of(["fit", "--config", str(second), "--model.width", "1.5"], "model.width", "1.5") is None
    assert config_file_of(["fit", "--config", str(second)], "model.width", "3") == str(second)  # under `fit:`


def test_a_union_message_without_its_null_alternative():
    message = (
        'Parser key "model":\n'
        "  Does not validate against any of the Union subtypes\n"
        "  Subtypes: [<class 'wide_lightning.tasks.base.ClassificationTask'>, <class 'NoneType'>]\n"
        "  Errors:\n"
        "    - Problem with given class_path 'wide_lightning.ConvClassifier':\n"
        '        Parser key "width":\n'
        "          Expected a <class 'int'>. Got value: 1.5\n"
        "    - Expected a <class 'NoneType'>\n"
        "  Given value type: <class 'dict'>\n"
        "  Given value: {'init_args': {'width': 1.5}}")
    assert explain(ValueError(message)) == \
        "model.init_args.width must be an integer, got 1.5; give a whole number instead."
    range_error = ("Does not validate against any of the Union subtypes\n"
                   "Subtypes: [<class 'wide_lightning.tasks.base.ClassificationTask'>, <class 'NoneType'>]\n"
                   "Errors:\n  - lr must be positive, got -0.1.\n  - Expected a <class 'NoneType'>\n"
                   "Given value type: <class 'jsonargparse._namespace.Namespace'>\nGiven value: Namespace(lr=-0.1)")
    assert explain(ValueError(range_error)) == "lr must be positive, got -0.1."


@pytest.mark.parametrize("option", ["--model.init_args.widht=5", "--model.widht=5"])
def test_a_misspelt_option_gets_the_closest_name(data_env, capsys, option):
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, option)
    assert err[-1] == "unknown option 'widht' for ConvClassifier; did you mean 'width'?"


def test_a_misspelt_key_in_yaml_gets_the_closest_name(data_env, capsys, tmp_path):
    override = tmp_path / "typo.yaml"
    override.write_text("model:\n  init_args:\n    widht: 5\n")
    err = fails(capsys, "fit", "--config", CONFIG, "--config", str(override), *QUICK)
    assert err[-1] == "unknown option 'widht' for ConvClassifier; did you mean 'width'?"


def test_prefixes_are_not_accepted(data_env, capsys):
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, "--trainer.max_epoch=2")
    assert err[-1].startswith("unknown option 'max_epoch' for Trainer; did you mean 'max_epochs'?")
    assert "prefixes are not accepted" in err[-1]


def test_a_data_dir_that_is_a_file_or_empty(data_env, capsys, tmp_path):
    a_file = tmp_path / "mnist.gz"
    a_file.write_bytes(b"x")
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, f"--data.data_dir={a_file}")
    assert "is a file, not a folder" in err[-1] and len(err) <= 3
    empty = tmp_path / "empty"
    empty.mkdir()
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, f"--data.data_dir={empty}")
    for name in ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"):
        assert name in err[-1]
    assert "--data.data_dir=DIR" in err[-1]  # a flag `wide-lightning fit` accepts


def test_the_traceback_on_request(data_env, monkeypatch):
    monkeypatch.setenv(DEBUG_ENV, "1")
    with pytest.raises(ValueError, match="width must be a positive integer"):
        main(["fit", "--config", CONFIG, *QUICK, "--model.init_args.width=0"])
    monkeypatch.delenv(DEBUG_ENV)
    with pytest.raises(ValueError, match="width must be a positive integer"):
        main(["fit", "--config", CONFIG, *QUICK, "--model.init_args.width=0", "--debug"])


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("devices", [[], ["--trainer.devices=1"]])
def test_gpu_without_cuda_is_refused_with_or_without_devices(data_env, capsys, devices):
    err = fails(capsys, "fit", "--config", CONFIG, *QUICK, "--trainer.accelerator=gpu", *devices)
    assert err[-1] == "--trainer.accelerator=gpu but this machine has no CUDA device; use --trainer.accelerator=cpu (or auto)."


def test_help_says_what_the_tool_is(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "Wider Networks Learn Better Features" in out
    assert "configs/mnist/conv_n2048.yaml" in out and "wide-lightning-atlas" in out and "wide-lightning-report" in out


def test_print_config_leaves_out_the_unset_arguments(data_env, capsys):
    with pytest.raises(SystemExit):
        main(["fit", "--config", CONFIG, "--print_config"])
    out = capsys.readouterr().out
    printed = yaml.safe_load(out)
    assert printed["model"]["init_args"]["width"] == 20 and printed["trainer"]["max_epochs"] == 10
    assert "null" not in out


def test_non_finite_spellings_and_explanations():
    assert finite_spellings(["--lr=nan", "--lr", "-Inf", "--name=inf_run", "nan"]) == [
        "--lr=.nan", "--lr", "-.inf", "--name=inf_run", "nan"]
    assert unknown_option("max_epoch", "lightning.pytorch.Trainer") == \
        "unknown option 'max_epoch' for Trainer; did you mean 'max_epochs'?"
    assert explain(ValueError("plain sentence.")) == "plain sentence."


# -- the atlas command ---------------------------------------------------------------------------


@pytest.mark.parametrize("option", ["--grid_size=0", "--steps=0", "--whiten_ridge=-1", "--max_points=2"])
def test_atlas_checks_every_setting_before_any_work(tmp_path, capsys, monkeypatch, option):
    def no_work(*args, **kwargs):
        raise AssertionError("the checkpoint was read before the settings were checked")

    monkeypatch.setattr(atlas_command, "load_network", no_work)
    err = fails(capsys, "--checkpoint", str(tmp_path / "missing.ckpt"), option, command=atlas_command.main)
    assert err[-1].startswith(f"--{option[2:].split('=')[0]} must be")


def test_atlas_says_what_it_needs_of_a_probe_checkpoint(tmp_path, capsys):
    from lightning.pytorch import Trainer

    from wide_lightning.tasks import ConvClassifier, LinearProbe

    trainer = Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_progress_bar=False)
    backbone = tmp_path / "backbone.ckpt"
    trainer.strategy.connect(ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=8, conv_channels=2))
    trainer.save_checkpoint(backbone)
    probe = tmp_path / "probe.ckpt"
    trainer.strategy.connect(LinearProbe(str(backbone), num_classes=10, input_shape=(1, 28, 28)))
    trainer.save_checkpoint(probe)
    err = fails(capsys, "--checkpoint", str(probe), command=atlas_command.main)
    assert "an atlas needs a base-training checkpoint" in err[-1] and str(backbone) in err[-1]


def test_atlas_reads_the_data_folder_the_run_used(data_env, tmp_path, monkeypatch, capsys):
    """After `WIDE_LIGHTNING_DATA=... wide-lightning fit`, the atlas finds the data without the variable."""
    main(["fit", "--config", CONFIG, *QUICK, "--model.init_args.conv_channels=2", f"--trainer.default_root_dir={tmp_path}/run"])
    last = tmp_path / "run/checkpoints/last.ckpt"
    monkeypatch.delenv(DATA_ENV)
    monkeypatch.chdir(tmp_path)  # no ./data here
    datamodule = read_checkpoint(last).build_datamodule()
    assert datamodule.data_dir.resolve() == data_env.resolve()
    assert f"atlas: MNIST from {data_env.resolve()}" in capsys.readouterr().out
    assert len(datamodule.dataset("train")) > 0


def test_the_data_variable_wins_over_the_folder_the_run_used(data_env, tmp_path, monkeypatch, capsys):
    """The missing-file errors advise WIDE_LIGHTNING_DATA: set, it is the folder read, even if the recorded one exists."""
    main(["fit", "--config", CONFIG, *QUICK, "--model.init_args.conv_channels=2", f"--trainer.default_root_dir={tmp_path}/run"])
    copy = tmp_path / "copy"
    copy.mkdir()
    monkeypatch.setenv(DATA_ENV, str(copy))
    datamodule = read_checkpoint(tmp_path / "run/checkpoints/last.ckpt").build_datamodule()
    assert datamodule.data_dir.resolve() == copy.resolve() and data_env.resolve() != copy.resolve()
    assert f"atlas: MNIST from {copy.resolve()}" in capsys.readouterr().out


def test_an_inf_condition_number_is_explained():
    lines = atlas_command.metric_lines({"atlas/whitening_log10_cond": float("inf"), "atlas/width": 20.0})
    assert "dead units" in lines[0] and lines[1] == "atlas/width = 20"


# -- the end of a run --------------------------------------------------------------------------------


def test_the_closing_block_names_the_atlas_and_the_noise_is_gone(data_env, tmp_path, caplog, capsys):
    caplog.set_level(logging.INFO)
    main(["fit", "--config", CONFIG, "--trainer.max_epochs=1", "--trainer.limit_train_batches=2",
          "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2", "--trainer.enable_progress_bar=false",
          "--model.init_args.conv_channels=2", f"--trainer.default_root_dir={tmp_path}/run",
          "--trainer.callbacks.init_args.grid_size=3", "--trainer.callbacks.init_args.min_density=2",
          "--trainer.callbacks.init_args.steps=2", "--trainer.callbacks.init_args.neurons=0",
          "--trainer.callbacks.init_args.reducer=pca", "--trainer.callbacks.init_args.max_points=300"])
    printed = caplog.text + "\n".join(capsys.readouterr())
    assert f"atlas: {run_folders(tmp_path / 'run')[0]}/atlas" in printed
    # the loggers that used to print the noise are captured: their other lines are here
    assert "GPU available" in printed and "Total params" in printed
    for noise in ("litlogger", "Total Flops", "LeafSpec", "anonymous setting"):
        assert noise not in printed, noise

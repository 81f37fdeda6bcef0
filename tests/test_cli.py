"""The command line as users type it: every shipped config, resume, W&B offline runs, bad flags."""

import csv
import json
import subprocess
import sys
from argparse import ArgumentError
from pathlib import Path

import pytest
import torch
import yaml
from lightning.pytorch import Trainer

from tests.conftest import REPO
from wide_lightning.cli import build_cli
from wide_lightning.data import CIFAR100CoarseDataModule, TranslatedMNISTDataModule
from wide_lightning.data.base import DATA_ENV
from wide_lightning.checkpoints import CHECKPOINT_KEY
from wide_lightning.tasks import ConvClassifier, MLPClassifier

# configs/atlas/ holds configs of wide-lightning-atlas, not of fit (tests/test_activations.py runs them);
# a config without a data section is an overlay given after a base (configs/lazy_limit/{standard,ntk,mup}.yaml)
CONFIGS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml")
                 if p.relative_to(REPO / "configs").parts[0] != "atlas" and "data" in yaml.safe_load(p.read_text()))
OVERLAYS = sorted(p.relative_to(REPO).as_posix() for p in (REPO / "configs").rglob("*.yaml")
                  if p.relative_to(REPO / "configs").parts[0] != "atlas" and "data" not in yaml.safe_load(p.read_text()))
PAPER_CONFIGS = [c for c in CONFIGS if not c.startswith("configs/lazy_limit/")]
# integers >= 2: jsonargparse reads Lightning's Union[int, float] "1" as 1.0, i.e. every batch
QUICK = ["--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false"]


@pytest.fixture()
def data_env(fake_data_dir, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    return fake_data_dir


def save_backbone(model, path: Path) -> str:
    trainer = Trainer(logger=False, enable_checkpointing=False, max_epochs=0, enable_progress_bar=False)
    trainer.strategy.connect(model)
    trainer.save_checkpoint(path)
    return str(path)


@pytest.fixture(scope="module")
def backbones(tmp_path_factory):
    """Untrained base-training checkpoints for the probe configs (one per dataset family)."""
    root = tmp_path_factory.mktemp("backbones")
    return {
        "translated_mnist": save_backbone(MLPClassifier(28, (1, 28, 28), depth=2, width=32), root / "mlp.ckpt"),
        "cifar100_coarse": save_backbone(ConvClassifier(3, (3, 32, 32), width=32, conv_channels=4), root / "conv.ckpt"),
        "mnist": save_backbone(ConvClassifier(10, (1, 28, 28), width=16, conv_channels=4), root / "mnist_conv.ckpt"),
    }


def test_every_paper_run_has_a_config():
    # the paper's 16 runs, configs/image_folder/mlp.yaml, configs/mnist/probe_fashion_mnist.yaml and resnet18.yaml
    assert len(PAPER_CONFIGS) == 19, PAPER_CONFIGS
    for path in CONFIGS:
        config = yaml.safe_load((REPO / path).read_text())
        assert config["model"]["class_path"].startswith("wide_lightning.")
        assert config["data"]["class_path"].startswith("wide_lightning.")
        assert config["data"]["init_args"]["batch_size"] == 128  # Appendix B.2
        assert config["trainer"]["default_root_dir"] == "runs/" + path.removeprefix("configs/").removesuffix(".yaml")


@pytest.mark.parametrize(
    "config",
    # CIFAR-10 at n = 2048 has 2048 filters per conv layer (381M parameters): ~30 s on 2 cores.
    [pytest.param(c, marks=pytest.mark.slow) if c == "configs/cifar10/conv_n2048.yaml" else c for c in CONFIGS],
)
def test_fast_dev_run_of_every_config(config, data_env, backbones, tmp_path):
    args = ["fit", "--config", str(REPO / config), "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false"]
    if "probe" in config:
        args.append(f"--model.init_args.backbone_checkpoint={backbones[config.split('/')[1]]}")
    if "cifar10/conv_n2048" in config:
        args.append("--data.init_args.batch_size=2")  # 2048 filters per conv layer: keep the CPU step short
    if "transfer_mlp_scan" in config:
        args.append("--model.init_args.n_max=50")  # 100 networks of 1.6M parameters each: keep the CPU step short
    cli = build_cli(args)
    assert cli.trainer.state.finished
    assert "test/acc" in cli.trainer.callback_metrics  # fit ran test afterwards in the same command
    # a smoke run saves no checkpoint (Lightning 2.6 wrote a 2.9 GB last.ckpt for this CIFAR-10 net);
    # a transfer run's probe reads the weights at hand from fast_dev_run.ckpt
    assert [p.name for p in tmp_path.rglob("*.ckpt")] in ([], ["fast_dev_run.ckpt"])


@pytest.mark.parametrize("base", [c for c in CONFIGS if c.startswith("configs/lazy_limit/")])
@pytest.mark.parametrize("overlay", OVERLAYS)
def test_each_lazy_limit_overlay_over_each_base_config(overlay, base, data_env, tmp_path):
    """The parameterization and its learning rate, given after a scan's base config, as the sweep runs them; the
    runs of every parameterization share the base's folder, each in its own run folder."""
    assert overlay.startswith("configs/lazy_limit/"), "an overlay config outside configs/lazy_limit"
    chosen = yaml.safe_load((REPO / overlay).read_text())["model"]["init_args"]
    cli = build_cli(["fit", "--config", str(REPO / base), "--config", str(REPO / overlay),
                     "--model.init_args.width=128", "--trainer.fast_dev_run=true", "--trainer.enable_progress_bar=false"])
    assert cli.trainer.state.finished
    assert Path(cli.trainer.default_root_dir).resolve().parent == tmp_path / "runs" / Path(base).relative_to("configs").with_suffix("")
    assert cli.model.hparams.parameterization == chosen["parameterization"] == Path(overlay).stem
    assert cli.model.hparams.lr == chosen["lr"]


def test_fit_tests_the_best_checkpoint_and_resumes_from_last(data_env, tmp_path):
    config = str(REPO / "configs/mnist/conv_n20.yaml")
    common = ["--config", config, *QUICK, "--trainer.logger=false", "--model.init_args.conv_channels=4"]
    first = build_cli(["fit", *common, "--trainer.max_epochs=1"])
    checkpoints = Path(first.trainer.default_root_dir).resolve() / "checkpoints"
    assert checkpoints.parent.parent == tmp_path / "runs/mnist/conv_n20"  # the config's root, a folder per run
    last = checkpoints / "last.ckpt"
    assert last.is_file() and first.trainer.global_step == 2
    assert first.trainer.checkpoint_callback.best_model_path.startswith(str(checkpoints))
    resumed = build_cli(["fit", *common, "--trainer.max_epochs=2", "--ckpt_path=last"])
    assert resumed.trainer.current_epoch == 2 and resumed.trainer.global_step == 4  # continued, not restarted
    saved = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    assert saved["global_step"] == 4 and saved[CHECKPOINT_KEY]["task"].endswith("ConvClassifier")
    assert len(list(checkpoints.glob("epoch*.ckpt"))) >= 1  # nothing of the first run was lost
    summary = json.loads((checkpoints.parent / "summary.json").read_text())
    assert (summary["model"], summary["conv_channels"], summary["width"]) == ("ConvClassifier", 4, 20)


def test_last_checkpoint_is_the_latest_epoch_even_when_the_best_is_older(data_env, tmp_path):
    """Lightning >= 2.6 rewrites last.ckpt only with a new best; resuming and `backbone: last` need the latest epoch."""
    cli = build_cli(["fit", "--config", str(REPO / "configs/translated_mnist/mlp_shift.yaml"), *QUICK,
                     "--trainer.logger=false", "--trainer.max_epochs=3", "--model.init_args.n_max=16",
                     "--model.init_args.lr=1e-12", "--data.init_args.train_digits=20"])  # val/acc never improves
    checkpoints = Path(cli.trainer.default_root_dir) / "checkpoints"
    assert [p.name for p in checkpoints.glob("epoch*.ckpt")] == [Path(cli.trainer.checkpoint_callback.best_model_path).name]
    best = torch.load(cli.trainer.checkpoint_callback.best_model_path, map_location="cpu", weights_only=False)
    last = torch.load(checkpoints / "last.ckpt", map_location="cpu", weights_only=False)
    assert (best["epoch"], best["global_step"]) == (0, 2)
    assert (last["epoch"], last["global_step"]) == (2, 6)


def test_wandb_offline_runs_keep_their_resolved_config_and_do_not_clash(data_env, tmp_path):
    config = str(REPO / "configs/translated_mnist/mlp_shift.yaml")
    args = ["fit", "--config", config, *QUICK, "--trainer.max_epochs=1", "--model.init_args.depth=2",
            "--model.init_args.width=16"]
    build_cli(args)
    build_cli([*args, "--ckpt_path=last", "--trainer.max_epochs=2"])  # a second fit into the same run folder
    runs = sorted((tmp_path / "runs/translated_mnist/mlp_shift").glob("*/wandb/offline-run-*"))
    assert len(runs) == 2
    for run in runs:
        saved = yaml.safe_load((run / "files" / "lightning_config.yaml").read_text())
        assert saved["model"]["init_args"]["depth"] == 2
        assert saved["data"]["class_path"].endswith("TranslatedMNISTDataModule")


def test_config_is_kept_without_wandb_and_never_overwritten(data_env, tmp_path):
    args = ["fit", "--config", str(REPO / "configs/mnist/conv_n20.yaml"), *QUICK, "--trainer.max_epochs=1",
            "--model.init_args.conv_channels=4", "--trainer.logger=false"]
    build_cli(args)
    build_cli([*args, "--ckpt_path=last", "--trainer.max_epochs=2"])  # the run resumed: its config kept beside
    [root] = (tmp_path / "runs/mnist/conv_n20").glob("*/run.json")
    assert (root.parent / "config.yaml").is_file() and (root.parent / "config-v1.yaml").is_file()


def test_data_links_into_the_model(data_env):
    cli = build_cli(["--config", str(REPO / "configs/translated_mnist/mlp_shift.yaml"),
                     "--model.init_args.depth=20"], run=False)
    assert cli.model.hparams.num_classes == 28 and tuple(cli.model.hparams.input_shape) == (1, 28, 28)
    assert cli.model.net.width == 271
    assert isinstance(cli.datamodule, TranslatedMNISTDataModule)


def test_print_config_shows_everything(data_env, capsys):
    with pytest.raises(SystemExit) as exit_info:
        build_cli(["fit", "--config", str(REPO / "configs/cifar100_coarse/conv_n2000.yaml"), "--print_config"])
    assert exit_info.value.code in (0, None)
    printed = yaml.safe_load(capsys.readouterr().out)
    assert printed["model"]["init_args"]["lr"] == 0.0129
    assert printed["data"]["init_args"]["target"] == "coarse"
    assert printed["checkpoint"]["monitor"] == "val/acc"
    assert printed["trainer"]["logger"]["class_path"] == "wide_lightning.loggers.WandbLogger"


def test_unknown_key_is_rejected_with_its_name(data_env):
    # build_cli raises; `wide-lightning` (main) turns it into one line (tests/test_cli_errors.py)
    with pytest.raises(ArgumentError, match="widht"):
        build_cli(["fit", "--config", str(REPO / "configs/mnist/conv_n20.yaml"), "--model.init_args.widht=5"])


def test_impossible_width_is_a_clear_error(data_env):
    with pytest.raises(ValueError, match="width must be a positive integer, got 0"):
        build_cli(["fit", "--config", str(REPO / "configs/mnist/conv_n20.yaml"), "--model.init_args.width=0"])


def test_missing_data_is_a_clear_error_from_the_cli(tmp_path, monkeypatch):
    monkeypatch.setenv(DATA_ENV, str(tmp_path / "empty"))
    with pytest.raises(Exception, match="MNIST: missing train-images-idx3-ubyte"):
        build_cli(["fit", "--config", str(REPO / "configs/mnist/conv_n20.yaml"), "--data.init_args.download=false",
                   "--trainer.fast_dev_run=true"])


def test_python_dash_m_and_the_console_script_work():
    for command in ([sys.executable, "-m", "wide_lightning", "--help"], [str(Path(sys.executable).parent / "wide-lightning"), "fit", "--help"]):
        result = subprocess.run(command, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert "fit" in result.stdout


def test_cifar100_probe_pipeline_end_to_end(data_env, tmp_path):
    """Base run on the coarse label, then the probe on the fine label from its last checkpoint."""
    base = build_cli(["fit", "--config", str(REPO / "configs/cifar100_coarse/conv_n2000.yaml"), *QUICK,
                      "--trainer.max_epochs=1", "--model.init_args.width=16", "--model.init_args.conv_channels=4",
                      "--trainer.logger=false"])
    assert isinstance(base.datamodule, CIFAR100CoarseDataModule) and base.model.net.head.out_features == 3
    last = Path(base.trainer.default_root_dir).resolve() / "checkpoints/last.ckpt"
    probe = build_cli(["fit", "--config", str(REPO / "configs/cifar100_coarse/probe_fine.yaml"), *QUICK,
                       "--trainer.max_epochs=2", "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
                       "--trainer.logger.init_args.save_dir=csv"])
    assert probe.model.net.head.out_features == 15
    # the config names runs/cifar100_coarse/conv_n2000/checkpoints/last.ckpt: the one run under that root has it
    assert probe.model.hparams.backbone_checkpoint == "runs/cifar100_coarse/conv_n2000/checkpoints/last.ckpt"
    saved = torch.load(last, map_location="cpu", weights_only=True)["state_dict"]
    frozen = probe.model.net.state_dict()
    shared = [k for k in saved if k.startswith("net.features.")]
    assert shared and all(any(torch.equal(saved[k], v) for v in frozen.values()) for k in shared)  # its weights
    rows = list(csv.DictReader(open(next((tmp_path / "csv").rglob("metrics.csv")))))
    best = [float(r["test/acc_best"]) for r in rows if r.get("test/acc_best")]
    per_epoch = [float(r["test/acc"]) for r in rows if r.get("test/acc") and r.get("epoch") in ("0", "1")]
    assert len(best) == 2 and best[1] == pytest.approx(max(per_epoch[:2]))

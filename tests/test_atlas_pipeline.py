"""The atlas end to end: pipeline, end-of-training callback, and the checkpoint command."""

import json
import logging
import re
import sys

import numpy as np
import pytest
import torch
from lightning.pytorch import Trainer, seed_everything

from tests.conftest import REPO, run_folders
from wide_lightning.activations import LayerNotFoundError, layer_reader
from wide_lightning.atlas import AtlasSettings, build_atlas
from wide_lightning.atlas.collect import collect_activations
from wide_lightning.atlas.command import atlas as atlas_command
from wide_lightning.atlas.render import directions_as_icons
from wide_lightning.atlas.task import atlas_title
from wide_lightning.callbacks import ActivationAtlas
from wide_lightning.cli import build_cli
from wide_lightning.data import MNIST
from wide_lightning.data.base import DATA_ENV
from wide_lightning.checkpoints import CheckpointKindError
from wide_lightning.tasks import ConvClassifier

TINY = AtlasSettings(grid_size=4, min_density=2, steps=8, neurons=3, reducer="pca", max_points=600)


@pytest.fixture()
def mnist(fake_data_dir):
    return MNIST(data_dir=fake_data_dir, download=False, val_size=10_000, batch_size=256)


@pytest.fixture(params=[0])
def trained(mnist, tmp_path, request):
    seed_everything(request.param)
    model = ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=12, conv_channels=4, lr=0.05)
    trainer = Trainer(logger=False, enable_checkpointing=False, max_epochs=1, limit_train_batches=6,
                      limit_val_batches=1, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=mnist)
    path = tmp_path / "run" / "checkpoints" / "model.ckpt"
    trainer.save_checkpoint(path)
    return model, path


def train_images(dm):
    return dm.dataset("train").images


def collect(model, dm, layer="features"):
    read = layer_reader(model.net, layer)
    return read, collect_activations(read, dm.dataset("train"), lambda x: dm.batch_transform(x, train=False))


def test_build_atlas_produces_every_figure_and_number(trained, mnist, tmp_path):
    model, _ = trained
    read, acts = collect(model, mnist)
    result = build_atlas(acts, read, input_shape=(1, 28, 28), normalize=mnist.normalize, pad_value=0.0,
                         settings=TINY, head_weight=model.net.head.weight, images=train_images(mnist),
                         network=model.net)
    k = len(result.layout.cells)
    assert 0 < k <= 16 and result.icons.icons.shape == (k, 1, 28, 28)
    assert result.icons.icons.min() >= 0 and result.icons.icons.max() <= 1
    assert result.neuron_icons.icons.shape == (3, 1, 28, 28) and len(result.neuron_indices) == 3
    assert set(result.figures) == {"umap_histogram", "atlas", "neurons", "panel", "atlas_exemplars", "cells"}
    assert result.figures["atlas"].shape == (4 * 28, 4 * 28, 3)
    for key in ("atlas/participation_ratio", "atlas/active_units", "atlas/decode/digit/layout_knn",
                "atlas/classifier_subspace_energy", "atlas/seconds/render_icons", "atlas/icons/network_agreement",
                "atlas/icons/judge_agreement", "atlas/icons/mean_intensity"):
        assert np.isfinite(result.metrics[key]), key
    # that optimization raises each icon's objective is tested in tests/test_atlas_render.py
    assert 0.0 <= result.metrics["atlas/icon_objective_raised"] <= 1.0
    first = result.save(tmp_path / "atlas")
    second = result.save(tmp_path / "atlas")  # never overwrites an earlier atlas
    assert first != second and second.name == "atlas-v1"
    for name in ("panel.png", "atlas.png", "umap_histogram.png", "neurons.png", "atlas_exemplars.png", "cells.png",
                 "atlas.npz", "settings.txt"):
        assert (first / name).is_file(), name
    saved = np.load(first / "atlas.npz")
    assert saved["icons"].shape == (k, 1, 28, 28) and saved["counts"].min() > TINY.min_density
    # the lazy-limit report reads a saved atlas's recognizability by these names
    from wide_lightning.report.lazy_limit import ATLAS_MEASURES, atlas_metrics

    assert set(ATLAS_MEASURES.values()) <= set(saved["metric_names"].tolist())
    (tmp_path / "summary.json").write_text("{}")
    assert atlas_metrics(tmp_path / "summary.json")["atlas/hidden/judge"] == result.metrics["atlas/icons/judge_agreement"]
    assert saved["count_matrix"].shape == (4, 4) and len(saved["label_digit"]) == 600


def test_the_layout_is_also_coloured_by_each_attribute_with_few_values(trained, mnist, tmp_path):
    """Translated MNIST's shift gets its own coloured layout (Figure 2's annuli); an id-like label does not."""
    model, _ = trained
    read, acts = collect(model, mnist)
    n = len(acts)
    acts.labels["shift"] = torch.arange(n) % 28
    acts.labels["source"] = torch.arange(n)
    settings = AtlasSettings(**{**TINY.__dict__, "neurons": 0})
    result = build_atlas(acts, read, input_shape=(1, 28, 28), normalize=mnist.normalize, pad_value=0.0,
                         settings=settings, class_label="digit", images=train_images(mnist))
    assert set(result.figures) == {"umap_histogram", "umap_histogram_shift", "atlas", "panel", "atlas_exemplars", "cells"}
    assert "atlas/icons/shift/readout_agreement" in result.metrics  # not cyclic here: no label_periods given
    shift = result.figures["umap_histogram_shift"]
    assert shift.ndim == 3 and shift.shape[2] == 3 and min(shift.shape[:2]) > 200  # 28 values: a colour bar
    assert (result.save(tmp_path / "atlas") / "umap_histogram_shift.png").is_file()


def test_classifier_subspace_atlas_lives_in_the_head_row_span(trained, mnist):
    model, _ = trained
    read, acts = collect(model, mnist)
    settings = AtlasSettings(**{**TINY.__dict__, "space": "classifier_subspace", "neurons": 0})
    result = build_atlas(acts, read, input_shape=(1, 28, 28), normalize=mnist.normalize, pad_value=0.0,
                         settings=settings, head_weight=model.net.head.weight, images=train_images(mnist))
    w = model.net.head.weight.detach().numpy()
    residual = result.layout.directions - result.layout.directions @ np.linalg.pinv(w) @ w
    assert np.abs(residual).max() < 1e-4
    with pytest.raises(ValueError, match="needs the head's weights"):
        build_atlas(acts, read, input_shape=(1, 28, 28), normalize=mnist.normalize, pad_value=0.0, settings=settings,
                    images=train_images(mnist))


def test_the_panel_title_names_the_space_and_the_control():
    """A layer's hidden-state and classifier-subspace panels side by side must say which is which."""
    assert atlas_title("MNIST", "features (width 12)", "hidden") == "MNIST, features (width 12)"
    assert atlas_title("MNIST", "features (width 12)", "classifier_subspace", "untrained") == \
        "MNIST, features (width 12), classifier subspace (untrained)"


def test_the_default_icons_need_the_training_images(trained, mnist):
    model, _ = trained
    read, acts = collect(model, mnist)
    with pytest.raises(ValueError, match="maco.* needs the training images"):
        build_atlas(acts, read, input_shape=(1, 28, 28), normalize=mnist.normalize, pad_value=0.0, settings=TINY)
    lucid = AtlasSettings.from_preset("lucid_notebook", **{k: getattr(TINY, k) for k in
                                                           ("grid_size", "min_density", "steps", "reducer", "max_points")})
    assert build_atlas(acts, read, input_shape=(1, 28, 28), normalize=mnist.normalize, pad_value=0.0,
                       settings=lucid).judgement is None  # fft icons need no images; without them, no judge


def test_layer_reader_names_and_errors(trained):
    model, _ = trained
    x = torch.rand(2, 1, 28, 28)
    assert layer_reader(model.net, "features")(x).shape == (2, 12)
    assert layer_reader(model.net, "input")(x).shape == (2, 784)
    assert layer_reader(model.net, "features.3")(x).shape == (2, 4)  # a conv output, read at its centre
    with pytest.raises(LayerNotFoundError, match=r"layer 'features.99' does not exist in ConvNet; choose 'features'"):
        layer_reader(model.net, "features.99")


def test_grid_too_large_for_the_data_is_a_clear_error(trained, mnist):
    model, _ = trained
    read, acts = collect(model, mnist)
    settings = AtlasSettings(**{**TINY.__dict__, "grid_size": 60, "min_density": 300})  # 600 points
    with pytest.raises(ValueError, match="min_density"):
        build_atlas(acts, read, input_shape=(1, 28, 28), normalize=mnist.normalize, pad_value=0.0, settings=settings,
                    images=train_images(mnist))


def test_command_renders_from_a_checkpoint_with_its_recorded_data(trained, fake_data_dir, tmp_path):
    _, path = trained
    out = atlas_command(str(path), grid_size=4, min_density=2, steps=4, neurons=2, reducer="pca", max_points=500,
                        device="cpu")
    assert out == tmp_path / "run" / "atlas" and (out / "panel.png").is_file()
    control = atlas_command(str(path), control="untrained", grid_size=4, min_density=2, steps=4, neurons=0,
                            reducer="pca", max_points=500, device="cpu")
    assert control.name == "atlas_untrained"
    raw = atlas_command(str(path), control="raw_input", grid_size=4, min_density=2, steps=4, neurons=2,
                        reducer="pca", max_points=500, device="cpu", preview=True)
    saved = np.load(raw / "atlas.npz")
    assert saved["directions"].shape[1] == 784
    # Appendix A.2: the icons are the whitened cell averages themselves, scaled to [0, 1], not optimized
    expected = directions_as_icons(torch.from_numpy(saved["whitened_directions"]), (1, 28, 28)).icons.numpy()
    np.testing.assert_allclose(saved["icons"], expected, atol=1e-6)
    assert np.isnan(saved["icon_objective"]).all() and "icons: directions" in (raw / "settings.txt").read_text()


def test_directions_as_icons_against_a_hand_computed_case():
    icons = directions_as_icons(torch.tensor([[0.0, 1.0, 2.0, 3.0], [-2.0, -2.0, -2.0, -2.0], [4.0, -4.0, 0.0, 0.0]]),
                                (1, 2, 2))
    assert icons.icons.shape == (3, 1, 2, 2)
    # the 1% and 99% quantiles of [0, 1, 2, 3] are 0.03 and 2.97 (linear interpolation)
    torch.testing.assert_close(icons.icons[0].flatten(), torch.tensor([0.0, 0.97 / 2.94, 1.97 / 2.94, 1.0]))
    torch.testing.assert_close(icons.icons[1].flatten(), torch.full((4,), 0.5))  # no contrast: mid-grey
    # [-4, 0, 0, 4] sorted: quantiles -3.88 and 3.88
    torch.testing.assert_close(icons.icons[2].flatten(), torch.tensor([1.0, 0.0, 0.5, 0.5]))
    extreme = directions_as_icons(torch.cat([torch.linspace(0, 1, 999), torch.tensor([1000.0])])[None], (1, 25, 40))
    assert extreme.icons.flatten()[:999].std() > 0.25  # one huge pixel in 1,000 does not flatten the rest to grey
    with pytest.raises(ValueError, match=r"needs activations that are the 4 input pixels"):
        directions_as_icons(torch.zeros(2, 5), (1, 2, 2))


def test_command_rejects_a_wrong_checkpoint_and_wrong_data(trained, fake_data_dir, tmp_path):
    _, path = trained
    bogus = tmp_path / "bogus.ckpt"
    torch.save({"state_dict": {}}, bogus)
    with pytest.raises(CheckpointKindError, match="not a wide_lightning checkpoint"):
        atlas_command(str(bogus))
    from wide_lightning.data import CIFAR10

    with pytest.raises(ValueError, match=r"takes inputs \(1, 28, 28\) but CIFAR10 gives \(3, 32, 32\)"):
        atlas_command(str(path), data=CIFAR10(data_dir=fake_data_dir, download=False))
    with pytest.raises(LayerNotFoundError):
        atlas_command(str(path), layer="classifier", reducer="pca", max_points=300, device="cpu")


def test_command_line_parses_data_and_flags(trained, fake_data_dir, capsys):
    from wide_lightning.atlas.command import main

    _, path = trained
    main(["--checkpoint", str(path), "--data", "TranslatedMNIST", f"--data.data_dir={fake_data_dir}",
          "--data.target=digit", "--grid_size=3", "--min_density=2", "--steps=2", "--neurons=0", "--reducer=pca",
          "--max_points=400", "--device=cpu", "--whiten=false"])
    printed = capsys.readouterr()
    assert "atlas written to" in printed.out
    # not a terminal: one line per stage, no bar, and the short table instead of every number
    assert "atlas: collecting the activations of 400 train images at layer features on cpu" in printed.out
    assert "activations of width 12 (PCA)" in printed.out and "(UMAP)" not in printed.out
    assert "%|" not in printed.err and "%|" not in printed.out
    assert re.search(r"cell purity +digit \d\.\d\d, shift \d\.\d\d", printed.out)
    assert "network names" in printed.out and "--verbose true prints them" in printed.out
    assert "atlas/width =" not in printed.out


def test_command_draws_bars_on_a_terminal_and_prints_every_number_when_verbose(trained, monkeypatch, capsys):
    from wide_lightning.atlas.command import main

    _, path = trained
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.setattr(sys.stderr, "isatty", lambda: True)
    main(["--checkpoint", str(path), "--grid_size=3", "--min_density=2", "--steps=2", "--neurons=1", "--reducer=pca",
          "--max_points=400", "--device=cpu", "--batch_size=100", "--verbose=true"])
    printed = capsys.readouterr()
    for bar in ("collect: 100%|", "| 4/4 [", "layout (PCA) done [", "icons: 100%|", "neuron icons: 100%|", "judge: 100%|"):
        assert bar in printed.err, bar
    assert "atlas/width = 12" in printed.out and "printed above" in printed.out
    assert printed.out.index("atlas/width = 12") < printed.out.index("network names")


def test_callback_logs_to_wandb_and_writes_the_run_directory(fake_data_dir, monkeypatch, tmp_path, caplog, capfd):
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))
    caplog.set_level(logging.INFO)
    cli = build_cli(["fit", "--config", str(REPO / "configs/mnist/conv_n20.yaml"), "--trainer.max_epochs=1",
                     "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=2", "--trainer.limit_test_batches=2",
                     "--trainer.enable_progress_bar=false", "--model.init_args.conv_channels=4",
                     # the config's own ActivationAtlas callback, made tiny
                     "--trainer.callbacks.init_args.grid_size=4", "--trainer.callbacks.init_args.min_density=2",
                     "--trainer.callbacks.init_args.steps=4", "--trainer.callbacks.init_args.neurons=2",
                     "--trainer.callbacks.init_args.reducer=pca", "--trainer.callbacks.init_args.max_points=500"])
    atlases = [c for c in cli.trainer.callbacks if isinstance(c, ActivationAtlas)]
    assert len(atlases) == 1 and atlases[0].settings.grid_size == 4  # the config's callback, overridden
    callback = atlases[0]
    [run] = run_folders(tmp_path / "runs/mnist/conv_n20")
    assert callback.error is None and callback.directory == run / "atlas"
    assert (callback.directory / "atlas.npz").is_file()
    media = list((run / "wandb").glob("offline-run-*/files/media/images/atlas/*.png"))
    assert {p.name.split("_")[0] for p in media} >= {"atlas", "panel", "neurons", "umap"}
    # the cells as a W&B table, one row per cell, written in the offline run: the run records it, and W&B
    # stages the table with its images as the run's artifact, which `wandb sync` uploads
    assert list((run / "wandb").glob("offline-run-*/files/media/table/atlas/cells_*.json"))
    staged = [json.loads(f.read_bytes()) for f in (tmp_path / "wandb_data").rglob("*") if f.is_file()
              and f.read_bytes()[:16] == b'{"_type": "table']
    tables = [t for t in staged if "icon" in t["columns"]]  # W&B may stage more than one copy
    assert tables
    table = tables[0]
    assert {"icon", "exemplars", "count", "label", "purity", "judge_agrees", "network_agrees"} <= set(table["columns"])
    assert len(table["data"]) == len(callback.result.layout.cells)
    for column in ("icon", "exemplars"):
        cell = table["data"][0][table["columns"].index(column)]
        assert cell["_type"] == "image-file" and cell["path"].endswith(".png")
    assert "atlas/icons/network_agreement" in callback.result.metrics
    assert "test/acc" in cli.trainer.callback_metrics
    # one line per stage, no bar (enable_progress_bar=false), and the short table naming where the numbers are
    assert "atlas: collecting the activations of 2000 training images at layer features" in caplog.text
    assert "(PCA)" in caplog.text and "network names" in caplog.text and "atlas/width =" not in caplog.text
    assert "(metric_names, metric_values) and W&B; verbose=true logs them" in caplog.text
    assert f"atlas written to {callback.directory}" in caplog.text
    assert "%|" not in capfd.readouterr().err
    assert callback.result.metrics["atlas/seconds/total"] >= callback.result.metrics["atlas/seconds/collect"] > 0


def test_a_failed_atlas_keeps_the_checkpoint_and_the_test(fake_data_dir, monkeypatch, tmp_path):
    monkeypatch.setenv(DATA_ENV, str(fake_data_dir))

    def broken(*args, **kwargs):
        raise RuntimeError("renderer exploded")

    monkeypatch.setattr("wide_lightning.atlas.task.build_atlas", broken)
    with pytest.warns(UserWarning, match="ActivationAtlas failed .*renderer exploded.*checkpoints and logged metrics are kept"):
        cli = build_cli(["fit", "--config", str(REPO / "configs/mnist/conv_n20.yaml"), "--trainer.max_epochs=1",
                         "--trainer.limit_train_batches=2", "--trainer.limit_val_batches=2",
                         "--trainer.limit_test_batches=2", "--trainer.enable_progress_bar=false",
                         "--trainer.logger=false", "--model.init_args.conv_channels=4"])
    [root] = run_folders(tmp_path / "runs/mnist/conv_n20")
    assert (root / "checkpoints" / "last.ckpt").is_file()
    assert "renderer exploded" in (root / "atlas" / "atlas_error.txt").read_text()
    assert "test/acc" in cli.trainer.callback_metrics


def test_an_unknown_atlas_space_is_refused_when_the_settings_are_made():
    from wide_lightning.atlas.settings import AtlasSettings

    with pytest.raises(ValueError, match="space must be 'hidden' or 'classifier_subspace', got 'activations'"):
        AtlasSettings(space="activations")

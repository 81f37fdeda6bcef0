"""The activation reader (any network, any layer by module path, one position per input) and atlases of it."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch import LightningModule, Trainer, seed_everything
from torch import nn

from wide_lightning.activations import (
    LayerActivations,
    LayerNotFoundError,
    class_scores,
    example_positions,
    layer_reader,
    penultimate_head_weight,
)
from wide_lightning.atlas.collect import collect_activations
from wide_lightning.atlas.command import atlas as atlas_command
from wide_lightning.callbacks import ActivationAtlas
from wide_lightning.data import CIFAR10, MNIST

TINY = dict(grid_size=3, min_density=2, steps=4, neurons=2, reducer="pca", max_points=300)


class TinyConvModule(LightningModule):
    """Someone else's LightningModule: no ``net``, no ``features``, no ``head``."""

    def __init__(self, channels: int = 4, num_classes: int = 10) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.encoder = nn.Sequential(nn.Conv2d(1, channels, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                     nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(channels, num_classes))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.encoder(x))

    def training_step(self, batch, batch_idx):
        x, y = batch
        return F.cross_entropy(self(x), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.05)


def test_positions_are_a_seeded_hash_of_the_example_index():
    indices = torch.arange(5000)
    first = example_positions(indices, 7, 9, seed=3)
    assert torch.equal(first, example_positions(indices, 7, 9, seed=3))  # reproducible
    assert torch.equal(first[1234:1240], example_positions(indices[1234:1240], 7, 9, seed=3))  # batch-independent
    assert (first != example_positions(indices, 7, 9, seed=4)).float().mean() > 0.5  # the seed matters
    rows, cols = first // 9, first % 9
    assert rows.min() == 1 and rows.max() == 5 and cols.min() == 1 and cols.max() == 7  # edges avoided, inside covered
    counts = torch.bincount(first, minlength=63).float()
    inside = counts[counts > 0]
    assert len(inside) == 5 * 7 and inside.max() / inside.min() < 1.6  # about uniform over the 35 inside positions
    assert set(example_positions(indices, 2, 1).tolist()) == {0, 1}  # a map without an inside: every position


def test_a_conv_layer_gives_one_vector_per_input_by_position():
    torch.manual_seed(0)
    model = TinyConvModule()
    x = torch.randn(6, 1, 8, 8)
    maps = model.encoder(x)  # [6, 4, 4, 4]
    indices = torch.tensor([3, 10, 11, 500, 7, 2])
    random = LayerActivations(model, "encoder", "random", seed=1)
    picked = example_positions(indices, 4, 4, seed=1)
    expected = maps.flatten(2)[torch.arange(6), :, picked]
    assert torch.allclose(random(x, indices=indices), expected)
    assert torch.allclose(random(x), maps[:, :, 2, 2])  # rendering reads the centre, as lucid
    assert torch.allclose(LayerActivations(model, "encoder", "centre")(x, indices=indices), maps[:, :, 2, 2])
    assert torch.allclose(LayerActivations(model, "encoder", "mean")(x, indices=indices), maps.mean((2, 3)))
    assert LayerActivations(model, "classifier.2", "random")(x).shape == (6, 10)  # a vector layer as it is


def test_collected_positions_do_not_depend_on_the_batch_size(fake_data_dir):
    dm = MNIST(data_dir=fake_data_dir, download=False, val_size=10_000)
    dm.setup("fit")
    dataset = dm.dataset("train").subset(torch.arange(40))
    read = layer_reader(TinyConvModule(), "encoder.4", "random", seed=5)
    transform = lambda x: dm.batch_transform(x, train=False)  # noqa: E731
    whole = collect_activations(read, dataset, transform, batch_size=40)
    pieces = collect_activations(read, dataset, transform, batch_size=7)
    assert whole.activations.shape == (40, 4) and torch.allclose(whole.activations, pieces.activations)
    centre = collect_activations(layer_reader(read.model, "encoder.4", "centre"), dataset, transform)
    assert not torch.allclose(whole.activations, centre.activations)  # the positions really vary


def test_layer_names_errors_and_our_shortcuts(fake_data_dir):
    model = TinyConvModule()
    with pytest.raises(LayerNotFoundError, match=r"layer 'encoder.9' does not exist in TinyConvModule; choose one of "
                                                 r"\['classifier', 'classifier.0', .*'encoder.4'\]"):
        layer_reader(model, "encoder.9")
    with pytest.raises(LayerNotFoundError, match="has no penultimate 'features'"):
        layer_reader(model, "features")
    with pytest.raises(ValueError, match="position must be one of"):
        layer_reader(model, "encoder", position="corner")
    unused = TinyConvModule()
    unused.spare = nn.Linear(2, 2)
    with pytest.raises(RuntimeError, match="'spare' was not called"):
        layer_reader(unused, "spare")(torch.randn(1, 1, 8, 8))
    assert penultimate_head_weight(model, "features") is None
    assert class_scores(model, 10, torch.randn(2, 1, 8, 8)) is model
    assert class_scores(model, 3, torch.randn(2, 1, 8, 8)) is None  # its 10 scores are not the data's 3 classes


def test_the_callback_reads_a_layer_of_a_lightning_module_without_features(fake_data_dir, tmp_path):
    seed_everything(0)
    dm = MNIST(data_dir=fake_data_dir, download=False, val_size=10_000, batch_size=64)
    atlas = ActivationAtlas(layer="encoder.1", position="random", **TINY, output_dir=str(tmp_path / "atlas"))
    trainer = Trainer(logger=False, enable_checkpointing=False, max_epochs=1, limit_train_batches=4,
                      limit_val_batches=0, enable_progress_bar=False, enable_model_summary=False, callbacks=[atlas],
                      default_root_dir=tmp_path)
    trainer.fit(TinyConvModule(), datamodule=dm)
    assert atlas.error is None, atlas.error
    result = atlas.result
    assert result.layout.directions.shape[1] == 4 and result.icons.icons.shape[1:] == (1, 28, 28)
    assert np.isfinite(result.metrics["atlas/icons/network_agreement"])  # its 10 scores are MNIST's digits
    assert (tmp_path / "atlas" / "atlas.npz").is_file()
    trainer.save_checkpoint(tmp_path / "tiny.ckpt")
    # the command reads the same module from its checkpoint, by class path
    out = atlas_command(str(tmp_path / "tiny.ckpt"), model="tests.test_activations.TinyConvModule", data=dm,
                        layer="encoder.4", position="mean", out_dir=str(tmp_path / "command"), device="cpu", **TINY)
    saved = np.load(out / "atlas.npz")
    assert saved["directions"].shape[1] == 4 and "icon_network_label" in saved


def test_a_layer_name_that_does_not_exist_stops_fit_before_training(fake_data_dir, tmp_path):
    dm = MNIST(data_dir=fake_data_dir, download=False, val_size=10_000, batch_size=64)
    trainer = Trainer(logger=False, enable_checkpointing=False, max_epochs=1, enable_progress_bar=False,
                      enable_model_summary=False, callbacks=[ActivationAtlas(layer="decoder")], default_root_dir=tmp_path)
    model = TinyConvModule()
    before = [p.detach().clone() for p in model.parameters()]
    with pytest.raises(LayerNotFoundError, match="'decoder' does not exist"):
        trainer.fit(model, datamodule=dm)
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters()))  # not one step was taken


def test_an_atlas_of_a_torchvision_resnet(fake_data_dir, tmp_path):
    pytest.importorskip("torchvision")
    torch.manual_seed(0)
    dm = CIFAR10(data_dir=fake_data_dir, download=False)
    out = atlas_command(model="torchvision.models.resnet18", data=dm, layer="layer3", position="random",
                        out_dir=str(tmp_path / "resnet"), device="cpu", **{**TINY, "max_points": 120})
    saved = np.load(out / "atlas.npz")
    assert saved["directions"].shape[1] == 256  # layer3 of a ResNet-18 has 256 channels
    assert saved["icons"].shape[1:] == (3, 32, 32)
    assert "icon_network_label" not in saved  # 1,000 ImageNet scores are not CIFAR-10's classes
    assert "icon_judge_label" in saved  # the judge needs no network
    with pytest.raises(ValueError, match="names nothing importable"):
        atlas_command(model="torchvision.models.resnet_nineteen", data=dm)
    with pytest.raises(ValueError, match="name the data to lay out"):
        atlas_command(model="torchvision.models.resnet18")
    with pytest.raises(ValueError, match=r"cannot read MNIST's inputs of shape \(1, 28, 28\)"):
        atlas_command(model="torchvision.models.resnet18", layer="layer1", data=MNIST(data_dir=fake_data_dir,
                                                                                       download=False), device="cpu")


ATLAS_FLAGS = ["--grid_size=3", "--min_density=1", "--steps=2", "--neurons=0", "--reducer=pca", "--device=cpu"]


def test_the_atlas_configs_run_as_written(fake_data_dir, tmp_path, capsys):
    from tests.conftest import REPO
    from wide_lightning.atlas.command import main

    main(["--config", str(REPO / "configs/atlas/resnet18_image_folder.yaml"), f"--data.init_args.data_dir={fake_data_dir}",
          f"--out_dir={tmp_path / 'resnet'}", *ATLAS_FLAGS])
    saved = np.load(tmp_path / "resnet" / "atlas.npz")
    assert saved["directions"].shape[1] == 512 and saved["icons"].shape[1:] == (3, 64, 64)  # layer4: 512 channels
    seed_everything(0)
    dm = MNIST(data_dir=fake_data_dir, download=False, val_size=10_000, batch_size=128)
    from wide_lightning.tasks import ConvClassifier

    trainer = Trainer(logger=False, enable_checkpointing=False, max_epochs=1, limit_train_batches=2, limit_val_batches=0,
                      enable_progress_bar=False, enable_model_summary=False, default_root_dir=tmp_path)
    trainer.fit(ConvClassifier(num_classes=10, input_shape=(1, 28, 28), width=8, conv_channels=4), datamodule=dm)
    checkpoint = tmp_path / "run" / "checkpoints" / "last.ckpt"
    trainer.save_checkpoint(checkpoint)
    main(["--config", str(REPO / "configs/atlas/mnist_conv_layer.yaml"), f"--checkpoint={checkpoint}",
          f"--data_dir={fake_data_dir}", "--max_points=300", *ATLAS_FLAGS])
    saved = np.load(tmp_path / "run" / "atlas_net_features_8" / "atlas.npz")
    assert saved["directions"].shape[1] == 4  # the 4 channels of the conv layer, at one position per image
    assert "atlas written to" in capsys.readouterr().out

"""ImageFolder (data/image_folder.py): layouts, resizing, channels, statistics, clear errors, and a fit through the CLI."""

import json
import shutil

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.conftest import REPO, newest_summary
from tests.fake_data import make_image_folder
from wide_lightning.data import DatasetFileError, ImageFolder
from wide_lightning.data.base import DATA_ENV
from wide_lightning.data.statistics import STATS_FILE

CONFIG = REPO / "configs/image_folder/mlp.yaml"
RGB = {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}


def folder_pixels(root, names):
    """``uint8 [N, 3, H, W]`` of the PNGs ``root/<name>``, as stored."""
    return np.stack([np.asarray(Image.open(root / name).convert("RGB")) for name in names]).transpose(0, 3, 1, 2)


def loose_images(folder, count):
    folder.mkdir(parents=True)
    for k in range(count):
        Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(folder / f"{k}.jpg")


def test_one_folder_holds_out_a_seeded_stratified_test_split(tmp_path):
    make_image_folder(tmp_path / "pics")  # 3 classes x 8 images of 20x24 pixels
    dm = ImageFolder(data_dir=tmp_path, folder="pics", image_size=(20, 24), download=False)
    assert dm.classes == ("blue", "green", "red") and dm.num_classes == 3 and dm.input_shape == (3, 20, 24)
    dm.setup()
    train, test = dm.dataset("train"), dm.dataset("test")
    assert (len(train), len(test)) == (18, 6) and dm.dataset("val") is test  # val_size=0: validate on test
    assert torch.bincount(test.labels["label"]).tolist() == [2, 2, 2]  # 20% of each class
    assert train.images.dtype == torch.uint8 and train.images.shape == (18, 3, 20, 24)
    files = [p.relative_to(tmp_path / "pics").as_posix() for p, _ in dm.splits.train]
    assert torch.equal(train.images, torch.from_numpy(folder_pixels(tmp_path / "pics", files)))  # exact at its own size
    assert [dm.classes[k] for k in train.labels["label"].tolist()] == [f.split("/")[0] for f in files]
    same = ImageFolder(data_dir=tmp_path, folder="pics", seed=5, download=False).splits
    other = ImageFolder(data_dir=tmp_path, folder="pics", test_seed=1, download=False).splits
    assert same.test == dm.splits.test and other.test != dm.splits.test  # only test_seed draws the test split
    with_val = ImageFolder(data_dir=tmp_path, folder="pics", val_size=4, download=False)
    assert (len(with_val.dataset("train")), len(with_val.dataset("val"))) == (14, 4)


def test_train_and_test_folders_are_the_split_and_images_are_resized(tmp_path):
    make_image_folder(tmp_path / "train", per_class=4, colours=RGB)
    make_image_folder(tmp_path / "test", per_class=2, colours={"red": RGB["red"], "blue": RGB["blue"]})
    (tmp_path / "train" / "red" / "notes.txt").write_text("not an image")
    dm = ImageFolder(data_dir=tmp_path, image_size=8, download=False)  # folder=None: data_dir itself
    train, test = dm.dataset("train"), dm.dataset("test")
    assert (len(train), len(test)) == (12, 4) and train.images.shape == (12, 3, 8, 8) and not dm.splits.held_out
    assert test.labels["label"].tolist() == [0, 0, 2, 2]  # blue, red: labels of the training classes
    mean_colour = train.images.float().mean((2, 3))
    expected = torch.tensor([RGB[dm.classes[k]] for k in train.labels["label"].tolist()], dtype=torch.float)
    assert (mean_colour - expected).abs().max() < 6  # the colour survives the 20x24 -> 8x8 resize


def test_channels_are_detected_or_converted(tmp_path):
    for name, value in (("dark", 10), ("light", 240)):
        (tmp_path / name).mkdir()
        for k in range(3):
            Image.fromarray(np.full((6, 6), value + k, np.uint8), "L").save(tmp_path / name / f"{k}.png")
    detected = ImageFolder(data_dir=tmp_path, channels=None, image_size=6, test_size=0.3, download=False)
    assert detected.input_shape == (1, 6, 6) and detected.dataset("train").images.shape[1] == 1
    make_image_folder(tmp_path / "colour", per_class=3)
    assert ImageFolder(data_dir=tmp_path / "colour", channels=None, download=False).input_shape == (3, 32, 32)
    grey = ImageFolder(data_dir=tmp_path / "colour", channels=1, image_size=4, download=False)
    assert grey.dataset("test").images.shape[1:] == (1, 4, 4)


def test_statistics_and_pad_value_are_measured_on_the_training_split_and_cached(tmp_path, monkeypatch):
    make_image_folder(tmp_path / "pics")
    dm = ImageFolder(data_dir=tmp_path, folder="pics", image_size=(20, 24), download=False)
    files = [p.relative_to(tmp_path / "pics").as_posix() for p, _ in dm.splits.train]
    x = folder_pixels(tmp_path / "pics", files).astype(np.float64) / 255  # the 18 training images only
    np.testing.assert_allclose(dm.mean, x.mean((0, 2, 3)), rtol=1e-12)
    np.testing.assert_allclose(dm.std, x.std((0, 2, 3)), rtol=1e-12)
    ring = np.ones((20, 24), bool)
    ring[1:-1, 1:-1] = False
    assert dm.pad_value == round(float(x[..., ring].mean()), 2)
    [key] = json.loads((tmp_path / "pics" / STATS_FILE).read_text())
    assert key.startswith("ImageFolder train 3x20x24 ")

    def measure(*args, **kwargs):
        raise AssertionError("the cached statistics were measured again")

    monkeypatch.setattr("wide_lightning.data.statistics.pixel_statistics", measure)
    again = ImageFolder(data_dir=tmp_path, folder="pics", image_size=(20, 24), download=False)
    assert (again.mean, again.std, again.pad_value) == (dm.mean, dm.std, dm.pad_value)
    assert ImageFolder(data_dir=tmp_path, folder="pics", download=False).classes == dm.classes  # the cache file is no class


def test_white_background_pads_with_white(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for k in range(2):
            pixels = np.full((10, 10, 3), 255, np.uint8)
            pixels[4:6, 4:6] = 0  # a dark dot in the middle of white paper
            Image.fromarray(pixels).save(tmp_path / name / f"{k}.png")
    assert ImageFolder(data_dir=tmp_path, image_size=10, download=False).pad_value == 1.0


@pytest.mark.parametrize("arrange, message", [
    (lambda root: None, r"nowhere does not exist.*--data.init_args.folder=DIR"),
    (lambda root: (root / "nowhere").mkdir(), r"has no class sub-folders"),
    (lambda root: loose_images(root / "nowhere", 5),
     r"has no class sub-folders \(it holds 5 images directly; move them into one sub-folder per class\)"),
    (lambda root: ((root / "nowhere" / "empty").mkdir(parents=True), make_image_folder(root / "nowhere", per_class=2)),
     r"class folder .*nowhere/empty holds no images"),
    (lambda root: make_image_folder(root / "nowhere" / "train", per_class=2), r"has train/ but no test/"),
    (lambda root: make_image_folder(root / "nowhere", per_class=1), r"nowhere/blue has 1 image"),
])
def test_folder_errors_say_what_is_wrong(tmp_path, arrange, message):
    arrange(tmp_path)
    with pytest.raises(DatasetFileError, match=message):
        _ = ImageFolder(data_dir=tmp_path, folder="nowhere", download=False).num_classes


def test_a_test_class_the_training_folders_lack_is_refused(tmp_path):
    make_image_folder(tmp_path / "train", per_class=2, colours={"red": RGB["red"]})
    make_image_folder(tmp_path / "test", per_class=2, colours={"red": RGB["red"], "cyan": (0, 200, 200)})
    with pytest.raises(DatasetFileError, match=r"has classes \['cyan'\] that .*train lacks"):
        _ = ImageFolder(data_dir=tmp_path, download=False).num_classes


def test_an_unreadable_image_is_named(tmp_path):
    make_image_folder(tmp_path, per_class=3)
    (tmp_path / "green" / "1.png").write_bytes((tmp_path / "green" / "1.png").read_bytes()[:60])
    with pytest.raises(DatasetFileError, match=r"green/1.png cannot be read as an image"):
        ImageFolder(data_dir=tmp_path, download=False).setup()


def test_the_config_parses_and_fits_an_image_folder_through_the_cli(tmp_path, monkeypatch):
    from wide_lightning.cli import build_cli

    monkeypatch.delenv(DATA_ENV, raising=False)  # data_dir: ./data
    config = yaml.safe_load(CONFIG.read_text())
    assert config["data"]["class_path"] == "wide_lightning.ImageFolderDataModule"
    make_image_folder(tmp_path / "data" / "image_folder")  # where the config's folder is, under ./data
    shutil.copy(CONFIG, tmp_path / "mlp.yaml")
    cli = build_cli(["fit", "--config", "mlp.yaml", "--trainer.max_epochs=2", "--trainer.logger=false",
                     "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                     "--model.init_args.width=16", "--model.init_args.lr=0.1", "--data.init_args.batch_size=6",
                     "--data.init_args.image_size=8"])
    assert cli.trainer.state.finished and cli.trainer.current_epoch == 2
    assert cli.model.hparams.num_classes == 3 and tuple(cli.model.hparams.input_shape) == (3, 8, 8)
    assert "test/acc" in cli.trainer.callback_metrics
    assert newest_summary(tmp_path / "runs/image_folder/mlp")["status"] == "finished"
    assert (tmp_path / "data" / "image_folder" / STATS_FILE).is_file()

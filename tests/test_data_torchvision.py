"""torchvision's classification datasets (data/torchvision_datasets.py) on tiny fake files in the official formats."""

import gzip
import json
import pickle

import numpy as np
import pytest
import torch
import torchvision.datasets as tvd
from scipy.io import loadmat

from tests.fake_data import make_cifar10, make_cifar100, make_emnist, make_mnist, make_svhn
from wide_lightning.data import (
    CIFAR10,
    EMNIST,
    KMNIST,
    SVHN,
    DatasetFileError,
    FashionMNIST,
    TorchvisionCIFAR10,
    TorchvisionCIFAR100,
)
from wide_lightning.data.base import md5_of
from wide_lightning.data.statistics import STATS_FILE


def accept_fake_md5s(monkeypatch, root):
    """torchvision checks CIFAR's and SVHN's md5s: put the fake files' md5s in its tables for this test."""
    for cls, folder in ((tvd.CIFAR10, "cifar-10-batches-py"), (tvd.CIFAR100, "cifar-100-python")):
        if (root / folder).is_dir():
            monkeypatch.setattr(cls, "train_list", [[n, md5_of(root / folder / n)] for n, _ in cls.train_list])
            monkeypatch.setattr(cls, "test_list", [[n, md5_of(root / folder / n)] for n, _ in cls.test_list])
            monkeypatch.setattr(cls, "meta", {**cls.meta, "md5": md5_of(root / folder / cls.meta["filename"])})
    for split in ("train", "test"):
        if (root / "SVHN" / f"{split}_32x32.mat").is_file():
            url, name, _ = tvd.SVHN.split_list[split]
            monkeypatch.setitem(tvd.SVHN.split_list, split, [url, name, md5_of(root / "SVHN" / name)])


def hand_statistics(images: np.ndarray) -> tuple[list[float], list[float], float]:
    """Per-channel mean and std of ``uint8 [N, C, H, W]`` in [0, 1], and the mean border pixel."""
    x = images.astype(np.float64) / 255
    border = np.concatenate([x[..., 0, :].ravel(), x[..., -1, :].ravel(), x[..., 1:-1, 0].ravel(), x[..., 1:-1, -1].ravel()])
    return list(x.mean((0, 2, 3))), list(x.std((0, 2, 3))), float(border.mean())


@pytest.mark.parametrize("cls", [FashionMNIST, KMNIST])
def test_mnist_like_datasets_read_the_official_gz_files(cls, tmp_path):
    make_mnist(tmp_path, n_train=60, n_test=20, compress=True, folder=cls.torchvision_class)
    dm = cls(data_dir=tmp_path, download=False, val_size=10)
    dm.setup()
    train, val, test = dm.dataset("train"), dm.dataset("val"), dm.dataset("test")
    assert (len(train), len(val), len(test)) == (50, 10, 20)
    assert test.images.dtype == torch.uint8 and test.images.shape == (20, 1, 28, 28)
    raw = tmp_path / cls.torchvision_class / "raw"
    with gzip.open(raw / "t10k-images-idx3-ubyte.gz") as handle:
        official = np.frombuffer(handle.read(), np.uint8, offset=16).reshape(20, 1, 28, 28)
    with gzip.open(raw / "t10k-labels-idx1-ubyte.gz") as handle:
        labels = np.frombuffer(handle.read(), np.uint8, offset=8)
    assert torch.equal(test.images, torch.from_numpy(official.copy()))  # file order, not transposed
    assert test.labels["label"].tolist() == labels.tolist()
    assert (raw / "t10k-images-idx3-ubyte").is_file()  # unpacked beside the .gz, where torchvision reads it
    assert dm.num_classes == 10 and dm.input_shape == (1, 28, 28) and dm.pad_value == 0.0
    assert dm.mean == {"FashionMNIST": (0.2860,), "KMNIST": (0.1918,)}[cls.name]
    assert not list(tmp_path.rglob(STATS_FILE))  # published statistics: nothing measured


def test_emnist_is_upright_and_letters_are_labelled_from_zero(tmp_path):
    upright = np.zeros((2, 28, 28), np.uint8)
    upright[:, 2:6, :] = 255  # a bar across the top: the transposed file has it down the left side
    make_emnist(tmp_path, "letters", {"train": upright, "test": upright[:1]},
                {"train": np.array([1, 26], np.uint8), "test": np.array([3], np.uint8)})
    dm = EMNIST(data_dir=tmp_path, split="letters", download=False)
    assert dm.num_classes == 26 and dm.name == "EMNIST-letters"
    train = dm.dataset("train")
    assert torch.equal(train.images[:, 0], torch.from_numpy(upright))
    assert train.labels["label"].tolist() == [0, 25] and dm.dataset("test").labels["label"].tolist() == [2]
    as_stored = EMNIST(data_dir=tmp_path, split="letters", upright=False, download=False).dataset("train")
    assert torch.equal(as_stored.images[:, 0], torch.from_numpy(upright.transpose(0, 2, 1).copy()))
    assert torch.equal(as_stored.images, tvd.EMNIST(tmp_path, split="letters").data.unsqueeze(1))  # torchvision's


def test_emnist_statistics_are_measured_on_the_training_split_once_and_cached(tmp_path, monkeypatch):
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (30, 28, 28), dtype=np.uint8), "test": np.zeros((5, 28, 28), np.uint8)}
    make_emnist(tmp_path, "digits", images, {"train": np.arange(30, dtype=np.uint8) % 10,
                                             "test": np.arange(5, dtype=np.uint8)})
    dm = EMNIST(data_dir=tmp_path, split="digits", download=False)
    assert dm.num_classes == 10 and dm.input_shape == (1, 28, 28) and dm.pad_value == 0.0  # no data read yet
    mean, std, _ = hand_statistics(images["train"][:, None])
    np.testing.assert_allclose(dm.mean, mean, rtol=1e-12)  # the training split only
    np.testing.assert_allclose(dm.std, std, rtol=1e-12)
    cache = json.loads((tmp_path / "EMNIST" / STATS_FILE).read_text())
    [(key, entry)] = cache.items()
    assert key.startswith("EMNIST-digits train 1x28x28 ") and entry["images"] == 30

    def measure(*args, **kwargs):
        raise AssertionError("the cached statistics were measured again")

    monkeypatch.setattr("wide_lightning.data.statistics.pixel_statistics", measure)
    again = EMNIST(data_dir=tmp_path, split="digits", download=False)
    again.setup()
    assert again.mean == dm.mean and again.std == dm.std  # read from the cache, also during setup
    monkeypatch.undo()
    make_emnist(tmp_path, "digits", {"train": images["train"][:20], "test": images["test"]},
                {"train": np.zeros(20, np.uint8), "test": np.zeros(5, np.uint8)})
    changed = EMNIST(data_dir=tmp_path, split="digits", download=False)
    np.testing.assert_allclose(changed.mean, hand_statistics(images["train"][:20, None])[0], rtol=1e-12)
    assert len(json.loads((tmp_path / "EMNIST" / STATS_FILE).read_text())) == 2  # other files, another entry


def test_svhn_reads_the_mat_files_and_labels_digit_zero_0(tmp_path, monkeypatch):
    make_svhn(tmp_path, n_train=30, n_test=12)
    accept_fake_md5s(monkeypatch, tmp_path)
    dm = SVHN(data_dir=tmp_path, download=False)
    dm.setup()
    train, test = dm.dataset("train"), dm.dataset("test")
    assert train.images.shape == (30, 3, 32, 32) and train.images.dtype == torch.uint8 and len(test) == 12
    mat = loadmat(tmp_path / "SVHN" / "train_32x32.mat")
    assert torch.equal(train.images, torch.from_numpy(mat["X"].transpose(3, 2, 0, 1).copy()))
    assert (mat["y"].ravel() == 10).any() and train.labels["label"].tolist() == (mat["y"].ravel() % 10).tolist()
    assert dm.num_classes == 10 and dm.mean == (0.4377, 0.4438, 0.4728)
    assert dm.pad_value == round(hand_statistics(train.images.numpy())[2], 2)  # the mean border pixel
    assert (tmp_path / "SVHN" / STATS_FILE).is_file()


@pytest.mark.parametrize("make, path, keep, cls", [
    (make_svhn, "SVHN/test_32x32.mat", 500, SVHN),
    (lambda root: make_cifar10(root, per_batch=2, n_test=2, str_keys=True), "cifar-10-batches-py/data_batch_3", 1000,
     TorchvisionCIFAR10),
], ids=["svhn", "cifar10"])
def test_a_corrupt_file_is_named_with_the_md5_torchvision_expects(tmp_path, monkeypatch, make, path, keep, cls):
    make(tmp_path)
    accept_fake_md5s(monkeypatch, tmp_path)
    target = tmp_path / path
    target.write_bytes(target.read_bytes()[:keep])
    with pytest.raises(DatasetFileError, match=rf"{target.name}: md5 \w+ is not the official"):
        cls(data_dir=tmp_path, download=False).setup()


def test_torchvision_cifar10_gives_the_pixels_of_our_cifar10(tmp_path, monkeypatch):
    make_cifar10(tmp_path, per_batch=4, n_test=6, str_keys=True)
    accept_fake_md5s(monkeypatch, tmp_path)
    dm = TorchvisionCIFAR10(data_dir=tmp_path, download=False)
    ours = CIFAR10(data_dir=tmp_path, download=False)
    for split, size in (("train", 20), ("test", 6)):
        assert len(dm.dataset(split)) == size
        assert torch.equal(dm.dataset(split).images, ours.dataset(split).images)
        assert torch.equal(dm.dataset(split).labels["label"], ours.dataset(split).labels["label"])
    assert dm.pad_value == 1.0 and dm.mean == CIFAR10.mean and dm.num_classes == 10


def test_torchvision_cifar100_has_the_100_fine_labels(tmp_path, monkeypatch):
    make_cifar100(tmp_path, per_fine_train=1, per_fine_test=1, str_keys=True)
    accept_fake_md5s(monkeypatch, tmp_path)
    dm = TorchvisionCIFAR100(data_dir=tmp_path, download=False)
    train = dm.dataset("train")
    with open(tmp_path / "cifar-100-python" / "train", "rb") as handle:
        entry = pickle.load(handle, encoding="latin1")
    assert dm.num_classes == 100 and train.labels["label"].tolist() == entry["fine_labels"]
    assert sorted(train.labels["label"].tolist()) == list(range(100)) and train.images.shape == (100, 3, 32, 32)


@pytest.mark.parametrize("make, missing", [
    (lambda: FashionMNIST, "FashionMNIST/raw/train-images-idx3-ubyte"),
    (lambda: KMNIST, "KMNIST/raw/t10k-labels-idx1-ubyte"),
    (lambda: EMNIST, "EMNIST/raw/emnist-balanced-train-images-idx3-ubyte"),
    (lambda: SVHN, "train_32x32.mat"),
    (lambda: TorchvisionCIFAR10, "batches.meta"),
    (lambda: TorchvisionCIFAR100, "cifar-100-python.tar.gz"),
])
def test_missing_files_offline_are_named_not_torchvisions_dataset_not_found(tmp_path, make, missing):
    with pytest.raises(DatasetFileError) as error:
        make()(data_dir=tmp_path, download=False).setup()
    assert missing in str(error.value) and "--data.data_dir=DIR" in str(error.value)
    assert "Dataset not found" not in str(error.value)


def test_a_truncated_idx_file_is_named(tmp_path):
    make_mnist(tmp_path, n_train=20, n_test=10, folder="KMNIST")
    path = tmp_path / "KMNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:3000])
    with pytest.raises(DatasetFileError, match=r"train-images-idx3-ubyte: header says shape \(20, 28, 28\)"):
        KMNIST(data_dir=tmp_path, download=False).setup()


def test_a_corrupt_gz_file_is_named(tmp_path):
    make_mnist(tmp_path, n_train=20, n_test=10, compress=True, folder="FashionMNIST")
    path = tmp_path / "FashionMNIST" / "raw" / "train-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetFileError, match="train-labels-idx1-ubyte.gz: cannot be unpacked"):
        FashionMNIST(data_dir=tmp_path, download=False).setup()
    assert not (path.parent / "train-labels-idx1-ubyte").exists()  # no partial file left


def test_labels_outside_the_classes_are_refused(tmp_path):
    images = {"train": np.zeros((3, 28, 28), np.uint8), "test": np.zeros((1, 28, 28), np.uint8)}
    make_emnist(tmp_path, "mnist", images, {"train": np.array([0, 4, 12], np.uint8), "test": np.zeros(1, np.uint8)})
    with pytest.raises(DatasetFileError, match=r"labels 0..12 are outside 0..9"):
        EMNIST(data_dir=tmp_path, split="mnist", download=False).setup()


def test_the_cli_links_the_emnist_split_s_classes_into_the_model(tmp_path):
    from wide_lightning.cli import build_cli

    images = {"train": np.zeros((4, 28, 28), np.uint8), "test": np.zeros((2, 28, 28), np.uint8)}
    make_emnist(tmp_path, "balanced", images, {"train": np.arange(4, dtype=np.uint8), "test": np.zeros(2, np.uint8)})
    cli = build_cli(["--data=wide_lightning.EMNIST", f"--data.data_dir={tmp_path}", "--data.download=false",
                     "--model=wide_lightning.MLPClassifier", "--model.width=8", "--model.lr=0.1",
                     "--trainer.logger=false"], run=False)
    assert cli.model.hparams.num_classes == 47 and tuple(cli.model.hparams.input_shape) == (1, 28, 28)


def test_download_goes_through_torchvision_and_offline_still_names_the_files(tmp_path, monkeypatch):
    attempts = []

    def offline(self):
        attempts.append(type(self).__name__)
        raise RuntimeError("Error downloading train-images-idx3-ubyte.gz: no network")

    monkeypatch.setattr(tvd.KMNIST, "download", offline)
    dm = KMNIST(data_dir=tmp_path)  # download=True, the default
    dm.prepare_data()
    assert attempts == ["KMNIST", "KMNIST"]  # one try per split, failures left for setup to explain
    with pytest.raises(DatasetFileError, match=r"missing KMNIST/raw/train-images-idx3-ubyte.*--data.data_dir=DIR"):
        dm.setup()

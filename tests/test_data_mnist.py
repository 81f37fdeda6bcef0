import gzip
import shutil

import numpy as np
import pytest
import torch

from tests.conftest import real_mnist_dir
from tests.fake_data import make_mnist, write_idx
from wide_lightning.data import MNIST, DatasetFileError, TranslatedMNIST
from wide_lightning.data.base import DATA_ENV, default_data_dir
from wide_lightning.data.mnist import read_idx, roll_all_shifts


def test_data_dir_defaults_to_environment_then_dot_data(monkeypatch, tmp_path):
    monkeypatch.delenv(DATA_ENV, raising=False)
    assert str(default_data_dir()) == "data"
    monkeypatch.setenv(DATA_ENV, str(tmp_path))
    assert MNIST().data_dir == tmp_path


def test_mnist_split_sizes_and_determinism(fake_data_dir):
    dm = MNIST(data_dir=fake_data_dir, val_size=200, download=False)
    dm.setup()
    assert (len(dm.dataset("train")), len(dm.dataset("val")), len(dm.dataset("test"))) == (11_800, 200, 400)
    assert dm.num_classes == 10 and dm.input_shape == (1, 28, 28) and dm.pad_value == 0.0
    again = MNIST(data_dir=fake_data_dir, val_size=200, download=False)
    assert torch.equal(again.dataset("val").images, dm.dataset("val").images)
    other_seed = MNIST(data_dir=fake_data_dir, val_size=200, seed=1, download=False)
    assert not torch.equal(other_seed.dataset("val").images, dm.dataset("val").images)


def test_mnist_reads_gz_files_in_place(tmp_path):
    make_mnist(tmp_path, n_train=300, n_test=50, compress=True)
    dm = MNIST(data_dir=tmp_path, val_size=100, download=False)
    assert len(dm.dataset("train")) == 200


def test_batches_are_uint8_until_the_device_hook_normalizes_them(fake_data_dir):
    dm = MNIST(data_dir=fake_data_dir, val_size=200, batch_size=32, download=False)
    dm.setup()
    x, y = next(iter(dm.train_dataloader()))
    assert x.dtype == torch.uint8 and x.shape == (32, 1, 28, 28) and y.shape == (32,)
    out, target = dm.on_after_batch_transfer((x, y), 0)
    expected = (x.float() / 255 - 0.1307) / 0.3081
    torch.testing.assert_close(out, expected)
    assert target is y


def test_translated_mnist_has_49980_training_images_each_a_rolled_source_digit(fake_data_dir):
    dm = TranslatedMNIST(data_dir=fake_data_dir, download=False)
    train = dm.dataset("train")
    assert len(train) == 1785 * 28 == 49_980
    assert dm.num_classes == 28 and train.target == "shift"
    assert len(dm.dataset("val")) == 357 * 28 and len(dm.dataset("test")) == 357 * 28 == 9_996
    source_images = MNIST(data_dir=fake_data_dir, download=False, val_size=1).load_split("train")[0]
    labels = train.labels
    for k in torch.randint(0, len(train), (200,)).tolist():
        expected = source_images[labels["source"][k]].roll(int(labels["shift"][k]), dims=-1)
        assert torch.equal(train.images[k], expected)
    # every digit appears with all 28 shifts, and train and val digits are disjoint
    assert torch.equal(torch.bincount(labels["shift"]), torch.full((28,), 1785))
    val_sources = set(dm.dataset("val").labels["source"].tolist())
    assert not val_sources & set(labels["source"].tolist())


def test_translated_mnist_target_and_unshifted_test(fake_data_dir):
    dm = TranslatedMNIST(data_dir=fake_data_dir, target="digit", shifted_test=False, download=False)
    assert dm.num_classes == 10
    test = dm.dataset("test")
    assert len(test) == 400 and int(test.labels["shift"].abs().sum()) == 0
    _, target = test[0]
    assert target == test.labels["digit"][0]


def test_roll_all_shifts_matches_torch_roll():
    images = torch.randint(0, 256, (3, 1, 5, 7), dtype=torch.uint8)
    rolled, shift, source = roll_all_shifts(images)
    assert rolled.shape == (21, 1, 5, 7)
    for k in range(21):
        assert torch.equal(rolled[k], images[source[k]].roll(int(shift[k]), dims=-1))


def test_missing_files_name_the_files_the_folder_and_the_fix(tmp_path):
    with pytest.raises(DatasetFileError) as error:
        MNIST(data_dir=tmp_path / "nowhere", download=False).setup()
    text = str(error.value)
    assert "train-images-idx3-ubyte" in text and str((tmp_path / "nowhere").resolve()) in text
    assert "unpack_mnist.sh" in text and DATA_ENV in text


def test_offline_download_failure_still_explains(tmp_path, monkeypatch):
    import torchvision.datasets.utils as tv_utils

    def offline(*args, **kwargs):
        raise OSError("network unreachable")

    monkeypatch.setattr(tv_utils, "download_url", offline)
    dm = MNIST(data_dir=tmp_path, download=True)
    dm.prepare_data()
    with pytest.raises(DatasetFileError, match="missing train-images-idx3-ubyte"):
        dm.setup()


def test_truncated_idx_file_is_a_clear_error(tmp_path):
    make_mnist(tmp_path, n_train=300, n_test=50)
    path = tmp_path / "MNIST" / "raw" / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(DatasetFileError, match="truncated or corrupt"):
        MNIST(data_dir=tmp_path, val_size=10, download=False).setup()


def test_corrupt_gzip_is_a_clear_error(tmp_path):
    make_mnist(tmp_path, n_train=300, n_test=50, compress=True)
    path = tmp_path / "MNIST" / "raw" / "t10k-labels-idx1-ubyte.gz"
    path.write_bytes(path.read_bytes()[:20])
    with pytest.raises(DatasetFileError, match="t10k-labels-idx1-ubyte.gz"):
        MNIST(data_dir=tmp_path, val_size=10, download=False).setup()


def test_bad_header_is_a_clear_error(tmp_path):
    path = tmp_path / "train-labels-idx1-ubyte"
    path.write_bytes(b"PK\x03\x04 not an idx file")
    with pytest.raises(DatasetFileError, match="not an IDX file"):
        read_idx(path)


def test_official_size_with_wrong_checksum_is_rejected(tmp_path):
    labels = np.random.default_rng(0).integers(0, 10, 60000).astype(np.uint8)
    path = write_idx(tmp_path / "train-labels-idx1-ubyte", labels)
    with pytest.raises(DatasetFileError, match="official md5"):
        read_idx(path)
    assert read_idx(path, check_md5=False).shape == (60000,)


def test_label_and_image_counts_must_agree(tmp_path):
    make_mnist(tmp_path, n_train=300, n_test=50)
    write_idx(tmp_path / "MNIST" / "raw" / "train-labels-idx1-ubyte", np.zeros(299, np.uint8))
    with pytest.raises(DatasetFileError, match="300 images but 299 labels"):
        MNIST(data_dir=tmp_path, val_size=10, download=False).setup()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"val_size": 12_000}, "val_size=12000 leaves no training data"),
        ({"target": "colour"}, "target 'colour' is not one of"),
        ({"batch_size": 0}, "batch_size must be positive"),
    ],
)
def test_bad_arguments_are_clear_errors(fake_data_dir, kwargs, message):
    with pytest.raises(ValueError, match=message):
        MNIST(data_dir=fake_data_dir, download=False, **kwargs).setup()


def test_translated_mnist_needs_enough_digits(tmp_path):
    make_mnist(tmp_path, n_train=500, n_test=400)
    with pytest.raises(ValueError, match="needs 2142 digits of the official train split but it has 500"):
        TranslatedMNIST(data_dir=tmp_path, download=False).setup()


@pytest.mark.skipif(real_mnist_dir() is None, reason="real MNIST not available")
def test_real_mnist_sizes_and_checksums(tmp_path):
    source = real_mnist_dir()
    dm = MNIST(data_dir=source, download=False)
    dm.setup()
    assert (len(dm.dataset("train")), len(dm.dataset("val")), len(dm.dataset("test"))) == (50_000, 10_000, 10_000)
    counts = torch.bincount(dm.dataset("test").labels["digit"])
    assert counts.tolist() == [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]
    translated = TranslatedMNIST(data_dir=source, download=False)
    assert len(translated.dataset("train")) == 49_980 and len(translated.dataset("test")) == 9_996
    # a damaged copy of the real file is refused even though its size is right
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    for path in (source / "MNIST" / "raw").iterdir():
        shutil.copy(path, raw / path.name)
    name = "t10k-labels-idx1-ubyte"
    original = raw / name
    if not original.exists():
        original.write_bytes(gzip.decompress((raw / f"{name}.gz").read_bytes()))
        (raw / f"{name}.gz").unlink()
    data = bytearray(original.read_bytes())
    data[-1] = (data[-1] + 1) % 10
    original.write_bytes(bytes(data))
    with pytest.raises(DatasetFileError, match="official md5"):
        MNIST(data_dir=tmp_path, download=False).setup()

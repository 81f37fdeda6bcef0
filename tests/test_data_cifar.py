import math
import pickle
import tarfile

import numpy as np
import pytest
import torch

from tests.fake_data import CIFAR100_FINE_OF_COARSE, make_cifar10, make_cifar100
from wide_lightning.data import CIFAR10, CIFAR100Coarse, DatasetFileError
from wide_lightning.data.cifar import random_affine_flip


def test_cifar10_reads_the_official_pickles(fake_data_dir):
    dm = CIFAR10(data_dir=fake_data_dir, download=False)
    dm.setup()
    train, test = dm.dataset("train"), dm.dataset("test")
    assert train.images.shape == (200, 3, 32, 32) and train.images.dtype == torch.uint8
    assert len(test) == 40 and dm.num_classes == 10 and dm.pad_value == 1.0
    assert dm.dataset("val") is test  # the paper trains on all 50,000: validation runs on test
    with open(fake_data_dir / "cifar-10-batches-py" / "data_batch_1", "rb") as handle:
        first = pickle.load(handle, encoding="bytes")
    assert torch.equal(train.images[0], torch.from_numpy(first[b"data"][0].reshape(3, 32, 32)))
    assert train.labels["label"][0] == first[b"labels"][0]


def test_cifar10_archive_is_unpacked_on_first_use(tmp_path):
    make_cifar10(tmp_path / "build")
    with tarfile.open(tmp_path / "cifar-10-python.tar.gz", "w:gz") as tar:
        tar.add(tmp_path / "build" / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    assert len(CIFAR10(data_dir=tmp_path, download=False).dataset("train")) == 200


def test_cifar100_coarse_subset_sizes_and_fine_relabelling(fake_data_dir):
    coarse = CIFAR100Coarse(data_dir=fake_data_dir, download=False)
    coarse.setup()
    train, test = coarse.dataset("train"), coarse.dataset("test")
    # 15 fine classes x 5 (train) / 2 (test) images in the fakes; the real files give 7,500 / 1,500
    assert (len(train), len(test)) == (75, 30)
    assert coarse.num_classes == 3 and train.target == "coarse"
    assert coarse.fine_classes == [4, 30, 55, 72, 95, 1, 32, 67, 73, 91, 54, 62, 70, 82, 92]
    assert torch.equal(train.labels["fine"] // 5, train.labels["coarse"])
    assert torch.bincount(train.labels["fine"]).tolist() == [5] * 15
    fine = CIFAR100Coarse(data_dir=fake_data_dir, target="fine", download=False)
    assert fine.num_classes == 15 and fine.dataset("test").target == "fine"
    # the kept images are exactly those whose official coarse label is 0, 1 or 2, in file order
    with open(fake_data_dir / "cifar-100-python" / "train", "rb") as handle:
        raw = pickle.load(handle, encoding="bytes")
    keep = np.isin(raw[b"coarse_labels"], [0, 1, 2])
    assert torch.equal(train.images, torch.from_numpy(raw[b"data"][keep].reshape(-1, 3, 32, 32)))
    official_fine = np.asarray(raw[b"fine_labels"])[keep]
    assert [coarse.fine_classes[k] for k in train.labels["fine"].tolist()] == official_fine.tolist()


def test_cifar100_real_class_count_gives_paper_sizes(tmp_path, monkeypatch):
    make_cifar100(tmp_path, per_fine_train=500, per_fine_test=100)
    # a fake file of the official size is, rightly, refused as a corrupt official file...
    with pytest.raises(DatasetFileError, match="official size but not the official md5"):
        CIFAR100Coarse(data_dir=tmp_path, download=False).setup()
    # ...so skip the checksum to count the subset the real files give
    monkeypatch.setattr("wide_lightning.data.cifar._OFFICIAL_ROWS", {})
    dm = CIFAR100Coarse(data_dir=tmp_path, download=False)
    assert (len(dm.dataset("train")), len(dm.dataset("test"))) == (7_500, 1_500)


def test_cifar100_file_with_wrong_fine_structure_is_rejected(tmp_path):
    make_cifar100(tmp_path)
    path = tmp_path / "cifar-100-python" / "train"
    with open(path, "rb") as handle:
        entry = pickle.load(handle, encoding="bytes")
    entry[b"coarse_labels"] = [0 if f == CIFAR100_FINE_OF_COARSE[1][0] else c
                               for f, c in zip(entry[b"fine_labels"], entry[b"coarse_labels"])]
    with open(path, "wb") as handle:
        pickle.dump(entry, handle)
    with pytest.raises(DatasetFileError, match="5 fine classes"):
        CIFAR100Coarse(data_dir=tmp_path, download=False).setup()


def test_missing_cifar_files_name_the_archive_and_folder(tmp_path):
    with pytest.raises(DatasetFileError) as error:
        CIFAR10(data_dir=tmp_path, download=False).setup()
    text = str(error.value)
    assert "data_batch_1" in text and "cifar-10-python.tar.gz" in text and "cifar-10-batches-py" in text
    with pytest.raises(DatasetFileError, match="cifar-100-python.tar.gz"):
        CIFAR100Coarse(data_dir=tmp_path, download=False).setup()


def test_truncated_pickle_is_a_clear_error(tmp_path):
    make_cifar10(tmp_path)
    path = tmp_path / "cifar-10-batches-py" / "data_batch_3"
    path.write_bytes(path.read_bytes()[:1000])
    with pytest.raises(DatasetFileError, match="data_batch_3: cannot be unpickled"):
        CIFAR10(data_dir=tmp_path, download=False).setup()


def test_pickle_of_the_wrong_format_is_a_clear_error(tmp_path):
    make_cifar10(tmp_path)
    with open(tmp_path / "cifar-10-batches-py" / "test_batch", "wb") as handle:
        pickle.dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, handle)
    with pytest.raises(DatasetFileError, match=r"expected uint8 \[N, 3072\]"):
        CIFAR10(data_dir=tmp_path, download=False).setup()


def test_corrupt_archive_is_a_clear_error(tmp_path):
    (tmp_path / "cifar-100-python.tar.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DatasetFileError, match="cannot be unpacked"):
        CIFAR100Coarse(data_dir=tmp_path, download=False).setup()


def test_augmentation_is_identity_without_shift_rotation_or_flip():
    x = torch.rand(6, 3, 32, 32)
    torch.testing.assert_close(random_affine_flip(x, 0.0, 0.0, flip=False), x, atol=1e-5, rtol=0)


def test_augmentation_flips_are_exact_mirror_images():
    x = torch.rand(64, 3, 32, 32)
    out = random_affine_flip(x, 0.0, 0.0, flip=True, generator=torch.Generator().manual_seed(0))
    same = (out - x).abs().flatten(1).amax(1) < 1e-5
    mirrored = (out - x.flip(-1)).abs().flatten(1).amax(1) < 1e-5
    assert bool((same ^ mirrored).all()) and 10 < int(mirrored.sum()) < 54


def test_augmentation_shifts_stay_within_ten_percent():
    # a single bright pixel at the centre moves by at most 10% of the size (3.2 px) plus interpolation
    x = torch.zeros(200, 1, 32, 32)
    x[:, :, 16, 16] = 1.0
    out = random_affine_flip(x, 0.1, 0.0, flip=False, generator=torch.Generator().manual_seed(0))
    rows = (out.sum(-1).squeeze(1) * torch.arange(32.0)).sum(-1) / out.sum((-1, -2)).squeeze(1)
    assert (rows - 16).abs().max() <= 3.2 + 1e-4
    assert (rows - 16).abs().max() > 2.0  # shifts do happen


def test_augmentation_rotates_by_at_most_pi_over_6():
    x = torch.zeros(300, 1, 33, 33)
    x[:, :, 16, 16:] = 1.0  # a horizontal ray from the centre
    out = random_affine_flip(x, 0.0, math.pi / 6, flip=False, generator=torch.Generator().manual_seed(0))
    ys, xs = torch.meshgrid(torch.arange(33.0) - 16, torch.arange(33.0) - 16, indexing="ij")
    weight = out.squeeze(1)
    angles = torch.atan2((weight * ys).sum((-1, -2)), (weight * xs).sum((-1, -2)))
    assert angles.abs().max() <= math.pi / 6 + 0.03
    assert angles.abs().max() > math.pi / 8


def test_training_batches_are_augmented_and_evaluation_batches_are_not(fake_data_dir):
    dm = CIFAR10(data_dir=fake_data_dir, download=False)
    x = dm.dataset("train").images[:16]
    torch.manual_seed(0)
    assert not torch.allclose(dm.batch_transform(x, train=True), dm.batch_transform(x, train=False))
    torch.testing.assert_close(dm.batch_transform(x, train=False), dm.normalize(x.float() / 255))
    plain = CIFAR10(data_dir=fake_data_dir, download=False, augment=False)
    torch.testing.assert_close(plain.batch_transform(x, train=True), plain.batch_transform(x, train=False))

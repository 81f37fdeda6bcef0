"""The cache of measured dataset statistics (data/statistics.py) is keyed by the training files' contents."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from tests.fake_data import make_emnist
from wide_lightning.data import EMNIST, DatasetFileError, statistics
from wide_lightning.data.statistics import STATS_FILE, fingerprint


def write_emnist(root, train_images: np.ndarray) -> None:
    make_emnist(root, "digits", {"train": train_images, "test": np.zeros((2, 28, 28), np.uint8)},
                {"train": np.arange(len(train_images), dtype=np.uint8) % 10, "test": np.zeros(2, np.uint8)})


def test_a_file_replaced_by_another_of_the_same_size_is_measured_again(tmp_path):
    dark, bright = np.full((4, 28, 28), 10, np.uint8), np.full((4, 28, 28), 200, np.uint8)
    write_emnist(tmp_path, dark)
    assert EMNIST(data_dir=tmp_path, split="digits", download=False).mean == pytest.approx((10 / 255,))
    images = tmp_path / "EMNIST/raw/emnist-digits-train-images-idx3-ubyte"
    size, times = images.stat().st_size, (images.stat().st_atime_ns, images.stat().st_mtime_ns)
    write_emnist(tmp_path, bright)
    os.utime(images, ns=times)  # as `cp -p`, `rsync -a` or `tar` leave it: same size, same modification time
    assert images.stat().st_size == size
    assert EMNIST(data_dir=tmp_path, split="digits", download=False).mean == pytest.approx((200 / 255,))
    assert len(json.loads((tmp_path / "EMNIST" / STATS_FILE).read_text())) == 2
    write_emnist(tmp_path, dark)  # the first files again: their entry is still valid
    assert EMNIST(data_dir=tmp_path, split="digits", download=False).mean == pytest.approx((10 / 255,))
    assert len(json.loads((tmp_path / "EMNIST" / STATS_FILE).read_text())) == 2


def test_an_entry_written_with_the_old_key_of_names_and_sizes_is_not_trusted(tmp_path):
    write_emnist(tmp_path, np.full((4, 28, 28), 10, np.uint8))
    dm = EMNIST(data_dir=tmp_path, split="digits", download=False)
    assert dm.mean == pytest.approx((10 / 255,))
    cache = tmp_path / "EMNIST" / STATS_FILE
    [(key, entry)] = json.loads(cache.read_text()).items()
    name, split, shape, content = key.split(" ")
    assert (name, split, shape) == ("EMNIST-digits", "train", "1x28x28") and content.startswith("sha256:")
    # what the earlier version wrote: the 16 first hex digits of a hash of names and sizes, here with wrong values
    stale = {**entry, "mean": [0.5], "std": [0.25]}
    cache.write_text(json.dumps({f"{name} {split} {shape} 0123456789abcdef": stale}))
    again = EMNIST(data_dir=tmp_path, split="digits", download=False)
    assert again.mean == pytest.approx((10 / 255,)) and again.std == (1.0,)  # measured, not the stale 0.5
    assert len(json.loads(cache.read_text())) == 2


def test_the_fingerprint_follows_contents_and_names_and_tolerates_missing_files(tmp_path):
    first, second = tmp_path / "a.bin", tmp_path / "b.bin"
    first.write_bytes(b"\x00" * 3_000_000)  # over several chunks
    second.write_bytes(b"xyz")
    before = fingerprint(tmp_path, [first, second])
    assert fingerprint(tmp_path, [second, first]) == before  # the order given does not matter
    first.write_bytes(b"\x00" * 2_999_999 + b"\x01")  # same size, last chunk differs
    assert fingerprint(tmp_path, [first, second]) != before
    assert fingerprint(tmp_path, [first, tmp_path / "absent.bin"]) != fingerprint(tmp_path, [first])


def test_an_unreadable_training_file_is_a_one_sentence_error(tmp_path, monkeypatch):
    locked = tmp_path / "locked.bin"
    locked.write_bytes(b"data")

    def refuse(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(statistics, "open", refuse, raising=False)  # a chmod would not stop root
    with pytest.raises(DatasetFileError, match=r"^\S*locked.bin: cannot be read to check its cached statistics "
                                               r"\(\[Errno 13\] Permission denied: .*\)\.$"):
        fingerprint(tmp_path, [locked])

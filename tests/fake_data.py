"""Small fake datasets written in the official file formats (IDX for MNIST, pickles for CIFAR)."""

from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

# Official CIFAR-100 fine -> coarse mapping for the first three coarse classes (from the dataset's meta).
CIFAR100_FINE_OF_COARSE = {0: [4, 30, 55, 72, 95], 1: [1, 32, 67, 73, 91], 2: [54, 62, 70, 82, 92]}


def write_idx(path: Path, array: np.ndarray, compress: bool = False) -> Path:
    array = np.ascontiguousarray(array, dtype=np.uint8)
    header = bytes([0, 0, 0x08, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.tobytes()
    if compress:
        path = path.with_name(path.name + ".gz")
        path.write_bytes(gzip.compress(data))
    else:
        path.write_bytes(data)
    return path


def fake_digits(count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Digit-like images: each label draws a distinct bar so tiny nets can learn it."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, count).astype(np.uint8)
    images = rng.integers(0, 60, (count, 28, 28)).astype(np.uint8)
    for k, label in enumerate(labels):
        images[k, 2 + 2 * label : 4 + 2 * label, 4:24] = 255
    return images, labels


def make_mnist(root: Path, n_train: int = 2200, n_test: int = 400, compress: bool = False) -> Path:
    raw = root / "MNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = fake_digits(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return root


def _pickle(path: Path, entry: dict) -> None:
    with open(path, "wb") as handle:
        pickle.dump(entry, handle, protocol=2)


def make_cifar10(root: Path, per_batch: int = 40, n_test: int = 40) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, count in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        _pickle(folder / name, {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, count).tolist(),
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"filenames": [f"{k}.png".encode() for k in range(count)],
        })
    _pickle(folder / "batches.meta", {b"label_names": [f"class{k}".encode() for k in range(10)]})
    return root


def make_cifar100(root: Path, per_fine_train: int = 5, per_fine_test: int = 2) -> Path:
    """Every one of the 100 fine classes, ``per_fine_*`` images each; the first 3 coarse classes use the real mapping."""
    folder = root / "cifar-100-python"
    folder.mkdir(parents=True, exist_ok=True)
    first_three = {f: c for c, fines in CIFAR100_FINE_OF_COARSE.items() for f in fines}
    others = [f for f in range(100) if f not in first_three]
    coarse_of = dict(first_three)
    coarse_of.update({f: 3 + k // 5 for k, f in enumerate(others)})
    rng = np.random.default_rng(0)
    for name, per in (("train", per_fine_train), ("test", per_fine_test)):
        fine = np.repeat(np.arange(100), per)
        rng.shuffle(fine)
        _pickle(folder / name, {
            b"filenames": [f"{k}.png".encode() for k in range(len(fine))],
            b"fine_labels": fine.tolist(),
            b"coarse_labels": [coarse_of[int(f)] for f in fine],
            b"data": rng.integers(0, 256, (len(fine), 3072), dtype=np.uint8),
        })
    return root

"""Small fake datasets written in the official file formats (IDX for MNIST, pickles for CIFAR, .mat for SVHN,
PNG folders for ImageFolder)."""

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


def make_mnist(root: Path, n_train: int = 2200, n_test: int = 400, compress: bool = False, folder: str = "MNIST") -> Path:
    """MNIST's four IDX files in ``root/<folder>/raw`` (torchvision's layout; also FashionMNIST's and KMNIST's)."""
    raw = root / folder / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for prefix, count, seed in (("train", n_train, 0), ("t10k", n_test, 1)):
        images, labels = fake_digits(count, seed)
        write_idx(raw / f"{prefix}-images-idx3-ubyte", images, compress)
        write_idx(raw / f"{prefix}-labels-idx1-ubyte", labels, compress)
    return root


def make_emnist(root: Path, split: str, upright: dict[str, np.ndarray], labels: dict[str, np.ndarray]) -> Path:
    """EMNIST's IDX files of ``split`` in ``root/EMNIST/raw``; the ``upright`` images are stored transposed, as the
    official files store them."""
    raw = root / "EMNIST" / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    for part in ("train", "test"):
        write_idx(raw / f"emnist-{split}-{part}-images-idx3-ubyte", upright[part].transpose(0, 2, 1))
        write_idx(raw / f"emnist-{split}-{part}-labels-idx1-ubyte", labels[part])
    return root


def make_svhn(root: Path, n_train: int = 30, n_test: int = 12) -> Path:
    """``root/SVHN/{train,test}_32x32.mat`` as the official files: ``X`` uint8 [32, 32, 3, N], ``y`` [N, 1] in 1..10."""
    from scipy.io import savemat

    folder = root / "SVHN"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for split, count in (("train", n_train), ("test", n_test)):
        labels = np.arange(count) % 10 + 1  # every digit, 10 standing for 0
        savemat(folder / f"{split}_32x32.mat", {"X": rng.integers(0, 256, (32, 32, 3, count), dtype=np.uint8),
                                               "y": labels.reshape(-1, 1).astype(np.uint8)})
    return root


def make_image_folder(root: Path, per_class: int = 8, size: tuple[int, int] = (20, 24),
                      colours: dict[str, tuple[int, int, int]] | None = None) -> Path:
    """``root/<class>/<k>.png``: one colour per class (default red, green, blue) with a little noise, ``size`` = (H, W)."""
    from PIL import Image

    colours = colours or {"red": (200, 30, 30), "green": (30, 200, 30), "blue": (30, 30, 200)}
    rng = np.random.default_rng(0)
    for name, colour in colours.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for k in range(per_class):
            noise = rng.integers(-20, 21, (*size, 3))
            pixels = np.clip(np.asarray(colour) + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels, "RGB").save(root / name / f"{k}.png")
    return root


def _pickle(path: Path, entry: dict, str_keys: bool = False) -> None:
    """``str_keys``: keys as the official (Python 2) pickles load with ``encoding="latin1"``, which torchvision reads."""
    if str_keys:
        entry = {key.decode(): value for key, value in entry.items()}
    with open(path, "wb") as handle:
        pickle.dump(entry, handle, protocol=2)


def make_cifar10(root: Path, per_batch: int = 40, n_test: int = 40, str_keys: bool = False) -> Path:
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for name, count in [*((f"data_batch_{i}", per_batch) for i in range(1, 6)), ("test_batch", n_test)]:
        _pickle(folder / name, {
            b"batch_label": name.encode(),
            b"labels": rng.integers(0, 10, count).tolist(),
            b"data": rng.integers(0, 256, (count, 3072), dtype=np.uint8),
            b"filenames": [f"{k}.png".encode() for k in range(count)],
        }, str_keys)
    _pickle(folder / "batches.meta", {b"label_names": [f"class{k}".encode() for k in range(10)]}, str_keys)
    return root


def make_cifar100(root: Path, per_fine_train: int = 5, per_fine_test: int = 2, str_keys: bool = False) -> Path:
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
        }, str_keys)
    _pickle(folder / "meta", {b"fine_label_names": [f"fine{k}".encode() for k in range(100)],
                              b"coarse_label_names": [f"coarse{k}".encode() for k in range(20)]}, str_keys)
    return root

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from tests.fake_data import make_cifar10, make_cifar100, make_image_folder, make_mnist

REPO = Path(__file__).resolve().parents[1]


def pytest_configure(config: pytest.Config) -> None:
    """In a parallel run (pytest-xdist), each worker and the processes its tests start share the cores:
    one thread each, so that the workers do not oversubscribe them."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers and int(workers) > 1:
        threads = max(1, (os.cpu_count() or 1) // int(workers))
        os.environ["OMP_NUM_THREADS"] = str(threads)
        torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def fake_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One folder with fake MNIST (12,000 train / 400 test), CIFAR-10 and CIFAR-100 in their official formats, and
    an ``image_folder`` of 3 classes x 8 PNGs (configs/image_folder), and a small fake Fashion-MNIST.

    12,000 training digits let the shipped configs run unchanged (MNIST holds out 10,000 for validation).
    """
    root = tmp_path_factory.mktemp("fake_data")
    make_mnist(root, n_train=12_000)
    make_cifar10(root)
    make_cifar100(root)
    make_image_folder(root / "image_folder")
    make_mnist(root, n_train=600, n_test=100, folder="FashionMNIST")  # configs/mnist/probe_fashion_mnist.yaml
    return root


@pytest.fixture(autouse=True)
def _isolated_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test runs in its own folder, with W&B offline and quiet, and leaves torch's thread count alone."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    monkeypatch.setenv("WANDB_DIR", str(tmp_path))
    monkeypatch.setenv("WANDB_DATA_DIR", str(tmp_path / "wandb_data"))  # where W&B stages a table's media
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def real_mnist_dir() -> Path | None:
    """Where real MNIST is, if anywhere: ``$WIDE_LIGHTNING_DATA`` (CI) or ``../shared/datasets`` beside the repo."""
    for candidate in (os.environ.get("WIDE_LIGHTNING_DATA"), REPO.parent / "shared" / "datasets"):
        if candidate and any((Path(candidate) / "MNIST" / "raw").glob("train-images-idx3-ubyte*")):
            return Path(candidate)
    return None


def run_folders(root: str | os.PathLike) -> list[Path]:
    """The run folders a ``fit`` made under its ``--trainer.default_root_dir`` (``run_folder.py``)."""
    return sorted(p.parent for p in Path(root).glob("*/run.json"))


def newest_summary(root: str | os.PathLike) -> dict:
    """The newest ``summary*.json`` of the runs under ``root``, with ``run_folder`` added (its paths are relative to it)."""
    files = sorted(Path(root).glob("*/summary*.json"), key=os.path.getmtime)
    assert files, f"no summary under {root}: {sorted(str(p) for p in Path(root).rglob('*'))}"
    return {**json.loads(files[-1].read_text()), "run_folder": str(files[-1].parent)}


def checkpoint_file(summary: dict, which: str = "last") -> Path:
    """The checkpoint a summary names (``best``/``last``), as a path from here."""
    return Path(summary["run_folder"]) / summary["checkpoints"][which]

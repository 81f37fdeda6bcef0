"""Collecting atlas activations: one vector per example, DistributedSampler shares, gather and dedupe."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from lightning.pytorch.strategies import SingleDeviceStrategy
from torch import nn
from torch.utils.data import DistributedSampler

from wide_lightning.atlas.collect import (
    ActivationSet,
    collect_activations,
    collect_from_datamodule,
    deduplicate,
    gather_activations,
    shard_indices,
)
from wide_lightning.data.base import ImageDataModule, LabelledImages


def toy_dataset(n: int = 37, seed: int = 0) -> LabelledImages:
    g = torch.Generator().manual_seed(seed)
    images = torch.randint(0, 256, (n, 1, 4, 4), dtype=torch.uint8, generator=g)
    labels = {"digit": torch.randint(0, 10, (n,), generator=g), "shift": torch.arange(n) % 4}
    return LabelledImages(images, labels, "digit")


class ToyFeatures(nn.Sequential):
    """BatchNorm and Dropout behave differently in train mode: a train-mode forward would show."""

    def __init__(self, width: int = 5, norm: bool = True) -> None:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            layers = [nn.BatchNorm1d(width), nn.Dropout(0.5)] if norm else []
            super().__init__(nn.Flatten(), nn.Linear(16, width), *layers, nn.ReLU())


def transform(x: torch.Tensor) -> torch.Tensor:
    return x.float().div(255.0).sub(0.5)


def reference(features: nn.Module, dataset: LabelledImages) -> torch.Tensor:
    model = copy.deepcopy(features).eval()
    with torch.no_grad():
        return model(transform(dataset.images))


@pytest.mark.parametrize("n, world", [(37, 1), (37, 2), (37, 3), (5, 4), (3, 8), (64, 4)])
def test_shard_indices_match_distributed_sampler(n, world):
    data = list(range(n))
    for rank in range(world):
        sampler = DistributedSampler(data, num_replicas=world, rank=rank, shuffle=False)
        assert shard_indices(n, rank, world).tolist() == list(sampler)


def test_shard_indices_errors():
    with pytest.raises(ValueError, match="rank"):
        shard_indices(10, rank=2, world_size=2)
    with pytest.raises(ValueError, match="empty"):
        shard_indices(0)


def test_collect_single_process_one_vector_per_example_and_model_untouched():
    dataset = toy_dataset()
    features = ToyFeatures()
    features.train()
    state = copy.deepcopy(features.state_dict())
    result = collect_activations(features, dataset, transform, batch_size=8)  # 37 = 4 * 8 + 5
    assert isinstance(result, ActivationSet) and len(result) == 37 and result.width == 5
    assert result.activations.dtype == torch.float32 and not result.activations.requires_grad
    torch.testing.assert_close(result.activations, reference(features, dataset))  # eval mode, no dropout
    assert result.indices.tolist() == list(range(37))
    assert set(result.labels) == {"digit", "shift"}
    for name, values in dataset.labels.items():
        assert torch.equal(result.labels[name], values)
    assert features.training  # mode restored
    for key, value in features.state_dict().items():  # BatchNorm running stats untouched
        assert torch.equal(value, state[key]), key
    features.eval()
    collect_activations(features, dataset, transform)
    assert not features.training
    acts, labels = result.numpy()
    assert acts.shape == (37, 5) and labels["shift"].tolist() == (torch.arange(37) % 4).tolist()


def test_collect_flattens_and_accepts_plain_callables():
    dataset = toy_dataset(10)
    result = collect_activations(lambda x: x * 2, dataset, transform, batch_size=3)  # identity-like "features"
    assert result.activations.shape == (10, 16)
    torch.testing.assert_close(result.activations, (transform(dataset.images) * 2).flatten(1))


def test_collect_rejects_non_finite_activations():
    dataset = toy_dataset(12)

    def broken(x):
        out = x.flatten(1).clone()
        out[::4, 0] = float("nan")
        out[1, 3] = float("inf")
        return out

    with pytest.raises(ValueError, match="4 of 12 rows contain NaN or inf"):
        collect_activations(broken, dataset, transform)
    with pytest.raises(ValueError, match="batch_size"):
        collect_activations(broken, dataset, transform, batch_size=0)


@pytest.mark.parametrize("n, world", [(37, 2), (37, 3), (5, 4), (40, 4)])
def test_sharded_collection_gathered_and_deduplicated_equals_single_process(n, world):
    dataset = toy_dataset(n)
    features = ToyFeatures()
    shares = [
        collect_activations(features, dataset, transform, batch_size=4, rank=r, world_size=world) for r in range(world)
    ]
    assert len({len(s) for s in shares}) == 1  # equal counts: a plain all_gather works
    assert sum(len(s) for s in shares) >= n
    # what all_gather + reshape produce: [world, M, ...] -> [world * M, ...]
    stacked = ActivationSet(
        torch.stack([s.activations for s in shares]).reshape(-1, features[1].out_features),
        torch.stack([s.indices for s in shares]).reshape(-1),
        {k: torch.stack([s.labels[k] for s in shares]).reshape(-1) for k in shares[0].labels},
    )
    full = deduplicate(stacked.activations, stacked.indices, stacked.labels, n)
    single = collect_activations(features, dataset, transform)
    assert full.indices.tolist() == list(range(n))
    torch.testing.assert_close(full.activations, single.activations)
    for name in single.labels:
        assert torch.equal(full.labels[name], single.labels[name])


def test_deduplicate_order_duplicates_and_errors():
    acts = torch.tensor([[2.0], [0.0], [1.0], [0.5], [2.5]])
    idx = torch.tensor([2, 0, 1, 0, 2])
    out = deduplicate(acts, idx, {"y": torch.tensor([20, 0, 10, 1, 21])}, 3)
    assert out.indices.tolist() == [0, 1, 2]
    assert out.activations.flatten().tolist() == [0.0, 1.0, 2.0]  # the first of each duplicate
    assert out.labels["y"].tolist() == [0, 10, 20]
    with pytest.raises(ValueError, match=r"2 of 5 dataset indices are missing .*\[3, 4\]"):
        deduplicate(acts, idx, None, 5)
    with pytest.raises(ValueError, match=r"outside \[0, 2\)"):
        deduplicate(acts, idx, None, 2)
    with pytest.raises(ValueError, match="5 activation rows but 4 indices"):
        deduplicate(acts, idx[:4], None, 3)
    with pytest.raises(ValueError, match="label 'y'"):
        deduplicate(acts, idx, {"y": torch.zeros(2)}, 3)


class FakeGather:
    """A stand-in for a 2-rank DDP strategy seen from rank 0: all_gather stacks every rank's copy of a field."""

    def __init__(self, shares: list[ActivationSet]) -> None:
        self.shares = shares
        self.root_device = torch.device("cpu")
        self.world_size = len(shares)

    def all_gather(self, tensor: torch.Tensor) -> torch.Tensor:
        mine = self.shares[0]
        fields = {"activations": mine.activations, "indices": mine.indices, **mine.labels}
        for name, value in fields.items():
            if value is tensor:
                return torch.stack([
                    {"activations": s.activations, "indices": s.indices, **s.labels}[name] for s in self.shares
                ])
        raise AssertionError("all_gather got a tensor that is not a field of rank 0's ActivationSet")


def test_gather_activations_with_fake_ddp_and_single_device_strategies():
    dataset = toy_dataset(23)
    features = ToyFeatures()
    shares = [collect_activations(features, dataset, transform, rank=r, world_size=2) for r in range(2)]
    for share in shares:
        share.labels["shift"] = share.labels["shift"] + 100
    full = gather_activations(shares[0], FakeGather(shares), n=23)
    single = collect_activations(features, dataset, transform)
    torch.testing.assert_close(full.activations, single.activations)
    assert full.labels["shift"].tolist() == (single.labels["shift"] + 100).tolist()
    alone = gather_activations(single, SingleDeviceStrategy(device="cpu"), n=23)  # all_gather is the identity
    torch.testing.assert_close(alone.activations, single.activations)
    assert alone.indices.tolist() == list(range(23))


class ToyData(ImageDataModule):
    """A tiny in-memory dataset (same on every rank: seeded)."""

    name = "toy"
    input_shape = (1, 4, 4)
    pad_value = 0.0
    mean = (0.5,)
    std = (0.25,)
    targets = ("digit",)

    @property
    def num_classes(self) -> int:
        return 10

    def load_split(self, split: str):
        data = toy_dataset(37 if split == "train" else 8, seed=0 if split == "train" else 1)
        return data.images, data.labels


class ToyNet(nn.Module):
    def __init__(self, norm: bool = True) -> None:
        super().__init__()
        self.features = ToyFeatures(norm=norm)
        self.head = nn.Linear(5, 10)


def test_collect_from_datamodule_uses_the_eval_transform():
    dm = ToyData(download=False, augment=True)
    net = ToyNet()
    result = collect_from_datamodule(net.features, dm, "train", batch_size=16)
    dataset = dm.dataset("train")
    expected = copy.deepcopy(net.features).eval()(dm.batch_transform(dataset.images, train=False)).detach()
    torch.testing.assert_close(result.activations, expected)
    assert result.labels["digit"].tolist() == dataset.labels["digit"].tolist()


class ToyModule(LightningModule):
    def __init__(self) -> None:
        super().__init__()
        self.net = ToyNet(norm=False)  # BatchNorm running stats would differ between ranks after a step

    def training_step(self, batch, batch_idx):
        x, y = batch
        return nn.functional.cross_entropy(self.net.head(self.net.features(x)), y)

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)  # lr 0: weights stay as built, for the reference


class SaveGathered(Callback):
    def __init__(self, path: str) -> None:
        self.path = path

    def on_train_end(self, trainer, pl_module) -> None:
        full = collect_from_datamodule(pl_module.net.features, trainer.datamodule, "train", batch_size=5, trainer=trainer)
        if trainer.is_global_zero:
            torch.save({"activations": full.activations, "indices": full.indices, "digit": full.labels["digit"],
                        "world_size": trainer.world_size, "state": pl_module.net.state_dict()}, self.path)
        trainer.strategy.barrier("atlas")


@pytest.mark.slow
def test_collect_under_ddp_spawn_two_cpu_processes(tmp_path: Path):
    """The real thing: 2 gloo processes, DistributedSampler shares, strategy.all_gather, dedupe (~20 s)."""
    out = tmp_path / "gathered.pt"
    trainer = Trainer(
        accelerator="cpu", devices=2, strategy="ddp_spawn", max_steps=1, limit_train_batches=1, limit_val_batches=0,
        logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[SaveGathered(str(out))],
    )
    trainer.fit(ToyModule(), datamodule=ToyData(download=False, batch_size=4))
    saved = torch.load(out)
    assert saved["world_size"] == 2
    dm = ToyData(download=False)
    reference_net = ToyNet(norm=False)
    reference_net.load_state_dict(saved["state"])
    expected = collect_from_datamodule(reference_net.features, dm, "train")
    assert saved["indices"].tolist() == list(range(37))
    torch.testing.assert_close(saved["activations"], expected.activations)
    assert saved["digit"].tolist() == expected.labels["digit"].tolist()


def test_pipeline_on_fake_mnist_convnet(fake_data_dir: Path, tmp_path: Path):
    """collect -> layout (PCA stand-in for UMAP) -> metrics -> figures, on the real DataModule and network."""
    import numpy as np

    from wide_lightning.atlas.figures import atlas_canvas, class_histogram
    from wide_lightning.atlas.layout import compute_layout
    from wide_lightning.atlas.metrics import atlas_metrics
    from wide_lightning.data import MNIST
    from wide_lightning.nets import ConvNet

    dm = MNIST(data_dir=fake_data_dir, download=False, val_size=200)
    net = ConvNet(dm.input_shape, dm.num_classes, width=16, conv_channels=4)
    result = collect_from_datamodule(net.features, dm, "train", batch_size=500)
    n = len(dm.dataset("train"))
    assert result.activations.shape == (n, 16) and result.indices.tolist() == list(range(n))
    assert (result.activations >= 0).all()  # post-ReLU

    def pca2(x):
        x = x - x.mean(0)
        return x @ np.linalg.svd(x, full_matrices=False)[2][:2].T

    acts, labels = result.numpy()
    layout = compute_layout(acts, grid_size=5, min_density=10, reducer=pca2)
    metrics = atlas_metrics(acts, labels=labels, layout=layout, head_weight=net.head.weight)
    assert all(np.isfinite(v) or k.endswith("log10_cond") for k, v in metrics.items())
    icons = np.full((len(layout.cells), 1, 8, 8), 0.5, np.float32)
    canvas = atlas_canvas(icons, layout.cells, layout.grid_size)
    assert canvas.shape == (40, 40, 3)
    class_histogram(layout.xy01, labels["digit"], bins=30, grid_size=5, dpi=40, path=tmp_path / "h.png")
    assert (tmp_path / "h.png").exists()

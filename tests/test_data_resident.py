"""The resident data path: batch orders, DDP slices, placement, memory fallback, global batch size."""

from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch import Trainer
from torch.utils.data import DataLoader

import wide_lightning.data.base as base
from wide_lightning.data import MNIST, DeviceBatches, DeviceMemoryError, EpochOrder, TranslatedMNIST


def test_epoch_order_is_a_permutation_fixed_by_seed_and_epoch():
    order = EpochOrder(50, seeds=7)
    first = order.orders()[0]
    assert sorted(first.tolist()) == list(range(50))
    assert torch.equal(first, EpochOrder(50, seeds=7).orders()[0])  # same seed, same epoch: same order
    order.set_epoch(1)
    assert not torch.equal(order.orders()[0], first)  # a new order every epoch
    assert not torch.equal(EpochOrder(50, seeds=8).orders()[0], first)
    assert torch.equal(EpochOrder(50, shuffle=False).orders()[0], torch.arange(50))


def test_ranks_take_disjoint_slices_padded_like_distributed_sampler():
    n, world = 11, 3  # 11 examples -> 4 per rank, one padding duplicate of the order's head
    full = EpochOrder(n, seeds=0).orders()[0]
    parts = [EpochOrder(n, seeds=0, rank=r, world_size=world).orders()[0] for r in range(world)]
    assert [len(p) for p in parts] == [4, 4, 4]
    padded = torch.cat([full, full[:1]])
    for r, part in enumerate(parts):
        assert torch.equal(part, padded[r::world])
    assert set(torch.cat(parts).tolist()) == set(range(n))
    with pytest.raises(ValueError, match="rank 3"):
        EpochOrder(n, rank=3, world_size=3)


def test_stacked_orders_are_each_seeds_own_order():
    stacked = EpochOrder(20, seeds=[3, 5]).orders()
    assert torch.equal(stacked[0], EpochOrder(20, seeds=3).orders()[0])
    assert torch.equal(stacked[1], EpochOrder(20, seeds=5).orders()[0])


def test_device_batches_shapes_counts_and_content():
    images = torch.arange(10, dtype=torch.uint8).view(10, 1, 1, 1).expand(10, 1, 2, 2).contiguous()
    target = torch.arange(10)
    batches = DeviceBatches(images, target, batch_size=4, order=EpochOrder(10, seeds=1))
    assert len(batches) == 3
    seen = list(batches)
    assert [len(y) for _, y in seen] == [4, 4, 2]  # the last batch is short, as drop_last=False
    for x, y in seen:
        assert torch.equal(x[:, 0, 0, 0].long(), y)  # images travel with their labels
    assert sorted(torch.cat([y for _, y in seen]).tolist()) == list(range(10))
    stacked = DeviceBatches(images, target, batch_size=4, order=EpochOrder(10, seeds=[1, 2]))
    x, y = next(iter(stacked))
    assert x.shape == (2, 4, 1, 2, 2) and y.shape == (2, 4)
    assert torch.equal(y[0], seen[0][1])


def test_placement_auto_is_the_loader_on_cpu_and_device_is_resident(fake_data_dir):
    trainer = Trainer(accelerator="cpu", devices=1, logger=False)
    auto = MNIST(data_dir=fake_data_dir, download=False)
    auto.trainer = trainer
    assert isinstance(auto.train_dataloader(), DataLoader)
    device = MNIST(data_dir=fake_data_dir, download=False, placement="device")
    device.trainer = trainer
    batches = device.train_dataloader()
    assert isinstance(batches, DeviceBatches) and len(batches) == -(-2000 // 128)
    x, y = next(iter(batches))
    assert x.dtype == torch.uint8 and x.shape == (128, 1, 28, 28) and y.shape == (128,)


def test_training_on_the_resident_path_through_lightning(fake_data_dir):
    from wide_lightning import MLPClassifier

    data = TranslatedMNIST(data_dir=fake_data_dir, train_digits=10, val_digits=4, test_digits=4,
                           placement="device", download=False)
    model = MLPClassifier(num_classes=28, input_shape=(1, 28, 28), depth=1, width=16)
    trainer = Trainer(accelerator="cpu", max_epochs=2, logger=False, enable_checkpointing=False,
                      enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(model, datamodule=data)
    assert trainer.global_step == 2 * -(-280 // 128)
    assert "val/acc" in trainer.callback_metrics


def test_the_dataloader_path_trains_the_network_the_resident_path_trains(fake_data_dir):
    """One process: both paths draw the (seed, epoch) order, so the weights after 3 epochs are the same."""
    from lightning.pytorch import seed_everything

    from wide_lightning import MLPClassifier

    weights = {}
    for placement in ("loader", "device"):
        seed_everything(3)
        data = TranslatedMNIST(data_dir=fake_data_dir, train_digits=10, val_digits=4, test_digits=4,
                               placement=placement, download=False, batch_size=32)
        model = MLPClassifier(num_classes=28, input_shape=(1, 28, 28), depth=1, width=16)
        trainer = Trainer(accelerator="cpu", max_epochs=3, logger=False, enable_checkpointing=False,
                          enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0)
        trainer.fit(model, datamodule=data)
        weights[placement] = {k: v.clone() for k, v in model.state_dict().items()}
    assert all(torch.equal(weights["loader"][k], weights["device"][k]) for k in weights["loader"])


def test_too_big_for_the_device_falls_back_on_auto_and_fails_on_device(fake_data_dir, monkeypatch):
    monkeypatch.setattr(base, "free_device_memory", lambda device: 1000)  # bytes: nothing fits
    fake_cuda = SimpleNamespace(world_size=1, global_rank=0,
                                strategy=SimpleNamespace(root_device=torch.device("cuda", 0)))
    auto = MNIST(data_dir=fake_data_dir, download=False)
    auto.trainer = fake_cuda
    with pytest.warns(UserWarning, match="falling back to placement='loader'"):
        assert isinstance(auto.train_dataloader(), DataLoader)
    strict = MNIST(data_dir=fake_data_dir, download=False, placement="device")
    strict.trainer = fake_cuda
    with pytest.raises(DeviceMemoryError, match=r"needs 1\.5 MiB on cuda:0 but only 0\.0 MiB are free.*placement=loader"):
        strict.train_dataloader()


def test_batch_size_is_global_and_must_split_over_the_processes(fake_data_dir):
    data = MNIST(data_dir=fake_data_dir, download=False, batch_size=128)
    data.trainer = SimpleNamespace(world_size=4)
    assert data.process_batch_size == 32
    data.trainer = SimpleNamespace(world_size=3)
    with pytest.raises(ValueError, match="batch_size=128 .* 3 processes.*multiple of 3"):
        data.setup("fit")


def test_bad_placement_is_rejected():
    with pytest.raises(ValueError, match="placement must be 'auto', 'device' or 'loader', got 'gpu'"):
        MNIST(placement="gpu")

"""Linear probes of any backbone at any layer (issue #14, item 4)."""

import warnings

import pytest
import torch

from tests.test_activations import TinyConvModule
from tests.test_tasks import tiny_trainer, train_backbone
from wide_lightning.data import CIFAR10, MNIST, TranslatedMNIST
from wide_lightning.tasks import LinearProbe


def frozen_copy(module):
    return {name: value.detach().clone() for name, value in module.state_dict().items()}


def same(before, module):
    after = module.state_dict()
    return before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)


def test_a_probe_of_a_torchvision_resnet_trains_only_its_head(fake_data_dir):
    pytest.importorskip("torchvision")
    torch.manual_seed(0)
    data = CIFAR10(data_dir=fake_data_dir, download=False, batch_size=16, test_each_epoch=True)
    probe = LinearProbe(None, num_classes=10, input_shape=(3, 32, 32), backbone_model="torchvision.models.resnet18",
                        layer="layer2", pool="mean", head_seed=0)
    assert probe.net.head.in_features == 128  # layer2 of a ResNet-18: 128 channels, averaged over positions
    before = frozen_copy(probe.net.features)
    head = probe.net.head.weight.detach().clone()
    tiny_trainer(limit_train_batches=3).fit(probe, datamodule=data)
    assert same(before, probe.net.features)  # batch-norm statistics included: frozen means frozen
    assert not torch.equal(head, probe.net.head.weight)
    assert probe.facts()["backbone_dataset"] == "unknown" and probe.facts()["layer"] == "layer2"


def test_a_probe_of_someone_elses_lightning_module_flattens_a_conv_layer(fake_data_dir, tmp_path):
    torch.manual_seed(0)
    module = TinyConvModule(channels=3)
    path = tmp_path / "tiny.ckpt"
    trainer = tiny_trainer(limit_train_batches=2, limit_val_batches=0)
    trainer.fit(module, datamodule=MNIST(data_dir=fake_data_dir, download=False, batch_size=32))
    trainer.save_checkpoint(path)
    probe = LinearProbe(str(path), num_classes=28, input_shape=(1, 28, 28),
                        backbone_model="tests.test_activations.TinyConvModule", layer="encoder.2", pool="flatten")
    assert probe.net.head.in_features == 3 * 14 * 14  # every position of the pooled 14 x 14 map
    before = frozen_copy(probe.net.features)
    tiny_trainer().fit(probe, datamodule=TranslatedMNIST(data_dir=fake_data_dir, download=False, batch_size=32,
                                                         target="shift"))
    assert same(before, probe.net.features)
    with pytest.raises(ValueError, match="pool must be 'mean', 'flatten' or 'centre'"):
        LinearProbe(str(path), num_classes=2, input_shape=(1, 28, 28),
                    backbone_model="tests.test_activations.TinyConvModule", layer="encoder", pool="random")


def test_a_probe_on_another_dataset_than_the_backbones_says_so(fake_data_dir, tmp_path):
    backbone = train_backbone(fake_data_dir, tmp_path / "translated.ckpt", depth=1)  # trained on translated MNIST
    probe = LinearProbe(str(backbone), num_classes=10, input_shape=(1, 28, 28))
    with pytest.warns(UserWarning, match=r"transfer across datasets: the backbone .* was trained on TranslatedMNIST, "
                                         r"the probe trains on MNIST"):
        tiny_trainer().fit(probe, datamodule=MNIST(data_dir=fake_data_dir, download=False, batch_size=64))
    facts = probe.facts()
    assert facts["backbone_dataset"] == "wide_lightning.data.mnist.TranslatedMNIST"
    assert facts["probe_dataset"] == "wide_lightning.data.mnist.MNIST"
    same_data = LinearProbe(str(backbone), num_classes=10, input_shape=(1, 28, 28))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        tiny_trainer().fit(same_data, datamodule=TranslatedMNIST(data_dir=fake_data_dir, download=False, batch_size=64,
                                                                 target="digit"))
    assert not [w for w in caught if "transfer across datasets" in str(w.message)]  # the paper's transfer: same data
    assert same_data.facts()["probe_dataset"].endswith("TranslatedMNIST")

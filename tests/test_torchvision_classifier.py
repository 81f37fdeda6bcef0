"""A torchvision architecture trained by `fit` and read by our instruments (issue #14: your own network)."""

import numpy as np
import pytest
import torch

from tests.test_activations import TINY
from tests.test_probe_any_backbone import frozen_copy, same
from tests.test_tasks import tiny_trainer
from wide_lightning.atlas.command import atlas as atlas_command
from wide_lightning.data import MNIST, TranslatedMNIST
from wide_lightning.nets import TorchvisionNet, grey_conv
from wide_lightning.tasks import LinearProbe, TorchvisionClassifier, load_backbone_task

pytest.importorskip("torchvision")


def test_a_torchvision_net_has_our_features_and_head_and_reads_grey_images():
    torch.manual_seed(0)
    net = TorchvisionNet("resnet18", (1, 28, 28), num_classes=10).eval()
    assert net.width == 512 and net.head.out_features == 10 and net.input_shape == (1, 28, 28)
    assert net.features.conv1.in_channels == 1  # ResNet's first convolution, for grey digits
    x = torch.rand(4, 1, 28, 28)
    assert torch.equal(net(x), net.head(net.features(x)))
    assert (net.features(x) >= 0).all()  # pooled after ReLU, as our penultimate layers are
    colour = TorchvisionNet("resnet18", (3, 32, 32), num_classes=3)
    assert colour.features.conv1.in_channels == 3 and colour.head.out_features == 3


def test_a_grey_conv_computes_what_its_colour_conv_computes_on_the_repeated_image():
    torch.manual_seed(0)
    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1, bias=True)
    x = torch.rand(2, 1, 9, 9)
    assert torch.allclose(grey_conv(conv)(x), conv(x.repeat(1, 3, 1, 1)), atol=1e-6)


@pytest.mark.parametrize("name, shape, message", [
    ("resnet", (1, 28, 28), "'resnet' is not a classification model of torchvision.models; expected one of "),
    ("squeezenet1_0", (3, 32, 32), "has no final nn.Linear to replace"),
    ("resnet18", (2, 28, 28), "reads 3-channel images, the data have 2 channels"),
    ("vit_b_16", (3, 32, 32), r"cannot read inputs of shape \(3, 32, 32\): Wrong image height! Expected 224"),
])
def test_a_torchvision_net_that_cannot_be_built_says_why(name, shape, message):
    with pytest.raises(ValueError, match=message):
        TorchvisionNet(name, shape, num_classes=10)


def test_a_trained_resnet_checkpoint_serves_the_atlas_and_the_probe(fake_data_dir, tmp_path):
    torch.manual_seed(0)
    task = TorchvisionClassifier(num_classes=10, input_shape=(1, 28, 28), network="resnet18")
    trainer = tiny_trainer(limit_train_batches=2)
    trainer.fit(task, datamodule=MNIST(data_dir=fake_data_dir, download=False, batch_size=32))
    checkpoint = tmp_path / "resnet18.ckpt"
    trainer.save_checkpoint(checkpoint)
    assert isinstance(load_backbone_task(checkpoint, purpose="an atlas"), TorchvisionClassifier)

    out = atlas_command(checkpoint=str(checkpoint), out_dir=str(tmp_path / "atlas"), data_dir=str(fake_data_dir),
                        device="cpu", **TINY)
    saved = np.load(out / "atlas.npz")
    assert saved["directions"].shape[1] == 512 and saved["icons"].shape[1:] == (1, 28, 28)  # grey icons
    assert "icon_network_label" in saved  # ten scores, MNIST's digits: the network judges its own icons
    inner = atlas_command(checkpoint=str(checkpoint), layer="net.features.layer3", out_dir=str(tmp_path / "layer3"),
                          data_dir=str(fake_data_dir), device="cpu", **TINY)
    assert np.load(inner / "atlas.npz")["directions"].shape[1] == 256

    probe = LinearProbe(str(checkpoint), num_classes=28, input_shape=(1, 28, 28), head_seed=0)
    assert probe.net.head.in_features == 512
    before = frozen_copy(probe.net.features)
    tiny_trainer().fit(probe, datamodule=TranslatedMNIST(data_dir=fake_data_dir, download=False, batch_size=32,
                                                         target="shift"))
    assert same(before, probe.net.features)  # batch-norm statistics included
    assert probe.facts()["backbone/network"] == "resnet18"

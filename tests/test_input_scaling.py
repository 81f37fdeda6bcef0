"""``input_scaling`` (issue #15): what the network sees, and that the atlas and the probes see the same."""

import pytest
import torch

from tests.test_tasks import tiny_trainer, train_backbone
from wide_lightning.checkpoints import read_checkpoint
from wide_lightning.atlas.task import render_inputs
from wide_lightning.data import MNIST, TranslatedMNIST
from wide_lightning.tasks import LinearProbe


def test_dataset_scaling_standardizes_and_none_keeps_pixels_in_0_1(fake_data_dir):
    pixels = torch.tensor([[[[0, 255]]]], dtype=torch.uint8)
    dataset = MNIST(data_dir=fake_data_dir, download=False)
    none = MNIST(data_dir=fake_data_dir, download=False, input_scaling="none")
    assert torch.allclose(dataset.batch_transform(pixels, train=False),
                          torch.tensor([[[[-0.1307 / 0.3081, (1 - 0.1307) / 0.3081]]]]))
    assert torch.equal(none.batch_transform(pixels, train=False), torch.tensor([[[[0.0, 1.0]]]]))
    with pytest.raises(ValueError, match="input_scaling must be 'dataset'.*or 'none'.*got 'unit'"):
        MNIST(data_dir=fake_data_dir, input_scaling="unit")


@pytest.fixture()
def unscaled_backbone(fake_data_dir, tmp_path):
    return train_backbone(fake_data_dir, tmp_path / "unscaled.ckpt", depth=1, input_scaling="none")


def test_the_atlas_renders_with_the_scaling_the_network_was_trained_on(fake_data_dir, unscaled_backbone):
    data = read_checkpoint(unscaled_backbone).build_datamodule(data_dir=str(fake_data_dir), log=lambda _: None)
    assert data.input_scaling == "none"
    icons = torch.rand(2, 1, 28, 28)
    assert torch.equal(render_inputs(data)["normalize"](icons), icons)  # the icons reach the net as [0, 1] pixels


def test_a_probe_must_see_the_scaling_its_backbone_was_trained_on(fake_data_dir, unscaled_backbone):
    probe = LinearProbe(str(unscaled_backbone), num_classes=10, input_shape=(1, 28, 28))
    scaled = TranslatedMNIST(data_dir=fake_data_dir, download=False, target="digit", batch_size=64)
    with pytest.raises(ValueError, match=r"trained on inputs with input_scaling='none', but the probe's data use "
                                         r"'dataset'; set --data.init_args.input_scaling=none"):
        tiny_trainer().fit(probe, datamodule=scaled)
    unscaled = TranslatedMNIST(data_dir=fake_data_dir, download=False, target="digit", batch_size=64,
                               input_scaling="none")
    trainer = tiny_trainer()
    trainer.fit(LinearProbe(str(unscaled_backbone), num_classes=10, input_shape=(1, 28, 28)), datamodule=unscaled)
    assert trainer.global_step == 4

"""The DataModules' names and their earlier names; the one declaration of the atlas settings."""

import pytest
from jsonargparse import ArgumentParser

import wide_lightning
from wide_lightning.atlas.command import atlas
from wide_lightning.atlas.settings import AtlasSettings
from wide_lightning.callbacks import ActivationAtlas
from wide_lightning.checkpoints import import_object
from wide_lightning.data import DATAMODULES, EARLIER_NAMES, dataset_of


@pytest.mark.parametrize("name", DATAMODULES)
def test_every_datamodule_keeps_its_earlier_name_where_configs_and_checkpoints_wrote_it(name):
    current = getattr(wide_lightning, name)
    earlier = getattr(wide_lightning, name.removesuffix("DataModule"))
    assert issubclass(earlier, current) and earlier is not current
    # checkpoints recorded the defining module's path, configs the package's
    assert import_object(f"{current.__module__}.{earlier.__name__}") is earlier
    assert dataset_of(f"{current.__module__}.{name}") == dataset_of(earlier.__name__) == earlier.__name__
    assert len(EARLIER_NAMES) == len(DATAMODULES)


def test_an_atlas_setting_is_declared_once_and_checked_where_it_is_given():
    parser = ArgumentParser()
    parser.add_class_arguments(ActivationAtlas, "atlas")
    callback_keys = {action.dest.removeprefix("atlas.") for action in parser._actions if action.dest.startswith("atlas.")}
    assert set(AtlasSettings.__dataclass_fields__) <= callback_keys  # every setting is a config key of the callback
    with pytest.raises(ValueError, match="grid_size must be an integer >= 1, got 0"):
        ActivationAtlas(grid_size=0)  # refused when the config is read, before training
    with pytest.raises(ValueError, match="--grid_size must be an integer >= 1, got 0"):
        atlas(grid_size=0)  # the command names the flag, before reading any checkpoint
    with pytest.raises(ValueError, match="--whiten_ridge must be a positive finite number"):
        atlas(whiten_ridge=0.0)
    assert (AtlasSettings(preview=True).steps, AtlasSettings(preview=True).grid_size) == (64, 10)
    assert (AtlasSettings(preview=True, steps=8).steps, AtlasSettings().grid_size, AtlasSettings().max_points) == (8, 15, None)

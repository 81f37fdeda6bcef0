"""Activation atlases of a whole hidden state (Carter et al. 2019, as the paper used them).

collect -> layout (UMAP, grid, cell means, whitening) -> render (all icons in one batched
optimization) -> how recognizable the icons are, the training images nearest each cell -> figures
and numbers. ``pipeline.build_atlas`` chains them for the end-of-training callback
(``wide_lightning.callbacks.ActivationAtlas``) and the command (``wide-lightning-atlas``).
"""

from wide_lightning.atlas.pipeline import AtlasResult, build_atlas
from wide_lightning.atlas.settings import PRESETS, AtlasSettings

__all__ = ["PRESETS", "AtlasResult", "AtlasSettings", "build_atlas"]

"""``wide-lightning-atlas``: the atlas figures of a saved checkpoint, without retraining.

    wide-lightning-atlas --checkpoint runs/mnist/conv_n2048/checkpoints/last.ckpt
    wide-lightning-atlas --checkpoint X.ckpt --data_dir ../shared/datasets --preview true
    wide-lightning-atlas --checkpoint X.ckpt --control untrained     # Appendix A.1
    wide-lightning-atlas --checkpoint X.ckpt --control raw_input     # Appendix A.2
    wide-lightning-atlas --checkpoint X.ckpt --preset lucid_notebook  # the paper's literal icons
    wide-lightning-atlas --checkpoint X.ckpt --layer net.features.3 --position random  # a conv layer
    wide-lightning-atlas --checkpoint any.ckpt --model my_package.MyLightningModule --data ImageFolder ...
    wide-lightning-atlas --model torchvision.models.resnet18 --weights DEFAULT --layer layer4 --data ...

The DataModule is rebuilt from the checkpoint (runs of ``wide-lightning fit`` record it, and the
folder its files were in) unless ``--data`` gives one; ``--data_dir`` overrides only where the
files are. A network that is not ours (``--model``) needs ``--data``.
"""

from __future__ import annotations

import sys
import time
from functools import partial
from pathlib import Path
from typing import Any, Literal

import torch

from wide_lightning.activations import Position, layer_reader
from wide_lightning.atlas.collect import collect_activations
from wide_lightning.atlas.pipeline import subset_indices
from wide_lightning.atlas.progress import Progress
from wide_lightning.atlas.settings import AtlasSettings
from wide_lightning.atlas.summary import metric_lines, summary_lines
from wide_lightning.atlas.task import check_task_atlas, render_task_atlas
from wide_lightning.data.base import ImageDataModule
from wide_lightning.checkpoints import build_datamodule, find_checkpoint
from wide_lightning.tasks.backbone import load_network, untrained_copy


def atlas(
    checkpoint: str | None = None,
    model: str | None = None,
    weights: str | None = None,
    data: ImageDataModule | None = None,
    data_dir: str | None = None,
    out_dir: str | None = None,
    layer: str = "features",
    position: Position = "random",
    control: Literal["none", "untrained", "raw_input"] = "none",
    split: Literal["train", "val", "test"] = "train",
    device: str = "auto",
    batch_size: int = 1024,
    verbose: bool = False,
    **settings: Any,
) -> Path:
    """Render the atlas figures of a trained classifier and write them next to it.

    Args:
        checkpoint: a base-training checkpoint (ConvClassifier or MLPClassifier), or with ``model`` the
            checkpoint of that LightningModule (or a state dict for an ``nn.Module``).
        model: a network that is not ours, by its dotted path: a LightningModule class (with
            ``checkpoint``) or a class or function building an ``nn.Module`` (``torchvision.models.resnet18``).
        weights: with ``model``: a torchvision weights name (``DEFAULT``; downloaded once) or a state-dict file.
        data: the DataModule whose ``split`` is laid out (default: the one recorded in the checkpoint).
        data_dir: where the dataset's files are, overriding the recorded or given DataModule's.
        out_dir: output folder (default: ``atlas/`` beside the checkpoint's folder, ``atlas_<layer>/``
            for another layer, or ``runs/atlas/<model>``; never overwritten).
        layer: ``features`` (our networks' penultimate layer), ``input`` (the pixels), or any module by
            its path in the network: ``net.features.3`` (ours; ``features.3`` also works), ``layer4``.
        position: how a convolutional layer gives one vector per example: ``random`` (one seeded random
            position per example, the paper's footnote 1; icons rendered at the centre, as lucid),
            ``centre``, ``mean`` (spatial average) or ``flatten`` (every position), in collecting
            and rendering alike.
        control: ``untrained``: the same architecture freshly initialized (Appendix A.1, seeded);
            ``raw_input``: activations = pixels (Appendix A.2), whose icons are the whitened cell
            averages themselves, as in the paper (``layer="input"`` too), not optimized images.
        settings: the atlas's settings, ``AtlasSettings``' fields (``--preset``, ``--steps``, ``--grid_size``,
            ``--whiten``, ``--space``, ``--preview``, ...), each checked before any work; an atlas that needs
            more memory than is free is refused before collecting, naming the setting to lower. ``control=raw_input``
            whitens unless ``--whiten`` is given: Appendix A.2's icons are "whitened averages over images".
        split: which split to lay out (the paper: the whole training set).
        device: ``auto`` (CUDA if available), ``cpu`` or ``cuda``.
        batch_size: batch size for collecting activations.
        verbose: end with every number of the atlas (``name = value``, as ``atlas.npz`` holds them) before the
            short table of the ones a reader checks first.

    While it works, the command prints one line per stage; where standard error is a terminal and ``CI`` is
    not set, a bar of each long stage too (``atlas/progress.py``).

    Returns:
        The folder with ``panel.png``, ``atlas.png``, ``umap_histogram.png`` (and ``umap_histogram_<label>.png``
            for every other label with at most 64 values, e.g. the shift), ``neurons.png``, ``atlas.npz``.
    """
    started = time.perf_counter()
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"--batch_size must be an integer >= 1, got {batch_size!r}.")
    if control == "raw_input":
        layer = "input"
        if "whiten" not in settings or settings["whiten"] is None:
            settings["whiten"] = True
    if layer == "input":  # the pixels' cell directions are images already: shown, not optimized
        settings["icons"] = "directions"
    try:
        # a new name, and ``settings`` only ever unpacked: jsonargparse reads this body to turn the dataclass's
        # fields into the command's flags
        atlas_settings = AtlasSettings(**settings)
    except ValueError as error:  # named as the flag a person typed
        raise ValueError(f"--{error}") from None
    if atlas_settings.space == "classifier_subspace" and layer != "features":
        raise ValueError("space='classifier_subspace' projects the penultimate layer; use layer='features'.")
    ours = model is None
    checkpoint = str(find_checkpoint(checkpoint)) if checkpoint is not None else None
    task = load_network(checkpoint, model, weights, purpose="an atlas")
    if data is None and not ours:
        raise ValueError(f"--model {model}: name the data to lay out, e.g. --data ImageFolder --data.root DIR "
                         f"(a DataModule is recorded only in `wide-lightning fit` checkpoints).")
    # the checkpoint was read once, by load_network: our tasks carry the DataModule it recorded
    datamodule = data if data is not None else build_datamodule(task.training_data, checkpoint, data_dir)
    if data is not None and data_dir is not None:
        datamodule.data_dir = Path(data_dir)
    expected = getattr(getattr(task, "net", None), "input_shape", None)
    if expected is not None and tuple(datamodule.input_shape) != tuple(expected):
        raise ValueError(f"{checkpoint} takes inputs {tuple(expected)} but {type(datamodule).__name__} "
                         f"gives {tuple(datamodule.input_shape)}.")
    if control == "untrained":
        if not ours:
            raise ValueError("--control untrained re-initializes one of our networks; --model networks are read as given.")
        task = untrained_copy(task, atlas_settings.seed)
    run_device = torch.device("cuda" if device == "auto" and torch.cuda.is_available() else ("cpu" if device == "auto" else device))
    task = task.to(run_device)
    read = layer_reader(task, layer, position, atlas_settings.seed)
    dataset = datamodule.dataset(split)
    sample = datamodule.batch_transform(dataset.images[:2].to(run_device), train=False)
    try:
        with torch.no_grad():
            read(sample)
    except Exception as error:  # noqa: BLE001 - one sentence instead of a stack from inside someone's network
        raise ValueError(f"{model or checkpoint} cannot read {type(datamodule).__name__}'s inputs of shape "
                         f"{tuple(sample.shape[1:])} at layer {layer!r}: {type(error).__name__}: {error}") from None
    # what the atlas will need, before collecting: refused in one sentence if it does not fit
    check_task_atlas(datamodule, read, atlas_settings, dataset=dataset, device=run_device)
    if atlas_settings.max_points is not None and atlas_settings.max_points < len(dataset):  # collect only what is laid out
        dataset = dataset.subset(subset_indices(len(dataset), atlas_settings.max_points, atlas_settings.seed))
    progress = Progress()
    collect_started = time.perf_counter()
    print(f"atlas: collecting the activations of {len(dataset)} {split} images at layer {layer} on {run_device}")
    with progress.bar("collect", unit="batch") as tick:
        activations = collect_activations(read, dataset, partial(datamodule.batch_transform, train=False),
                                          batch_size=batch_size, device=run_device, progress=tick)
    collect_seconds = time.perf_counter() - collect_started
    result = render_task_atlas(task, datamodule, read, activations, atlas_settings, layer=layer, images=dataset.images,
                               device=run_device, note="" if control == "none" else control, progress=progress)
    result.metrics["atlas/seconds/collect"] = collect_seconds
    result.metrics["atlas/seconds/total"] = time.perf_counter() - started
    name = f"atlas_{control}" if control != "none" else ("atlas" if layer == "features" else f"atlas_{layer.replace('.', '_')}")
    if out_dir:
        target = Path(out_dir)
    elif checkpoint is not None:
        target = Path(checkpoint).resolve().parent.parent / name
    else:
        target = Path("runs") / "atlas" / model.rpartition(".")[2]
    directory = result.save(target)
    if verbose:
        print("\n".join(metric_lines(result.metrics)))
    print("\n".join(summary_lines(result, directory, more="printed above" if verbose else "--verbose true prints them")))
    return directory


def main(args: list[str] | None = None) -> None:
    """``wide-lightning-atlas``, with short errors for what a person got wrong (``wide_lightning/errors.py``)."""
    from jsonargparse import CLI

    import wide_lightning.data  # noqa: F401  (short class names for --data)
    from wide_lightning.console import quiet_library_noise
    from wide_lightning.errors import run_for_people
    from wide_lightning.interruption import Interrupted, stop_promptly

    quiet_library_noise()

    def run(argv: list[str]) -> Path:
        try:
            with stop_promptly():  # minutes of rendering that no loop checks: SIGTERM stops it at once
                return CLI(atlas, args=argv, as_positional=False, exit_on_error=False, allow_abbrev=False)
        except Interrupted as interruption:
            sys.stderr.write(f"wide-lightning-atlas: {interruption}; nothing was written. Run the same command "
                             f"again to render the atlas.\n")
            raise SystemExit(interruption.exit_code) from None

    # the data errors are written for `wide-lightning fit`; this command names the folder with --data_dir
    run_for_people(run, args, "wide-lightning-atlas", rewrite=lambda m: m.replace("--data.data_dir=DIR", "--data_dir DIR"))


if __name__ == "__main__":
    main()

"""``fit --ckpt_path``: resume exactly the run the config describes, or refuse.

LightningCLI reads the checkpoint's hyper-parameters and lets them override the config: a width-20
checkpoint given to the width-2048 config silently trains a width-20 network into the width-2048
run's folder. Here the checkpoint must describe the same run as the resolved config (model class
and arguments, DataModule class and the arguments that change what is learned); each difference
is named, with the two ways out. ``last`` is resolved the way Lightning does (the newest
``last*.ckpt`` of the run's checkpoint folder) so that the check sees the file Lightning will load.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

import torch

from wide_lightning.tasks.base import CHECKPOINT_KEY

#: DataModule arguments that say where and how fast the data is read, not what is learned.
DATA_LOCATION_ARGUMENTS = frozenset({"data_dir", "download", "num_workers", "placement"})


#: Model arguments the CLI fills from the DataModule when it builds the model (unset in the config).
LINKED_FROM_DATA = frozenset({"num_classes", "input_shape"})


class ResumeMismatch(ValueError):
    """The checkpoint to resume was trained with other hyper-parameters than the config asks for."""


def newest_last_checkpoint(directory: str | os.PathLike) -> str | None:
    """The newest ``last*.ckpt`` in ``directory`` (Lightning's choice for ``ckpt_path="last"``)."""
    candidates = glob.glob(os.path.join(glob.escape(str(directory)), "last*.ckpt"))
    return max(candidates, key=os.path.getmtime) if candidates else None


def _plain(value: Any) -> Any:
    """Namespaces, tuples and paths as dicts, lists and strings, so that a config and a checkpoint compare."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, Path):
        return str(value)
    return value


def _differences(section: str, recorded: dict[str, Any], wanted: dict[str, Any], skip: frozenset[str]) -> list[str]:
    lines = []
    for key in sorted(set(recorded) & set(wanted) - skip):
        if key.startswith("_"):
            continue
        if _plain(recorded[key]) != _plain(wanted[key]):
            lines.append(f"{section}.init_args.{key}: checkpoint {_plain(recorded[key])!r}, config {_plain(wanted[key])!r}")
    return lines


def resume_conflicts(checkpoint: dict[str, Any], model: Any, data: Any) -> list[str]:
    """What differs between a checkpoint and the resolved config's ``model`` and ``data`` sections."""
    lines = []
    hparams = dict(checkpoint.get("hyper_parameters") or {})
    model = _plain(model) or {}
    recorded_class = hparams.get("_class_path")
    if recorded_class and model.get("class_path") and recorded_class.rsplit(".", 1)[-1] != model["class_path"].rsplit(".", 1)[-1]:
        lines.append(f"model.class_path: checkpoint {recorded_class!r}, config {model['class_path']!r}")
    else:
        lines += _differences("model", hparams, model.get("init_args") or {}, LINKED_FROM_DATA)
    marker = (checkpoint.get(CHECKPOINT_KEY) or {}).get("datamodule")
    data = _plain(data) or {}
    if marker and data.get("class_path"):
        recorded_class = marker["class_path"]
        if recorded_class.rsplit(".", 1)[-1] != data["class_path"].rsplit(".", 1)[-1]:
            lines.append(f"data.class_path: checkpoint {recorded_class!r}, config {data['class_path']!r}")
        else:
            lines += _differences("data", marker.get("init_args") or {}, data.get("init_args") or {},
                                  DATA_LOCATION_ARGUMENTS)
    return lines


def check_resumable(path: str, checkpoint: dict[str, Any], model: Any, data: Any) -> None:
    """Refuse to resume ``path`` under a config that describes another run, naming each difference."""
    conflicts = resume_conflicts(checkpoint, model, data)
    if conflicts:
        raise ResumeMismatch(
            f"--ckpt_path {path} was trained with other settings than this config asks for: "
            + "; ".join(conflicts)
            + ". Either change the config (or the flags) to the checkpoint's values to resume it, or leave out "
              "--ckpt_path to start this run fresh."
        )


def load_for_checking(path: str) -> dict[str, Any]:
    """The checkpoint's dictionaries, memory-mapped (a large network's weights are not read into memory)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception as error:  # noqa: BLE001 - any unreadable file gets the same sentence
        raise ValueError(f"--ckpt_path {path} cannot be read as a checkpoint ({type(error).__name__}: "
                         f"{str(error).splitlines()[0] if str(error) else ''}); point it at a .ckpt that `fit` "
                         f"wrote, or leave it out to start fresh.") from error

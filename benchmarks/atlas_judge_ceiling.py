"""How well can the nearest-neighbour judge do at all? Its agreement on real images beside its agreement on icons.

The judge of ``wide_lightning.atlas.recognizability`` names an icon by a vote of the 10 nearest
training images in pixel space. Before asking icons to reach a share of its votes, ask what real
images reach: for every atlas in ``--atlas`` (a folder with ``atlas.npz``, written by the callback or
``wide-lightning-atlas``), one row with

* ``icons``: the share of icons the judge names as their cell's majority label (``atlas.npz``'s own);
* ``nearest image``: the same for each cell's nearest training image (its exemplar), judged by the
  other training images (the image itself left out of its vote);
* ``mean of 5``: the same for the pixel mean of each cell's 5 nearest training images;
* ``cell purity``: the mean share of a cell's examples that carry its majority label;
* ``named by NAME``, one column per ``--network NAME=CHECKPOINT``: the share of icons that another
  trained network (a ``wide-lightning fit`` checkpoint of the same dataset and label, e.g. the other
  width) names as their cell's majority label. Do the icons carry the digit to a network that did not
  draw them, or only to their own? ``-`` where the network was trained on another dataset or label.

and one row per dataset for the judge's accuracy on held-out validation images (a seeded subset of
``--validation-images``; no atlas needed).

    python benchmarks/atlas_judge_ceiling.py --data-dir ../shared/datasets \\
        --atlas mnist_n20=runs/final_atlas/mnist_conv_n20 --atlas translated_n20=runs/final_atlas/translated_mnist_conv_n20 \\
        --network translated_n2048=runs/study/translated_mnist_conv_n2048/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import platform
from pathlib import Path

import numpy as np
import torch

from wide_lightning.checkpoints import read_checkpoint
from wide_lightning.atlas.recognizability import NearestNeighbourJudge, at_input_size, classify
from wide_lightning.data import MNIST, TranslatedMNIST
from wide_lightning.tasks.backbone import load_network


def datamodule_for(labels: dict[str, np.ndarray], data_dir: str):
    """The laid-out split of an atlas: translated MNIST if its labels have a shift, else MNIST."""
    dm = (TranslatedMNIST if "label_shift" in labels else MNIST)(data_dir=data_dir, download=False)
    dm.setup("fit")
    return dm


class OtherNetwork:
    """A trained network, from its checkpoint, that names icons of atlases of its own dataset and label."""

    def __init__(self, name: str, checkpoint: str, data_dir: str):
        self.name = name
        self.network = load_network(checkpoint, purpose="a judge of atlas icons")
        self.datamodule = read_checkpoint(checkpoint).build_datamodule(data_dir, log=lambda _: None)

    def agreement(self, dataset: str, icons: np.ndarray, cell_label: np.ndarray) -> float | str:
        if type(self.datamodule).__name__ != dataset or self.datamodule.target != "digit":
            return "-"
        icons = at_input_size(torch.from_numpy(icons), self.datamodule.input_shape)
        named = classify(self.network, icons, self.datamodule.normalize, torch.device("cpu"))
        return float((named == cell_label).mean())


def judge_rows(name: str, folder: Path, data_dir: str, judges: dict,
               networks: list[OtherNetwork] = ()) -> dict[str, float | str]:
    saved = dict(np.load(folder / "atlas.npz"))
    dm = datamodule_for(saved, data_dir)
    train = dm.dataset("train")
    digits = train.labels["digit"].numpy()
    if len(digits) != len(saved["label_digit"]) or not (digits == saved["label_digit"]).all():
        raise ValueError(f"{folder}: the atlas was not laid out on {type(dm).__name__}'s training split.")
    key = type(dm).__name__
    judge = judges.setdefault(key, NearestNeighbourJudge(train.images, {"digit": digits}))
    cell_label = saved["cell_label"]
    nearest = saved["exemplar_indices"][:, 0]
    indices, _ = judge.neighbours(train.images[nearest], k=judge.k + 1)
    named, _ = judge.vote(indices[:, 1:], "digit")  # the image itself is its own nearest neighbour: left out
    mean5 = torch.from_numpy(saved["exemplars"].astype(np.float32).mean(1) / 255.0)
    named5, _ = judge.vote(judge.neighbours(mean5)[0], "digit")
    return {"atlas": name, "cells": len(cell_label), "icons": float((saved["icon_judge_label"] == cell_label).mean()),
            "nearest image": float((named == cell_label).mean()), "mean of 5": float((named5 == cell_label).mean()),
            "cell purity": float(saved["cell_purity"].mean()),
            **named_by(networks, key, saved["icons"], cell_label)}


def named_by(networks: list[OtherNetwork], dataset: str, icons: np.ndarray, cell_label: np.ndarray) -> dict:
    """One column per network name; networks of other datasets may share a name (one per dataset)."""
    columns: dict[str, float | str] = {}
    for network in networks:
        value = network.agreement(dataset, icons, cell_label)
        if columns.get(f"named by {network.name}", "-") == "-":
            columns[f"named by {network.name}"] = value
    return columns


def validation_row(name: str, data_dir: str, judge: NearestNeighbourJudge, count: int) -> dict[str, float | str]:
    dm = {"MNIST": MNIST, "TranslatedMNIST": TranslatedMNIST}[name](data_dir=data_dir, download=False)
    dm.setup("fit")
    val = dm.dataset("val")
    if count < len(val):  # a seeded subset: the vote costs a pass over all training images per image
        val = val.subset(torch.randperm(len(val), generator=torch.Generator().manual_seed(0))[:count])
    named, _ = judge.vote(judge.neighbours(val.images)[0], "digit")
    return {"dataset": name, "validation images": len(val),
            "judge accuracy": float((named == val.labels["digit"].numpy()).mean())}


def table(rows: list[dict]) -> str:
    columns = list(rows[0])
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for row in rows:
        lines.append("| " + " | ".join(f"{v:.3f}" if isinstance(v, float) else str(v) for v in row.values()) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--atlas", action="append", required=True, help="NAME=FOLDER: a name for the row, and the folder with atlas.npz")
    parser.add_argument("--network", action="append", default=[], metavar="NAME=CHECKPOINT",
                        help="another trained network that names the icons of atlases of its dataset (repeatable)")
    parser.add_argument("--validation-images", type=int, default=2000, help="held-out images the judge names (a seeded subset)")
    args = parser.parse_args()
    judges: dict[str, NearestNeighbourJudge] = {}
    networks = [OtherNetwork(*item.rpartition("=")[::2], args.data_dir) for item in args.network]
    rows = []
    for item in args.atlas:
        name, _, folder = item.rpartition("=")
        rows.append(judge_rows(name, Path(folder), args.data_dir, judges, networks))
    print(f"machine: {platform.processor() or platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}\n")
    print(table(rows))
    print()
    print(table([validation_row(name, args.data_dir, judge, args.validation_images) for name, judge in judges.items()]))


if __name__ == "__main__":
    main()

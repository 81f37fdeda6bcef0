"""Does a network's hidden state read a digit drawn twice, side by side, as that digit?

The narrow translated-MNIST network's atlas icons draw their digit two or three times at different
shifts (``docs/studies/2026-12-02-atlas-icons.md``, "The narrow translated net"). This asks whether that is the network's
reading or the renderer's fault: for a seeded sample of training images ``x``, it builds ``x2 =
max(x, roll(x, d))``, the same digit a second time ``d`` columns to the right (cyclically, as
translated MNIST rolls its digits), and reports per network

* ``named x`` / ``named x2``: the share the network classifies as the image's digit;
* ``cos(x2, x)``: the mean cosine between the hidden states of ``x2`` and ``x``;
* ``cos(x moved, x)``: the same for the digit moved ``d`` columns (one copy): how much of the
  shift the hidden state keeps;
* ``cos same digit``: the mean cosine between the hidden states of ``x`` and of another training
  image of the same digit (a random pair): how close two *different examples* of a digit are;
* ``cos other digit``: the same for pairs of different digits.

If ``cos(x2, x)`` is as high as ``cos same digit``, the hidden state has no more reason to prefer one
copy over two than to prefer one example of the digit over another, and an optimizer guided by it
alone has none either.

    python benchmarks/atlas_two_copies.py --data-dir data \\
        --checkpoint translated_n20=runs/study/translated_mnist_conv_n20/checkpoints/last.ckpt \\
        --checkpoint translated_n2048=runs/study/translated_mnist_conv_n2048/checkpoints/last.ckpt
"""

from __future__ import annotations

import argparse
import platform

import torch
import torch.nn.functional as F

from wide_lightning.checkpoints import read_checkpoint
from wide_lightning.tasks.backbone import load_backbone_task

COLUMNS = ("network", "offset", "named x", "named x2", "cos(x2, x)", "cos(x moved, x)", "cos same digit", "cos other digit")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--offsets", default="10,14", help="columns between the two copies, comma-separated")
    parser.add_argument("--images", type=int, default=2000, help="training images sampled (seeded)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def mean_cosine(a: torch.Tensor, b: torch.Tensor) -> float:
    return float(F.cosine_similarity(a, b, dim=1).mean())


@torch.no_grad()
def network_rows(name: str, path: str, args: argparse.Namespace) -> list[dict[str, str]]:
    task = load_backbone_task(path).eval()
    datamodule = read_checkpoint(path).build_datamodule(args.data_dir)
    train = datamodule.dataset("train")
    generator = torch.Generator().manual_seed(args.seed)
    chosen = torch.randperm(len(train.images), generator=generator)[: args.images]
    x = train.images[chosen].float() / 255.0
    digits = train.labels["digit"][chosen]

    def hidden(images: torch.Tensor) -> torch.Tensor:
        return task.net.features(datamodule.normalize(images))

    def named(images: torch.Tensor) -> float:
        return float((task.net(datamodule.normalize(images)).argmax(1) == digits).float().mean())

    h = hidden(x)
    # partners: each image paired with another of the same digit (a random cycle within each digit),
    # and with a random image, kept where the digits differ
    same = torch.arange(len(x))
    for digit in digits.unique():
        members = (digits == digit).nonzero().flatten()
        members = members[torch.randperm(len(members), generator=generator)]
        same[members] = members.roll(1)
    other = torch.randperm(len(x), generator=generator)
    differs = digits[other] != digits
    rows = []
    for offset in (int(s) for s in args.offsets.split(",")):
        x2 = torch.maximum(x, x.roll(offset, dims=-1))
        rows.append({
            "network": name, "offset": str(offset), "named x": f"{named(x):.3f}", "named x2": f"{named(x2):.3f}",
            "cos(x2, x)": f"{mean_cosine(hidden(x2), h):.3f}",
            "cos(x moved, x)": f"{mean_cosine(hidden(x.roll(offset, dims=-1)), h):.3f}",
            "cos same digit": f"{mean_cosine(h, h[same]):.3f}",
            "cos other digit": f"{mean_cosine(h[differs], h[other[differs]]):.3f}",
        })
    return rows


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    torch.manual_seed(args.seed)
    print(f"# two copies of a digit: {platform.node()}, torch {torch.__version__}, {args.images} images, seed {args.seed}")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    for spec in args.checkpoint:
        name, _, path = spec.partition("=")
        for row in network_rows(name, path, args):
            print("| " + " | ".join(row[c] for c in COLUMNS) + " |", flush=True)


if __name__ == "__main__":
    main()

"""μP's coordinate check (Yang et al. 2021, Tensor Programs V, Fig. 5) on our networks, with ``mup``'s own tool.

For each parameterization and width, ``mup.coord_check.get_coord_data`` trains the network for a few
SGD steps on one fixed batch and records the mean absolute value of every module's output (one
"coordinate") at each step. In μP those sizes stay of order 1 as the width grows, at every step;
under ``standard`` with one learning rate the hidden coordinates of later steps grow with width
the logits of later steps grow with width (the readout's update is not scaled down with fan-in) while
the hidden layer's change shrinks, and under ``ntk`` the change from step 0 shrinks with width (lazy).
The table prints, per parameterization and step, the size at each width of the last hidden layer's
coordinates, of their change since step 0 (``|h_t - h_0|``, which separates the regimes) and of the
logits, with the ratio of the largest to the smallest across widths (flat: within 2x).

    python benchmarks/coord_check.py --data-dir ../shared/datasets             # MNIST, MLP depth 2, widths 64-4096
    python benchmarks/coord_check.py --model conv --widths 64,256,1024,4096     # the conv net (penultimate width)
"""

from __future__ import annotations

import argparse

import torch
from torch import nn

from wide_lightning.nets import MLP, ConvNet
from wide_lightning.parameterization import PARAMETERIZATIONS


def batch(data_dir: str | None, size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One normalized MNIST training batch, or random digits-shaped data without ``data_dir``."""
    if data_dir is None:
        generator = torch.Generator().manual_seed(0)
        return torch.randn(size, 1, 28, 28, generator=generator), torch.randint(0, 10, (size,), generator=generator)
    from wide_lightning import MNIST

    data = MNIST(data_dir=data_dir, download=False)
    train = data.dataset("train")
    return data.batch_transform(train.images[:size], train=False), train.labels["digit"][:size]


class Recorded(nn.Module):
    """The network with its last hidden layer's output exposed as a module of its own (``last_hidden``), and the
    change of that output since the first call (``change``), so that mup's coordinate check records both."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net, self.last_hidden, self.change = net, nn.Identity(), nn.Identity()
        self.initial: torch.Tensor | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.last_hidden(self.net.features(x))
        if self.initial is None:
            self.initial = h.detach().clone()
        self.change(h.detach() - self.initial)
        return self.net.head(h)


def coordinates(model: str, parameterization: str, widths: list[int], lr: float, steps: int,
                data: tuple[torch.Tensor, torch.Tensor]) -> dict[tuple[str, int, int], float]:
    """``{(module, width, step): mean |output|}`` for ``last_hidden``, ``change`` and the logits (``net.head``), from
    mup's ``get_coord_data``."""
    from mup.coord_check import get_coord_data

    def build(width: int):
        def make() -> nn.Module:
            torch.manual_seed(0)
            net = (MLP((1, 28, 28), 10, 2, width, parameterization=parameterization, mup_base_width=widths[0])
                   if model == "mlp" else
                   ConvNet((1, 28, 28), 10, width, parameterization=parameterization, mup_base_width=widths[0]))
            return Recorded(net)
        return make

    frame = get_coord_data({w: build(w) for w in widths}, [data], optimizer="sgd", lr=lr,
                           mup=parameterization == "mup", nsteps=steps, cuda=False, show_progress=False)
    frame = frame[frame.module.isin(["last_hidden", "change", "net.head"])]
    return {(row.module, int(row.width), int(row.t)): float(row.l1) for row in frame.itertuples()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST's folder (else random inputs)")
    parser.add_argument("--model", choices=["mlp", "conv"], default="mlp")
    parser.add_argument("--widths", default="64,256,1024,4096")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    # the lazy-limit scan's rates (configs/lazy_limit/*.yaml), without momentum: mup's check is plain SGD
    parser.add_argument("--lr", default="standard=0.0316228,ntk=3.16228,mup=0.0316228")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    rates = dict((k, float(v)) for k, v in (item.split("=") for item in args.lr.split(",")))
    data = batch(args.data_dir, args.batch)
    print(f"coordinate check: {args.model}, widths {widths}, {args.steps} SGD steps on one batch of {args.batch}, "
          f"{'MNIST' if args.data_dir else 'random inputs'}")
    header = "| parameterization | lr | quantity | step | " + " | ".join(f"n={w}" for w in widths) + " | max/min |"
    print(header)
    print("|" + "---|" * (header.count("|") - 1))
    for p in PARAMETERIZATIONS:
        coords = coordinates(args.model, p, widths, rates[p], args.steps, data)
        for module, label in (("last_hidden", "mean abs h_t"), ("change", "mean abs (h_t - h_0)"),
                              ("net.head", "mean abs logits")):
            for t in range(1 if module == "last_hidden" else 2, args.steps + 1):
                values = [coords[(module, w, t)] for w in widths]
                ratio = max(values) / min(values) if min(values) > 0 else float("inf")
                print(f"| {p} | {rates[p]:g} | {label} | {t} | " + " | ".join(f"{v:.4g}" for v in values)
                      + f" | {ratio:.2f} |")


if __name__ == "__main__":
    main()

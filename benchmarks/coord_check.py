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
    python benchmarks/coord_check.py --data-dir ../shared/datasets --first-step  # where the first update's change comes from

``--first-step`` splits the first SGD step's change of the depth-2 MLP's second hidden layer's
pre-activation, ``dz2 = dW2 h1 + db2 + W2 dh1 + dW2 dh1``, into the update of its own weights
(``dW2 h1 + db2``) and the change of the first hidden layer carried up by the initial weights
(``W2 dh1``), and prints each one's mean absolute value at each width with ``dh1``'s, and the layer's
change again with the loss taken at zero logits (``first_step``).
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


def first_step(parameterization: str, widths: list[int], lr: float, data: tuple[torch.Tensor, torch.Tensor],
               zero_logits: bool = False) -> dict[int, dict[str, float]]:
    """For the depth-2 MLP at each width (base ``widths[0]``), after one plain SGD step on ``data``: the mean
    absolute value of the second hidden layer's change (``dh2``) and of its pre-activation's terms (``own``:
    ``dW2 h1 + db2``; ``carried``: ``W2 dh1``; ``cross``: ``dW2 dh1``), of the first hidden layer's change
    (``dh1``), and the largest difference between the terms' sum and the pre-activation's change (``residual``).

    ``zero_logits``: the loss is taken at the logits minus their own value (zero, with the same gradient path),
    so that every width's errors ``softmax - onehot`` are ``1/10 - onehot``, as in the wide μP limit whose
    initial logits vanish: what is left of a difference between widths is not the initial logits'."""
    from wide_lightning.parameterization import make_sgd

    images, labels = data
    x = images.flatten(1)
    terms = {}
    for width in widths:
        torch.manual_seed(0)
        net = MLP((1, 28, 28), 10, 2, width, parameterization=parameterization, mup_base_width=widths[0])
        first, second = net.features[1], net.features[3]
        before = [t.detach().clone() for t in (first.weight, first.bias, second.weight, second.bias)]
        optimizer = make_sgd(list(net.parameters()), parameterization, lr, momentum=0.0)
        logits = net(images)
        nn.functional.cross_entropy(logits - logits.detach() if zero_logits else logits, labels).backward()
        optimizer.step()
        with torch.no_grad():
            w1, b1, w2, b2 = before
            h1, h1_new = torch.relu(x @ w1.T + b1), torch.relu(x @ first.weight.T + first.bias)
            dh1, dw2, db2 = h1_new - h1, second.weight - w2, second.bias - b2
            z2, z2_new = h1 @ w2.T + b2, h1_new @ second.weight.T + second.bias
            parts = {"own": h1 @ dw2.T + db2, "carried": dh1 @ w2.T, "cross": dh1 @ dw2.T}
            terms[width] = {"dh2": (torch.relu(z2_new) - torch.relu(z2)).abs().mean().item(),
                            **{k: v.abs().mean().item() for k, v in parts.items()}, "dh1": dh1.abs().mean().item(),
                            "residual": (sum(parts.values()) - (z2_new - z2)).abs().max().item()}
    return terms


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", default=None, help="MNIST's folder (else random inputs)")
    parser.add_argument("--model", choices=["mlp", "conv"], default="mlp")
    parser.add_argument("--widths", default="64,256,1024,4096")
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--batch", type=int, default=128)
    # the lazy-limit scan's rates (configs/lazy_limit/*.yaml), without momentum: mup's check is plain SGD
    parser.add_argument("--lr", default="standard=0.0316228,ntk=3.16228,mup=0.0316228")
    parser.add_argument("--first-step", action="store_true", help="the first step's terms (the depth-2 MLP)")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",")]
    rates = dict((k, float(v)) for k, v in (item.split("=") for item in args.lr.split(",")))
    data = batch(args.data_dir, args.batch)
    if args.first_step:
        print(f"first SGD step, MLP of depth 2, base width {widths[0]}, one batch of {args.batch}: mean abs of")
        print("| parameterization | width | dh2 | dW2 h1 + db2 (own) | W2 dh1 (carried) | dW2 dh1 | dh1 "
              "| dh2, loss at zero logits |")
        print("|---|---|---|---|---|---|---|---|")
        for p in PARAMETERIZATIONS:
            zeroed = first_step(p, widths, rates[p], data, zero_logits=True)
            for w, t in first_step(p, widths, rates[p], data).items():
                print(f"| {p} | {w} | {t['dh2']:.4g} | {t['own']:.4g} | {t['carried']:.4g} | {t['cross']:.2g} | "
                      f"{t['dh1']:.4g} | {zeroed[w]['dh2']:.4g} |")
        return
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

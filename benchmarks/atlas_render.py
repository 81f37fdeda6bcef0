"""Atlas icon rendering: one optimization per icon (lucent's way) vs every icon in one batch (ours).

Both columns run ``wide_lightning.atlas.render.render_icons`` with the same network, directions,
steps and full L-NB transforms; the baseline passes ``batch_size=1``, which is a loop of independent
one-icon optimizations. The baseline is timed on ``--baseline-icons`` icons only and extrapolated
linearly to ``--icons`` (the table says so). Because chunks replay the same initial spectrum and the
same transform draws, the baseline's icons equal the first icons of the batched run up to float
rounding; the table prints the largest difference as a check.

    python benchmarks/atlas_render.py                                   # 225 icons, 512 steps, width 2048
    python benchmarks/atlas_render.py --icons 16 --steps 32 --baseline-icons 2 --device cpu
    python benchmarks/atlas_render.py --checkpoint runs/x/best.ckpt     # a trained ConvClassifier
"""

from __future__ import annotations

import argparse
import platform
import time

import torch

from wide_lightning.atlas.render import render_icons
from wide_lightning.data.mnist import MNIST
from wide_lightning.nets import ConvNet


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--icons", type=int, default=225, help="icons of the atlas (15x15 grid: 225)")
    parser.add_argument("--steps", type=int, default=512, help="Adam steps per icon (L-NB: 512)")
    parser.add_argument("--width", type=int, default=2048, help="penultimate width n of the MNIST conv net")
    parser.add_argument("--conv-channels", type=int, default=32)
    parser.add_argument("--baseline-icons", type=int, default=None,
                        help="time the one-icon loop on this many icons and extrapolate (default: all)")
    parser.add_argument("--icon-size", type=int, default=None, help="default: the network's input size (28)")
    parser.add_argument("--device", default=None, help="default: cuda if available, else cpu")
    parser.add_argument("--checkpoint", default=None, help="a ConvClassifier checkpoint instead of a random net")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch.set_num_threads (on a shared CPU, 1 gives steadier timings)")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def load_network(args: argparse.Namespace) -> ConvNet:
    if args.checkpoint:
        from wide_lightning.tasks import ConvClassifier

        return ConvClassifier.load_from_checkpoint(args.checkpoint, map_location="cpu").net
    torch.manual_seed(args.seed)
    return ConvNet(MNIST.input_shape, 10, args.width, args.conv_channels)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    baseline_icons = min(args.baseline_icons or args.icons, args.icons)
    net = load_network(args).to(device)
    data = MNIST(download=False)  # only its input shape, pad value and normalization are used
    shape = tuple(net.input_shape)

    # Directions: activations of random images (any vectors of the right width do for timing).
    gen = torch.Generator().manual_seed(args.seed)
    with torch.no_grad():
        directions = net.features(data.normalize(torch.rand(args.icons, *shape, generator=gen).to(device)))
    kwargs = dict(
        input_shape=shape, normalize=data.normalize, pad_value=data.pad_value, icon_size=args.icon_size,
        steps=args.steps, seed=args.seed, device=device,
    )

    def timed(dirs: torch.Tensor, batch_size: int | None):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        result = render_icons(net.features, dirs, batch_size=batch_size, **kwargs)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return result, time.perf_counter() - start

    # Warm-up (allocator, kernels, caches) outside the timings.
    render_icons(net.features, directions[:2], **{**kwargs, "steps": 2})

    base, base_seconds = timed(directions[:baseline_icons], batch_size=1)
    ours, ours_seconds = timed(directions, batch_size=None)

    base_per_icon = base_seconds / baseline_icons
    base_total = base_per_icon * args.icons
    extrapolated = baseline_icons < args.icons
    diff = (base.icons - ours.icons[:baseline_icons]).abs().max().item()
    raised = (ours.objective > ours.initial_objective).float().mean().item()

    cpu = platform.processor() or platform.machine()
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        name = f"cpu ({cpu}, {torch.get_num_threads()} threads)"
    print(f"atlas icon rendering: MNIST ConvNet width {net.width}, conv_channels {net.conv_channels}, "
          f"{'checkpoint ' + args.checkpoint if args.checkpoint else 'random init'}")
    print(f"device {name}; torch {torch.__version__}; {args.icons} icons of {ours.icon_size}x{ours.icon_size} px, "
          f"{args.steps} Adam steps, full L-NB transforms, objective {ours.objective_mode}")
    print()
    header = (f"| {'method':<44} | {'icons timed':>11} | {'seconds (all icons)':>19} | {'s / icon':>9} "
              f"| {'speedup':>7} |")
    print(header)
    print("|" + "|".join("-" * (len(cell)) for cell in header.split("|")[1:-1]) + "|")
    base_label = "baseline: one optimization per icon (loop)"
    base_total_str = f"{base_total:.2f}" + (" (extrap.)" if extrapolated else "")
    print(f"| {base_label:<44} | {baseline_icons:>11} | {base_total_str:>19} | {base_per_icon:>9.4f} | {1.0:>6.1f}x |")
    ours_label = "ours: all icons in one batch"
    print(f"| {ours_label:<44} | {args.icons:>11} | {ours_seconds:>19.2f} | {ours_seconds / args.icons:>9.4f} | "
          f"{base_total / ours_seconds:>6.1f}x |")
    print()
    if extrapolated:
        print(f"baseline timed on {baseline_icons} of {args.icons} icons and extrapolated linearly "
              f"({base_seconds:.2f} s measured).")
    print(f"check: max |baseline icon - batched icon| over the {baseline_icons} shared icons = {diff:.2e}; "
          f"objective raised on {raised:.0%} of the batched icons.")
    # Where rounding differs between the two orders of work (several threads, cuDNN's choice of kernels
    # per batch size), 512 Adam steps amplify it into different icons; the objectives they reach
    # show whether both optimize equally well.
    shared_base = base.objective.mean().item()
    shared_ours = ours.objective[:baseline_icons].mean().item()
    print(f"check: final objective, mean over the shared icons: one at a time {shared_base:.4g}, "
          f"in the batch {shared_ours:.4g} (initial {ours.initial_objective[:baseline_icons].mean().item():.4g}).")


if __name__ == "__main__":
    main()

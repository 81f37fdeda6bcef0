"""The GPU suite: four measurements on one GPU, in one run, printed as one markdown table.

Run it on a machine with one GPU (planned to take at most 8 minutes on one H100 or H200):

    python benchmarks/gpu_suite.py --data-dir data --device cuda
    python benchmarks/gpu_suite.py --data-dir data --device cuda --only lazy --mlp-depth 1   # one row
    python benchmarks/gpu_suite.py --data-dir data --device cpu --tiny                      # a check, < 1 min

The GPU machine sees the project folder only: copy MNIST's four files into a folder of the project
that git ignores, ``data/MNIST/raw/`` (the repo's ``.gitignore`` ignores ``/data/``, so the digits
are never committed), e.g. ``mkdir -p data && cp -r ../shared/datasets/MNIST data/``.

The rows, in the order they run:

- ``fit``: the 10-epoch MNIST conv net at n = 2048 (``configs/mnist/conv_n2048.yaml`` without its
  atlas callback), plain Lightning (a per-sample DataLoader and ``Trainer``) against ours (the
  resident data path, and on a GPU ``CapturedTrainingStep``), each timed by
  ``benchmarks/train_speed.py`` over training and per-epoch validation, then scored on the 10,000
  test digits (untimed). docs/speed.md: 25.8 s plain, 7.6 s ours on one H100.
- ``scan``: the Figure 4 left scan in exact float32, 5 seeds x depths 1-20 of
  ``StackedMLPClassifier`` and their linear probes in one process (``stacked_scan.all_depths``;
  docs/speed.md's 136.6 s), and the probes' test accuracy per depth, mean over the seeds.
- ``atlas``: the seeded MNIST atlas of the ``fit`` row's network (ours) with the default preset
  (``recognizable``, ``reproducible_layout``), the whole ``wide-lightning-atlas`` command; its
  ``recognizable`` rendering has no GPU time in docs/speed.md yet. Run alone (``--only atlas``) it
  trains that network first, untimed.
- ``lazy``: one training epoch of the widest MLP of the lazy-limit scan
  (``configs/lazy_limit/mlp_mnist.yaml``, the parameterizations' learning rates from
  ``configs/lazy_limit/{standard,ntk,mup}.yaml``), every hidden layer of width 65,536 (depth 2 by
  default: 4.3 billion weights) under ``standard``, ``ntk`` and ``mup``, and the peak memory of
  each (``torch.cuda.max_memory_allocated`` above what was allocated before; on the CPU the
  process's peak RSS). A parameterization that does not fit in the GPU's memory is reported as
  such and the others still run.

A row that fails prints its error in its line of the table and the next row runs, so one run gives
every number it can; the exit status is 1 when any row failed. The rows' own output (Lightning's,
the atlas's) goes to stderr, the table alone to stdout.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import gc
import re
import resource
import sys
import tempfile
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable, NamedTuple

import lightning
import numpy as np
import torch
import yaml
from lightning.pytorch import Callback, Trainer, seed_everything

import stacked_scan
import train_speed
from wide_lightning import MNIST, MLPClassifier
from wide_lightning.atlas.command import atlas
from wide_lightning.atlas.settings import AtlasSettings
from wide_lightning.data.base import default_data_dir
from wide_lightning.parameterization import PARAMETERIZATIONS

LAZY_LIMIT_CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "lazy_limit"

#: Ours in the ``fit`` row, as ``train_speed.run`` names it: the resident data path, and on a GPU the whole
#: step replayed as one CUDA graph (the fastest single run of docs/speed.md). ``CapturedTrainingStep`` refuses
#: the CPU, which has no CUDA graphs, so there ours is the resident path alone.
OURS = {"cuda": "resident_captured", "cpu": "resident"}
OURS_LABEL = {"cuda": "resident + CapturedTrainingStep", "cpu": "resident"}


@dataclass(frozen=True)
class Sizes:
    """How big each row's work is: the paper's sizes, or ``--tiny`` ones that check the script on a CPU."""

    epochs: int  # of the conv net fit and of the scan's base and probe fits
    limit_batches: int  # batches per epoch, and of the test split (0: all)
    conv_width: int
    warmup_steps: int  # train_speed's untimed warm-up fit
    workers: int  # the plain DataLoader's
    depths: list[int]
    seeds: list[int]
    atlas: dict = field(default_factory=dict)  # AtlasSettings beside the default preset's
    mlp_width: dict = field(default_factory=dict)  # by device


FULL = Sizes(epochs=10, limit_batches=0, conv_width=2048, warmup_steps=20, workers=8, depths=list(range(1, 21)),
             seeds=[0, 1, 2, 3, 4], mlp_width={"cuda": 65_536, "cpu": 4096})
# 500 points and a 4 x 4 PCA layout: collecting 50,000 activations and laying them out with UMAP take about
# 2 minutes on 2 cores (docs/studies/2026-11-22-speed.md#whole-atlas)
TINY = Sizes(epochs=1, limit_batches=2, conv_width=64, warmup_steps=1, workers=0, depths=[1, 2], seeds=[0, 1],
             atlas=dict(grid_size=4, min_density=2, steps=4, neurons=2, max_points=500, reducer="pca"),
             mlp_width={"cuda": 64, "cpu": 64})


class Measurement(NamedTuple):
    """One row's cells: the sizes it ran at, its seconds and its result (accuracy or memory)."""

    sizes: str
    seconds: str
    result: str


class Row(NamedTuple):
    what: str
    measure: Callable[[argparse.Namespace, Path], Measurement]


def batches_note(sizes: Sizes) -> str:
    return f" x {sizes.limit_batches} batches" if sizes.limit_batches else ""


def free_memory(device: str) -> None:
    """Drop what a finished run left, so the next row's peak memory and time are its own."""
    gc.collect()
    if device == "cuda":
        torch.cuda.empty_cache()


# ---------------------------------------------------------------------------------------------- fit


def accuracy_on_test_split(model: torch.nn.Module, args: argparse.Namespace) -> float:
    """Accuracy on MNIST's test split, served the same way (resident, normalized on the device) to every network."""
    data = MNIST(data_dir=args.data_dir, batch_size=128, download=False, placement="device")
    tester = Trainer(accelerator=args.device, devices=1, logger=False, enable_progress_bar=False,
                     enable_model_summary=False, limit_test_batches=args.sizes.limit_batches or 1.0)
    return float(tester.test(model, datamodule=data, verbose=False)[0]["test/acc"])


def fit_conv_net(variant: str, args: argparse.Namespace, checkpoint: Path | None = None) -> tuple[float, float]:
    """``train_speed.run``'s timed fit of ``variant``: (seconds, test accuracy); saves the net to ``checkpoint``."""
    sizes = args.sizes
    speed_args = argparse.Namespace(data_dir=args.data_dir, device=args.device, width=sizes.conv_width,
                                    epochs=sizes.epochs, limit_batches=sizes.limit_batches, workers=sizes.workers,
                                    warmup_steps=sizes.warmup_steps, compile_mode="default")
    timed = train_speed.run(variant, speed_args)
    trainer = timed["trainer"]
    if checkpoint is not None:
        trainer.save_checkpoint(checkpoint)
    return timed["seconds"], accuracy_on_test_split(trainer.lightning_module, args)


def ours_checkpoint(workdir: Path) -> Path:
    """Where the fit row leaves its network (ours) for the atlas row."""
    return workdir / "conv_net_ours.ckpt"


def conv_net_fit(args: argparse.Namespace, workdir: Path) -> Measurement:
    plain_seconds, plain_accuracy = fit_conv_net("baseline", args)
    ours_seconds, ours_accuracy = fit_conv_net(OURS[args.device], args, ours_checkpoint(workdir))
    sizes = args.sizes
    return Measurement(
        sizes=f"n={sizes.conv_width}, batch 128, {sizes.epochs} epoch(s){batches_note(sizes)}; "
              f"ours: {OURS_LABEL[args.device]}, plain: DataLoader + Trainer",
        seconds=f"ours {ours_seconds:.3g}, plain {plain_seconds:.3g} ({plain_seconds / ours_seconds:.2f}x)",
        result=f"test acc ours {ours_accuracy:.4f}, plain {plain_accuracy:.4f}")


# --------------------------------------------------------------------------------------------- scan


def figure4_scan(args: argparse.Namespace, workdir: Path) -> Measurement:
    sizes = args.sizes
    # docs/speed.md's float32 scan: the recorded step on a GPU, no TF32
    scan_args = argparse.Namespace(data_dir=args.data_dir, device=args.device, epochs=sizes.epochs,
                                   limit_batches=sizes.limit_batches, seeds=sizes.seeds,
                                   captured_step=args.device == "cuda", matmul_precision=None)
    seconds, accuracy = stacked_scan.timed(stacked_scan.all_depths, sizes.depths, scan_args, workdir)
    networks = len(sizes.depths) * len(sizes.seeds)
    means = " ".join(f"{np.mean(accuracy[depth]):.4f}" for depth in sizes.depths)
    return Measurement(
        sizes=f"{len(sizes.seeds)} seeds x depths {sizes.depths[0]}-{sizes.depths[-1]} in one run, "
              f"{sizes.epochs} epoch(s) base + {sizes.epochs} probe{batches_note(sizes)}, float32"
              f"{', CapturedTrainingStep' if scan_args.captured_step else ''}",
        seconds=f"{seconds:.1f} ({60 * networks / seconds:.1f} networks/min)",
        result=f"probe test acc by depth (mean over seeds): {means}")


# -------------------------------------------------------------------------------------------- atlas


def seeded_atlas(args: argparse.Namespace, workdir: Path) -> Measurement:
    checkpoint = ours_checkpoint(workdir)
    if not checkpoint.exists():  # run without the fit row: train its network (untimed here)
        fit_conv_net(OURS[args.device], args, checkpoint)
    settings = dict(reproducible_layout=True, **args.sizes.atlas)
    chosen = AtlasSettings(**settings)  # what the command runs with: the preset's values filled in
    render = partial(atlas, str(checkpoint), data_dir=str(args.data_dir), out_dir=str(workdir / "atlas"),
                     device=args.device, **settings)
    seconds, folder = stacked_scan.timed(render)
    saved = np.load(Path(folder) / "atlas.npz")
    metrics = dict(zip(saved["metric_names"], saved["metric_values"]))
    phases = ", ".join(f"{phase} {metrics.get(f'atlas/seconds/{key}', float('nan')):.1f}"
                       for phase, key in (("collect", "collect"), ("layout", "layout"), ("icons", "render_icons")))
    points = f"{chosen.max_points} training points" if chosen.max_points else "all training points"
    seeded = chosen.reducer == "umap" and chosen.reproducible_layout  # PCA has no seed to set
    layout = f"{chosen.reducer} layout" + (" (seeded)" if seeded else "")
    return Measurement(
        sizes=f"the fit row's n={args.sizes.conv_width} net (ours); {chosen.preset} preset, {chosen.steps} steps, "
              f"{chosen.grid_size}x{chosen.grid_size} grid, {points}, {layout}, {chosen.neurons} neuron icons",
        seconds=f"{seconds:.1f} ({phases})",
        result=f"{metrics['atlas/cells_kept']:.0f} icons, read by the network as their cell's digit: "
               f"{metrics['atlas/icons/network_agreement']:.4f}")


# --------------------------------------------------------------------------------------------- lazy


class EpochClock(Callback):
    """Wall seconds of each training epoch, the device synchronized at both ends."""

    def __init__(self, device: str) -> None:
        self.device, self.seconds = device, []

    def on_train_epoch_start(self, trainer: Trainer, pl_module) -> None:
        train_speed.synchronize(self.device)
        self.started = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module) -> None:
        train_speed.synchronize(self.device)
        self.seconds.append(time.perf_counter() - self.started)


def lazy_limit_settings(parameterization: str) -> dict:
    """The scan's run: configs/lazy_limit/mlp_mnist.yaml, then the parameterization's config over it (its rate)."""
    base = yaml.safe_load((LAZY_LIMIT_CONFIGS / "mlp_mnist.yaml").read_text())
    own = yaml.safe_load((LAZY_LIMIT_CONFIGS / f"{parameterization}.yaml").read_text())
    return {"seed": base["seed_everything"], "batch_size": base["data"]["init_args"]["batch_size"],
            "model": {**base["model"]["init_args"], **own["model"]["init_args"]}}


def peak_rss_bytes() -> int:
    """The process's peak resident memory so far (``ru_maxrss`` is in KiB on Linux, in bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024


def mlp_epoch(parameterization: str, width: int, args: argparse.Namespace) -> tuple[float, int]:
    """One training epoch of the scan's MLP at ``width``: (seconds, peak memory in bytes)."""
    settings = lazy_limit_settings(parameterization)
    seed_everything(settings["seed"], verbose=False)
    model_args = {**settings["model"], "width": width, "depth": args.mlp_depth}
    if args.mup_base_width is not None:
        model_args["mup_base_width"] = args.mup_base_width
    cuda = args.device == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    before = torch.cuda.memory_allocated() if cuda else 0
    # built on the device: the host draws 4.3 billion initial weights twice (nn.Linear's, then the paper's),
    # about 2 minutes on 2 cores, before 17 GB are copied over
    with torch.device(args.device):
        model = MLPClassifier(num_classes=10, input_shape=(1, 28, 28), **model_args)
    # placement auto, as the scan's runs: resident on a GPU
    data = MNIST(data_dir=args.data_dir, batch_size=settings["batch_size"], download=False)
    clock = EpochClock(args.device)
    limits = dict(limit_train_batches=args.sizes.limit_batches) if args.sizes.limit_batches else {}
    trainer = Trainer(accelerator=args.device, devices=1, max_epochs=1, limit_val_batches=0, logger=False,
                      enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                      num_sanity_val_steps=0, callbacks=[clock], **limits)
    trainer.fit(model, datamodule=data)
    peak = torch.cuda.max_memory_allocated() - before if cuda else peak_rss_bytes()
    return clock.seconds[0], peak


def widest_mlp(args: argparse.Namespace, workdir: Path) -> Measurement:
    width = args.mlp_width or args.sizes.mlp_width[args.device]
    seconds, memory = [], []
    for parameterization in PARAMETERIZATIONS:
        try:
            epoch, peak = mlp_epoch(parameterization, width, args)
        except torch.cuda.OutOfMemoryError:  # a measurement: this width does not fit this GPU
            seconds.append(f"{parameterization} -")
            memory.append(f"{parameterization} out of memory")
        else:
            seconds.append(f"{parameterization} {epoch:.3g}")
            memory.append(f"{parameterization} {peak / 2**30:.2f} GiB")
        free_memory(args.device)
    what = "peak GPU memory above the start" if args.device == "cuda" else "peak RSS of the process so far"
    return Measurement(
        sizes=f"depth {args.mlp_depth}, width {width}, batch {lazy_limit_settings('standard')['batch_size']}, "
              f"one epoch{batches_note(args.sizes)}",
        seconds=", ".join(seconds) + " per epoch",
        result=f"{what}: " + ", ".join(memory))


# -------------------------------------------------------------------------------------------- table


ROWS = {
    "fit": Row("MNIST conv net fit: ours vs plain Lightning", conv_net_fit),
    "scan": Row("Figure 4 left scan, all seeds and depths in one process", figure4_scan),
    "atlas": Row("seeded MNIST atlas, default preset", seeded_atlas),
    "lazy": Row("widest lazy-limit MLP, standard / ntk / mup", widest_mlp),
}
COLUMNS = ["row", "what", "sizes", "seconds", "result", "device"]


def one_line(error: BaseException) -> str:
    message = (str(error).splitlines() or [""])[0][:200]
    return f"failed: {type(error).__name__}: {message}"


def table_line(cells: list[str]) -> str:
    return "| " + " | ".join(re.sub(r"\s+", " ", cell).replace("|", "/") for cell in cells) + " |"


def device_name(device: str) -> str:
    return torch.cuda.get_device_name() if device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"


def measure_row(name: str, args: argparse.Namespace, workdir: Path) -> tuple[list[str], bool]:
    """The row's cells, and whether it ran; a failure is the row's result, and the next row still runs."""
    row = ROWS[name]
    try:
        with contextlib.redirect_stdout(sys.stderr):  # stdout holds the table alone
            sizes, seconds, result = row.measure(args, workdir)
        ran = True
    except Exception as error:  # noqa: BLE001 - every other row's number is still worth having
        sizes, seconds, result, ran = "", "-", one_line(error), False
    finally:
        free_memory(args.device)
    return [name, row.what, sizes, seconds, result, device_name(args.device)], ran


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="the folder holding MNIST/raw (default: $WIDE_LIGHTNING_DATA, else ./data)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], default="auto")
    parser.add_argument("--tiny", action="store_true", help="tiny sizes: checks the script in well under a minute")
    parser.add_argument("--only", action="append", choices=list(ROWS), help="run this row (repeat for several)")
    parser.add_argument("--mlp-depth", type=int, choices=[1, 2], default=2, help="hidden layers of the lazy row's MLP")
    parser.add_argument("--mlp-width", type=int, default=None,
                        help="the lazy row's width (default: 65,536 on a GPU, 4,096 on the CPU, 64 with --tiny)")
    parser.add_argument("--mup-base-width", type=int, default=None,
                        help="mup's base width (default: the scan config's, 64)")
    args = parser.parse_args(argv)
    args.data_dir = args.data_dir or default_data_dir()
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    args.sizes = TINY if args.tiny else FULL
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    lines, failed = [], []
    with tempfile.TemporaryDirectory(prefix="gpu_suite_") as workdir:
        for name in (name for name in ROWS if not args.only or name in args.only):
            row_started = time.perf_counter()
            cells, ran = measure_row(name, args, Path(workdir))
            lines.append(table_line(cells))
            failed += [] if ran else [name]
            # as it finishes, so that a run stopped later still gives this row's numbers
            print(f"gpu_suite: {name} took {time.perf_counter() - row_started:.1f} s: {lines[-1]}",
                  file=sys.stderr, flush=True)
    print(f"wide_lightning GPU suite, {datetime.date.today()}: {device_name(args.device)}, torch {torch.__version__}, "
          f"Lightning {lightning.__version__}{', tiny sizes' if args.tiny else ''}; "
          f"{time.perf_counter() - started:.0f} s in all\n")
    print(table_line(COLUMNS))
    print(table_line(["---"] * len(COLUMNS)))
    print("\n".join(lines), flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())

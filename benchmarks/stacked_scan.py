"""The Figure 4 (left) scan: one model at a time against all seeds of a depth stacked, side by side.

For each depth, the baseline trains ``len(seeds)`` ``MLPClassifier`` runs one after another, each
followed by its ``LinearProbe`` on the frozen features, with a plain ``DataLoader`` and ``Trainer``
(what ``sweeps/figure4_left.yaml`` runs, minus process start-up and W&B). Ours trains one
``StackedMLPClassifier`` with all seeds and then one ``StackedLinearProbe``, on the resident data
path (what ``sweeps/figure4_left_stacked.yaml`` runs); ``--captured-step`` adds ``CapturedTrainingStep``
to both of its fits and ``--matmul-precision high`` TF32 products. ``--together`` first trains every
depth at once, one ``StackedMLPClassifier`` with the list of depths
(``configs/translated_mnist/transfer_mlp_scan.yaml``), and prints its time and per-depth probe
accuracies before the per-depth table (``--only-together``: that run alone). Both use translated MNIST (shift, then digit),
batch 128, lr 0.01. The table gives wall time, models per minute and the mean probe accuracy of each.

    python benchmarks/stacked_scan.py --data-dir ../shared/datasets --depths 1,2,...,20 --epochs 10   # a GPU
    python benchmarks/stacked_scan.py --data-dir ../shared/datasets --depths 1,5,20 --epochs 1 --limit-batches 40
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from lightning.pytorch import Trainer, seed_everything

from wide_lightning import LinearProbe, MLPClassifier, StackedLinearProbe, StackedMLPClassifier, TranslatedMNIST
from wide_lightning.speed import CapturedTrainingStep, MatmulPrecision

SHAPE = (1, 28, 28)


def make_trainer(args: argparse.Namespace, epochs: int, ours: bool) -> Trainer:
    """A plain ``Trainer``; ours (the stacked runs) with the speed callbacks the options ask for."""
    limits = dict(limit_train_batches=args.limit_batches, limit_val_batches=args.limit_batches) if args.limit_batches else {}
    levers = []
    if ours and args.captured_step:
        levers.append(CapturedTrainingStep())
    if ours and args.matmul_precision:
        levers.append(MatmulPrecision(args.matmul_precision))
    return Trainer(accelerator=args.device, devices=1, max_epochs=epochs, logger=False, enable_checkpointing=False,
                   enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                   callbacks=levers, **limits)


def data(args: argparse.Namespace, target: str, placement: str) -> TranslatedMNIST:
    return TranslatedMNIST(data_dir=args.data_dir, target=target, test_each_epoch=target == "digit",
                           placement=placement, download=False)


def transfer(base, probe_class, placement: str, path: Path, args: argparse.Namespace) -> dict[str, float]:
    """Base training on the shift, then the probe on the digit: one point of Figure 4 (or a stack of them)."""
    ours = placement == "device"  # the stacked runs; the one-at-a-time baseline stays plain
    started = time.perf_counter()
    trainer = make_trainer(args, args.epochs, ours)
    trainer.fit(base, datamodule=data(args, "shift", placement))
    trainer.save_checkpoint(path)
    probe_started = time.perf_counter()
    probe_trainer = make_trainer(args, args.epochs, ours)
    probe_trainer.fit(probe_class(str(path), num_classes=10, input_shape=SHAPE, lr=0.01),
                      datamodule=data(args, "digit", placement))
    print(f"PHASES {type(base).__name__}: base fit + checkpoint {probe_started - started:.1f} s, "
          f"probe (building it included) {time.perf_counter() - probe_started:.1f} s", flush=True)
    return {k: float(v) for k, v in probe_trainer.callback_metrics.items()}


def one_at_a_time(depth: int, args: argparse.Namespace, workdir: Path) -> list[float]:
    accuracies = []
    for seed in args.seeds:
        seed_everything(seed, verbose=False)
        base = MLPClassifier(28, SHAPE, depth=depth, lr=0.01)
        metrics = transfer(base, LinearProbe, "loader", workdir / f"single-{depth}-{seed}.ckpt", args)
        accuracies.append(metrics["test/acc_best"])
    return accuracies


def stacked(depth: int, args: argparse.Namespace, workdir: Path) -> list[float]:
    base = StackedMLPClassifier(28, SHAPE, seeds=args.seeds, depth=depth, lr=0.01)
    metrics = transfer(base, StackedLinearProbe, "device", workdir / f"stacked-{depth}.ckpt", args)
    return [metrics[f"seed{s}/test/acc_best"] for s in args.seeds]


def all_depths(depths: list[int], args: argparse.Namespace, workdir: Path) -> dict[int, list[float]]:
    base = StackedMLPClassifier(28, SHAPE, seeds=args.seeds, depth=depths, lr=0.01)
    metrics = transfer(base, StackedLinearProbe, "device", workdir / "scan.ckpt", args)
    return {d: [metrics[f"depth{d}/seed{s}/test/acc_best"] for s in args.seeds] for d in depths}


def timed(function, *arguments) -> tuple[float, list[float]]:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    start = time.perf_counter()
    result = function(*arguments)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--depths", default="1,5,20")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--limit-batches", type=int, default=0, help="batches per epoch (0: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--skip-baseline", action="store_true", help="time only the stacked scan")
    parser.add_argument("--captured-step", action="store_true", help="stacked fits replay a recorded CUDA-graph step")
    parser.add_argument("--together", action="store_true", help="also train all depths in one stacked run")
    parser.add_argument("--matmul-precision", default=None, help="ours only: MatmulPrecision (high = TF32)")
    parser.add_argument("--only-together", action="store_true", help="time only the all-depths run")
    args = parser.parse_args()
    args.seeds = [int(s) for s in args.seeds.split(",")]
    depths = [int(d) for d in args.depths.split(",")]
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        stacked(depths[0], args, Path(workdir))  # warm-up: data loading, CUDA context; not timed
        if args.together or args.only_together:
            seconds, accuracy = timed(all_depths, depths, args, Path(workdir))
            n = len(args.seeds) * len(depths)
            print(f"ALL DEPTHS TOGETHER: {n} networks, base + probe, {seconds:.1f} s ({60 * n / seconds:.1f} models/min)")
            print("| depth | probe test acc_best, mean over seeds |\n|---|---|")
            for depth, values in accuracy.items():
                print(f"| {depth} | {sum(values) / len(values):.4f} |", flush=True)
            if args.only_together:
                return
        for depth in depths:
            single = (float("nan"), [float("nan")]) if args.skip_baseline else timed(one_at_a_time, depth, args, Path(workdir))
            stack = timed(stacked, depth, args, Path(workdir))
            rows.append((depth, single, stack))
            print(f"DEPTH {depth}: one at a time {single[0]:.1f} s, stacked {stack[0]:.1f} s, "
                  f"probe acc stacked {sum(stack[1]) / len(stack[1]):.4f}", flush=True)
    device = torch.cuda.get_device_name() if args.device == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    n = len(args.seeds)
    print(f"\nFigure 4 left scan: {n} seeds per depth, {args.epochs} epoch(s) base + {args.epochs} probe"
          f"{f', {args.limit_batches} batches per epoch' if args.limit_batches else ''}, {device}, torch {torch.__version__}")
    print("| depth | one at a time | stacked | speed-up | models/min one at a time | models/min stacked "
          "| probe acc one at a time | probe acc stacked |")
    print("|---|---|---|---|---|---|---|---|")
    for depth, (t1, acc1), (t2, acc2) in rows:
        print(f"| {depth} | {t1:.1f} s | {t2:.1f} s | {t1 / t2:.1f}x | {60 * n / t1:.1f} | {60 * n / t2:.1f} | "
              f"{sum(acc1) / len(acc1):.4f} | {sum(acc2) / len(acc2):.4f} |")
    total1, total2 = sum(r[1][0] for r in rows), sum(r[2][0] for r in rows)
    print(f"| all | {total1:.1f} s | {total2:.1f} s | {total1 / total2:.1f}x | {60 * n * len(rows) / total1:.1f} | "
          f"{60 * n * len(rows) / total2:.1f} | | |")


if __name__ == "__main__":
    main()

"""The lazy-limit MLP's peak memory against width, measured, and extrapolated to the widths a GPU must run.

    WIDE_LIGHTNING_DATA=../shared/datasets python benchmarks/mlp_memory.py [--widths 1024 2048 4096 8192] [--depth 2]

Each width is one short ``wide-lightning fit`` of the scan's config (``configs/lazy_limit/``:
FeatureMovement on 2,000 images, SGD with momentum) in a process of its own, 3 training batches;
its peak resident memory is the process's ``ru_maxrss``. A least-squares line ``a + b * parameters``
through the measured widths gives the fixed part ``a`` (the interpreter, torch, MNIST) and the
bytes per parameter ``b`` (weights, gradient, momentum: 12 in fp32), and the table extrapolates the
line to the scan's widest networks. On a GPU the part that grows with width is the same; the fixed
part is the CUDA context and the resident dataset instead.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
#: the fit, reporting its own peak resident memory when it exits
CHILD = ("import atexit, resource, sys\n"
         "atexit.register(lambda: print('MAXRSS', resource.getrusage(resource.RUSAGE_SELF).ru_maxrss, file=sys.stderr))\n"
         "from wide_lightning.cli import main\n"
         "main(sys.argv[1:])")


def parameters(width: int, depth: int, inputs: int = 784, classes: int = 10) -> int:
    """The MLP's weights and biases: inputs -> width (x depth) -> classes."""
    return inputs * width + width + (depth - 1) * (width * width + width) + width * classes + classes


def peak_rss(width: int, depth: int, parameterization: str, folder: Path) -> tuple[float, float]:
    """The peak resident memory (bytes) and seconds of one short fit of the scan's network, in its own process."""
    command = [sys.executable, "-c", CHILD, "fit",
               "--config", str(REPO / "configs/lazy_limit/mlp_mnist.yaml"),
               "--config", str(REPO / f"configs/lazy_limit/{parameterization}.yaml"),
               f"--model.init_args.width={width}", f"--model.init_args.depth={depth}", "--trainer.max_epochs=1",
               "--trainer.limit_train_batches=3", "--trainer.limit_val_batches=1", "--trainer.limit_test_batches=1",
               "--trainer.logger=false", "--trainer.enable_progress_bar=false",
               f"--trainer.default_root_dir={folder / f'w{width}'}"]
    started = time.perf_counter()
    result = subprocess.run(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    reported = [line for line in result.stderr.splitlines() if line.startswith("MAXRSS ")]
    if result.returncode != 0 or not reported:
        raise SystemExit(f"width {width}: the fit failed:\n{result.stderr[-2000:]}")
    return int(reported[-1].split()[1]) * 1024.0, time.perf_counter() - started  # ru_maxrss is in KiB on Linux


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", type=int, nargs="+", default=[1024, 2048, 4096, 8192])
    parser.add_argument("--depth", type=int, default=2)
    parser.add_argument("--parameterization", default="mup", choices=["standard", "ntk", "mup"])
    parser.add_argument("--extrapolate", type=int, nargs="+", default=[16384, 32768, 65536])
    args = parser.parse_args()
    widths = sorted(args.widths)
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        for width in widths:
            rss, seconds = peak_rss(width, args.depth, args.parameterization, Path(folder))
            rows.append((width, parameters(width, args.depth), rss, seconds))
    n = len(rows)
    mean_p = sum(r[1] for r in rows) / n
    mean_m = sum(r[2] for r in rows) / n
    slope = (sum((r[1] - mean_p) * (r[2] - mean_m) for r in rows) / sum((r[1] - mean_p) ** 2 for r in rows)
             if n > 1 else 0.0)
    fixed = mean_m - slope * mean_p
    print(f"peak memory of a 3-batch fit, depth-{args.depth} MLP, {args.parameterization}, "
          f"fit: {fixed / 2**30:.2f} GiB + {slope:.1f} bytes per parameter")
    print("| width | parameters | peak memory (GiB) | line (GiB) | seconds |\n|---|---|---|---|---|")
    for width, count, rss, seconds in rows:
        print(f"| {width:,} | {count:,} | {rss / 2**30:.2f} | {(fixed + slope * count) / 2**30:.2f} | {seconds:.0f} |")
    for width in args.extrapolate:
        count = parameters(width, args.depth)
        print(f"| {width:,} | {count:,} | (not run) | {(fixed + slope * count) / 2**30:.1f} | |")


if __name__ == "__main__":
    main()

"""The atlas's UMAP layout: UMAP's own neighbour search (NN-descent, L-NB) vs the exact graph, side by side.

Both rows lay out the same activations (a trained network's penultimate layer over the training set,
deduplicated as the atlas does) with the paper's UMAP (n_neighbors 20, min_dist 0.01, cosine), seeded
unless ``--parallel``. The baseline lets UMAP search its neighbours; ours hands it the exact ones
(``knn="exact"``: brute force on ``--device``). A small fit first compiles numba's functions, so neither
row pays the per-process JIT. The table also gives how many of the exact neighbours NN-descent found,
and how well each layout keeps the classes apart (a kNN probe on the 2D points), so a faster layout
never hides a worse one.

    python benchmarks/atlas_layout.py --checkpoint runs/x/best.ckpt --data-dir ../shared/datasets           # a GPU
    python benchmarks/atlas_layout.py --checkpoint runs/x/best.ckpt --data-dir ../shared/datasets --points 10000
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
import torch

from wide_lightning.atlas.collect import collect_activations
from wide_lightning.atlas.embedding import exact_knn, normalize_layout, umap_layout, unique_rows
from wide_lightning.atlas.metrics import decodability
from wide_lightning.activations import layer_reader
from wide_lightning.data.mnist import MNIST
from wide_lightning.tasks import load_backbone_task


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--checkpoint", required=True, help="a trained MNIST classifier")
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--points", type=int, default=None, help="lay out the first N training examples (default: all)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--parallel", action="store_true", help="unseeded UMAP on every core (not reproducible)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    task = load_backbone_task(args.checkpoint).to(device).eval()
    data = MNIST(data_dir=args.data_dir, download=False)
    data.setup("fit")
    dataset = data.dataset("train")
    if args.points:
        dataset = dataset.subset(torch.arange(min(args.points, len(dataset))))
    acts = collect_activations(layer_reader(task.net, "features"), dataset,
                               lambda x: data.batch_transform(x, train=False), device=device)
    a = acts.activations.float().numpy()
    labels = acts.labels["digit"].numpy()
    seed = None if args.parallel else 0
    warnings.filterwarnings("ignore", category=UserWarning)  # n_jobs overridden by random_state, etc.

    rng = np.random.default_rng(0)  # JIT warm-up of both paths on a small sample, not timed
    warm = a[rng.choice(len(a), size=min(len(a), 5000), replace=False)]
    for knn in ("umap", "exact"):
        umap_layout(warm, seed=seed, knn=knn, knn_device=device)

    rows = []
    for name, knn in (("baseline: UMAP's NN-descent (L-NB)", "umap"), ("ours: exact kNN graph", "exact")):
        start = time.perf_counter()
        xy = umap_layout(a, seed=seed, knn=knn, knn_device=device)
        seconds = time.perf_counter() - start
        separation = decodability(normalize_layout(xy), labels, method="knn").accuracy
        rows.append((name, seconds, separation))
    points = a[unique_rows(a)[0]]
    start = time.perf_counter()
    exact, _ = exact_knn(points, 20, device=device)
    knn_seconds = time.perf_counter() - start
    from umap.umap_ import nearest_neighbors

    approximate, _, _ = nearest_neighbors(points, 20, "cosine", {}, False, np.random.RandomState(0), n_jobs=-1)
    recall = float(np.mean([len(set(p) & set(q)) / 20 for p, q in zip(approximate, exact)]))

    where = torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU ({torch.get_num_threads()} threads)"
    print(f"\natlas layout: {len(a)} activations of width {a.shape[1]} ({len(points)} distinct), "
          f"{'unseeded, every core' if args.parallel else 'seeded, one core'}; exact kNN on {where}, torch {torch.__version__}")
    print("| layout | seconds | speed-up | class kNN accuracy on the 2D layout |")
    print("|---|---|---|---|")
    for name, seconds, separation in rows:
        print(f"| {name} | {seconds:.1f} s | {rows[0][1] / seconds:.2f}x | {separation:.4f} |")
    print(f"\nexact kNN alone: {knn_seconds:.1f} s; NN-descent found {recall:.2%} of the exact 20 neighbours.")


if __name__ == "__main__":
    main()

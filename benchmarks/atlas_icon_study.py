"""Which rendering of the atlas icons shows what the paper describes? Every variant, measured, in one table.

For each trained checkpoint the activations of the whole training split are collected and laid out
with UMAP **once**; every variant then re-draws the same cells (whitening, objective and its cosine
power, icon size, image parameterization) and is judged by ``wide_lightning.atlas.recognizability``:

* ``net``: the share of icons the atlas's own network assigns to its cell's majority label;
* ``judge``: the same for the independent judge (a vote of the 10 nearest training images, pixels);
* ``mean`` / ``bright``: the icons' mean intensity and share of pixels > 0.5 (the data's in the header);
* ``nn ratio``: distance to the nearest training image / the typical one between training images;
* ``shift err``: for translated MNIST, the cyclic distance between the shift that a linear read-out
  of the hidden state gives each icon and its cell's circular-mean shift (chance: cells shuffled);
* ``neuron conf`` / ``neuron nn``: the judge's confidence on the neuron icons and their distance ratio;
* ``seconds``: rendering the cells and the neurons.

    python benchmarks/atlas_icon_study.py --checkpoint mnist_n2048=runs/.../last.ckpt --data-dir ../shared/datasets
    python benchmarks/atlas_icon_study.py --checkpoint a=X.ckpt --variants "lucid_notebook; recognizable" --steps 64

Each variant's atlas canvas is written to ``--out`` (``<network>/<variant>.png``), with one panel
per network of a chosen few variants side by side (``<network>_panel.png``), and every row to
``study.csv``.
"""

from __future__ import annotations

import argparse
import csv
import platform
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from wide_lightning.atlas.collect import collect_activations
from wide_lightning.checkpoints import read_checkpoint
from wide_lightning.atlas.figures import atlas_canvas, figure_to_array, save_png
from wide_lightning.atlas.pipeline import draw_icons, few_valued, layout_for
from wide_lightning.atlas.recognizability import NearestNeighbourJudge, judge_icons
from wide_lightning.atlas.task import render_inputs
from wide_lightning.atlas.settings import AtlasSettings
from wide_lightning.tasks.backbone import load_backbone_task

#: the recognizable preset before coarse to fine (2026-12-02): the rows measured around it keep it off
NO_C2F = {"coarse_to_fine": 0.0}
#: the recognizable preset's steps and learning rate before 2026-12-02
EARLIER = {"steps": 512, "lr": 0.05, **NO_C2F}
#: name -> (preset, overrides). One factor at a time around the two presets.
VARIANTS: dict[str, tuple[str, dict]] = {
    "lucid_notebook": ("lucid_notebook", {}),
    "lucid_notebook, icon 80": ("lucid_notebook", {"icon_size": 80}),
    "lucid_notebook, maco": ("lucid_notebook", {"parameterization": "maco"}),
    "lucid_notebook, ridge 1e-2": ("lucid_notebook", {"whiten_ridge": 1e-2}),
    "lucid_notebook, ridge 1": ("lucid_notebook", {"whiten_ridge": 1.0}),
    "lucid_notebook, unwhitened": ("lucid_notebook", {"whiten": False}),
    "dot, unwhitened": ("lucid_notebook", {"whiten": False, "objective": "dot"}),
    "true_cosine, ridge 1e-6": ("lucid_notebook", {"objective": "true_cosine"}),
    "true_cosine, ridge 1e-4": ("lucid_notebook", {"objective": "true_cosine", "whiten_ridge": 1e-4}),
    "true_cosine, ridge 1e-2": ("lucid_notebook", {"objective": "true_cosine", "whiten_ridge": 1e-2}),
    "true_cosine, ridge 0.1": ("lucid_notebook", {"objective": "true_cosine", "whiten_ridge": 0.1}),
    "true_cosine, ridge 1": ("lucid_notebook", {"objective": "true_cosine", "whiten_ridge": 1.0}),
    "true_cosine, unwhitened": ("lucid_notebook", {"objective": "true_cosine", "whiten": False}),
    "true_cosine, unwhitened, pow 1": ("lucid_notebook", {"objective": "true_cosine", "whiten": False, "cossim_pow": 1.0}),
    "true_cosine, unwhitened, pow 8": ("lucid_notebook", {"objective": "true_cosine", "whiten": False, "cossim_pow": 8.0}),
    "true_cosine, unwhitened, icon 80": ("lucid_notebook", {"objective": "true_cosine", "whiten": False, "icon_size": 80}),
    "true_cosine, unwhitened, maco": ("lucid_notebook", {"objective": "true_cosine", "whiten": False,
                                                         "parameterization": "maco"}),
    "true_cosine, unwhitened, maco, lr 0.2": ("lucid_notebook", {"objective": "true_cosine", "whiten": False,
                                                                 "parameterization": "maco", "lr": 0.2}),
    "lucid_notebook, whole": ("lucid_notebook", {"transforms": "whole"}),
    "true_cosine, unwhitened, whole": ("lucid_notebook", {"objective": "true_cosine", "whiten": False,
                                                          "transforms": "whole"}),
    "true_cosine, unwhitened, whole, maco": ("lucid_notebook", {"objective": "true_cosine", "whiten": False,
                                                                "transforms": "whole", "parameterization": "maco"}),
    "recognizable": ("recognizable", {}),
    # the recognizable preset's optimization before 2026-12-02 (lucid's 512 steps at lr 0.05): the rows
    # below, up to the steps and rate section, were measured around it
    "recognizable, 512 steps, lr 0.05": ("recognizable", EARLIER),
    "recognizable, ridge 1": ("recognizable", {**EARLIER, "whiten": True, "whiten_ridge": 1.0}),
    "recognizable, lucid_notebook objective": ("recognizable", {**EARLIER, "objective": "lucid_notebook"}),
    "recognizable, pow 1": ("recognizable", {**EARLIER, "cossim_pow": 1.0}),
    "recognizable, icon 80": ("recognizable", {**EARLIER, "icon_size": 80}),
    "recognizable, pow 8": ("recognizable", {**EARLIER, "cossim_pow": 8.0}),
    "recognizable, cosine lr": ("recognizable", {**EARLIER, "lr_schedule": "cosine"}),
    "recognizable, 4 samples": ("recognizable", {**EARLIER, "transform_samples": 4}),
    "recognizable, 4 samples, cosine lr": ("recognizable", {**EARLIER, "transform_samples": 4, "lr_schedule": "cosine"}),
    # steps and learning rate (docs/studies/2026-12-02-atlas-icons.md, "Steps and learning rate")
    "recognizable, 1024 steps": ("recognizable", {**NO_C2F, "steps": 1024, "lr": 0.05}),
    "recognizable, 1024 steps, cosine lr": ("recognizable", {**NO_C2F, "steps": 1024, "lr": 0.05, "lr_schedule": "cosine"}),
    "recognizable, 2048 steps": ("recognizable", {**NO_C2F, "steps": 2048, "lr": 0.05}),
    "recognizable, 512 steps, lr 0.2": ("recognizable", {**NO_C2F, "steps": 512, "lr": 0.2}),
    "recognizable, 1024 steps, lr 0.1": ("recognizable", {**NO_C2F, "steps": 1024, "lr": 0.1}),
    "recognizable, 2048 steps, lr 0.1": ("recognizable", {**NO_C2F, "steps": 2048, "lr": 0.1}),
    # the whole-icon shift jitter, at the preset's own steps and rate (docs/studies/2026-12-02-atlas-icons.md, "The shift jitter")
    "recognizable, shift 0": ("recognizable", {**NO_C2F, "shift": 0.0}),
    "recognizable, shift 1 px": ("recognizable", {**NO_C2F, "shift": 0.04}),
    "recognizable, shift 10%": ("recognizable", {**NO_C2F, "shift": 0.1}),
    "recognizable, shift 20%": ("recognizable", {**NO_C2F, "shift": 0.2}),
    # objectives that do not pay for the activations' size (a feature repeated at several shifts)
    "recognizable, cosine": ("recognizable", {**NO_C2F, "objective": "cosine"}),
    "recognizable, match": ("recognizable", {**NO_C2F, "objective": "match"}),
    # the frequencies let in from coarse to fine over a share of the steps (docs/studies/2026-12-02-atlas-icons.md, "Coarse to fine");
    # the preset's own is 50%, so "recognizable, no coarse to fine" is the preset as it was before
    "recognizable, no coarse to fine": ("recognizable", NO_C2F),
    "recognizable, coarse to fine 25%": ("recognizable", {"coarse_to_fine": 0.25}),
    "recognizable, coarse to fine 50%": ("recognizable", {"coarse_to_fine": 0.5}),
    "recognizable, coarse to fine 75%": ("recognizable", {"coarse_to_fine": 0.75}),
    # the default (coarse to fine included) with one more change, for the narrow translated net's repeated digits
    "recognizable, coarse to fine 50%, match": ("recognizable", {"objective": "match"}),
    "recognizable, coarse to fine 50%, cosine": ("recognizable", {"objective": "cosine"}),
    "recognizable, coarse to fine 50%, pow 8": ("recognizable", {"cossim_pow": 8.0}),
    "recognizable, coarse to fine 50%, 2048 steps, lr 0.1": ("recognizable", {"steps": 2048, "lr": 0.1}),
}
#: one factor at a time around the default preset, and the variants the other networks repeat
AROUND_DEFAULT = [name for name in VARIANTS if name.startswith("recognizable, ")]
CORE = ["lucid_notebook", "lucid_notebook, whole", "true_cosine, ridge 1", "true_cosine, unwhitened",
        "true_cosine, unwhitened, maco", "true_cosine, unwhitened, whole", "recognizable"]
#: what ``--variants all`` runs: every variant but the default preset, which is one of them
ALL = [name for name in VARIANTS if not name.startswith("recognizable")]
GROUPS = {"all": ALL, "core": CORE, "around_default": AROUND_DEFAULT}
#: the variants drawn side by side in each network's panel
PANEL = ("lucid_notebook", "true_cosine, ridge 1", "true_cosine, unwhitened", "true_cosine, unwhitened, whole",
         "recognizable")
COLUMNS = ("network", "variant", "seed", "net", "judge", "mean", "bright", "nn ratio", "shift err (chance)",
           "shift judge err (chance)", "neuron conf", "neuron nn", "cos", "seconds")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", action="append", required=True, metavar="NAME=PATH",
                        help="a trained base checkpoint, named (repeat for several networks)")
    parser.add_argument("--data-dir", default=None, help="where the dataset's files are (default: as recorded)")
    parser.add_argument("--variants", default="all", help=f"names separated by ';', or a group ({', '.join(GROUPS)}): {'; '.join(VARIANTS)}")
    parser.add_argument("--steps", type=int, default=None, help="Adam steps per icon (default: each preset's)")
    parser.add_argument("--neurons", type=int, default=10)
    parser.add_argument("--grid-size", type=int, default=15, help="g of the g x g grid (the paper: 15)")
    parser.add_argument("--min-density", type=int, default=10, help="a cell is kept above this many points (lucid: 10)")
    parser.add_argument("--max-points", type=int, default=None, help="lay out a seeded subset (quick looks)")
    parser.add_argument("--out", default="runs/atlas_icon_study")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--seed", type=int, default=0, help="seeds the layout (and the icons, without --seeds)")
    parser.add_argument("--seeds", default=None,
                        help="icon seeds, comma-separated: each variant is drawn once per seed, then a mean +- sd row "
                             "(one atlas's 46-77 cells make one seed's judge share noisy by a few points)")
    args = parser.parse_args(argv)
    args.icon_seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    return args


def spread(rows: list[dict], name: str, variant: str) -> dict:
    """The mean +- standard deviation of each measure over a variant's seeds, as a row."""
    row = {"network": name, "variant": variant, "seed": f"{len(rows)} seeds"}
    for column in COLUMNS[3:]:
        try:
            values = np.array([float(r[column]) for r in rows])
        except ValueError:  # "-" or "x (chance)"
            row[column] = "-"
            continue
        row[column] = f"{values.mean():.3g} +- {values.std():.2g}" if column in ("net", "judge") else fmt(values.mean())
    return row


def objective_preference(objective: np.ndarray, right: np.ndarray) -> str:
    """Does the network's own objective prefer the icons the judge names right? ``objective`` and
    ``right`` are ``[seeds, cells]``: each seed's final objective per icon and whether the judge named it.

    If better optimization of the objective were what the icons lack, the icon drawn by the seed that
    reached the higher objective would more often be the one the judge names; picking each cell's best
    seed would then raise the judge's share above the seeds' mean.
    """
    cells = np.arange(objective.shape[1])
    best = right[objective.argmax(0), cells].mean()
    mixed = right.any(0) & ~right.all(0)  # cells where some seeds drew an icon the judge names and some did not
    text = (f"judge {right.mean():.3f} over {len(right)} seeds, {best:.3f} for each cell's seed of highest objective, "
            f"{right.any(0).mean():.3f} named right by some seed")
    if mixed.any():
        higher = np.mean([objective[right[:, c], c].mean() > objective[~right[:, c], c].mean() for c in cells[mixed]])
        text += f"; in the {mixed.sum()} cells where seeds differ, the named icons have the higher objective in {higher:.2f}"
    return text


def fmt(value: float, digits: int = 3) -> str:
    return "-" if value is None or not np.isfinite(value) else f"{value:.{digits}g}"


def with_chance(metrics: dict, key: str) -> str:
    if key not in metrics:
        return "-"
    return f"{metrics[key]:.2f} ({metrics[key + '_chance']:.2f})"


def canvas_path(folder: Path, variant: str) -> Path:
    return folder / f"{variant.replace(', ', '_').replace(' ', '')}.png"


def study_panel(canvases: dict[str, np.ndarray], title: str) -> np.ndarray:
    """The canvases of a few variants in one row, each titled with its name."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=(3.2 * len(canvases), 3.6), dpi=110)
    FigureCanvasAgg(figure)
    for k, (name, canvas) in enumerate(canvases.items()):
        ax = figure.add_subplot(1, len(canvases), k + 1)
        ax.imshow(np.clip(canvas, 0, 1), interpolation="lanczos" if canvas.shape[0] > 600 else "nearest")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([])
        ax.set_yticks([])
    figure.suptitle(title, fontsize=10)
    return figure_to_array(figure)


def study_network(name: str, checkpoint: str, args: argparse.Namespace, variants: list[str], writer) -> None:
    device = torch.device(args.device)
    task = load_backbone_task(checkpoint).to(device)
    datamodule = read_checkpoint(checkpoint).build_datamodule(args.data_dir)
    dataset = datamodule.dataset("train")
    if args.max_points and args.max_points < len(dataset):
        dataset = dataset.subset(torch.randperm(len(dataset), generator=torch.Generator().manual_seed(args.seed))
                                 [: args.max_points].sort().values)
    started = time.perf_counter()
    acts = collect_activations(task.net.features, dataset, lambda x: datamodule.batch_transform(x, train=False),
                               device=device)
    labels = {k: v.numpy() for k, v in acts.labels.items()}
    activations = acts.activations.numpy()
    # the study's grid from the start: the UMAP layout below is gridded too, and 15 x 15 cells with more than 10
    # points each may keep none of a small subset (the test's 300 points), whatever the variants ask
    base = AtlasSettings.from_preset("lucid_notebook", seed=args.seed, grid_size=args.grid_size,
                                     min_density=args.min_density)
    cached = Path(args.out) / f"{name}_layout.npy"  # the seeded UMAP layout, kept for reruns of the study
    if cached.is_file() and len(xy := np.load(cached)) == len(activations):
        print(f"# {name}: UMAP layout from {cached}")
    else:
        xy = layout_for(activations, base, device=device).xy  # UMAP once; every variant re-grids this layout
        cached.parent.mkdir(parents=True, exist_ok=True)
        np.save(cached, xy)
    judge = NearestNeighbourJudge(dataset.images, labels, k=base.judge_neighbours)
    print(f"# {name}: {checkpoint}; {len(activations)} activations of width {activations.shape[1]}; "
          f"collect + UMAP {time.perf_counter() - started:.0f} s", flush=True)
    folder = Path(args.out) / name
    folder.mkdir(parents=True, exist_ok=True)
    for variant, seed in ((v, s) for v in variants for s in args.icon_seeds):
        preset, overrides = VARIANTS[variant]
        settings = AtlasSettings.from_preset(preset, **{"steps": args.steps, "neurons": args.neurons, "seed": seed,
                                                        "grid_size": args.grid_size, "min_density": args.min_density,
                                                        **overrides})
        layout = layout_for(activations, settings, xy=xy)
        icons, neurons, _, seconds = draw_icons(layout, task.net.features, settings, **render_inputs(datamodule),
                                                images=dataset.images, device=device)
        judged = judge_icons(
            icons.icons, xy01=layout.xy01, cells=layout.cells, grid_size=layout.grid_size, labels=labels,
            class_label=datamodule.target, judge=judge, input_shape=datamodule.input_shape,
            normalize=datamodule.normalize, network=task.net, features=task.net.features, activations=activations,
            periods=datamodule.label_periods, other_labels=few_valued(labels, datamodule.target),
            neuron_icons=None if neurons is None else neurons.icons, device=device, seed=args.seed)
        m = judged.metrics
        if seed == args.icon_seeds[0]:  # the canvases and panels show the first seed's icons
            save_png(atlas_canvas(icons.icons, layout.cells, layout.grid_size), canvas_path(folder, variant))
        row = {
            "network": name, "variant": variant, "seed": str(seed),
            "net": fmt(m.get("atlas/icons/network_agreement")), "judge": fmt(m["atlas/icons/judge_agreement"]),
            "mean": fmt(m["atlas/icons/mean_intensity"]), "bright": fmt(m["atlas/icons/bright_share"]),
            "nn ratio": fmt(m["atlas/icons/nearest_image_distance_ratio"]),
            "shift err (chance)": with_chance(m, "atlas/icons/shift/readout_error"),
            "shift judge err (chance)": with_chance(m, "atlas/icons/shift/judge_error"),
            "neuron conf": fmt(m.get("atlas/neurons/judge_confidence")),
            "neuron nn": fmt(m.get("atlas/neurons/nearest_image_distance_ratio")),
            "cos": fmt(float(icons.cosine.mean())), "seconds": f"{sum(seconds.values()):.0f}",
        }
        writer.writerow(row)
        print("| " + " | ".join(row[c] for c in COLUMNS) + " |", flush=True)
        rows = [row] if seed == args.icon_seeds[0] else [*rows, row]
        drawn = ([] if seed == args.icon_seeds[0] else drawn) + [
            (icons.objective.numpy(), judged.judge_label == judged.majority)]
        if len(rows) > 1 and seed == args.icon_seeds[-1]:
            summary = spread(rows, name, variant)
            writer.writerow(summary)
            print("| " + " | ".join(summary[c] for c in COLUMNS) + " |", flush=True)
            print(f"# {name}, {variant}: {objective_preference(*map(np.stack, zip(*drawn)))}", flush=True)
    print(f"# {name}: data mean intensity {m['atlas/data/mean_intensity']:.3f}, bright share "
          f"{m['atlas/data/bright_share']:.3f}, typical nearest-image distance {m['atlas/data/nearest_image_distance']:.2f}",
          flush=True)
    chosen = {k: np.asarray(Image.open(canvas_path(folder, k)).convert("RGB")) / 255.0
              for k in PANEL if canvas_path(folder, k).is_file()}  # this run's canvases and earlier runs'
    if chosen:
        save_png(study_panel(chosen, f"{name}: {len(layout.cells)} cells"), Path(args.out) / f"{name}_panel.png")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    variants = GROUPS.get(args.variants) or [v.strip() for v in args.variants.split(";")]
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise SystemExit(f"unknown variants {unknown}; known: {list(VARIANTS)}")
    print(f"# atlas icon study: {platform.node()}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"device {args.device}, steps: {args.steps or 'each preset'}")
    print("| " + " | ".join(COLUMNS) + " |")
    print("|" + "---|" * len(COLUMNS))
    Path(args.out).mkdir(parents=True, exist_ok=True)
    table = Path(args.out) / "study.csv"
    new = not table.is_file()
    with open(table, "a", newline="") as handle:  # a later call with other variants adds its rows
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        for spec in args.checkpoint:
            name, _, path = spec.partition("=")
            study_network(name, path, args, variants, writer)
            handle.flush()


if __name__ == "__main__":
    main()

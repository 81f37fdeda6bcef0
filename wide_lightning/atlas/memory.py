"""How much memory an atlas needs, estimated before it starts, and the refusal of settings that will not fit.

An atlas that needs more memory than the machine has used to grow until the kernel killed it, minutes in
and without a word (``--grid_size 1000 --min_density 0``: 23.7 GB, killed after two minutes). Now
:func:`estimate_atlas_memory` adds up what the atlas will allocate, from the sizes known before any work
(examples, layer width, input shape, settings), and :func:`check_atlas_memory` refuses, in one sentence
naming the memory needed, what is free and the setting to change, an atlas that will not fit. The command
checks before collecting the activations, the end-of-training callback in ``setup`` (before training), and
``build_atlas`` again just before the layout, with the real sizes. ``WIDE_LIGHTNING_SKIP_MEMORY_CHECK=1``
skips the refusal (for an estimate that is wrong on some machine).

What is counted is what the code allocates, phase by phase; the peak is what stays allocated throughout
(the activations, a subset or projected copy of them, the whitening matrix, the cell directions) plus the
largest phase:

* collecting: the ``N x D`` float32 activations twice (the batches and their concatenation);
* laying out: UMAP's copies of the activations and its neighbour graph, or the exact neighbours' distance
  blocks, or (fewer than 4,096 distinct rows) UMAP's ``N x N`` float64 distances; PCA's float64 SVD;
* averaging the cells and whitening: the cells' float64 sums ``K x D``; with ``whiten``, numpy's inverse
  of the ``D x D`` second moment holds four float64 ``D x D`` matrices at once (128 GiB at ``D = 65,536``);
* optimizing the icons: all icons in one batch (``icon_batch_size`` caps it): per icon, what autograd
  keeps for one step through the image parameterization, the transforms, the network and the objective
  (measured by :func:`icon_bytes_per_icon`: one step of 1 and of 3 icons under ``saved_tensors_hooks``),
  the image parameter with its gradient and Adam's two moments; on a GPU this is device memory;
* computing the numbers: a label's linear read-out on ``min(N, 10,000)`` rows in float64 (with the
  train/test split's and the standardization's copies), the covariance a column block at a time;
* judging the icons: the training images as float32, the exemplars' float64 distance blocks;
* drawing the figures: the atlas canvas, ``(g P)^2`` RGB float32 (9.4 GB at ``g = 1000`` and 28-pixel
  icons), several times over, and the cells' strips of exemplars.

The icon count is at most ``g^2`` cells of more than ``min_density`` points each (:func:`icon_count`)
before the layout, and the layout's own count after it. The D x D matrices that nothing needed are no
longer formed: the identity of an unwhitened layout, the classifier subspace's projector, the
covariance of the participation ratio (a column block at a time), a float64 copy of all N x D
activations before the read-outs' subsample.

Measured on the CPU (2 cores): the peak resident memory above the start (``VmHWM`` after resetting it
through ``/proc/self/clear_refs``), with glibc's ``MALLOC_MMAP_THRESHOLD_=131072`` so that freed arrays
leave. Whole atlases (``build_atlas`` after collecting, and saving), estimated / measured:

* real MNIST, an untrained ConvNet (32 filters), UMAP, 4 steps: 6,000 x 1,024 (the default preset)
  366 / 381 MiB; 6,000 x 2,048 whitened (``lucid_notebook``) 477 / 561 MiB; the classifier subspace,
  6,000 x 1,024, 393 / 408 MiB; ``grid_size=120, min_density=0``, exact neighbours, 5,000 x 512:
  1.2 GiB with the layout's 1,270 cells / 1.4 GiB (3.5 GiB with the bound of 5,000 cells before the layout);
* an MLP, PCA, whitened (``tests/test_atlas_memory.py``): 1,000 x 4,096, 578 / 528 MiB; 3,000 x 2,048,
  437 / 394 MiB.

And the parts (measured, and the model):

* UMAP with NN-descent, 16,000 x 128 and x 512: 60 and 132 MiB, 3.0 times the activations and 2.4 KB a
  point, and about 190 MiB more the first time numba compiles it in a process; 4,000 rows (UMAP's
  small-data path): 121 and 168 MiB at D = 512 and 2,048, ``8 N^2`` and twice the activations; exact
  neighbours, 8,000 x 2,048: 499 MiB (the model: 519);
* PCA (numpy's SVD of float32 works in float64), 3,000 x 2,048: 373 MiB (421); 30,000 x 256: 266 MiB (210);
* whitening, 4,000 x 2,048: 160 MiB, 5.0 x ``8 D^2`` before the in-place ridge, 128 MiB (4.0 x) after;
* the participation ratio, 4,000 x 2,048: 126 MiB (3.9 x ``8 D^2``) before its column blocks;
  20,000 x 1,024: 200 MiB after (208);
* a label's decodability, 20,000 x 1,024 and 4,000 x 4,096: 3.5 and 3.0 x ``8 min(N, 10,000) D``;
* the icons: :data:`ICON_PEAK_FACTOR`; the figures: :data:`FIGURE_CANVASES` and :data:`STRIP_COPIES`.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch

from wide_lightning.atlas.metrics import COVARIANCE_BLOCK
from wide_lightning.files import human_bytes

#: Where an atlas can be when its memory is checked (``estimate_atlas_memory(stage=...)``).
STAGES = ("collecting", "layout", "icons")
#: Set to 1 to skip the refusal (the estimate is still made).
SKIP_ENV = "WIDE_LIGHTNING_SKIP_MEMORY_CHECK"
GiB = 1 << 30
FLOAT32, FLOAT64 = 4, 8

#: UMAP with NN-descent: this many copies of the (distinct) activations, and these bytes per point (the
#: neighbour graph, the trees' indices, the embedding), measured at 16,000 x 128 and x 512.
UMAP_COPIES, UMAP_BYTES_PER_POINT = 3.0, 2_500
#: What numba needs the first time it compiles UMAP's NN-descent in a process (about 190 MiB measured).
UMAP_COMPILE_BYTES = 256 << 20
#: Below this many distinct rows UMAP computes all ``N x N`` distances in float64 (umap-learn's small-data path).
UMAP_SMALL_DATA = 4096
#: The peak of an icon batch's optimization step over what autograd saves for it (the gradients of the
#: largest activations exist beside the saved ones during the backward pass). Measured, 64 and 256 icons of
#: 28 x 28, 3 steps, both presets: a ConvNet (32 filters, width 2,048; 362 KiB saved an icon) 1.15-1.30; a
#: ConvNet (64 filters, width 512; 681 KiB) 1.19-1.23; an MLP (3 x 4,096; 77 KiB) 1.59-1.88, of which the
#: targets (counted apart) are 0.2.
ICON_PEAK_FACTOR = 1.5
#: How many float32 atlas canvases exist at once while the figures are made and written, with the
#: exemplars: the canvas, the exemplars' canvas, the two side by side, and writing that pair as a PNG
#: (2.9 times its float32 size). Measured at g = 200 (a 5,600^2 canvas: 359 MiB) and 11,919 cells with
#: exemplars: 4.9 GiB (the model: 4.2); at g = 100 (90 MiB) and 5,709 cells: 2.0 GiB (1.8).
FIGURE_CANVASES = 9.0
#: Without exemplars: the canvas, the panel (3.7 canvases: the clipped copy and matplotlib's) and the PNG.
FIGURE_CANVASES_ALONE = 5.0
#: The cells' strips (each icon and its exemplars, float32 RGB) exist this many times over while they are
#: laid out (4.2 measured) and while they are written beside the canvases (1).
STRIP_COPIES = (4.5, 1.0)
#: Rows of the linear read-outs (``metrics.decodability``'s and ``recognizability.readout``'s ``max_samples``).
DECODE_ROWS = 10_000
#: float64 copies of those rows while a read-out is fitted (the rows, the train/test split, the standardized split).
DECODE_COPIES = 4.0
#: numpy's inverse of the ``D x D`` float64 second moment holds this many ``D x D`` float64 matrices at once.
WHITENING_MATRICES = 4


def nbytes(count: float, size: int = FLOAT32) -> int:
    return int(math.ceil(count * size))


@dataclass(frozen=True)
class Term:
    """One allocation of the estimate: what it is, its bytes, and the settings that shrink it.

    ``remedies`` are ``(verb, setting, value)``: ``("lower", "max_points", None)``, ``("set", "whiten", "false")``.
    """

    what: str
    bytes: int
    remedies: tuple[tuple[str, str, str | None], ...] = ()


@dataclass(frozen=True)
class Phase:
    """A part of the atlas and the memory it adds to what stays allocated throughout."""

    name: str
    terms: tuple[Term, ...]

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.terms)


@dataclass
class Peak:
    """The peak of one memory (host or device): the resident terms plus its largest phase."""

    where: str
    resident: tuple[Term, ...] = ()
    phases: tuple[Phase, ...] = ()

    @property
    def phase(self) -> Phase:
        return max(self.phases, key=lambda p: p.bytes, default=Phase("nothing", ()))

    @property
    def bytes(self) -> int:
        return sum(t.bytes for t in self.resident) + self.phase.bytes

    @property
    def terms(self) -> list[Term]:
        """The terms of the peak, largest first."""
        return sorted((*self.resident, *self.phase.terms), key=lambda t: -t.bytes)


@dataclass
class MemoryEstimate:
    """The host's and (rendering on CUDA) the device's peak memory of an atlas.

    ``icons``, ``icon_bytes`` and ``batch``: the icons counted, the bytes each adds to an icon batch and the
    icons optimized at once (for a suggested ``icon_batch_size``).
    """

    host: Peak
    device: Peak | None = None
    icons: int = 0
    icon_bytes: int = 0
    batch: int = 0

    @property
    def host_bytes(self) -> int:
        return self.host.bytes

    @property
    def device_bytes(self) -> int:
        return 0 if self.device is None else self.device.bytes


class AtlasMemoryError(ValueError):
    """An atlas whose settings need more memory than is free (a user error: the sentence names the setting)."""


def icon_count(settings: Any, examples: int) -> int:
    """The most icons an atlas of ``examples`` points can have: at most ``g^2`` cells, each with more than
    ``min_density`` points."""
    return max(1, min(settings.grid_size ** 2, examples // (settings.min_density + 1)))


def parameter_bytes(settings: Any, channels: int, icon_size: int) -> int:
    """The image parameter of one icon: the spectrum (``fft``: real and imaginary) or the phase (``maco``)."""
    values = channels * icon_size * (icon_size // 2 + 1)
    return nbytes(values * (2 if settings.parameterization == "fft" else 1))


def estimate_atlas_memory(
    settings: Any,
    *,
    examples: int,
    width: int,
    input_shape: Sequence[int],
    collected: int | None = None,
    icon_bytes: int = 0,
    icons: int | None = None,
    images: bool = True,
    other_labels: bool = False,
    device: str | torch.device | None = None,
    world_size: int = 1,
    stage: str = "collecting",
) -> MemoryEstimate:
    """The peak host memory (and device memory when ``device`` is CUDA) of an atlas of these sizes.

    Args:
        settings: the :class:`~wide_lightning.atlas.settings.AtlasSettings`.
        examples: the examples of the split; ``settings.max_points`` of them are laid out.
        width: D, the layer's activations per example.
        input_shape: the network's input ``(C, H, W)``.
        collected: the rows collected (default: the laid-out ones, as the command collects; the callback
            collects the whole split and subsets it afterwards).
        icon_bytes: what one more icon adds to an optimization step (:func:`icon_bytes_per_icon`); 0: unknown.
        icons: the icons (default: the most the grid and ``min_density`` allow, :func:`icon_count`).
        images: the training images are given (judge, exemplars, ``maco``).
        other_labels: a label besides the class is read out of the hidden state (translated MNIST's shift).
        device: where the icons are optimized (and the exact neighbours searched).
        world_size: processes that collect (each gathers every row).
        stage: where the atlas is: ``collecting`` (nothing allocated yet: the command's and the callback's
            checks), ``layout`` (the activations collected, subset and projected: ``build_atlas``'s check
            before the layout) or ``icons`` (the layout made, ``icons`` its cells: the check before the
            icons). What is allocated already is left out: it is not free, and not needed again.
    """
    if stage not in STAGES:
        raise ValueError(f"stage must be one of {list(STAGES)}, got {stage!r}.")
    collecting, laying_out = stage == "collecting", stage in ("collecting", "layout")
    n = min(examples, settings.max_points) if settings.max_points is not None else examples
    collected = n if collected is None else max(collected, n)
    d = int(width)
    channels, height, in_width = (int(s) for s in input_shape)
    pixels = channels * height * in_width
    size = height if settings.icons == "directions" else (settings.icon_size or height)
    k = icon_count(settings, n) if icons is None else int(icons)
    neurons = min(settings.neurons, d)
    optimized = settings.icons == "optimized"
    batch = min(max(k, neurons), settings.icon_batch_size or max(k, neurons))
    cuda = device is not None and torch.device(device).type == "cuda"
    knn = settings.knn if settings.knn != "auto" else ("exact" if cuda else "umap")
    m = min(n, DECODE_ROWS)

    points = "max_points"
    fewer_points = ("lower", points, None)
    no_whitening = ("set", "whiten", "false")
    fewer_cells = (("lower", "grid_size", None), ("raise", "min_density", None))
    act = nbytes(n * d)
    shape = f"{n:,} x {d:,}"

    resident: list[Term] = []
    host_phases: list[Phase] = []
    device_phases: list[Phase] = []
    if collecting:
        resident.append(Term(f"{collected:,} x {d:,} activations in fp32", nbytes(collected * d),
                             (fewer_points,) if collected == n else ()))
        if n < collected:
            resident.append(Term(f"the {shape} laid out", act, (fewer_points,)))
        if settings.space == "classifier_subspace":
            resident.append(Term(f"the {shape} projected", act, (fewer_points,)))
        # the batches before their concatenation; with several processes each concatenates its share, then
        # gathers every row (the de-duplicated rows are the resident activations)
        share = 1.0 if world_size <= 1 else 2.0 / world_size + 1.0
        host_phases.append(Phase("collecting", (
            Term(f"the {collected:,} x {d:,} activations' batches", nbytes(share * collected * d), (fewer_points,)),)))
        if world_size > 1 and cuda:
            device_phases.append(Phase("collecting", (
                Term("the gathered activations", nbytes((1.0 + 1.0 / world_size) * collected * d)),)))
    if settings.whiten and laying_out:
        resident.append(Term(f"the whitening matrix {d:,}^2 in fp32", nbytes(d * d), (no_whitening,)))
    if laying_out:
        resident.append(Term(f"{k:,} cell directions of width {d:,}", nbytes(2 * k * d), fewer_cells))

    # -- layout
    layout: list[Term] = [Term(f"UMAP's copies of the {shape} activations", nbytes(UMAP_COPIES * n * d), (fewer_points,))]
    if settings.reducer == "pca":  # numpy's SVD of float32 works in float64: the rows, LAPACK's copy, U, V^T, workspace
        rows = math.ceil(n / max(1, n // 20_000))
        short = min(rows, d)
        svd = nbytes(3 * rows * d + short * d + 7 * short * short, FLOAT64)
        layout = [Term(f"PCA's centred copy and SVD of {rows:,} x {d:,}", act + svd, (fewer_points,))]
    elif knn == "exact":  # the distinct rows and their normalized copy, the distances a block of rows at a time
        block = nbytes(3 * min(4096, n) * n)
        layout = [Term(f"the exact neighbours' copies of the {shape} activations", (1 if cuda else 2) * act, (fewer_points,)),
                  Term(f"the exact neighbours' {min(4096, n):,} x {n:,} distance blocks", 0 if cuda else block,
                       (fewer_points, ("set", "knn", "umap"))),
                  Term("UMAP's neighbour graph", n * UMAP_BYTES_PER_POINT, (fewer_points,))]
        if cuda:
            device_phases.append(Phase("laying out", (
                Term(f"the exact neighbours' {shape} activations, normalized", 2 * act, (fewer_points, ("set", "knn", "umap"))),
                Term(f"the exact neighbours' {min(4096, n):,} x {n:,} distance blocks", block, (fewer_points,)))))
    elif n < UMAP_SMALL_DATA:
        layout.append(Term(f"UMAP's {n:,}^2 distances in fp64", nbytes(n * n, FLOAT64), (fewer_points,)))
    else:
        layout.append(Term("UMAP's neighbour graph and compiled code", n * UMAP_BYTES_PER_POINT + UMAP_COMPILE_BYTES,
                           (fewer_points,)))
    grid = [Term(f"the {k:,} cells' sums in fp64", nbytes(k * d, FLOAT64), fewer_cells)]
    if settings.whiten:
        moment = max(WHITENING_MATRICES * d * d, 2 * d * d + min(8192, n) * d)
        grid.append(Term(f"whitening {d:,}^2 in fp64", nbytes(moment, FLOAT64), (no_whitening,)))
    if laying_out:
        host_phases += [Phase("laying out", tuple(layout)), Phase("averaging the cells and whitening", tuple(grid))]
    else:
        device_phases = [p for p in device_phases if p.name != "laying out"]

    # -- icons: every icon in one batch (icon_batch_size caps it), then the neurons in another
    render: list[Term] = []
    if optimized:
        per_icon = ICON_PEAK_FACTOR * icon_bytes + 4 * parameter_bytes(settings, channels, size)
        render.append(Term(f"{batch:,} icons optimized at once", nbytes(batch * per_icon, 1),
                           (*fewer_cells, ("set", "icon_batch_size", None))))
        render.append(Term("the icons' targets", nbytes(max(k, neurons) * d)))
    render.append(Term("the icons", nbytes(3 * (k + neurons) * channels * size * size)))
    if cuda:
        device_phases.append(Phase("optimizing the icons", tuple(render)))
    else:
        host_phases.append(Phase("optimizing the icons", tuple(render)))

    # -- numbers: one read-out at a time; the covariance a column block at a time
    rows = min(8192, n) if d <= COVARIANCE_BLOCK else min(8192, n, max(1, (1 << 26) // d))
    numbers = max(
        Term(f"a read-out of {m:,} x {d:,} in fp64", nbytes(DECODE_COPIES * m * d, FLOAT64) + n * d, (fewer_points,)),
        Term(f"the covariance of {d:,} units in fp64", nbytes(2 * d * min(d, COVARIANCE_BLOCK) + 3 * rows * d, FLOAT64),
             (fewer_points,)),
        key=lambda term: term.bytes)  # one after the other: the read-out of each label, the participation ratio
    host_phases.append(Phase("computing the numbers", (numbers,)))

    # -- the judge (the training images as float32) and the exemplars (float64 distance blocks)
    if images:
        judge = nbytes(n * pixels)
        exemplars = nbytes(k * d + min(8192, n) * d + k * min(8192, n), FLOAT64)
        readout = nbytes(2 * m * d, FLOAT64) if other_labels else 0
        host_exemplars = 0 if cuda else exemplars  # one after the other: a label's read-out, then the exemplars
        host_judge = [Term(f"the {n:,} training images in fp32", 0 if cuda else judge, (fewer_points,)),
                      Term(f"a read-out of {m:,} x {d:,} in fp64", readout, (fewer_points,)) if readout > host_exemplars
                      else Term("the exemplars' distances", host_exemplars, (fewer_points,))]
        if n < collected:
            host_judge.append(Term("the laid-out images", n * pixels, (fewer_points,)))
        host_phases.append(Phase("judging the icons", tuple(host_judge)))
        if cuda:
            device_phases.append(Phase("judging the icons", (
                Term(f"the {n:,} training images in fp32", judge + nbytes(2 * 256 * n), (fewer_points,)),
                Term("the exemplars' distances", exemplars, (fewer_points,)))))

    # -- figures and their PNGs: the canvas is (g * P)^2 RGB float32, several times over; with exemplars
    # also one strip per cell (its icon and its exemplars at the input size)
    side = settings.grid_size * size
    canvas = nbytes(side * side * 3)
    strips = nbytes(k * height * in_width * (settings.exemplars + 1) * 3) if images else 0
    if images and settings.exemplars:
        figures = max(FIGURE_CANVASES * canvas + STRIP_COPIES[1] * strips, 4 * canvas + STRIP_COPIES[0] * strips)
    else:
        figures = FIGURE_CANVASES_ALONE * canvas
    smaller = (("lower", "grid_size", None),) + ((("lower", "icon_size", None),) if settings.icon_size else ())
    host_phases.append(Phase("drawing the figures", (
        Term(f"the {side:,} x {side:,}-pixel atlas figures", nbytes(figures, 1), smaller),)))

    host = Peak("host", tuple(resident), tuple(host_phases))
    device_peak = Peak(str(torch.device(device)), (), tuple(device_phases)) if cuda else None
    per_icon = int(ICON_PEAK_FACTOR * icon_bytes + 4 * parameter_bytes(settings, channels, size)) if optimized else 0
    return MemoryEstimate(host, device_peak, icons=k, icon_bytes=per_icon, batch=batch)


# -- what is free ----------------------------------------------------------------------------------


def _read_int(path: Path) -> int | None:
    try:
        text = path.read_text().strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def _cgroup_free() -> int | None:
    """The memory left under this process's cgroup limit (v2 ``memory.max``, v1 ``memory.limit_in_bytes``), if any."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        if line.count(":") < 2:
            continue
        _, controllers, path = line.split(":", 2)
        if controllers == "":  # v2
            base = Path("/sys/fs/cgroup") / path.lstrip("/")
            limit, used = _read_int(base / "memory.max"), _read_int(base / "memory.current")
        elif "memory" in controllers.split(","):  # v1
            base = Path("/sys/fs/cgroup/memory") / path.lstrip("/")
            limit, used = _read_int(base / "memory.limit_in_bytes"), _read_int(base / "memory.usage_in_bytes")
        else:
            continue
        if limit is not None and used is not None and limit < (1 << 60):
            return max(0, limit - used)
    return None


def available_host_memory() -> int | None:
    """The host memory free for new allocations: ``psutil``'s ``available`` if installed, else ``MemAvailable``
    of ``/proc/meminfo``, lowered to the cgroup's limit where one is set; ``None`` where neither is known."""
    free = None
    try:
        import psutil  # type: ignore[import-not-found]

        free = int(psutil.virtual_memory().available)
    except ImportError:
        try:
            match = re.search(r"^MemAvailable:\s+(\d+) kB", Path("/proc/meminfo").read_text(), re.M)
            free = int(match.group(1)) * 1024 if match else None
        except OSError:
            pass
    if free is None:
        try:
            free = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            return None
    limit = _cgroup_free()
    return free if limit is None else min(free, limit)


def available_device_memory(device: str | torch.device | None) -> int | None:
    """Free memory of a CUDA ``device`` (what the driver has free plus what PyTorch holds unused); ``None`` off CUDA."""
    if device is None or torch.device(device).type != "cuda" or not torch.cuda.is_available():
        return None
    device = torch.device(device)
    free, _ = torch.cuda.mem_get_info(device)
    return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))


# -- the refusal -----------------------------------------------------------------------------------


def _remedies(peak: Peak, estimate: MemoryEstimate, free: int, flag: Callable[[str, str | None], str]) -> str:
    """``lower --max_points or --grid_size, or set --whiten false``: what shrinks the largest terms of ``peak``."""
    chosen: list[tuple[str, str, str | None]] = []
    for term in peak.terms:
        if not term.remedies or term.bytes < peak.bytes * 0.05:
            continue
        for verb, name, value in term.remedies:
            if name == "icon_batch_size":  # the largest batch that leaves the rest room
                rest = peak.bytes - term.bytes
                fits = (free - rest) // estimate.icon_bytes if estimate.icon_bytes else 0
                if fits < 1 or fits >= estimate.batch:
                    continue
                value = str(int(fits))
            if all(name != c[1] for c in chosen):
                chosen.append((verb, name, value))
        if len(chosen) >= 3:
            break
    if not chosen:
        return "free memory or use a larger machine"
    groups: dict[str, list[str]] = {}
    for verb, name, value in chosen:
        groups.setdefault(verb, []).append(flag(name, value))
    parts = [f"{verb} {' or '.join(names)}" for verb, names in groups.items()]
    return parts[0] if len(parts) == 1 else ", ".join(parts[:-1]) + ", or " + parts[-1]


def command_flag(name: str, value: str | None) -> str:
    """How the command spells a setting: ``--whiten false``."""
    return f"--{name}" if value is None else f"--{name} {value}"


def keyword(name: str, value: str | None) -> str:
    """How the callback's configuration spells a setting: ``whiten=false``."""
    return name if value is None else f"{name}={value}"


def refusal(estimate: MemoryEstimate, host_free: int | None, device_free: int | None,
            flag: Callable[[str, str | None], str] = command_flag) -> str | None:
    """The one sentence that refuses ``estimate`` (``None`` when it fits)."""
    over = []
    if host_free is not None and estimate.host.bytes > host_free:
        over.append((estimate.host, host_free, "this machine has"))
    if estimate.device is not None and device_free is not None and estimate.device.bytes > device_free:
        over.append((estimate.device, device_free, f"{estimate.device.where} has"))
    if not over:
        return None
    peak, free, has = max(over, key=lambda o: o[0].bytes - o[1])
    shown = [t for t in peak.terms if t.bytes >= max(peak.bytes * 0.05, 1)][:3]
    parts = "; ".join(f"{t.what}: {human_bytes(t.bytes)}" for t in shown)
    where = "" if peak.where == "host" else f" on {peak.where}"
    return (f"the atlas needs about {human_bytes(peak.bytes)}{where} while {peak.phase.name} ({parts}) and {has} "
            f"{human_bytes(free)} free: {_remedies(peak, estimate, free, flag)}.")


def check_atlas_memory(estimate: MemoryEstimate, *, host_free: int | None = None, device_free: int | None = None,
                       device: str | torch.device | None = None,
                       flag: Callable[[str, str | None], str] = command_flag) -> None:
    """Raise :class:`AtlasMemoryError` with one sentence when the estimate exceeds the free memory.

    ``host_free``/``device_free`` default to :func:`available_host_memory` and
    :func:`available_device_memory` of ``device``; ``flag`` spells the settings (``--whiten false`` for the
    command, ``whiten=false`` for the callback). ``WIDE_LIGHTNING_SKIP_MEMORY_CHECK=1`` skips the refusal.
    """
    if os.environ.get(SKIP_ENV, "").lower() not in ("", "0", "false", "no"):
        return
    host_free = available_host_memory() if host_free is None else host_free
    if device_free is None and estimate.device is not None:
        device_free = available_device_memory(device if device is not None else estimate.device.where)
    sentence = refusal(estimate, host_free, device_free, flag)
    if sentence is not None:
        raise AtlasMemoryError(sentence)


# -- what one icon costs -----------------------------------------------------------------------------


def _saved_bytes(run: Callable[[], Any], exclude: set[int]) -> int:
    """The bytes of the distinct storages autograd saves while ``run()`` runs (``exclude``: storages not counted)."""
    seen: dict[int, int] = {}

    def pack(tensor: torch.Tensor) -> torch.Tensor:
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in exclude:
            seen[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        run()
    return sum(seen.values())


def icon_bytes_per_icon(features: Callable[[torch.Tensor], torch.Tensor], settings: Any, *, width: int,
                        input_shape: Sequence[int], normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
                        pad_value: float = 0.0, device: str | torch.device | None = None) -> int:
    """What autograd saves per icon in one optimization step with these settings, in bytes.

    Measured, not modelled: one step of 1 and of 3 icons (random targets) through :func:`render_icons`
    itself, with the storages that autograd saves counted by ``saved_tensors_hooks`` (the network's
    parameters left out); the difference over 2 is one icon's share. It holds for any network, layer,
    transform list and objective. 0 for ``icons='directions'`` (nothing is optimized).
    """
    from wide_lightning.atlas.parameterization import ImageStatistics
    from wide_lightning.atlas.render import _infer_device, _owning_module, render_icons

    if settings.icons != "optimized":
        return 0
    channels, height, _ = (int(s) for s in input_shape)
    size = settings.icon_size or height
    module = _owning_module(features)
    run_device = torch.device(device) if device is not None else _infer_device(module)
    exclude = set()
    if module is not None:
        exclude = {t.untyped_storage().data_ptr() for t in [*module.parameters(), *module.buffers()]}
    statistics = None
    if settings.parameterization == "maco":  # the spectrum's values do not change what is saved
        statistics = ImageStatistics(torch.ones(channels, size, size // 2 + 1), torch.full((channels,), 0.5),
                                     torch.full((channels,), 0.25))
    generator = torch.Generator().manual_seed(0)

    def saved(count: int) -> int:
        targets = torch.randn(count, width, generator=generator)
        return _saved_bytes(lambda: render_icons(
            features, targets, input_shape=input_shape, normalize=normalize, pad_value=pad_value, icon_size=size,
            steps=1, lr=settings.lr, objective=settings.objective, cossim_pow=settings.cossim_pow, seed=0,
            device=run_device, parameterization=settings.parameterization, image_statistics=statistics,
            transforms=settings.transforms, shift=settings.shift, transform_samples=settings.transform_samples,
            lr_schedule=settings.lr_schedule, coarse_to_fine=settings.coarse_to_fine), exclude)

    return max(0, (saved(3) - saved(1)) // 2)

"""Atlas icons: feature visualization of many directions at once (atlas spec sections 2.6-2.11, 3, 4).

Every icon of an atlas is optimized in **one batch**: one FFT-spectrum parameter ``[B, C, P, P//2+1, 2]``,
one Adam optimizer, one forward/backward per step whose loss is ``-sum_b objective_b``. The frozen
network (eval mode, no parameter gradients) has no cross-sample interaction, so this is the same
optimization as ``B`` separate ones, only ``B`` times fewer steps (``benchmarks/atlas_render.py``).

What follows lucid's activation-atlas notebook (``activation-atlas-simple.ipynb``, "L-NB") exactly:

* **Parameterization** (lucid ``param.image(fft=True, decorrelate=True)``): a Fourier spectrum, init
  N(0, 0.01), scaled by ``1 / max(freq, 1/max(H, W))`` (decay power 1), ``irfftn(norm="ortho") / 4``;
  with 3 channels lucid's ImageNet color-decorrelation matrix (divided by its largest column norm,
  applied as ``t @ M^T``); then a sigmoid. Other channel counts (MNIST: 1): sigmoid only.
* **Objective** (``direction_neuron_cossim_S``): ``dot = mean_c(a_c u_c)``, ``cos' = dot / (1e-4 + |a|)``,
  ``obj = dot * max(0.1, cos')^4``; ``u`` is the (whitened) direction, computed by the caller.
  ``"true_cosine"`` is lucid's generic ``_dot_cossim`` (summed dot, true cosine); ``"dot"`` is the plain
  summed dot that L-NB uses when there is no whitening matrix.
* **Transforms**, every step, one random draw for the whole batch: ``pad(2)`` with the dataset's pad
  value (0 MNIST, 1 CIFAR), ``jitter`` 4, 4, 8, 8, 8 (a jitter(d) is a random *crop* shrinking each side
  by d, offset uniform in [0, d]), ``random_scale`` from L-NB's 125 factors (TF1 legacy bilinear resize
  to ``int(s*H) x int(s*W)``), ``random_rotate`` from L-NB's 75 angles (nearest neighbour, corners 0,
  degrees converted with 3.14 as lucid does), ``jitter(2)``.
* Adam, lr 0.05, 512 steps, all icons in one batch.

Deviations (the paper's networks take a fixed 28x28 / 32x32 input; lucid's InceptionV1 takes any size):

* After the transforms the window is **bilinearly resized to the network's input size** (torch
  ``interpolate``, half-pixel centres), then the DataModule's ``normalize`` (spec section 3, option A;
  lucent's ``fixed_image_size`` does the same).
* **Icon size.** ``icon_size`` defaults to the network's input size (28 or 32), not lucid's 80. L-NB's
  pixel amounts (pad 2, jitters summing to 32) were made for 80-px icons and would eat a 28-px icon
  whole, so they are read as fractions of an 80-px icon: each pad/jitter amount ``d`` becomes
  ``max(1, round_half_up(d * icon_size / 80))``. ``icon_size=80`` is L-NB (spec option A) exactly;
  ``icon_size=28`` gives pad 1, jitters 1, 1, 3, 3, 3, 1, so the network always sees an 11-18 px
  window of the 28-px icon, the same 40-64 % of the icon that L-NB's 32-51 px window is of 80 px.
  Scale factors and angles are fractions already and are unchanged.
* Random draws come from seeded ``torch.Generator`` objects (on the CPU, so a CPU and a GPU run draw
  the same transforms), and a run is bit-for-bit repeatable on the CPU. Lucid's seeding never was.
* The whole-image resize of ``random_scale`` is TF1's ``resize_bilinear`` (no half-pixel centres),
  reproduced exactly with two interpolation matrices.

Chunking (``batch_size``) is a memory fallback only: every chunk starts from its slice of the same
initial spectrum and replays the same transform draws, so chunked and one-batch runs give the same
icons up to floating-point rounding (``batch_size=1`` is the one-icon-per-optimization loop of
lucent, used as the benchmark's baseline).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Literal, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

Objective = Literal["lucid_notebook", "true_cosine", "dot"]
OBJECTIVES: tuple[str, ...] = ("lucid_notebook", "true_cosine", "dot")
Generator = torch.Generator

#: L-NB's icon size; the pad/jitter pixel amounts below are meant for icons of this size.
LUCID_ICON_SIZE = 80
#: L-NB ``random_scale``: 125 factors, 0.6730 to 1.0254, drawn uniformly by index.
LUCID_SCALES: tuple[float, ...] = tuple(
    [0.995**n for n in range(-5, 80)] + [0.998**n for n in 2 * list(range(20, 40))]
)
#: L-NB ``random_rotate``: 75 angles in degrees (8 of them 0), drawn uniformly by index.
LUCID_ANGLES: tuple[int, ...] = tuple(
    list(range(-20, 20)) + list(range(-10, 10)) + list(range(-5, 5)) + 5 * [0]
)
#: L-NB pad and jitter amounts, in pixels of an 80-px icon.
LUCID_PAD = 2
LUCID_JITTERS = (4, 4, 8, 8, 8)
LUCID_FINAL_JITTER = 2
#: lucid's ``color_correlation_svd_sqrt`` (ImageNet).
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))
#: Smallest window (pixels per side) the transforms may cut from an icon.
MIN_WINDOW = 2


# ---------------------------------------------------------------------------------------------------
# Objective
# ---------------------------------------------------------------------------------------------------


def objective_terms(
    acts: torch.Tensor, directions: torch.Tensor, mode: Objective = "lucid_notebook", cossim_pow: float = 4.0
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-icon objective (to be maximized) and cosine term, both ``[B]``, for acts and directions ``[B, C]``.

    * ``"lucid_notebook"`` (L-NB ``direction_neuron_cossim_S``): ``dot = mean_c(a u)``,
      ``cos = dot / (1e-4 + |a|)`` (``u`` not normalized), ``obj = dot * max(0.1, cos)^cossim_pow``.
    * ``"true_cosine"`` (lucid ``_dot_cossim``, the paper's formula): ``dot = sum_c(a u)``,
      ``cos = dot / ((1e-4 + |a|)(1e-4 + |u|))``, ``obj = dot * max(0.1, cos)^cossim_pow``.
    * ``"dot"`` (L-NB without whitening): ``obj = sum_c(a u)``; ``cos`` is the true cosine, for reporting.

    The returned ``cos`` is unclamped, so the regime of the 0.1 floor is visible.
    """
    if mode not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {mode!r}.")
    if acts.ndim != 2 or acts.shape != directions.shape:
        raise ValueError(
            f"activations and directions must both be [B, C] of equal shape, got {tuple(acts.shape)} "
            f"and {tuple(directions.shape)}."
        )
    eps = 1e-4
    acts_norm = acts.norm(dim=1)
    if mode == "lucid_notebook":
        dot = (acts * directions).mean(1)
        cos = dot / (eps + acts_norm)
        return dot * cos.clamp(min=0.1) ** cossim_pow, cos
    dot = (acts * directions).sum(1)
    cos = dot / ((eps + acts_norm) * (eps + directions.norm(dim=1)))
    if mode == "true_cosine":
        return dot * cos.clamp(min=0.1) ** cossim_pow, cos
    return dot, cos


def direction_objective(
    acts: torch.Tensor, directions: torch.Tensor, mode: Objective = "lucid_notebook", cossim_pow: float = 4.0
) -> torch.Tensor:
    """The per-icon objective ``[B]`` of :func:`objective_terms` (maximized; the loss is ``-obj.sum()``)."""
    return objective_terms(acts, directions, mode, cossim_pow)[0]


# ---------------------------------------------------------------------------------------------------
# Image parameterization
# ---------------------------------------------------------------------------------------------------


def fft_scale(height: int, width: int) -> torch.Tensor:
    """``1 / max(freq, 1/max(H, W))`` on the rfft grid ``[H, W//2+1]`` (lucid, decay power 1)."""
    fy = torch.fft.fftfreq(height, dtype=torch.float64)[:, None]
    fx = torch.fft.rfftfreq(width, dtype=torch.float64)[None, :]
    freqs = torch.sqrt(fx * fx + fy * fy)
    return (1.0 / freqs.clamp(min=1.0 / max(height, width))).float()


def color_decorrelation_matrix() -> torch.Tensor:
    """lucid's color matrix divided by its largest column L2 norm; pixels are ``t @ M^T``."""
    matrix = torch.tensor(COLOR_CORRELATION_SVD_SQRT, dtype=torch.float64)
    return (matrix / matrix.norm(dim=0).max()).float()


def init_spectrum(
    batch: int, channels: int, size: int | tuple[int, int], generator: Generator | None = None, sd: float = 0.01
) -> torch.Tensor:
    """The initial spectrum ``[B, C, H, W//2+1, 2]`` (real, imaginary), N(0, sd), drawn on the CPU."""
    height, width = (size, size) if isinstance(size, int) else size
    shape = (batch, channels, height, width // 2 + 1, 2)
    return torch.randn(shape, generator=generator, dtype=torch.float32) * sd


def spectrum_to_image(
    spectrum: torch.Tensor, size: tuple[int, int], scale: torch.Tensor | None = None
) -> torch.Tensor:
    """Spectrum ``[B, C, H, W//2+1, 2]`` -> image ``[B, C, H, W]`` in (0, 1) (lucid ``fft_image`` + ``to_valid_rgb``).

    For odd ``W`` this is lucent's ``irfftn(s=(H, W))``; lucid keeps ``W//2+2`` columns, makes a
    ``W+1``-wide image and crops it. Even sizes (28, 32, 80) are the same in both.
    """
    height, width = size
    if scale is None:
        scale = fft_scale(height, width).to(spectrum.device)
    complex_spectrum = torch.view_as_complex(spectrum.contiguous()) * scale
    image = torch.fft.irfftn(complex_spectrum, s=(height, width), norm="ortho") / 4.0
    if image.shape[1] == 3:
        matrix = color_decorrelation_matrix().to(image.device, image.dtype)
        image = torch.einsum("bchw,dc->bdhw", image, matrix)
    return torch.sigmoid(image)


class FFTImage(nn.Module):
    """A batch of square icons parameterized by their Fourier spectrum; ``forward()``: ``[B, C, P, P]`` in (0, 1)."""

    def __init__(self, spectrum: torch.Tensor) -> None:
        super().__init__()
        if spectrum.ndim != 5 or spectrum.shape[-1] != 2:
            raise ValueError(f"spectrum must be [B, C, H, W//2+1, 2], got {tuple(spectrum.shape)}.")
        height = spectrum.shape[2]
        self.size = (height, height)
        if spectrum.shape[3] != height // 2 + 1:
            raise ValueError(f"icons are square: a {height}-row spectrum needs {height // 2 + 1} columns.")
        self.spectrum = nn.Parameter(spectrum.detach().clone())
        self.register_buffer("scale", fft_scale(*self.size).to(spectrum.device), persistent=False)

    @classmethod
    def random(
        cls, batch: int, channels: int, size: int, generator: Generator | None = None, sd: float = 0.01
    ) -> "FFTImage":
        return cls(init_spectrum(batch, channels, size, generator, sd))

    def forward(self) -> torch.Tensor:
        return spectrum_to_image(self.spectrum, self.size, self.scale)


# ---------------------------------------------------------------------------------------------------
# Transforms: callables ``(x [B, C, H, W], generator) -> x'`` with one random draw for the whole batch
# ---------------------------------------------------------------------------------------------------


def _draw(generator: Generator | None, high: int) -> int:
    """A uniform integer in ``[0, high)`` from the (CPU) generator."""
    return int(torch.randint(high, (1,), generator=generator).item())


class Pad:
    """``pad(d, mode='constant')``: grows each side by ``d`` pixels of ``value``."""

    def __init__(self, pad: int, value: float) -> None:
        self.pad = int(pad)
        self.value = float(value)

    def __call__(self, x: torch.Tensor, generator: Generator | None = None) -> torch.Tensor:
        return F.pad(x, (self.pad,) * 4, value=self.value)

    def sizes(self, lo: int, hi: int) -> tuple[int, int]:
        return lo + 2 * self.pad, hi + 2 * self.pad

    def __repr__(self) -> str:
        return f"Pad({self.pad}, value={self.value:g})"


class Jitter:
    """lucid ``jitter(d)``: a random crop to ``(H-d, W-d)``, offsets uniform in ``[0, d]`` per axis."""

    def __init__(self, d: int) -> None:
        self.d = int(d)

    def __call__(self, x: torch.Tensor, generator: Generator | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        if height <= self.d or width <= self.d:
            raise ValueError(f"jitter({self.d}) cannot crop a {height}x{width} image.")
        dy = _draw(generator, self.d + 1)
        dx = _draw(generator, self.d + 1)
        return x[..., dy : dy + height - self.d, dx : dx + width - self.d]

    def sizes(self, lo: int, hi: int) -> tuple[int, int]:
        return lo - self.d, hi - self.d

    def __repr__(self) -> str:
        return f"Jitter({self.d})"


def _tf_bilinear_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """``[n_out, n_in]`` weights of TF1 ``resize_bilinear`` (align_corners=False, no half-pixel centres)."""
    src = torch.arange(n_out, dtype=torch.float64) * (n_in / n_out)
    lo = src.floor().clamp(max=n_in - 1)
    frac = src - lo
    hi = (lo + 1).clamp(max=n_in - 1)
    matrix = torch.zeros(n_out, n_in, dtype=torch.float64)
    rows = torch.arange(n_out)
    matrix.index_put_((rows, lo.long()), 1.0 - frac, accumulate=True)
    matrix.index_put_((rows, hi.long()), frac, accumulate=True)
    return matrix.float()


class RandomScale:
    """lucid ``random_scale``: one factor ``s`` from ``scales``, TF1 bilinear resize to ``int(s*H) x int(s*W)``."""

    def __init__(self, scales: Sequence[float] = LUCID_SCALES) -> None:
        if not scales:
            raise ValueError("random_scale needs at least one scale factor.")
        self.scales = tuple(float(s) for s in scales)
        self._matrices: dict[tuple[int, int, torch.device, torch.dtype], torch.Tensor] = {}

    @staticmethod
    def scaled(scale: float, n: int) -> int:
        # TF multiplies in float32 and casts to int32 (truncation).
        return int(np.float32(scale) * np.float32(n))

    def _matrix(self, n_in: int, n_out: int, ref: torch.Tensor) -> torch.Tensor:
        key = (n_in, n_out, ref.device, ref.dtype)
        if key not in self._matrices:
            self._matrices[key] = _tf_bilinear_matrix(n_in, n_out).to(ref.device, ref.dtype)
        return self._matrices[key]

    def resize(self, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
        rows = self._matrix(x.shape[-2], height, x)
        cols = self._matrix(x.shape[-1], width, x)
        return torch.matmul(torch.matmul(rows, x), cols.T)

    def __call__(self, x: torch.Tensor, generator: Generator | None = None) -> torch.Tensor:
        scale = self.scales[_draw(generator, len(self.scales))]
        height, width = x.shape[-2:]
        return self.resize(x, self.scaled(scale, height), self.scaled(scale, width))

    def sizes(self, lo: int, hi: int) -> tuple[int, int]:
        return min(self.scaled(s, lo) for s in self.scales), max(self.scaled(s, hi) for s in self.scales)

    def __repr__(self) -> str:
        return f"RandomScale({len(self.scales)} factors, {min(self.scales):.4f}..{max(self.scales):.4f})"


def _round_half_away(t: torch.Tensor) -> torch.Tensor:
    return torch.sign(t) * torch.floor(t.abs() + 0.5)


def rotation_index(degrees: float, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source pixel (flat index) and validity of each output pixel of TF1 ``tf.contrib.image.rotate``.

    Counter-clockwise about ``((W-1)/2, (H-1)/2)``, nearest neighbour (``std::round``), out-of-image
    pixels invalid (filled with 0); degrees -> radians with 3.14 as lucid's ``_angle2rads``.
    """
    angle = 3.14 * degrees / 180.0
    cos, sin = math.cos(angle), math.sin(angle)
    x_offset = ((width - 1) - (cos * (width - 1) - sin * (height - 1))) / 2.0
    y_offset = ((height - 1) - (sin * (width - 1) + cos * (height - 1))) / 2.0
    ys, xs = torch.meshgrid(
        torch.arange(height, dtype=torch.float64), torch.arange(width, dtype=torch.float64), indexing="ij"
    )
    src_x = _round_half_away(cos * xs - sin * ys + x_offset)
    src_y = _round_half_away(sin * xs + cos * ys + y_offset)
    valid = (src_x >= 0) & (src_x < width) & (src_y >= 0) & (src_y < height)
    index = src_y.clamp(0, height - 1).long() * width + src_x.clamp(0, width - 1).long()
    return index.flatten(), valid.flatten()


class RandomRotate:
    """lucid ``random_rotate``: one angle (degrees) from ``angles``; nearest neighbour, corners filled with 0."""

    def __init__(self, angles: Sequence[float] = LUCID_ANGLES) -> None:
        if not angles:
            raise ValueError("random_rotate needs at least one angle.")
        self.angles = tuple(angles)
        self._maps: dict[tuple[float, int, int, torch.device, torch.dtype], tuple[torch.Tensor, torch.Tensor]] = {}

    def rotate(self, x: torch.Tensor, degrees: float) -> torch.Tensor:
        if degrees == 0:
            return x
        height, width = x.shape[-2:]
        key = (float(degrees), height, width, x.device, x.dtype)
        if key not in self._maps:
            index, valid = rotation_index(degrees, height, width)
            self._maps[key] = (index.to(x.device), valid.to(x.device, x.dtype))
        index, mask = self._maps[key]
        return (x.flatten(-2).index_select(-1, index) * mask).view(x.shape)

    def __call__(self, x: torch.Tensor, generator: Generator | None = None) -> torch.Tensor:
        return self.rotate(x, self.angles[_draw(generator, len(self.angles))])

    def sizes(self, lo: int, hi: int) -> tuple[int, int]:
        return lo, hi

    def __repr__(self) -> str:
        return f"RandomRotate({len(self.angles)} angles, {min(self.angles)}..{max(self.angles)} deg)"


class Resize:
    """Bilinear resize (torch ``interpolate``, half-pixel centres) to the network's input size; no randomness."""

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = (int(size[0]), int(size[1]))

    def __call__(self, x: torch.Tensor, generator: Generator | None = None) -> torch.Tensor:
        if tuple(x.shape[-2:]) == self.size:
            return x
        return F.interpolate(x, size=self.size, mode="bilinear", align_corners=False)

    def sizes(self, lo: int, hi: int) -> tuple[int, int]:
        return self.size[0], self.size[0]

    def __repr__(self) -> str:
        return f"Resize{self.size}"


def scaled_amount(pixels: int, icon_size: int) -> int:
    """An L-NB pixel amount for 80-px icons, as the same fraction of ``icon_size``: ``max(1, round(d*P/80))``."""
    return max(1, int(math.floor(pixels * icon_size / LUCID_ICON_SIZE + 0.5)))


def lucid_transforms(
    icon_size: int, pad_value: float, output_size: tuple[int, int] | None = None
) -> list[Any]:
    """L-NB's transform list, pad/jitter amounts scaled to ``icon_size`` (identical at 80), then an optional resize."""
    transforms: list[Any] = [Pad(scaled_amount(LUCID_PAD, icon_size), pad_value)]
    transforms += [Jitter(scaled_amount(d, icon_size)) for d in LUCID_JITTERS]
    transforms += [RandomScale(LUCID_SCALES), RandomRotate(LUCID_ANGLES)]
    transforms.append(Jitter(scaled_amount(LUCID_FINAL_JITTER, icon_size)))
    if output_size is not None:
        transforms.append(Resize(output_size))
    return transforms


def apply_transforms(x: torch.Tensor, transforms: Sequence[Any], generator: Generator | None = None) -> torch.Tensor:
    for transform in transforms:
        x = transform(x, generator)
    return x


def window_range(icon_size: int, transforms: Sequence[Any]) -> tuple[int, int]:
    """Smallest and largest side (pixels) of what the random transforms cut from an icon (before any ``Resize``).

    L-NB at 80 px: ``(32, 51)``. Raises ``ValueError`` if some stage can shrink the image below
    :data:`MIN_WINDOW` pixels.
    """
    lo = hi = icon_size
    for transform in transforms:
        if isinstance(transform, Resize):
            break
        lo, hi = transform.sizes(lo, hi)
        if lo < MIN_WINDOW:
            raise ValueError(f"{transform!r} can shrink a {icon_size}-px icon to {lo} px.")
    return lo, hi


def min_icon_size(pad_value: float = 0.0) -> int:
    """The smallest ``icon_size`` the scaled L-NB transforms accept."""
    for size in range(1, 4 * LUCID_ICON_SIZE):
        try:
            window_range(size, lucid_transforms(size, pad_value))
            return size
        except ValueError:
            continue
    raise RuntimeError("no icon size fits the transforms")  # pragma: no cover


# ---------------------------------------------------------------------------------------------------
# Rendering
# ---------------------------------------------------------------------------------------------------


@dataclass
class RenderResult:
    """What :func:`render_icons` returns (all tensors on the CPU).

    Attributes:
        icons: ``[B, C, P, P]`` float32 in [0, 1], the final (un-transformed) icons.
        objective: ``[B]`` objective of each final icon, evaluated without random transforms: the
            whole icon resized to the network's input, normalized, through ``features``.
        cosine: ``[B]`` the unclamped cosine term of that evaluation (``cos'`` for ``lucid_notebook``).
        initial_objective: ``[B]`` the same evaluation of the initial random icons.
        last_step_objective: ``[B]`` each icon's objective at the last optimization step, under that
            step's random transforms (lucid's best-of-attempts criterion).
        transforms: the transform pipeline, as text (pad/jitter amounts depend on ``icon_size``).
        seconds: wall time of the optimization (evaluations included).
    """

    icons: torch.Tensor
    objective: torch.Tensor
    cosine: torch.Tensor
    initial_objective: torch.Tensor
    last_step_objective: torch.Tensor
    steps: int
    icon_size: int
    objective_mode: str
    transforms: tuple[str, ...]
    seconds: float


def directions_as_icons(directions: torch.Tensor, input_shape: Sequence[int], clip: float = 0.01) -> RenderResult:
    """Directions in pixel space shown as images: Appendix A.2's icons, "simply whitened averages over images".

    When the activations are the (normalized) pixels, a cell's direction already is an image, so
    nothing is optimized: each ``[D]`` row is reshaped to ``input_shape`` and scaled to [0, 1] on its
    own, from its ``clip`` to its ``1 - clip`` quantile, clipped (a constant row becomes 0.5).
    Quantiles rather than min and max because whitening gives the few pixels that hardly ever vary
    (MNIST's borders) huge weights, which would leave every other pixel mid-grey. Objective fields
    are NaN: there is none.
    """
    shape = tuple(int(s) for s in input_shape)
    d = torch.as_tensor(directions, dtype=torch.float32).detach().cpu()
    if d.ndim != 2 or d.shape[1] != math.prod(shape):
        raise ValueError(f"directions of shape {tuple(d.shape)} are not images of shape {shape}: "
                         f"icons='directions' needs activations that are the {math.prod(shape)} input pixels.")
    bounds = torch.quantile(d, torch.tensor([clip, 1.0 - clip]), dim=1, keepdim=True)
    low, span = bounds[0], bounds[1] - bounds[0]
    scaled = ((d - low) / span.clamp_min(1e-12)).clamp(0.0, 1.0)
    icons = torch.where(span > 0, scaled, torch.full_like(d, 0.5)).view(len(d), *shape)
    nan = torch.full((len(d),), float("nan"))
    return RenderResult(icons=icons, objective=nan, cosine=nan, initial_objective=nan, last_step_objective=nan,
                        steps=0, icon_size=shape[-1], objective_mode="none", transforms=(), seconds=0.0)


def neuron_directions(width: int, count: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """``count`` distinct neurons of a ``width``-unit layer drawn by ``seed`` (sorted), and their one-hot rows.

    Returns ``(indices [count] long, onehot [count, width] float32)``. Whether the one-hot vectors are
    whitened (``onehot @ S``, the spec's default for the paper's neuron plots) is the caller's choice.
    """
    for name, value in (("width", width), ("count", count)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if count > width:
        raise ValueError(f"cannot draw {count} distinct neurons from a layer of width {width}.")
    order = torch.randperm(width, generator=torch.Generator().manual_seed(seed))
    indices = order[:count].sort().values
    onehot = torch.zeros(count, width, dtype=torch.float32)
    onehot[torch.arange(count), indices] = 1.0
    return indices, onehot


def _owning_module(features: Callable[[torch.Tensor], torch.Tensor]) -> nn.Module | None:
    if isinstance(features, nn.Module):
        return features
    owner = getattr(features, "__self__", None)  # a bound method such as task.features
    return owner if isinstance(owner, nn.Module) else None


def _infer_device(module: nn.Module | None) -> torch.device:
    if module is not None:
        for tensor in module.parameters():
            return tensor.device
        for tensor in module.buffers():
            return tensor.device
    return torch.device("cpu")


class _Frozen:
    """Eval mode and ``requires_grad=False`` for a module's parameters; restores both on exit."""

    def __init__(self, module: nn.Module | None) -> None:
        self.module = module

    def __enter__(self) -> None:
        if self.module is None:
            return
        self.modes = [(m, m.training) for m in self.module.modules()]
        self.grads = [(p, p.requires_grad) for p in self.module.parameters()]
        self.module.eval()
        for p, _ in self.grads:
            p.requires_grad_(False)

    def __exit__(self, *exc: object) -> None:
        if self.module is None:
            return
        for m, training in self.modes:
            m.training = training
        for p, requires_grad in self.grads:
            p.requires_grad_(requires_grad)


def _check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def render_icons(
    features: Callable[[torch.Tensor], torch.Tensor],
    directions: torch.Tensor,
    *,
    input_shape: Sequence[int],
    normalize: Callable[[torch.Tensor], torch.Tensor] | None = None,
    pad_value: float = 0.0,
    icon_size: int | None = None,
    steps: int = 512,
    lr: float = 0.05,
    objective: Objective = "lucid_notebook",
    cossim_pow: float = 4.0,
    seed: int = 0,
    device: str | torch.device | None = None,
    batch_size: int | None = None,
    progress: Callable[[int, int, float], None] | None = None,
) -> RenderResult:
    """Optimize one icon per direction, all icons in one batch (spec sections 2.6-2.9, 4).

    Args:
        features: input -> activations ``[B, C]`` (e.g. ``net.features`` or ``task.features``). If it is
            (or is a bound method of) an ``nn.Module``, that module is put in eval mode with frozen
            parameters while rendering and restored afterwards. Gradients go to the icons only.
        directions: ``[B, C]`` target directions, already whitened by the caller (``v @ S``) if wanted.
        input_shape: the network's input ``(C, H, W)``; icons have ``C`` channels.
        normalize: pixels in [0, 1] -> network input (``datamodule.normalize``); ``None``: identity.
        pad_value: the pad transform's pixel value (``datamodule.pad_value``: 0 MNIST, 1 CIFAR).
        icon_size: side of the square icons; default the network's input height. Pad/jitter amounts
            scale with it (module docstring).
        steps, lr: Adam steps and learning rate (L-NB: 512, 0.05).
        objective, cossim_pow: see :func:`objective_terms`. Use ``"dot"`` for unwhitened directions as L-NB.
        seed: seeds the initial spectrum and the transform draws; same seed, same icons (on the CPU).
        device: where to optimize; default where ``features``' module lives (else the CPU).
        batch_size: optimize at most this many icons at once (a memory fallback; default all).
        progress: called after every step as ``progress(step, total_steps, loss)``, counting over chunks.

    See :func:`render_kwargs` for taking ``input_shape``, ``normalize`` and ``pad_value`` from a DataModule.
    """
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"input_shape must be (channels, height, width), got {tuple(input_shape)}.")
    channels, height, width = shape
    if not isinstance(directions, torch.Tensor):
        directions = torch.as_tensor(directions)
    if directions.ndim != 2:
        raise ValueError(f"directions must be a 2-D [icons, width] tensor, got shape {tuple(directions.shape)}.")
    if directions.shape[0] == 0:
        raise ValueError("directions is empty: there is no icon to render.")
    if not torch.isfinite(directions).all():
        bad = (~torch.isfinite(directions)).any(1).nonzero().flatten().tolist()
        raise ValueError(f"directions contain NaN or inf (rows {bad[:10]}{'...' if len(bad) > 10 else ''}).")
    _check_int("steps", steps, 1)
    if batch_size is not None:
        _check_int("batch_size", batch_size, 1)
    if not lr > 0:
        raise ValueError(f"lr must be positive, got {lr!r}.")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}.")
    icon_size = height if icon_size is None else _check_int("icon_size", icon_size, 1)
    transforms = lucid_transforms(icon_size, pad_value, output_size=(height, width))
    try:
        window_range(icon_size, transforms)
    except ValueError as err:
        raise ValueError(
            f"icon_size={icon_size} is too small for the transforms ({err}); "
            f"use icon_size >= {min_icon_size(pad_value)}."
        ) from None
    to_input = normalize if normalize is not None else (lambda x: x)
    final_resize = Resize((height, width))

    module = _owning_module(features)
    # torch.empty(...).device turns "cuda" into "cuda:0", so it compares equal to the parameters' device.
    run_device = torch.empty(0, device=device).device if device is not None else _infer_device(module)
    model_device = _infer_device(module) if module is not None else run_device
    if module is not None and any(True for _ in module.parameters()) and model_device != run_device:
        raise ValueError(f"features live on {model_device} but device={run_device}; move the network first.")
    directions = directions.detach().to(run_device, torch.float32)
    count = directions.shape[0]
    chunk = count if batch_size is None else min(batch_size, count)

    def acts_of(images: torch.Tensor) -> torch.Tensor:
        acts = features(to_input(images))
        if acts.ndim != 2:
            raise ValueError(f"features must return [B, C] activations, got shape {tuple(acts.shape)}.")
        return acts

    def evaluate(images: torch.Tensor, dirs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        with torch.no_grad():
            acts = acts_of(final_resize(images))
            if acts.shape[1] != dirs.shape[1]:
                raise ValueError(
                    f"direction width {dirs.shape[1]} != feature width {acts.shape[1]}: directions must have "
                    f"one entry per unit of the layer that features returns."
                )
            return objective_terms(acts, dirs, objective, cossim_pow)

    spectrum0 = init_spectrum(count, channels, icon_size, torch.Generator().manual_seed(seed))
    outputs: dict[str, list[torch.Tensor]] = {k: [] for k in ("icons", "obj", "cos", "obj0", "last")}
    total_steps = steps * math.ceil(count / chunk)
    done = 0
    start = time.perf_counter()
    with _Frozen(module):
        for first in range(0, count, chunk):
            dirs = directions[first : first + chunk]
            image = FFTImage(spectrum0[first : first + chunk].to(run_device))
            with torch.no_grad():
                obj0, _ = evaluate(image(), dirs)  # also checks the widths before any step
            optimizer = torch.optim.Adam([image.spectrum], lr=lr)
            # Every chunk replays the same draws, so chunking does not change the result.
            draws = torch.Generator().manual_seed(seed + 1)
            last = obj0
            for _ in range(steps):
                x = apply_transforms(image(), transforms, draws)
                obj, _ = objective_terms(acts_of(x), dirs, objective, cossim_pow)
                loss = -obj.sum()
                (grad,) = torch.autograd.grad(loss, [image.spectrum])
                image.spectrum.grad = grad
                optimizer.step()
                last = obj.detach()
                done += 1
                if progress is not None:
                    progress(done, total_steps, float(loss.detach()))
            with torch.no_grad():
                icons = image()
            obj_final, cos_final = evaluate(icons, dirs)
            for key, value in zip(outputs, (icons, obj_final, cos_final, obj0, last)):
                outputs[key].append(value.detach().float().cpu())
    seconds = time.perf_counter() - start
    return RenderResult(
        icons=torch.cat(outputs["icons"]),
        objective=torch.cat(outputs["obj"]),
        cosine=torch.cat(outputs["cos"]),
        initial_objective=torch.cat(outputs["obj0"]),
        last_step_objective=torch.cat(outputs["last"]),
        steps=steps,
        icon_size=icon_size,
        objective_mode=objective,
        transforms=tuple(repr(t) for t in transforms),
        seconds=seconds,
    )


def render_kwargs(datamodule: Any) -> dict[str, Any]:
    """``input_shape``, ``normalize`` and ``pad_value`` of an ``ImageDataModule``, for :func:`render_icons`."""
    return {
        "input_shape": tuple(datamodule.input_shape),
        "normalize": datamodule.normalize,
        "pad_value": float(datamodule.pad_value),
    }

"""The random transforms of lucid's activation-atlas notebook (atlas spec section 2.8), batched.

Every step applies, with one random draw for the whole batch: ``pad(2)`` with the dataset's pad value
(0 MNIST, 1 CIFAR), ``jitter`` 4, 4, 8, 8, 8 (a jitter(d) is a random *crop* shrinking each side by d,
offset uniform in [0, d]), ``random_scale`` from the notebook's 125 factors (TF1 legacy bilinear
resize to ``int(s*H) x int(s*W)``), ``random_rotate`` from its 75 angles (nearest neighbour, corners
0, degrees converted with 3.14 as lucid does), ``jitter(2)``.

Deviations (the paper's networks take a fixed 28x28 / 32x32 input; lucid's InceptionV1 takes any size):

* After the transforms the window is **bilinearly resized to the network's input size** (torch
  ``interpolate``, half-pixel centres), then the DataModule's ``normalize`` (spec section 3, option A;
  lucent's ``fixed_image_size`` does the same).
* **Icon size.** The notebook's pixel amounts (pad 2, jitters summing to 32) were made for 80-px icons
  and would eat a 28-px icon whole, so they are read as fractions of an 80-px icon: each pad/jitter
  amount ``d`` becomes ``max(1, round_half_up(d * icon_size / 80))``. ``icon_size=80`` is the notebook
  (spec option A) exactly; ``icon_size=28`` gives pad 1, jitters 1, 1, 3, 3, 3, 1, so the network
  always sees an 11-18 px window of the 28-px icon, the same 40-64 % of the icon that the notebook's
  32-51 px window is of 80 px. Scale factors and angles are fractions already and are unchanged.
* Random draws come from seeded ``torch.Generator`` objects (on the CPU, so a CPU and a GPU run draw
  the same transforms), and a run is bit-for-bit repeatable on the CPU. Lucid's seeding never was.
* The whole-image resize of ``random_scale`` is TF1's ``resize_bilinear`` (no half-pixel centres),
  reproduced exactly with two interpolation matrices.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

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
#: Smallest window (pixels per side) the transforms may cut from an icon.
MIN_WINDOW = 2


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


#: ``whole`` transforms: shifts of up to this share of the side (1 px at 28 px; ``shift=`` sets another),
#: lucent's scales 0.9-1.1, turns of up to 10 degrees. The shift was 0.1 until 2026-12-02 (docs/studies/2026-12-02-atlas-icons.md,
#: "The shift jitter").
WHOLE_SHIFT = 0.04
WHOLE_SCALES: tuple[float, ...] = tuple(1 + k / 50 for k in range(-5, 6))
WHOLE_ANGLES: tuple[int, ...] = tuple(range(-10, 11))


class CenterFit:
    """Centre crop, or centre pad with ``value``, back to ``size`` x ``size``: a rescaled image keeps its centre."""

    def __init__(self, size: int, value: float) -> None:
        self.size = int(size)
        self.value = float(value)

    def __call__(self, x: torch.Tensor, generator: Generator | None = None) -> torch.Tensor:
        height, width = x.shape[-2:]
        grow_h, grow_w = max(self.size - height, 0), max(self.size - width, 0)
        if grow_h or grow_w:
            x = F.pad(x, (grow_w // 2, grow_w - grow_w // 2, grow_h // 2, grow_h - grow_h // 2), value=self.value)
            height, width = x.shape[-2:]
        top, left = (height - self.size) // 2, (width - self.size) // 2
        return x[..., top:top + self.size, left:left + self.size]

    def sizes(self, lo: int, hi: int) -> tuple[int, int]:
        return self.size, self.size

    def __repr__(self) -> str:
        return f"CenterFit({self.size}, value={self.value:g})"


def check_shift(shift: float) -> float:
    """``shift`` itself if it is a share of the icon's side in [0, 0.5); else a ``ValueError`` that says so."""
    if isinstance(shift, bool) or not isinstance(shift, (int, float)) or not 0 <= shift < 0.5:
        raise ValueError(f"shift must be a share of the icon's side in [0, 0.5), got {shift!r} "
                         f"(0: no shift; 0.1: up to 10 % of the side).")
    return shift


def shift_pixels(shift: float, icon_size: int) -> int:
    """The largest shift in pixels for ``shift``, a share of the side: ``round(shift * icon_size)``, at least 1 unless 0."""
    return 0 if check_shift(shift) == 0 else max(1, round(shift * icon_size))


def whole_icon_transforms(
    icon_size: int, pad_value: float, output_size: tuple[int, int] | None = None, shift: float = WHOLE_SHIFT
) -> list[Any]:
    """Shape-preserving transforms (atlas spec section 3, option B): the network sees the whole icon every step.

    A shift of up to ``shift`` of the side (pad, then a random crop back to the icon's size; none at 0), a scale
    of 0.9-1.1 about the centre (lucent's ``standard_transforms``), a turn of up to 10 degrees, then
    an optional resize to the network's input. lucid's list instead shows the network a random
    40-64 % window of the icon, magnified to the input size, so an icon is optimized to look right
    in parts, never whole, which is how it is shown and judged.
    """
    pixels = shift_pixels(shift, icon_size)
    transforms: list[Any] = [Pad(pixels, pad_value), Jitter(2 * pixels)] if pixels else []
    transforms += [RandomScale(WHOLE_SCALES), CenterFit(icon_size, pad_value), RandomRotate(WHOLE_ANGLES)]
    if output_size is not None:
        transforms.append(Resize(output_size))
    return transforms


#: The transform lists by name (``render_icons(transforms=...)``).
TRANSFORMS = {"lucid": lucid_transforms, "whole": whole_icon_transforms}


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

"""Image parameterizations of a batch of icons: what the optimizer changes, and how that becomes pixels.

lucid's ``param.image(fft=True, decorrelate=True)``, which the paper's notebook used: a Fourier
spectrum, init N(0, 0.01), scaled by ``1 / max(freq, 1/max(H, W))`` (decay power 1),
``irfftn(norm="ortho") / 4``; with 3 channels lucid's ImageNet color-decorrelation matrix (divided by
its largest column norm, applied as ``t @ M^T``); then a sigmoid. Other channel counts (MNIST: 1):
sigmoid only.
"""

from __future__ import annotations

import torch
from torch import nn

Generator = torch.Generator

#: lucid's ``color_correlation_svd_sqrt`` (ImageNet).
COLOR_CORRELATION_SVD_SQRT = ((0.26, 0.09, 0.02), (0.27, 0.00, -0.05), (0.27, -0.09, 0.03))


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

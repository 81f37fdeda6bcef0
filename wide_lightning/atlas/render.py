"""Atlas icons: feature visualization of many directions at once (atlas spec sections 2.6-2.11, 3, 4).

Every icon of an atlas is optimized in **one batch**: one image parameter (``parameterization.py``),
one Adam optimizer, one forward/backward per step through the random transforms (``transforms.py``)
whose loss is ``-sum_b objective_b`` (``objective.py``). The frozen network (eval mode, no parameter
gradients) has no cross-sample interaction, so this is the same optimization as ``B`` separate ones,
only ``B`` times fewer steps (``benchmarks/atlas_render.py``). Adam, lr 0.05, 512 steps, as lucid's
notebook.

Chunking (``batch_size``) is a memory fallback only: every chunk starts from its slice of the same
initial spectrum and replays the same transform draws, so chunked and one-batch runs give the same
icons up to floating-point rounding (``batch_size=1`` is the one-icon-per-optimization loop of
lucent, used as the benchmark's baseline).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import torch
from torch import nn

from wide_lightning.atlas.objective import OBJECTIVES, Objective, objective_terms
from wide_lightning.atlas.parameterization import (
    PARAMETERIZATIONS,
    FFTImage,
    ImageStatistics,
    MacoImage,
    Parameterization,
    band_limit_at,
    check_coarse_to_fine,
    init_phase,
    init_spectrum,
)
from wide_lightning.atlas.transforms import (
    TRANSFORMS,
    WHOLE_SHIFT,
    Resize,
    apply_transforms,
    check_shift,
    min_icon_size,
    window_range,
)


#: How the icons' learning rate moves over the steps (``render_icons(lr_schedule=...)``).
LR_SCHEDULES = ("constant", "cosine")


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
        parameterization: ``fft`` or ``maco`` (``none`` for :func:`directions_as_icons`).
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
    parameterization: str = "fft"


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
                        steps=0, icon_size=shape[-1], objective_mode="none", transforms=(), seconds=0.0,
                        parameterization="none")


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


def check_int(name: str, value: Any, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}.")
    return value


def check_render_settings(*, steps: int, lr: float, objective: str, cossim_pow: float, parameterization: str,
                          transforms: str, shift: float, transform_samples: int, lr_schedule: str,
                          coarse_to_fine: float, icon_size: int | None) -> None:
    """Refuse an icon optimization that cannot run, naming the value: the one check of these settings, made
    by ``AtlasSettings`` (before any training or collecting) and by :func:`render_icons` for direct callers."""
    check_int("steps", steps, 1)
    check_int("transform_samples", transform_samples, 1)
    if icon_size is not None:
        check_int("icon_size", icon_size, 1)
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule must be one of {list(LR_SCHEDULES)}, got {lr_schedule!r}.")
    if isinstance(lr, bool) or not isinstance(lr, (int, float)) or not 0 < lr < math.inf:
        raise ValueError(f"lr must be positive and finite, got {lr!r}.")
    if isinstance(cossim_pow, bool) or not isinstance(cossim_pow, (int, float)) or not 0 <= cossim_pow < math.inf:
        raise ValueError(f"cossim_pow must be a finite number >= 0, got {cossim_pow!r}.")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective must be one of {list(OBJECTIVES)}, got {objective!r}.")
    if parameterization not in PARAMETERIZATIONS:
        raise ValueError(f"parameterization must be one of {list(PARAMETERIZATIONS)}, got {parameterization!r}.")
    if transforms not in TRANSFORMS:
        raise ValueError(f"transforms must be one of {sorted(TRANSFORMS)}, got {transforms!r}.")
    check_shift(shift)  # a bad shift is refused whichever list is used
    check_coarse_to_fine(coarse_to_fine, parameterization)


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
    parameterization: Parameterization = "fft",
    image_statistics: ImageStatistics | None = None,
    transforms: str = "lucid",
    shift: float = WHOLE_SHIFT,
    transform_samples: int = 1,
    lr_schedule: str = "constant",
    coarse_to_fine: float = 0.0,
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
        progress: called after every step as ``progress(step, total_steps, objective)``, counting over chunks;
            ``objective`` is the mean objective of the step's icons (under its random transforms).
        parameterization: ``fft`` (lucid: a free spectrum, sigmoid) or ``maco`` (the training images'
            amplitude spectrum, only the phase optimized; needs ``image_statistics`` at ``icon_size``).
        image_statistics: :func:`~wide_lightning.atlas.parameterization.image_statistics` of the
            training images, for ``maco``.
        transforms: ``lucid`` (the notebook's list: the network sees a random window of the icon) or
            ``whole`` (shape-preserving: the whole icon, shifted, scaled and turned a little).
        shift: ``whole`` transforms only: the largest shift, as a share of the icon's side (0: none).
        transform_samples: independent transform draws per step, the objective averaged over them
            (transformation robustness with a lower-variance gradient; 1: lucid's one draw per step).
        lr_schedule: ``constant`` (lucid) or ``cosine`` (the rate decays from ``lr`` to 0 over the steps).
        coarse_to_fine: ``maco`` only: the share of the steps over which the icons' spatial
            frequencies are let in, from one cycle per icon up to all (:func:`band_limit_at`); 0: all
            from the start.

    ``wide_lightning.atlas.task.render_inputs`` takes ``input_shape``, ``normalize`` and ``pad_value`` from a DataModule.
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
    check_render_settings(steps=steps, lr=lr, objective=objective, cossim_pow=cossim_pow,
                          parameterization=parameterization, transforms=transforms, shift=shift,
                          transform_samples=transform_samples, lr_schedule=lr_schedule, coarse_to_fine=coarse_to_fine,
                          icon_size=icon_size)
    if batch_size is not None:
        check_int("batch_size", batch_size, 1)
    icon_size = height if icon_size is None else icon_size
    if parameterization == "maco" and image_statistics is None:
        raise ValueError("parameterization='maco' needs image_statistics (the training images' amplitude spectrum).")
    extra = {"shift": shift} if transforms == "whole" else {}
    transforms = TRANSFORMS[transforms](icon_size, pad_value, output_size=(height, width), **extra)
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

    start_generator = torch.Generator().manual_seed(seed)
    if parameterization == "fft":
        initial = init_spectrum(count, channels, icon_size, start_generator)
        make_image: Callable[[torch.Tensor], nn.Module] = FFTImage
    else:
        initial = init_phase(count, channels, icon_size, start_generator)
        make_image = lambda phase: MacoImage(phase, image_statistics)  # noqa: E731
    outputs: dict[str, list[torch.Tensor]] = {k: [] for k in ("icons", "obj", "cos", "obj0", "last")}
    total_steps = steps * math.ceil(count / chunk)
    done = 0
    start = time.perf_counter()
    with _Frozen(module):
        for first in range(0, count, chunk):
            dirs = directions[first : first + chunk]
            image = make_image(initial[first : first + chunk].to(run_device))
            (parameter,) = image.parameters()
            with torch.no_grad():
                obj0, _ = evaluate(image(), dirs)  # also checks the widths before any step
            optimizer = torch.optim.Adam([parameter], lr=lr)
            # Every chunk replays the same draws, so chunking does not change the result.
            draws = torch.Generator().manual_seed(seed + 1)
            last = obj0
            for step in range(steps):
                if coarse_to_fine > 0:
                    image.band_limit = band_limit_at(step, steps, coarse_to_fine, icon_size)
                if lr_schedule == "cosine":
                    optimizer.param_groups[0]["lr"] = lr * 0.5 * (1.0 + math.cos(math.pi * step / steps))
                if transform_samples == 1:
                    x = apply_transforms(image(), transforms, draws)
                    obj, _ = objective_terms(acts_of(x), dirs, objective, cossim_pow)
                else:
                    pixels = image()
                    x = torch.cat([apply_transforms(pixels, transforms, draws) for _ in range(transform_samples)])
                    obj, _ = objective_terms(acts_of(x), dirs.repeat(transform_samples, 1), objective, cossim_pow)
                    obj = obj.view(transform_samples, -1).mean(0)
                loss = -obj.sum()
                (grad,) = torch.autograd.grad(loss, [parameter])
                parameter.grad = grad
                optimizer.step()
                last = obj.detach()
                done += 1
                if progress is not None:
                    progress(done, total_steps, float(last.mean()))
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
        parameterization=parameterization,
    )

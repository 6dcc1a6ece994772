"""The latent `scaling_factor` of a latent-diffusion model: 1 / std of the first stage's latents, from data."""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable

import numpy as np
import torch
from diffusers import VQModel


def scaling_factor_indices(num_images: int, num_samples: int, seed: int, rank: int = 0, world_size: int = 1) -> list:
    """This rank's share of a seeded random subset of `min(num_samples, num_images)` image indices.

    The subset depends only on (`num_images`, `num_samples`, `seed`), not on the number of processes, and draws no
    number from torch's global generator (which a resumed run restores for its noise draws).
    """
    if num_samples < 1:
        raise ValueError(f"num_samples got {num_samples!r}; expected an int >= 1")
    chosen = np.random.default_rng(seed).permutation(num_images)[: min(num_samples, num_images)]
    return sorted(int(index) for index in chosen[rank::world_size])


@torch.no_grad()
def estimate_scaling_factor(
    vqvae: VQModel,
    batches: Iterable[torch.Tensor],
    reduce: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> float:
    r"""1 / std of `vqvae.encode(images).latents` over all elements of all batches (of all processes).

    This is the `scaling_factor` diffusers' `LDMPipeline` divides sampled latents by, so that the diffusion model
    works on latents of unit variance. Sums are accumulated in float64 (each batch's in fp32).

    Args:
        vqvae (`diffusers.VQModel`): The frozen first stage (eval mode).
        batches (iterable of `torch.Tensor`): Images (B, 3, H, W) in [-1, 1]; may be empty on some processes.
        reduce (`Callable`, *optional*): Sums a float64 tensor over processes, e.g.
            `lambda t: accelerator.reduce(t, "sum")`. Every process must call this function (it reduces once).

    Raises:
        ValueError: when no latent was seen on any process, or the latents are constant.
    """
    device = vqvae.device
    stats = torch.zeros(3, dtype=torch.float64)
    for images in batches:
        latents = vqvae.encode(images.to(device=device, dtype=vqvae.dtype)).latents.float()
        # per-batch sums in fp32 on the device (float64 is not on every accelerator), the running sums in float64
        sums = torch.stack([latents.sum(), latents.pow(2).sum()]).cpu().double()
        stats += torch.cat([sums, torch.tensor([float(latents.numel())], dtype=torch.float64)])
    if reduce is not None:
        stats = reduce(stats.to(device)).cpu()
    total, total_sq, count = (float(value) for value in stats)
    if count == 0:
        raise ValueError("no latents to estimate the scaling factor from; expected at least one image")
    variance = total_sq / count - (total / count) ** 2
    if not variance > 1e-20:
        raise ValueError(f"the latents are constant (variance {variance!r}); expected a trained first stage")
    return 1.0 / math.sqrt(variance)

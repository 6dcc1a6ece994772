"""Vanilla VQ (VQ-VAE, van den Oord et al. 2017, https://huggingface.co/papers/1711.00937)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import BaseVectorQuantizer, mse, nearest_codes, straight_through
from .codebook_init import DataInitState


class VanillaVectorQuantizer(DataInitState, BaseVectorQuantizer):
    """Nearest-code quantizer with a learned codebook, straight-through gradients and the two VQ-VAE losses.

    `loss = commitment_weight * mse(z, sg(q)) + codebook_weight * mse(q, sg(z))`.

    Args:
        num_vq_embeddings (`int`): Number of codes K.
        vq_embed_dim (`int`): Code dimension D.
        commitment_weight (`float`, *optional*, defaults to 0.25): Weight of the commitment term.
        codebook_weight (`float`, *optional*, defaults to 1.0): Weight of the codebook term.
        legacy (`bool`, *optional*, defaults to `False`): Reproduce diffusers' `VectorQuantizer(legacy=True)` bit for
            bit: the two weights swap places, so with the defaults the commitment term gets 1.0 and the codebook
            term 0.25, which is what diffusers' default does by a historical bug.
        codebook_init (`str`, *optional*, defaults to `"uniform"`): `"uniform"` draws the codes from U(-1/K, 1/K) as
            diffusers does; `"data"` replaces them with K latents of the first training batch (see `codebook_init.py`).
        **kwargs: `distance_block_elements`, `check_finite` (see `BaseVectorQuantizer`).
    """

    def __init__(
        self,
        num_vq_embeddings: int,
        vq_embed_dim: int,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        legacy: bool = False,
        codebook_init: str = "uniform",
        **kwargs,
    ):
        super().__init__(num_vq_embeddings, vq_embed_dim, commitment_weight, codebook_weight, **kwargs)
        self.legacy = bool(legacy)
        self._setup_codebook_init(codebook_init)
        self.embedding = nn.Embedding(num_vq_embeddings, vq_embed_dim)
        # Same init as diffusers' VectorQuantizer, so a swapped-in quantizer starts where the stock one would.
        self.embedding.weight.data.uniform_(-1.0 / num_vq_embeddings, 1.0 / num_vq_embeddings)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embedding.weight

    def _combine_losses(self, commitment: torch.Tensor, codebook: torch.Tensor) -> torch.Tensor:
        if self.legacy:
            return self.codebook_weight * commitment + self.commitment_weight * codebook
        return self.commitment_weight * commitment + self.codebook_weight * codebook

    def _set_initial_codebook(self, codes: torch.Tensor) -> None:
        self.embedding.weight.copy_(codes)

    def _quantize_flat(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._init_codebook_from_data(z)
        indices, _ = nearest_codes(z, self.embedding.weight, self.distance_block_elements)
        q = F.embedding(indices, self.embedding.weight).float()
        loss = self._combine_losses(mse(q.detach(), z), mse(q, z.detach()))
        return straight_through(z, q), loss, indices

    @torch.no_grad()
    def init_from_codebook(self, codebook: torch.Tensor) -> bool:
        if tuple(codebook.shape) != tuple(self.embedding.weight.shape):
            return False
        self._set_initial_codebook(codebook)
        self._mark_codebook_initialized()
        return True

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, legacy={self.legacy}, codebook_init={self.codebook_init!r}"

"""SimVQ (Zhu et al. 2024, https://huggingface.co/papers/2411.02038): a frozen basis times one learned linear map."""

from __future__ import annotations

import torch
from torch import nn

from .mapped import MappedCodebookVectorQuantizer


class SimVQVectorQuantizer(MappedCodebookVectorQuantizer):
    """Codebook `E = C0 W^T` with a frozen Gaussian `C0` (K, D) and a learned `Linear(D, D, bias=False)` W.

    Args:
        num_vq_embeddings (`int`): Number of codes K.
        vq_embed_dim (`int`): Code dimension D.
        commitment_weight (`float`, *optional*, defaults to 0.25): Weight of `mse(z, sg(q))`.
        codebook_weight (`float`, *optional*, defaults to 1.0): Weight of `mse(q, sg(z))`.
        **kwargs: `distance_block_elements`, `check_finite`.
    """

    def __init__(self, num_vq_embeddings: int, vq_embed_dim: int, **kwargs):
        super().__init__(num_vq_embeddings, vq_embed_dim, **kwargs)
        self.codebook_map = nn.Linear(vq_embed_dim, vq_embed_dim, bias=False)

    def map_codebook(self, basis: torch.Tensor) -> torch.Tensor:
        return self.codebook_map(basis.to(self.codebook_map.weight.dtype))

    @torch.no_grad()
    def init_from_codebook(self, codebook: torch.Tensor) -> bool:
        # C0 = old codebook and W = I reproduce it exactly; training then moves all codes through W.
        if tuple(codebook.shape) != tuple(self.frozen_codebook.shape):
            return False
        self.frozen_codebook.copy_(codebook)
        self.codebook_map.weight.copy_(torch.eye(self.vq_embed_dim))
        return True

"""VQGAN-FC: factorized, l2-normalised codes (Yu et al. 2022, ViT-VQGAN, https://huggingface.co/papers/2110.04627)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import BaseVectorQuantizer, _check_positive_int, mse, nearest_codes, straight_through
from .codebook_init import DataInitState


class VQGANFCVectorQuantizer(DataInitState, BaseVectorQuantizer):
    """Look up codes in a low-dimensional, l2-normalised space and project back.

    `z' = W_in z` (D -> `codebook_dim`), `z^ = z' / ||z'||`, `e^_k = e_k / ||e_k||`; the winner maximises the cosine
    `z^ . e^_k`; the losses act on the normalised vectors; the straight-through estimator acts in the low-dim space;
    the output is `W_out q^`. Because `||e^_k|| = 1`, `argmin_k ||z' - e^_k||^2 = argmax_k z' . e^_k`: a stock
    Euclidean quantizer over `e^` after `W_in` picks the same codes, which is how `export_codebook` folds it.

    Args:
        num_vq_embeddings (`int`): Number of codes K.
        vq_embed_dim (`int`): Dimension D of the latents.
        codebook_dim (`int`, *optional*, defaults to 8): Dimension of the factorized code space.
        commitment_weight (`float`, *optional*, defaults to 0.25): Weight of `mse(z^, sg(e^))`.
        codebook_weight (`float`, *optional*, defaults to 1.0): Weight of `mse(e^, sg(z^))`.
        codebook_init (`str`, *optional*, defaults to `"uniform"`): `"uniform"` (PyTorch's N(0, 1) embedding init,
            directions uniform on the sphere) or `"data"` (the normalised projections `z^` of K latents of the first
            training batch; see `codebook_init.py`).
        **kwargs: `distance_block_elements`, `check_finite`.
    """

    def __init__(
        self,
        num_vq_embeddings: int,
        vq_embed_dim: int,
        codebook_dim: int = 8,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        codebook_init: str = "uniform",
        **kwargs,
    ):
        super().__init__(num_vq_embeddings, vq_embed_dim, commitment_weight, codebook_weight, **kwargs)
        _check_positive_int("codebook_dim", codebook_dim)
        self.codebook_dim = codebook_dim
        self.project_in = nn.Linear(vq_embed_dim, codebook_dim, bias=False)
        self.project_out = nn.Linear(codebook_dim, vq_embed_dim, bias=False)
        self.embedding = nn.Embedding(num_vq_embeddings, codebook_dim)
        self._setup_codebook_init(codebook_init)

    def _set_initial_codebook(self, codes: torch.Tensor) -> None:
        self.embedding.weight.copy_(codes)

    def normalized_codes(self) -> torch.Tensor:
        return F.normalize(self.embedding.weight.float(), dim=1)

    @property
    def codebook(self) -> torch.Tensor:
        return self.project_out(self.normalized_codes().to(self.project_out.weight.dtype))

    def _project(self, z: torch.Tensor) -> torch.Tensor:
        return F.linear(z, self.project_in.weight.float())

    def _quantize_flat(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        z_proj = self._project(z)
        z_low = F.normalize(z_proj, dim=1)
        self._init_codebook_from_data(z_low)  # the codes live on the unit sphere of the projected space
        codes = self.normalized_codes()
        # The search runs on the unnormalised projection, exactly as the baked stock quantizer will run it.
        indices, _ = nearest_codes(z_proj, codes, self.distance_block_elements)
        q_low = F.embedding(indices, codes)
        loss = self.commitment_weight * mse(q_low.detach(), z_low) + self.codebook_weight * mse(q_low, z_low.detach())
        out = F.linear(straight_through(z_low, q_low), self.project_out.weight.float())
        return out, loss, indices

    def _nearest_flat(self, z: torch.Tensor) -> torch.Tensor:
        # Max cosine = nearest normalised code; z' needs no normalisation for the argmax.
        return nearest_codes(self._project(z), self.normalized_codes(), self.distance_block_elements)[0]

    def _lookup(self, indices: torch.Tensor) -> torch.Tensor:
        # Same ops as the forward pass (gather, then project the gathered rows) so eval outputs match bit for bit.
        q_low = F.embedding(indices, self.normalized_codes())
        return F.linear(q_low, self.project_out.weight.float()).to(self.project_out.weight.dtype)

    def export_codebook(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        return self.normalized_codes().detach(), self.project_in.weight.detach(), self.project_out.weight.detach()

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, codebook_dim={self.codebook_dim}, codebook_init={self.codebook_init!r}"

"""EMA VQ (VQ-VAE-2, Razavi et al. 2019, https://huggingface.co/papers/1906.00446)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import (
    BaseVectorQuantizer,
    _check_non_negative,
    all_reduce_sum_,
    broadcast_,
    mse,
    nearest_codes,
    straight_through,
)
from .codebook_init import DataInitState


class EMAVectorQuantizer(DataInitState, BaseVectorQuantizer):
    """Codebook as exponential moving averages of assigned latents, with Laplace smoothing of the counts.

    Per training step, with counts n_k and sums s_k of the latents assigned to code k (summed over all processes):
    `N_k <- decay N_k + (1 - decay) n_k`, `m_k <- decay m_k + (1 - decay) s_k`,
    `N~_k = (N_k + eps) / (sum N + K eps) * sum N`, `e_k = m_k / N~_k`. The loss is the commitment term only.

    Args:
        num_vq_embeddings (`int`): Number of codes K.
        vq_embed_dim (`int`): Code dimension D.
        commitment_weight (`float`, *optional*, defaults to 0.25): Weight of `mse(z, sg(q))`.
        decay (`float`, *optional*, defaults to 0.99): EMA decay gamma, in [0, 1).
        epsilon (`float`, *optional*, defaults to 1e-5): Laplace smoothing of the counts.
        dead_code_threshold (`float`, *optional*, defaults to 0.0): Codes whose EMA count N_k falls below this
            are restarted at a random latent of the current batch (rank 0's, broadcast). 0 disables restarts.
        codebook_init (`str`, *optional*, defaults to `"uniform"`): `"uniform"` (U(-1/K, 1/K), as diffusers) or
            `"data"` (K latents of the first training batch; see `codebook_init.py`).
        **kwargs: `codebook_weight` (unused: the EMA replaces the codebook loss), `distance_block_elements`,
            `check_finite`.
    """

    def __init__(
        self,
        num_vq_embeddings: int,
        vq_embed_dim: int,
        commitment_weight: float = 0.25,
        decay: float = 0.99,
        epsilon: float = 1e-5,
        dead_code_threshold: float = 0.0,
        codebook_init: str = "uniform",
        **kwargs,
    ):
        super().__init__(num_vq_embeddings, vq_embed_dim, commitment_weight, **kwargs)
        if isinstance(decay, bool) or not isinstance(decay, int | float) or not 0.0 <= decay < 1.0:
            raise ValueError(f"decay must be a number in [0, 1); got {decay!r}")
        if isinstance(epsilon, bool) or not isinstance(epsilon, int | float) or not epsilon > 0:
            raise ValueError(f"epsilon must be a number > 0; got {epsilon!r}")
        _check_non_negative("dead_code_threshold", dead_code_threshold)
        self.decay = float(decay)
        self.epsilon = float(epsilon)
        self.dead_code_threshold = float(dead_code_threshold)
        embed = torch.empty(num_vq_embeddings, vq_embed_dim).uniform_(
            -1.0 / num_vq_embeddings, 1.0 / num_vq_embeddings
        )
        self.register_buffer("embed", embed)
        # Counts start at one and sums at the codes themselves, so e = m / N~ is the initial codebook at step 0 and
        # an unused code keeps its place instead of being divided by a near-zero count.
        self.register_buffer("cluster_size", torch.ones(num_vq_embeddings))
        self.register_buffer("embed_sum", embed.clone())
        self._setup_codebook_init(codebook_init)

    @property
    def codebook(self) -> torch.Tensor:
        return self.embed

    def _quantize_flat(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        self._init_codebook_from_data(z)
        indices, _ = nearest_codes(z, self.embed, self.distance_block_elements)
        q = F.embedding(indices, self.embed).float()
        loss = self.commitment_weight * mse(q.detach(), z)
        if self.training:
            self._ema_update(z.detach(), indices)
        return straight_through(z, q), loss, indices

    @torch.no_grad()
    def _ema_update(self, z: torch.Tensor, indices: torch.Tensor) -> None:
        counts = torch.bincount(indices, minlength=self.num_vq_embeddings).float()
        sums = torch.zeros(self.num_vq_embeddings, self.vq_embed_dim, device=z.device).index_add_(0, indices, z)
        all_reduce_sum_(counts, sums)
        self.cluster_size.mul_(self.decay).add_(counts.to(self.cluster_size.dtype), alpha=1.0 - self.decay)
        self.embed_sum.mul_(self.decay).add_(sums.to(self.embed_sum.dtype), alpha=1.0 - self.decay)
        total = self.cluster_size.sum()
        smoothed = (self.cluster_size + self.epsilon) / (total + self.num_vq_embeddings * self.epsilon) * total
        self.embed.copy_(self.embed_sum / smoothed.unsqueeze(1))
        if self.dead_code_threshold > 0:
            self._restart_dead_codes(z)

    @torch.no_grad()
    def _restart_dead_codes(self, z: torch.Tensor) -> None:
        dead = self.cluster_size < self.dead_code_threshold
        num_dead = int(dead.sum())
        if num_dead == 0:
            return
        # Rank 0 draws the replacement latents and broadcasts them, so every process restarts identically.
        picks = z[torch.randint(0, z.shape[0], (num_dead,), device=z.device)].to(self.embed.dtype).contiguous()
        broadcast_(picks)
        self.embed[dead] = picks
        self.embed_sum[dead] = picks
        self.cluster_size[dead] = 1.0

    @torch.no_grad()
    def init_from_codebook(self, codebook: torch.Tensor) -> bool:
        if tuple(codebook.shape) != tuple(self.embed.shape):
            return False
        self._set_initial_codebook(codebook)
        self._mark_codebook_initialized()
        return True

    def _set_initial_codebook(self, codes: torch.Tensor) -> None:
        # Restart the averages at the new codes, as at construction: e = m / N~ is the codebook.
        self.embed.copy_(codes)
        self.embed_sum.copy_(codes)
        self.cluster_size.fill_(1.0)

    def extra_repr(self) -> str:
        return (
            f"{super().extra_repr()}, decay={self.decay}, dead_code_threshold={self.dead_code_threshold}, "
            f"codebook_init={self.codebook_init!r}"
        )

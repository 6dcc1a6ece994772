"""Quantizers whose codebook is a learned map of a frozen Gaussian basis: E = f(C0) (SimVQ, TransVQ)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import BaseVectorQuantizer, mse, nearest_codes, straight_through


class MappedCodebookVectorQuantizer(BaseVectorQuantizer):
    """Shared machinery of SimVQ and TransVQ: frozen basis `C0 ~ N(0, 1/D)`, effective codebook `E = map(C0)`.

    Winner by distance to E (no gradient through the argmin); `q = E[k*]` carries the gradient into the map, so a
    single update moves every code. Losses: `codebook_weight * mse(q, sg z) + commitment_weight * mse(z, sg q)`.

    E depends only on the weights, so outside training it is computed once and cached; the cache is keyed on the
    identity and version counter of every parameter and buffer, which change on an optimizer step,
    `load_state_dict` and `.to()`, so a stale codebook is never served.
    """

    def __init__(self, num_vq_embeddings: int, vq_embed_dim: int, **kwargs):
        super().__init__(num_vq_embeddings, vq_embed_dim, **kwargs)
        self.register_buffer("frozen_codebook", torch.randn(num_vq_embeddings, vq_embed_dim) * vq_embed_dim**-0.5)
        self._cached_codebook: torch.Tensor | None = None
        self._cache_key: tuple | None = None

    def map_codebook(self, basis: torch.Tensor) -> torch.Tensor:
        """The learned map from the frozen basis (K, D) to the codebook (K, D)."""
        raise NotImplementedError

    def _weights_key(self) -> tuple:
        return tuple((t.data_ptr(), t._version, t.dtype, t.device) for t in (*self.parameters(), *self.buffers()))

    @property
    def codebook(self) -> torch.Tensor:
        needs_graph = torch.is_grad_enabled() and any(p.requires_grad for p in self.parameters())
        if self.training or needs_graph:
            self._cached_codebook = None
            return self.map_codebook(self.frozen_codebook)
        key = self._weights_key()
        if self._cached_codebook is None or key != self._cache_key:
            with torch.no_grad():
                self._cached_codebook = self.map_codebook(self.frozen_codebook)
            self._cache_key = key
        return self._cached_codebook

    def _quantize_flat(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        codebook = self.codebook.float()  # materialised once per forward (once per training step)
        indices, _ = nearest_codes(z, codebook.detach(), self.distance_block_elements)
        q = F.embedding(indices, codebook)
        loss = self.codebook_weight * mse(q, z.detach()) + self.commitment_weight * mse(q.detach(), z)
        return straight_through(z, q), loss, indices

    def _apply(self, fn, *args, **kwargs):
        # .to() / .half() / .cuda(): drop the cache explicitly (the key would catch it too, this frees memory).
        self._cached_codebook = None
        return super()._apply(fn, *args, **kwargs)

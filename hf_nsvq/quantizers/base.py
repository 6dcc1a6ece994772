"""The quantizer contract shared by every hf_nsvq quantizer, and the numerics they all use.

diffusers' `VQModel` calls `quant, loss, (perplexity, min_encodings, indices) = self.quantize(h)` and
`self.quantize.get_codebook_entry(indices, shape)`; `BaseVectorQuantizer` implements both around one method a
subclass provides, `_quantize_flat`, so every method file holds only its own math.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn

# Rows of the (rows x K) fp32 distance block are chosen so that one block holds at most this many elements
# (64 MiB): memory stays bounded for K = 65536 while blocks stay large enough for an efficient GEMM.
DEFAULT_DISTANCE_BLOCK_ELEMENTS = 1 << 24


class QuantizerInfo(NamedTuple):
    """Third element of a quantizer's output, laid out like diffusers' `(perplexity, min_encodings, indices)`.

    `min_encodings` (the M x K one-hot matrix of the original VQ-VAE code) is always `None`, as in diffusers:
    at K = 65536 it would cost gigabytes. `indices` is flat, shape `(B * H * W,)`, dtype long.
    """

    perplexity: torch.Tensor
    min_encodings: None
    indices: torch.Tensor


class QuantizerOutput(NamedTuple):
    """What `quantizer(z)` returns; unpacks as `quant, loss, (perplexity, min_encodings, indices)`."""

    quantized: torch.Tensor
    loss: torch.Tensor
    info: QuantizerInfo


def squared_distances(z: torch.Tensor, codebook: torch.Tensor, codebook_sq_norms: torch.Tensor) -> torch.Tensor:
    """fp32 `||z_i - e_k||^2` for a block of rows, as `||z||^2 + ||e||^2 - 2 z e^T` (one GEMM, no M x K x D)."""
    z_sq = z.pow(2).sum(dim=1, keepdim=True)
    return torch.addmm(codebook_sq_norms.unsqueeze(0), z, codebook.t(), alpha=-2.0).add_(z_sq)


def block_rows(num_codes: int, block_elements: int | None) -> int:
    """Number of rows per distance block so that `rows * num_codes <= block_elements`."""
    budget = DEFAULT_DISTANCE_BLOCK_ELEMENTS if block_elements is None else block_elements
    return max(1, budget // num_codes)


@torch.no_grad()
def nearest_codes(
    z: torch.Tensor, codebook: torch.Tensor, block_elements: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Nearest code for each row of `z` (M, D) in `codebook` (K, D), in fp32, in row blocks.

    Returns `(indices, min_sq_distances)`, both of shape (M,). Memory is O(block_rows * K) whatever M is.
    """
    with torch.autocast(device_type=z.device.type, enabled=False):
        z = z.float()
        codebook = codebook.float()
        codebook_sq = codebook.pow(2).sum(dim=1)
        rows = block_rows(codebook.shape[0], block_elements)
        indices = torch.empty(z.shape[0], dtype=torch.long, device=z.device)
        min_dist = torch.empty(z.shape[0], dtype=torch.float32, device=z.device)
        for start in range(0, z.shape[0], rows):
            dist_block = squared_distances(z[start : start + rows], codebook, codebook_sq)
            torch.min(dist_block, dim=1, out=(min_dist[start : start + rows], indices[start : start + rows]))
    return indices, min_dist


def straight_through(z: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """`z + sg(q - z)`: forward value q, gradient to z as if identity (VQ-VAE's straight-through estimator).

    When no gradient can flow to z (inference), q is returned as is, so the output equals the code exactly and
    `get_codebook_entry(indices)` reproduces it bit for bit.
    """
    if not z.requires_grad:
        return q
    return z + (q - z).detach()


def mse(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    # Written as diffusers writes it, so the vanilla quantizer reproduces diffusers' loss and gradients bit for bit.
    return torch.mean((a - b) ** 2)


def is_distributed() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum_(*tensors: torch.Tensor) -> None:
    """Sum tensors in place across processes (no-op outside torch.distributed), so statistics that update
    buffers equal those of one process that saw every rank's batch."""
    if not is_distributed():
        return
    for tensor in tensors:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)


def broadcast_(tensor: torch.Tensor, src: int = 0) -> None:
    """Copy rank `src`'s tensor to every rank (no-op outside torch.distributed)."""
    if is_distributed():
        dist.broadcast(tensor, src=src)


def perplexity_from_counts(counts: torch.Tensor) -> torch.Tensor:
    """exp(entropy) of a code-usage histogram: K when usage is uniform, 1 when one code takes everything."""
    probs = counts.float() / counts.sum().clamp_min(1)
    entropy = -(probs * torch.log(probs.clamp_min(1e-12))).sum()
    return torch.exp(entropy)


class BaseVectorQuantizer(nn.Module):
    """Common shell of every hf_nsvq quantizer: input checks, layout, perplexity and the diffusers-shaped output.

    Subclasses implement `_quantize_flat(z_flat)` on fp32 rows and the `codebook` property. Distances are computed
    in fp32 even under autocast; stateful behaviour (EMA updates, kernel weights, schedule steps) happens only in
    training mode; eval mode is a deterministic nearest-code lookup.

    Args:
        num_vq_embeddings (`int`): Number of codes K.
        vq_embed_dim (`int`): Dimension D of the vectors that are quantized (the channels of `z`).
        commitment_weight (`float`, *optional*, defaults to 0.25): Weight of `mse(z, sg(q))`.
        codebook_weight (`float`, *optional*, defaults to 1.0): Weight of the codebook term.
        distance_block_elements (`int`, *optional*): Upper bound on the elements of one fp32 distance block;
            bounds memory for large codebooks. Defaults to 2**24 (64 MiB).
        check_finite (`bool`, *optional*, defaults to `True`): Raise a `ValueError` when the input holds NaN or
            Inf instead of silently corrupting the codebook.
    """

    def __init__(
        self,
        num_vq_embeddings: int,
        vq_embed_dim: int,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        distance_block_elements: int | None = None,
        check_finite: bool = True,
    ):
        super().__init__()
        _check_positive_int("num_vq_embeddings", num_vq_embeddings)
        _check_positive_int("vq_embed_dim", vq_embed_dim)
        _check_non_negative("commitment_weight", commitment_weight)
        _check_non_negative("codebook_weight", codebook_weight)
        if distance_block_elements is not None:
            _check_positive_int("distance_block_elements", distance_block_elements)
        self.num_vq_embeddings = num_vq_embeddings
        self.vq_embed_dim = vq_embed_dim
        self.commitment_weight = float(commitment_weight)
        self.codebook_weight = float(codebook_weight)
        self.distance_block_elements = distance_block_elements
        self.check_finite = bool(check_finite)

    # ----------------------------------------------------------------------------------------------- subclass API
    @property
    def codebook(self) -> torch.Tensor:
        """The effective (K, D) codebook in the space of the quantized output."""
        raise NotImplementedError

    def _quantize_flat(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Quantize fp32 rows `z` (M, D); return `(quantized rows with their gradient path, loss, indices)`."""
        raise NotImplementedError

    def _nearest_flat(self, z: torch.Tensor) -> torch.Tensor:
        """Indices of the nearest codes for fp32 rows `z`, without touching any state."""
        return nearest_codes(z, self.codebook, self.distance_block_elements)[0]

    def _lookup(self, indices: torch.Tensor) -> torch.Tensor:
        """Codes (in quantized-output space) for flat indices."""
        return F.embedding(indices, self.codebook)

    def export_codebook(self) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
        """What a stock `diffusers.VectorQuantizer` needs to reproduce this quantizer in eval mode.

        Returns `(codebook, project_in, project_out)`: the (K, d) codebook searched by plain Euclidean distance,
        and the linear maps (d, D) and (D, d) to fold into `quant_conv` / `post_quant_conv`, or `None` when the
        quantizer works in the latent space itself.
        """
        return self.codebook.detach(), None, None

    @torch.no_grad()
    def init_from_codebook(self, codebook: torch.Tensor) -> bool:
        """Start from an existing (K, D) codebook (used by `replace_quantizer`). Returns whether it could."""
        return False

    # ----------------------------------------------------------------------------------------------- contract
    def forward(self, z: torch.Tensor) -> QuantizerOutput:
        """Quantize `z` of shape (B, D, H, W).

        Returns:
            `QuantizerOutput`: `(quant, loss, (perplexity, None, indices))` with `quant` of z's shape and dtype,
            a 0-dim fp32 `loss` and flat long `indices` of shape (B * H * W,).
        """
        z_flat = self._flatten(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            quant_flat, loss, indices = self._quantize_flat(z_flat.float())
        counts = torch.bincount(indices, minlength=self.num_vq_embeddings)
        batch, _, height, width = z.shape
        quant = quant_flat.to(z.dtype).view(batch, height, width, self.vq_embed_dim).permute(0, 3, 1, 2)
        return QuantizerOutput(quant.contiguous(), loss, QuantizerInfo(perplexity_from_counts(counts), None, indices))

    @torch.no_grad()
    def encode_indices(self, z: torch.Tensor) -> torch.Tensor:
        """Nearest-code indices of `z` (B, D, H, W) as a (B, H, W) long tensor; never changes any state."""
        z_flat = self._flatten(z)
        with torch.autocast(device_type=z.device.type, enabled=False):
            indices = self._nearest_flat(z_flat.float())
        return indices.view(z.shape[0], z.shape[2], z.shape[3])

    def get_codebook_entry(self, indices: torch.Tensor, shape: tuple[int, ...] | None) -> torch.Tensor:
        """Codes for `indices`, with diffusers' semantics.

        Args:
            indices (`torch.LongTensor`): Code indices, any shape (flattened).
            shape (`tuple[int]`, *optional*): `(B, H, W, D)`; the result is then permuted to (B, D, H, W).
                With `None` the result is (N, D).
        """
        self.check_indices(indices)
        quant = self._lookup(indices.reshape(-1))
        if shape is None:
            return quant
        if len(shape) != 4 or shape[3] != self.vq_embed_dim:
            raise ValueError(f"shape must be (batch, height, width, {self.vq_embed_dim}); got {tuple(shape)!r}")
        return quant.view(shape).permute(0, 3, 1, 2).contiguous()

    def check_indices(self, indices: torch.Tensor) -> None:
        """Raise a `ValueError` unless `indices` are integer codes in [0, K)."""
        if not isinstance(indices, torch.Tensor) or indices.dtype.is_floating_point or indices.dtype == torch.bool:
            got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"indices must be an integer (long) tensor of code ids; got {got}")
        if indices.numel() and (int(indices.min()) < 0 or int(indices.max()) >= self.num_vq_embeddings):
            raise ValueError(
                f"indices must lie in [0, {self.num_vq_embeddings}) for this codebook; got values in "
                f"[{int(indices.min())}, {int(indices.max())}] (indices from a codebook of another size?)"
            )

    def _flatten(self, z: torch.Tensor) -> torch.Tensor:
        if not isinstance(z, torch.Tensor) or z.ndim != 4:
            got = tuple(z.shape) if isinstance(z, torch.Tensor) else type(z).__name__
            raise ValueError(f"expected z of shape (batch, {self.vq_embed_dim}, height, width); got {got}")
        if z.shape[1] != self.vq_embed_dim:
            raise ValueError(
                f"expected z with {self.vq_embed_dim} channels (vq_embed_dim); got {z.shape[1]} channels in "
                f"shape {tuple(z.shape)}"
            )
        if self.check_finite and not bool(torch.isfinite(z).all()):
            raise ValueError(
                f"z holds NaN or Inf ({int((~torch.isfinite(z)).sum())} of {z.numel()} values); the encoder "
                "output diverged. Lower the learning rate or enable gradient clipping."
            )
        # (B, D, H, W) -> (B*H*W, D) in diffusers' (B, H, W, D) order, so reductions sum in the same order.
        return z.permute(0, 2, 3, 1).reshape(-1, self.vq_embed_dim)

    def extra_repr(self) -> str:
        return f"num_vq_embeddings={self.num_vq_embeddings}, vq_embed_dim={self.vq_embed_dim}"


def _check_positive_int(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{name} must be a positive int; got {value!r}")


def _check_non_negative(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
        raise ValueError(f"{name} must be a finite number >= 0; got {value!r}")


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {sorted(choices)!r}; got {value!r}")

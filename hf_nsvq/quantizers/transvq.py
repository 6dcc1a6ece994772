"""TransVQ (arXiv 2602.18896, Sec. 4.2): a small linear-attention transformer maps a frozen codebook to the live one."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .base import _check_non_negative, _check_positive_int
from .mapped import MappedCodebookVectorQuantizer


class LinearAttention(nn.Module):
    """Non-causal linear attention with feature map `phi(u) = elu(u) + 1` (Katharopoulos et al. 2020).

    `out_i = phi(q_i)^T (sum_j phi(k_j) v_j^T) / (phi(q_i) . sum_j phi(k_j) + 1e-6)`: O(K * width^2), linear in the
    number of codes K.
    """

    def __init__(self, width: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.to_q = nn.Linear(width, width, bias=False)
        self.to_k = nn.Linear(width, width, bias=False)
        self.to_v = nn.Linear(width, width, bias=False)
        self.to_out = nn.Linear(width, width, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens, width = x.shape  # the whole codebook is ONE sequence of K tokens
        head_dim = width // self.num_heads

        def heads(t: torch.Tensor) -> torch.Tensor:
            return t.view(tokens, self.num_heads, head_dim).transpose(0, 1)  # (heads, K, head_dim)

        q = F.elu(heads(self.to_q(x))) + 1
        k = F.elu(heads(self.to_k(x))) + 1
        v = heads(self.to_v(x))
        kv = torch.einsum("hkd,hke->hde", k, v)
        normaliser = torch.einsum("hkd,hd->hk", q, k.sum(dim=1)) + 1e-6
        out = torch.einsum("hkd,hde->hke", q, kv) / normaliser.unsqueeze(-1)
        return self.to_out(out.transpose(0, 1).reshape(tokens, width))


class TransformerBlock(nn.Module):
    """Pre-LayerNorm block: `x += attn(LN(x)); x += FFN(LN(x))`, FFN = Linear -> GELU -> Linear."""

    def __init__(self, width: int, num_heads: int, mlp_ratio: float):
        super().__init__()
        hidden = int(width * mlp_ratio)
        self.norm1 = nn.LayerNorm(width)
        self.attn = LinearAttention(width, num_heads)
        self.norm2 = nn.LayerNorm(width)
        self.mlp = nn.Sequential(nn.Linear(width, hidden), nn.GELU(), nn.Linear(hidden, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TransVQVectorQuantizer(MappedCodebookVectorQuantizer):
    """Codebook `E = T(C0)`: a frozen Gaussian basis through a linear-attention transformer shared by all codes.

    T: `x = C0 W_in` (D -> width, no bias) + a learned per-code table P (K, width); `depth` pre-LN
    blocks; final LayerNorm; `Linear(width -> D, no bias)`. Every code is a function of shared weights, so any update
    moves the whole codebook, dead codes included. Quantization and losses are SimVQ's. At K = 1024, D = 64 with the
    defaults T has 821,504 parameters. Outside training E is cached (see `MappedCodebookVectorQuantizer`), so
    inference costs what a plain codebook costs.

    Args:
        num_vq_embeddings (`int`): Number of codes K.
        vq_embed_dim (`int`): Code dimension D.
        depth (`int`, *optional*, defaults to 1): Number of transformer blocks.
        width (`int`, *optional*, defaults to 256): Transformer width.
        num_heads (`int`, *optional*, defaults to 1): Attention heads; must divide `width`.
        mlp_ratio (`float`, *optional*, defaults to 2.0): FFN hidden size over width.
        code_embedding_std (`float`, *optional*): Init std of the per-code table P. Defaults to (3 D)^-1/2, the
            per-feature std of `C0 W_in` at PyTorch's default `W_in` init, so P and the shared path start at one
            scale. The authors' N(0, 1) (pass 1.0) is 7x (D = 16) to 14x (D = 64) larger: each code's input is then
            essentially its own random row of P, which moves only when that code wins, and the shared weights that
            are meant to move every code barely tell codes apart (on the demo's images: 14 % of codes used with 1.0,
            99.6 % with the default; benchmarks/nsvq_bandwidth_ablation.py).
        commitment_weight (`float`, *optional*, defaults to 0.25): Weight of `mse(z, sg(q))`.
        codebook_weight (`float`, *optional*, defaults to 1.0): Weight of `mse(q, sg(z))`.
        **kwargs: `distance_block_elements`, `check_finite`.
    """

    def __init__(
        self,
        num_vq_embeddings: int,
        vq_embed_dim: int,
        depth: int = 1,
        width: int = 256,
        num_heads: int = 1,
        mlp_ratio: float = 2.0,
        code_embedding_std: float | None = None,
        **kwargs,
    ):
        super().__init__(num_vq_embeddings, vq_embed_dim, **kwargs)
        _check_positive_int("depth", depth)
        _check_positive_int("width", width)
        _check_positive_int("num_heads", num_heads)
        if width % num_heads:
            raise ValueError(f"num_heads must divide width; got width={width!r}, num_heads={num_heads!r}")
        if isinstance(mlp_ratio, bool) or not isinstance(mlp_ratio, int | float) or mlp_ratio <= 0:
            raise ValueError(f"mlp_ratio must be a number > 0; got {mlp_ratio!r}")
        if code_embedding_std is None:
            code_embedding_std = (3 * vq_embed_dim) ** -0.5
        _check_non_negative("code_embedding_std", code_embedding_std)
        self.depth, self.width, self.num_heads, self.mlp_ratio = depth, width, num_heads, float(mlp_ratio)
        self.code_embedding_std = float(code_embedding_std)
        self.project_in = nn.Linear(vq_embed_dim, width, bias=False)
        self.code_embedding = nn.Parameter(torch.randn(num_vq_embeddings, width) * self.code_embedding_std)
        self.blocks = nn.ModuleList(TransformerBlock(width, num_heads, mlp_ratio) for _ in range(depth))
        self.norm_out = nn.LayerNorm(width)
        self.project_out = nn.Linear(width, vq_embed_dim, bias=False)
        # The final LayerNorm gives unit-variance features, so PyTorch's default init would make codes of variance
        # width / (3 width) = 1/3 per dimension, several times wider than C0 ~ N(0, 1/D) and than typical latents:
        # most codes would start outside the data and never win. Start T(C0) at C0's scale instead.
        nn.init.normal_(self.project_out.weight, std=(width * vq_embed_dim) ** -0.5)

    def map_codebook(self, basis: torch.Tensor) -> torch.Tensor:
        x = self.project_in(basis.to(self.project_in.weight.dtype)) + self.code_embedding
        for block in self.blocks:
            x = block(x)
        return self.project_out(self.norm_out(x))

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, depth={self.depth}, width={self.width}, num_heads={self.num_heads}"

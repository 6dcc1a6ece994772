"""Vanilla VQ: bit-for-bit parity with diffusers' VectorQuantizer (legacy) and the non-legacy loss."""

import torch
from diffusers.models.autoencoders.vae import VectorQuantizer

from hf_nsvq.quantizers import build_quantizer


def _pair(legacy: bool):
    ours = build_quantizer("vanilla", 64, 8, legacy=legacy)
    theirs = VectorQuantizer(64, 8, beta=0.25, legacy=legacy)
    theirs.load_state_dict(ours.state_dict())
    return ours, theirs


def _run(quantizer, z, upstream):
    z = z.clone().requires_grad_(True)
    quant, loss, (_, _, indices) = quantizer(z)
    ((quant * upstream).sum() + loss).backward()
    return quant, loss, indices.flatten(), z.grad, quantizer.embedding.weight.grad


def test_legacy_matches_diffusers_bit_for_bit():
    ours, theirs = _pair(legacy=True)
    z = torch.randn(3, 8, 5, 6) * 0.05  # near the U(-1/K, 1/K) codes, so many codes compete
    upstream = torch.randn(3, 8, 5, 6)
    for mine, reference in zip(_run(ours, z, upstream), _run(theirs, z, upstream), strict=True):
        assert torch.equal(mine, reference)


def test_non_legacy_matches_diffusers_non_legacy():
    ours, theirs = _pair(legacy=False)
    z = torch.randn(2, 8, 4, 4) * 0.05
    upstream = torch.randn(2, 8, 4, 4)
    for mine, reference in zip(_run(ours, z, upstream), _run(theirs, z, upstream), strict=True):
        assert torch.equal(mine, reference)


def test_default_loss_weights_commitment_by_beta():
    quantizer = build_quantizer("vanilla", 16, 4, commitment_weight=0.25, codebook_weight=1.0)
    z = torch.randn(2, 4, 3, 3)
    quant, loss, (_, _, indices) = quantizer(z)
    q = quantizer.embedding.weight[indices].view(2, 3, 3, 4).permute(0, 3, 1, 2)
    expected = 0.25 * torch.mean((z - q) ** 2) + 1.0 * torch.mean((q - z) ** 2)
    torch.testing.assert_close(loss, expected)
    # without gradient, the output is the code itself (no z + (q - z) rounding)
    assert torch.equal(quant, q.detach())


def test_nearest_code_is_the_true_argmin_in_blocks():
    from hf_nsvq.quantizers.base import nearest_codes

    z = torch.randn(1000, 8)
    codebook = torch.randn(300, 8)
    indices, min_dist = nearest_codes(z, codebook, block_elements=300 * 7)  # 7 rows a block
    brute = torch.cdist(z.double(), codebook.double()).pow(2)
    assert torch.equal(indices, brute.argmin(dim=1))
    torch.testing.assert_close(min_dist.double(), brute.min(dim=1).values, rtol=1e-4, atol=1e-5)

"""EMA VQ update math and VQGAN-FC's factorized cosine lookup."""

import pytest
import torch
import torch.nn.functional as F

from hf_nsvq.quantizers import build_quantizer


def test_ema_update_matches_hand_computation():
    quantizer = build_quantizer("ema", 3, 2, decay=0.9, epsilon=1e-5).train()
    with torch.no_grad():
        quantizer.embed.copy_(torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]))
        quantizer.embed_sum.copy_(quantizer.embed)
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0], [9.0, 1.0]])  # codes 0, 0, 1
    quantizer(z.T.reshape(1, 2, 1, 3).contiguous())
    n = torch.tensor([2.0, 1.0, 0.0])
    s = torch.tensor([[1.0, 1.0], [9.0, 1.0], [0.0, 0.0]])
    big_n = 0.9 * torch.ones(3) + 0.1 * n
    m = 0.9 * torch.tensor([[0.0, 0.0], [10.0, 0.0], [0.0, 10.0]]) + 0.1 * s
    smoothed = (big_n + 1e-5) / (big_n.sum() + 3e-5) * big_n.sum()
    torch.testing.assert_close(quantizer.cluster_size, big_n)
    torch.testing.assert_close(quantizer.embed_sum, m)
    torch.testing.assert_close(quantizer.embed, m / smoothed[:, None])


def test_ema_loss_is_commitment_only_and_eval_does_not_update():
    quantizer = build_quantizer("ema", 8, 2, commitment_weight=0.5)
    z = torch.randn(1, 2, 3, 3)
    quantizer.eval()
    before = quantizer.embed.clone()
    quant, loss, _ = quantizer(z)
    assert torch.equal(quantizer.embed, before)
    torch.testing.assert_close(loss, 0.5 * torch.mean((quant - z) ** 2))


def test_ema_dead_code_restart():
    quantizer = build_quantizer("ema", 8, 2, decay=0.5, dead_code_threshold=0.6).train()
    z = torch.randn(1, 2, 4, 4) + 100.0  # every latent far away: one code wins, the others decay
    quantizer(z)
    # counts of unused codes drop to 0.5 < 0.6: they restart at current latents, counts back at 1
    assert (quantizer.embed > 50).all()
    assert torch.equal(quantizer.cluster_size >= 0.6, torch.ones(8, dtype=torch.bool))


def test_vqgan_fc_picks_max_cosine_and_outputs_projected_unit_code():
    quantizer = build_quantizer("vqgan_fc", 10, 6, codebook_dim=3).eval()
    z = torch.randn(2, 6, 2, 2)
    with torch.no_grad():
        quant, _, (_, _, indices) = quantizer(z)
        z_low = quantizer.project_in(z.permute(0, 2, 3, 1).reshape(-1, 6))
        codes = F.normalize(quantizer.embedding.weight, dim=1)
        expected_idx = (F.normalize(z_low, dim=1) @ codes.t()).argmax(dim=1)
        assert torch.equal(indices, expected_idx)
        expected = quantizer.project_out(codes[expected_idx]).view(2, 2, 2, 6).permute(0, 3, 1, 2)
        torch.testing.assert_close(quant, expected)


def test_vqgan_fc_loss_on_normalised_vectors():
    quantizer = build_quantizer("vqgan_fc", 10, 6, codebook_dim=3, commitment_weight=0.25)
    z = torch.randn(1, 6, 2, 2)
    _, loss, (_, _, indices) = quantizer(z)
    z_low = F.normalize(quantizer.project_in(z.permute(0, 2, 3, 1).reshape(-1, 6)), dim=1)
    q = F.normalize(quantizer.embedding.weight, dim=1)[indices]
    assert loss.item() == pytest.approx(1.25 * torch.mean((z_low - q) ** 2).item(), rel=1e-5)

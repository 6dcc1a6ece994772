"""TransVQ and SimVQ: codebooks as learned maps of a frozen basis, and the eval-mode cache."""

import pytest
import torch
import torch.nn.functional as F

from hf_nsvq.quantizers import build_quantizer


def test_transvq_parameter_count_at_paper_config():
    quantizer = build_quantizer("transvq", 1024, 64)
    assert sum(p.numel() for p in quantizer.parameters()) == 821_504
    assert not quantizer.frozen_codebook.requires_grad


def test_transvq_update_moves_unselected_codes():
    quantizer = build_quantizer("transvq", 64, 4, width=32).train()
    z = torch.randn(1, 4, 2, 2)  # 4 latents: at most 4 of 64 codes are selected
    before = quantizer.codebook.detach().clone()
    _, loss, (_, _, indices) = quantizer(z)
    loss.backward()
    unselected = torch.ones(64, dtype=torch.bool)
    unselected[indices] = False
    # the gradient reaches the shared weights, and through them every code
    torch.optim.SGD(quantizer.parameters(), lr=0.1).step()
    moved = (quantizer.codebook.detach() - before).abs().sum(dim=1)
    assert unselected.sum() >= 60 and moved[unselected].gt(0).all()


def test_transvq_linear_attention_matches_definition():
    quantizer = build_quantizer("transvq", 10, 4, width=8)
    attn = quantizer.blocks[0].attn
    x = torch.randn(10, 8)
    phi_q = F.elu(attn.to_q(x)) + 1
    phi_k = F.elu(attn.to_k(x)) + 1
    v = attn.to_v(x)
    expected = torch.stack([(phi_q[i] @ (phi_k.t() @ v)) / (phi_q[i] @ phi_k.sum(0) + 1e-6) for i in range(10)])
    torch.testing.assert_close(attn(x), attn.to_out(expected))


def test_eval_cache_is_reused_and_invalidated():
    quantizer = build_quantizer("transvq", 32, 4, width=16).eval()
    with torch.no_grad():
        first = quantizer.codebook
        assert quantizer.codebook is first  # computed once, served from the cache
    optimizer = torch.optim.SGD(quantizer.parameters(), lr=0.1)
    quantizer.train()
    quantizer(torch.randn(1, 4, 2, 2)).loss.backward()
    optimizer.step()
    quantizer.eval()
    with torch.no_grad():
        after_step = quantizer.codebook
        assert after_step is not first and not torch.equal(after_step, first)
        torch.testing.assert_close(after_step, quantizer.map_codebook(quantizer.frozen_codebook))
        # load_state_dict writes new values into the same tensors: the version counters change
        other = build_quantizer("transvq", 32, 4, width=16)
        quantizer.load_state_dict(other.state_dict())
        torch.testing.assert_close(quantizer.codebook, other.eval().codebook)
        # .to(dtype) builds new tensors
        assert quantizer.double().codebook.dtype == torch.float64


def test_eval_with_gradients_enabled_keeps_the_graph():
    quantizer = build_quantizer("simvq", 16, 4).eval()
    codebook = quantizer.codebook
    assert codebook.requires_grad  # fine-tuning through an eval-mode quantizer still trains the map


def test_simvq_codebook_is_basis_times_map():
    quantizer = build_quantizer("simvq", 16, 4)
    torch.testing.assert_close(quantizer.codebook, quantizer.frozen_codebook @ quantizer.codebook_map.weight.t())
    assert quantizer.frozen_codebook.std().item() == __import__("pytest").approx(4**-0.5, rel=0.3)


def test_simvq_starts_from_an_existing_codebook_exactly():
    quantizer = build_quantizer("simvq", 16, 4)
    old = torch.randn(16, 4)
    assert quantizer.init_from_codebook(old)
    torch.testing.assert_close(quantizer.codebook, old)


def test_transvq_code_table_starts_at_the_scale_of_the_shared_path():
    # P must not swamp C0 W_in (see code_embedding_std): both start with about the same per-feature std.
    torch.manual_seed(0)
    quantizer = build_quantizer("transvq", 1024, 16)
    shared = quantizer.project_in(quantizer.frozen_codebook).detach()
    ratio = float(quantizer.code_embedding.detach().std() / shared.std())
    assert 0.8 < ratio < 1.25, ratio
    authors = build_quantizer("transvq", 1024, 16, code_embedding_std=1.0)
    assert float(authors.code_embedding.detach().std()) == pytest.approx(1.0, rel=0.02)
    with pytest.raises(ValueError, match="code_embedding_std must be a finite number >= 0; got -1"):
        build_quantizer("transvq", 8, 4, code_embedding_std=-1)

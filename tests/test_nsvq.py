"""NSVQ math against hand-computed values (ALGORITHMS.md section 5)."""

import pytest
import torch

from hf_nsvq.quantizers import build_quantizer
from hf_nsvq.quantizers.nsvq import assign_and_gather_kernel_statistics, kernel_weights, negligible_rows
from hf_nsvq.quantizers.schedules import bandwidth_at_step

K, D = 24, 3


def brute_force_weights(z, codebook, kernel, tau, lam):
    """M x K kernel weights with the winner's weight set to 1, straight from the definition."""
    d = torch.cdist(z.double(), codebook.double()).pow(2)
    if kernel == "softmax":
        w = (lam * codebook.shape[0] * torch.softmax(-d / tau, dim=1)).clamp(0, 1)
    else:
        w = 0.5 * torch.exp(-d / tau)
    w[torch.arange(z.shape[0]), d.argmin(dim=1)] = 1.0
    return w


def nsvq(**kwargs):
    quantizer = build_quantizer("nsvq", K, D, **kwargs)
    # codes spread like the latents, so the kernel sees real competition (and no data init replaces them)
    assert quantizer.init_from_codebook(torch.randn(K, D))
    return quantizer.train()


@pytest.mark.parametrize("kernel, tau", [("softmax", 1.0), ("softmax", 0.3), ("gaussian", 2.0)])
def test_codebook_gradient_is_kernel_weighted_pull(kernel, tau):
    quantizer = nsvq(kernel=kernel, bandwidth=tau, bandwidth_schedule="constant", commitment_weight=0.25)
    z = torch.randn(2, D, 4, 5)
    _, loss, _ = quantizer(z)
    loss.backward()
    z_flat = z.permute(0, 2, 3, 1).reshape(-1, D).double()
    e = quantizer.embedding.weight.detach().double()
    w = brute_force_weights(z_flat, e, kernel, tau, 0.01)
    m = z_flat.shape[0]
    # dL/de_k = (2 / (M D)) sum_i w_ik (e_k - z_i)
    expected = 2.0 / (m * D) * (w.sum(0)[:, None] * e - w.t() @ z_flat)
    torch.testing.assert_close(quantizer.embedding.weight.grad.double(), expected, rtol=1e-4, atol=1e-7)
    # and the loss value is the dense sum plus the commitment term
    dense = (w * torch.cdist(z_flat, e).pow(2)).sum() / (m * D)
    q = e[torch.cdist(z_flat, e).argmin(1)]
    commitment = ((z_flat - q) ** 2).mean()
    torch.testing.assert_close(loss.double(), dense + 0.25 * commitment, rtol=1e-5, atol=1e-7)


def test_non_winner_weights_reach_unselected_codes():
    quantizer = nsvq(bandwidth=5.0, bandwidth_schedule="constant")
    z = torch.randn(1, D, 2, 2)
    _, loss, (_, _, indices) = quantizer(z)
    loss.backward()
    unselected = torch.ones(K, dtype=torch.bool)
    unselected[indices] = False
    assert quantizer.embedding.weight.grad[unselected].abs().sum(dim=1).gt(0).all()


def test_zero_kernel_weight_leaves_the_winner_only_term():
    z = torch.randn(2, D, 3, 3)
    quantizer = nsvq(kernel_weight=0.0, bandwidth_schedule="constant")
    vanilla = build_quantizer("vanilla", K, D).train()
    vanilla.load_state_dict(quantizer.state_dict(), strict=False)
    _, loss, _ = quantizer(z)
    _, vanilla_loss, _ = vanilla(z)
    # L_ns with only the winner weight is mse(q, sg z): NSVQ's loss is vanilla's
    torch.testing.assert_close(loss, vanilla_loss, rtol=0, atol=0)


def test_negligible_kernel_skips_the_dense_term():
    z = torch.randn(64, D)
    codebook = torch.randn(K, D)
    _, stats, _ = assign_and_gather_kernel_statistics(z, codebook, "softmax", 1e-8, 0.01, 1e-6)
    assert stats is None
    _, stats, _ = assign_and_gather_kernel_statistics(z, codebook, "softmax", 1.0, 0.01, 1e-6)
    assert stats is not None and stats.code_weights.sum() > 0


@pytest.mark.parametrize("kernel", ["softmax", "gaussian"])
def test_skipping_negligible_rows_keeps_the_statistics(kernel):
    """A near-tie row keeps its kernel work while decided rows are skipped; sums match the unskipped ones."""
    codebook = torch.randn(K, D)
    z = torch.randn(200, D) * 2
    z[0] = (codebook[0] + codebook[1]) / 2  # equidistant from two codes: a row that is never negligible
    tau = 0.05 if kernel == "softmax" else 0.5
    d = torch.cdist(z, codebook).pow(2).sort(dim=1).values
    skipped = negligible_rows(d[:, 0], d[:, 1], K, kernel, tau, 0.01, 1e-4)
    assert 0 < int(skipped.sum()) < 200 and not skipped[0]  # the test exercises both paths
    _, kept, _ = assign_and_gather_kernel_statistics(z, codebook, kernel, tau, 0.01, 1e-4)
    _, full, _ = assign_and_gather_kernel_statistics(z, codebook, kernel, tau, 0.01, 0.0)
    assert kept is not None
    for mine, reference in zip(kept, full, strict=True):
        torch.testing.assert_close(mine, reference, rtol=1e-3, atol=1e-3 * float(reference.abs().max()))


def test_uniform_softmax_gives_lambda():
    equal_distances = torch.full((5, K), 3.7)
    torch.testing.assert_close(
        kernel_weights(equal_distances, torch.full((5,), 3.7), "softmax", 1.0, 0.01), torch.full((5, K), 0.01)
    )
    # and a code holding at least 1 / (lambda K) of the softmax mass gets full weight
    dominant = torch.tensor([[0.0] + [1e3] * 199])  # lambda K = 2: 0.5 of the mass is enough
    assert kernel_weights(dominant, torch.zeros(1), "softmax", 1.0, 0.01)[0, 0] == 1.0
    weight = kernel_weights(torch.tensor([[0.0] + [1e3] * 23]), torch.zeros(1), "softmax", 1.0, 0.01)[0, 0]
    assert weight == pytest.approx(0.24)


def test_gaussian_kernel_values():
    d = torch.tensor([[0.0, 1.0, 4.0]])
    weights = kernel_weights(d.clone(), d.min(dim=1).values, "gaussian", 2.0, 0.01)
    torch.testing.assert_close(weights, 0.5 * torch.exp(-d / 2.0))


def test_chunked_equals_unchunked():
    z = torch.randn(2, D, 6, 7)
    small = nsvq(bandwidth_schedule="constant", distance_block_elements=K * 5)  # 5 rows a block
    large = build_quantizer("nsvq", K, D, bandwidth_schedule="constant").train()
    large.load_state_dict(small.state_dict())
    _, loss_small, (_, _, idx_small) = small(z)
    _, loss_large, (_, _, idx_large) = large(z)
    loss_small.backward(), loss_large.backward()
    assert torch.equal(idx_small, idx_large)
    torch.testing.assert_close(loss_small, loss_large, rtol=1e-6, atol=1e-7)
    torch.testing.assert_close(small.embedding.weight.grad, large.embedding.weight.grad, rtol=1e-5, atol=1e-8)


def test_exponential_schedule_values():
    quantizer = nsvq(bandwidth_schedule="exponential", steps_per_period=7)
    expected = {0: 1.0, 1: 0.5, 2: 0.25, 5: 0.03125, 10: 0.0009765625}
    assert {p: quantizer.bandwidth_at(p * 7) for p in expected} == expected
    assert quantizer.bandwidth_at(7 * 10 + 6) == 0.0009765625  # a staircase, as the per-epoch halving
    assert quantizer.bandwidth_at(7 * 100) == 1e-8  # the floor


def test_other_schedules():
    args = dict(bandwidth=1.0, min_bandwidth=0.01, steps_per_period=1, bandwidth_decay=0.5, decay_steps=100)
    assert bandwidth_at_step("constant", 500, **args) == 1.0
    assert bandwidth_at_step("linear", 50, **args) == pytest.approx(0.505)
    assert bandwidth_at_step("cosine", 50, **args) == pytest.approx(0.505)
    assert bandwidth_at_step("cosine", 25, **args) == pytest.approx(0.01 + 0.99 * 0.5 * (1 + 2**-0.5))
    assert bandwidth_at_step("linear", 1000, **args) == 0.01 == bandwidth_at_step("cosine", 1000, **args)


def test_constant_schedule_stays_at_bandwidth():
    quantizer = nsvq(bandwidth=0.7, bandwidth_schedule="constant")
    for _ in range(3):
        quantizer(torch.randn(1, D, 2, 2))
    assert quantizer.bandwidth == 0.7


def test_step_advances_once_per_training_forward_and_is_saved():
    quantizer = nsvq(bandwidth_schedule="exponential", steps_per_period=2)
    for _ in range(3):
        quantizer(torch.randn(1, D, 2, 2))
    assert int(quantizer.step) == 3 and quantizer.bandwidth == 0.5
    quantizer.eval()
    quantizer(torch.randn(1, D, 2, 2))
    assert int(quantizer.step) == 3
    restored = build_quantizer("nsvq", K, D, bandwidth_schedule="exponential", steps_per_period=2)
    restored.load_state_dict(quantizer.state_dict())
    assert int(restored.step) == 3 and restored.bandwidth == 0.5
    restored.set_step(10)
    assert restored.bandwidth == 0.5**5
    with pytest.raises(ValueError, match=r"step must be an int >= 0; got -1"):
        restored.set_step(-1)


def test_nonstationary_straight_through():
    quantizer = nsvq(nonstationary_ste=True, commitment_weight=0.0, kernel_weight=0.0)
    z = torch.randn(1, D, 2, 2, requires_grad=True)
    quant, _, (_, _, indices) = quantizer(z)
    codes = quantizer.embedding.weight[indices].detach().view(1, 2, 2, D).permute(0, 3, 1, 2)
    torch.testing.assert_close(quant, codes)  # forward value q
    upstream = torch.randn_like(quant)
    (quant * upstream).sum().backward()
    torch.testing.assert_close(z.grad, upstream)  # encoder gradient unchanged
    a = 2.0 * 1.0 / z.numel()
    expected = torch.zeros(K, D).index_add_(0, indices, a * upstream.permute(0, 2, 3, 1).reshape(-1, D))
    torch.testing.assert_close(quantizer.embedding.weight.grad, expected)  # winners get a * decoder gradient

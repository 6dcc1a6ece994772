"""NSVQ's adaptive bandwidth: tau = rho x running quantization error per element (see NSVQVectorQuantizer)."""

import pytest
import torch

from hf_nsvq.quantizers import build_quantizer

K, D = 32, 4


def adaptive(codebook: torch.Tensor, **kwargs):
    quantizer = build_quantizer("nsvq", K, D, bandwidth_schedule="adaptive", **kwargs).train()
    assert quantizer.init_from_codebook(codebook)
    return quantizer


def per_element_error(z: torch.Tensor, codebook: torch.Tensor) -> float:
    rows = z.permute(0, 2, 3, 1).reshape(-1, D).double()
    return float(torch.cdist(rows, codebook.double()).min(dim=1).values.square().sum() / rows.numel())


def test_is_the_default_with_the_documented_constants():
    quantizer = build_quantizer("nsvq", K, D)
    assert quantizer.bandwidth_schedule == "adaptive" and quantizer.codebook_init == "data"
    assert (quantizer.relative_bandwidth, quantizer.error_momentum, quantizer.bandwidth_decay) == (32.0, 0.9, 1.0)
    assert float(quantizer.quantization_error) == -1.0 and quantizer.bandwidth == quantizer.min_bandwidth


def test_running_error_follows_the_rule():
    codebook = torch.randn(K, D)
    quantizer = adaptive(codebook, relative_bandwidth=3.0, error_momentum=0.75)
    first, second = torch.randn(2, D, 3, 3), torch.randn(2, D, 3, 3) + 1.0
    quantizer(first)  # the first step measures its own batch before the kernel pass
    expected = per_element_error(first, codebook)
    assert float(quantizer.quantization_error) == pytest.approx(expected, rel=1e-5)
    assert quantizer.bandwidth == pytest.approx(3.0 * expected, rel=1e-5)
    quantizer(second)  # no optimizer step: the codebook is unchanged
    expected = 0.75 * expected + 0.25 * per_element_error(second, codebook)
    assert float(quantizer.quantization_error) == pytest.approx(expected, rel=1e-5)
    quantizer.eval()
    quantizer(torch.randn(2, D, 3, 3) * 100)  # eval changes nothing
    assert float(quantizer.quantization_error) == pytest.approx(expected, rel=1e-5)


def test_scale_free():
    # Latents and codes scaled by c: err and tau scale by c^2, every kernel weight and index is the same, so the
    # loss scales by c^2 and the codebook gradient by c, step after step. (c a power of two, so fp32 rounding scales
    # exactly too.)
    scale = 8.0
    codebook = torch.randn(K, D)
    small, large = adaptive(codebook), adaptive(codebook * scale)
    for step in range(3):
        z = torch.randn(2, D, 4, 4)
        _, loss_small, (_, _, idx_small) = small(z)
        _, loss_large, (_, _, idx_large) = large(z * scale)
        assert torch.equal(idx_small, idx_large), step
        assert large.bandwidth == pytest.approx(scale**2 * small.bandwidth, rel=1e-5)
        torch.testing.assert_close(loss_large, scale**2 * loss_small, rtol=1e-5, atol=0)
        small.embedding.weight.grad = large.embedding.weight.grad = None
        loss_small.backward(), loss_large.backward()
        torch.testing.assert_close(
            large.embedding.weight.grad, scale * small.embedding.weight.grad, rtol=1e-4, atol=1e-7
        )
        with torch.no_grad():  # the same SGD step in both units (the large gradient is already c times larger)
            small.embedding.weight -= 0.1 * small.embedding.weight.grad
            large.embedding.weight -= 0.1 * large.embedding.weight.grad


def test_widens_when_the_latents_jump_and_narrows_as_codes_catch_up():
    torch.manual_seed(0)
    quantizer = build_quantizer("nsvq", K, D).train()  # the defaults: adaptive, data init
    optimizer = torch.optim.Adam(quantizer.parameters(), lr=0.2)

    def train(offset: float, steps: int) -> list[float]:
        taus = []
        for _ in range(steps):
            _, loss, _ = quantizer(torch.randn(4, D, 4, 4) + offset)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            taus.append(quantizer.bandwidth)
        return taus

    before = train(0.0, 40)[-1]
    after_jump = train(10.0, 150)
    assert max(after_jump[:10]) > 50 * before  # the error, and tau, jump with the data
    assert after_jump[-1] < max(after_jump) / 10  # and shrink again once the codes have followed


def test_optional_decay_and_resume():
    codebook = torch.randn(K, D)
    quantizer = adaptive(codebook, relative_bandwidth=2.0, bandwidth_decay=0.5, steps_per_period=2)
    z = torch.randn(2, D, 3, 3)
    for _ in range(4):
        quantizer(z)  # constant data and codebook: the running error stays at this batch's
    error = per_element_error(z, codebook)
    assert quantizer.bandwidth == pytest.approx(2.0 * error * 0.5**2, rel=1e-5)  # step 4: two periods
    restored = build_quantizer("nsvq", K, D, bandwidth_decay=0.5, steps_per_period=2, relative_bandwidth=2.0)
    restored.load_state_dict(quantizer.state_dict())
    assert restored.bandwidth == quantizer.bandwidth and bool(restored.codebook_initialized)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"relative_bandwidth": 0.0}, r"relative_bandwidth must be > 0; got 0.0"),
        ({"relative_bandwidth": float("inf")}, r"relative_bandwidth must be a finite number >= 0; got inf"),
        ({"error_momentum": 1.0}, r"error_momentum must be a number in \[0, 1\); got 1.0"),
        ({"error_momentum": "0.9"}, r"error_momentum must be a number in \[0, 1\); got '0.9'"),
        ({"bandwidth_schedule": "auto"}, r"bandwidth_schedule must be one of \['adaptive', 'constant'"),
    ],
)
def test_bad_values_raise(kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_quantizer("nsvq", K, D, **kwargs)


def test_other_schedules_keep_their_state_dict_keys():
    # Models saved with the step-driven schedules and a uniform init keep exactly their old keys.
    authors = build_quantizer("nsvq", K, D, bandwidth_schedule="exponential", codebook_init="uniform")
    assert set(authors.state_dict()) == {"step", "embedding.weight"}
    assert set(build_quantizer("nsvq", K, D).state_dict()) == {
        "step",
        "embedding.weight",
        "quantization_error",
        "codebook_initialized",
    }

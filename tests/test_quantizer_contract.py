"""The contract every registered quantizer honours (ARCHITECTURE.md), parametrised over the registry."""

import inspect
import json

import pytest
import torch
from conftest import TEST_KWARGS
from safetensors.torch import load_file, save_file

from hf_nsvq.quantizers import accepted_kwargs, build_quantizer, get_quantizer_class, list_quantizers

K, D = 16, 4
ALL = list_quantizers()


def make(name, **kwargs):
    return build_quantizer(name, K, D, **{**TEST_KWARGS.get(name, {}), **kwargs})


def test_registry_lists_the_six_methods():
    assert {"vanilla", "ema", "vqgan_fc", "simvq", "nsvq", "transvq"} <= set(ALL)


def test_unknown_name_lists_available():
    with pytest.raises(ValueError, match=r"unknown quantizer 'nope'; available: vanilla, ema"):
        build_quantizer("nope", K, D)


@pytest.mark.parametrize("name", ALL)
def test_unknown_kwarg_is_rejected(name):
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['bogus'\]"):
        build_quantizer(name, K, D, bogus=1)


@pytest.mark.parametrize("name", ALL)
def test_output_contract(name):
    quantizer = make(name).train()
    z = torch.randn(2, D, 3, 5, requires_grad=True)
    output = quantizer(z)
    quant, loss, (perplexity, min_encodings, indices) = output
    assert output[2][2] is indices  # aMUSEd's `quantize(h)[2][2]` idiom
    assert quant.shape == z.shape and quant.dtype == z.dtype
    assert loss.ndim == 0 and torch.isfinite(loss)
    assert perplexity is not None and 1.0 <= float(perplexity) <= K
    assert min_encodings is None
    assert indices.shape == (2 * 3 * 5,) and indices.dtype == torch.long


@pytest.mark.parametrize("name", ALL)
def test_gradients_reach_encoder_and_codebook(name):
    quantizer = make(name).train()
    z = torch.randn(2, D, 4, 4, requires_grad=True)
    quant, loss, _ = quantizer(z)
    (quant.square().mean() + loss).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0
    trainable = [p for p in quantizer.parameters() if p.requires_grad]
    if name == "ema":
        assert trainable == []  # the EMA codebook is a buffer, updated without gradients
    else:
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in trainable)


@pytest.mark.parametrize("name", ALL)
def test_straight_through_gradient_is_identity(name):
    quantizer = make(name, commitment_weight=0.0).train()
    z = torch.randn(1, D, 2, 2, requires_grad=True)
    quant, loss, _ = quantizer(z)
    upstream = torch.randn_like(quant)
    (quant * upstream).sum().backward()
    if name == "vqgan_fc":  # the STE acts in the low-dim space, so the encoder sees W_in^T (dq/dz_low) W_out^T...
        assert torch.isfinite(z.grad).all()
    else:
        torch.testing.assert_close(z.grad, upstream)


@pytest.mark.parametrize("name", ALL)
def test_eval_is_deterministic_and_round_trips(name):
    quantizer = make(name)
    quantizer.train()
    quantizer(torch.randn(4, D, 4, 4))  # a training step, then freeze
    quantizer.eval()
    z = torch.randn(2, D, 3, 3)
    with torch.no_grad():
        first = quantizer(z)
        second = quantizer(z)
        assert torch.equal(first.quantized, second.quantized)
        assert torch.equal(first.info.indices, second.info.indices)
        entry = quantizer.get_codebook_entry(first.info.indices, (2, 3, 3, D))
        assert torch.equal(entry, first.quantized)  # decoding the returned indices reproduces the output
        flat = quantizer.get_codebook_entry(first.info.indices, None)
        assert flat.shape == (18, D)
        assert torch.equal(quantizer.encode_indices(z).flatten(), first.info.indices)


@pytest.mark.parametrize("name", ALL)
def test_eval_changes_no_state(name):
    quantizer = make(name).eval()
    before = {k: v.clone() for k, v in quantizer.state_dict().items()}
    quantizer(torch.randn(2, D, 3, 3))
    quantizer.encode_indices(torch.randn(2, D, 3, 3))
    for key, value in quantizer.state_dict().items():
        assert torch.equal(value, before[key]), key


@pytest.mark.parametrize("name", ALL)
def test_codebook_property_is_effective_codebook(name):
    quantizer = make(name).eval()
    with torch.no_grad():
        codebook = quantizer.codebook
        assert codebook.shape == (K, D)
        torch.testing.assert_close(quantizer.get_codebook_entry(torch.arange(K), None), codebook)
        if name == "vqgan_fc":
            return  # its codes are searched after W_in, so W_out e_k need not quantize to itself
        # each code, quantized, maps to itself
        z = codebook.detach().T.reshape(1, D, 1, K).contiguous()
        torch.testing.assert_close(quantizer(z).quantized, z, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast_keeps_fp32_distances(name):
    quantizer = make(name).train()
    z = torch.randn(2, D, 4, 4)
    with torch.no_grad():
        quantizer(z)  # a first training step, so a data-initialised codebook is in place before the comparison
        reference = make(name).eval()
        reference.load_state_dict(quantizer.state_dict())
        ref_indices = reference(z)[2][2]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        quant, loss, (_, _, indices) = quantizer(z.bfloat16().float())  # a bf16-representable input
    assert loss.dtype == torch.float32 and torch.isfinite(loss)
    assert torch.isfinite(quant).all()
    # bf16 rounding of z moves a few points; where margins allow, the same codes win
    assert (indices == ref_indices).float().mean() > 0.8


@pytest.mark.parametrize("name", ALL)
def test_state_dict_keys_are_stable_and_round_trip_through_safetensors(name, tmp_path):
    quantizer = make(name).train()
    keys = {k: tuple(v.shape) for k, v in quantizer.state_dict().items()}
    for _ in range(2):
        quantizer(torch.randn(2, D, 4, 4))
    assert {k: tuple(v.shape) for k, v in quantizer.state_dict().items()} == keys
    assert {k: tuple(v.shape) for k, v in make(name).state_dict().items()} == keys
    save_file({k: v.contiguous() for k, v in quantizer.state_dict().items()}, tmp_path / "q.safetensors")
    restored = make(name)
    restored.load_state_dict(load_file(tmp_path / "q.safetensors"))
    quantizer.eval(), restored.eval()
    z = torch.randn(2, D, 3, 3)
    with torch.no_grad():
        assert torch.equal(quantizer(z)[2][2], restored(z)[2][2])
        torch.testing.assert_close(quantizer(z)[0], restored(z)[0])


@pytest.mark.parametrize("name", ALL)
def test_default_kwargs_are_json_primitives(name):
    klass = get_quantizer_class(name)
    defaults = {}
    for base in klass.__mro__:
        if base is torch.nn.Module:
            break
        for param in inspect.signature(base.__init__).parameters.values():
            if param.name in accepted_kwargs(name) and param.default is not inspect.Parameter.empty:
                defaults.setdefault(param.name, param.default)
    assert set(defaults) == set(accepted_kwargs(name))
    assert json.loads(json.dumps(defaults)) == defaults


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "bad, message",
    [
        (torch.randn(2, D, 3), r"expected z of shape \(batch, 4, height, width\); got \(2, 4, 3\)"),
        (torch.randn(2, D + 1, 3, 3), r"expected z with 4 channels \(vq_embed_dim\); got 5 channels"),
        (torch.full((1, D, 2, 2), float("nan")), r"z holds NaN or Inf \(16 of 16 values\)"),
        (torch.tensor([[[[float("inf")]]] * D]).view(1, D, 1, 1), r"z holds NaN or Inf \(4 of 4 values\)"),
    ],
)
def test_bad_z_raises(name, bad, message):
    with pytest.raises(ValueError, match=message):
        make(name)(bad)


@pytest.mark.parametrize("name", ALL)
@pytest.mark.parametrize(
    "indices, message",
    [
        (torch.tensor([0, K]), rf"indices must lie in \[0, {K}\) for this codebook; got values in \[0, {K}\]"),
        (torch.tensor([-1, 0]), r"got values in \[-1, 0\]"),
        (torch.tensor([0.0, 1.0]), r"indices must be an integer \(long\) tensor of code ids; got torch.float32"),
    ],
)
def test_bad_indices_raise(name, indices, message):
    with pytest.raises(ValueError, match=message):
        make(name).get_codebook_entry(indices, None)


@pytest.mark.parametrize(
    "name, kwargs, message",
    [
        ("vanilla", {"commitment_weight": -1}, r"commitment_weight must be a finite number >= 0; got -1"),
        ("ema", {"decay": 1.0}, r"decay must be a number in \[0, 1\); got 1.0"),
        ("nsvq", {"kernel": "cauchy"}, r"kernel must be one of \['gaussian', 'softmax'\]; got 'cauchy'"),
        ("nsvq", {"bandwidth_schedule": "cosine"}, r"needs decay_steps \(an int > 0\); got None"),
        ("nsvq", {"bandwidth": 0}, r"bandwidth must be > 0; got 0"),
        ("transvq", {"width": 30, "num_heads": 4}, r"num_heads must divide width; got width=30, num_heads=4"),
        ("vqgan_fc", {"codebook_dim": 0}, r"codebook_dim must be a positive int; got 0"),
    ],
)
def test_bad_kwarg_values_raise(name, kwargs, message):
    with pytest.raises(ValueError, match=message):
        build_quantizer(name, K, D, **kwargs)


def test_bad_sizes_raise():
    with pytest.raises(ValueError, match=r"num_vq_embeddings must be a positive int; got 0"):
        build_quantizer("vanilla", 0, D)

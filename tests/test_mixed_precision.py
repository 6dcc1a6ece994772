"""Mixed precision: bf16 autocast training keeps distances and codebook statistics in fp32; fp16 weights run in eval.

Extends tests/test_quantizer_contract.py::test_bf16_autocast_keeps_fp32_distances (one quantizer call, most indices
equal) and tests/test_modeling.py::test_fp16_weights_load_and_run_in_eval (NSVQ's quantizer alone), without
repeating them: here a whole model trains for a few steps under autocast, every distance block is inspected, and
the indices must agree wherever a margin argument says bf16 rounding cannot change the winner.
"""

import pytest
import torch
from conftest import tiny_model
from training_helpers import one_thread

import hf_nsvq.quantizers.base as base
import hf_nsvq.quantizers.nsvq as nsvq
from hf_nsvq import NSVQModel
from hf_nsvq.quantizers import build_quantizer, list_quantizers
from hf_nsvq.quantizers.vqgan_fc import VQGANFCVectorQuantizer
from hf_nsvq.training.wrapper import VQTrainingModule

ALL = list_quantizers()
KWARGS = {"transvq": {"width": 16}, "vqgan_fc": {"codebook_dim": 4}}


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture
def distance_blocks(monkeypatch):
    """Every (rows x K) distance block computed, as (dtype, autocast on while computing it, all finite)."""
    seen = []

    def recording(z, codebook, codebook_sq_norms):
        result = original(z, codebook, codebook_sq_norms)
        seen.append((result.dtype, torch.is_autocast_enabled("cpu"), bool(torch.isfinite(result).all())))
        return result

    original = base.squared_distances
    monkeypatch.setattr(base, "squared_distances", recording)
    monkeypatch.setattr(nsvq, "squared_distances", recording)  # NSVQ's training pass imports it by name
    return seen


@pytest.mark.parametrize("name", ALL)
def test_bf16_autocast_training_keeps_distances_and_statistics_in_fp32(name, distance_blocks):
    model = tiny_model(name).train()
    module = VQTrainingModule(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(4, 3, 16, 16) * 2 - 1
    seen_latents = []
    model.quant_conv.register_forward_hook(lambda mod, args, out: seen_latents.append(out.dtype))
    for _ in range(3):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            output = module(images)
            loss = output.reconstruction.float().square().mean() + output.quantizer_loss
        assert output.quantizer_loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad()
    assert seen_latents == [torch.bfloat16] * 3  # the encoder really ran in bf16
    assert distance_blocks and all(block == (torch.float32, False, True) for block in distance_blocks)
    for key, value in model.state_dict().items():
        if value.is_floating_point():
            assert value.dtype == torch.float32 and torch.isfinite(value).all(), key  # EMA statistics included
    if name == "nsvq":
        assert model.quantize.step.dtype == torch.long and int(model.quantize.step) == 3


def search_space(quantizer, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The points and codes the winner is searched among (VQGAN-FC searches its projection, the others z itself)."""
    with torch.no_grad():
        if isinstance(quantizer, VQGANFCVectorQuantizer):
            return quantizer._project(rows), quantizer.normalized_codes()
        return rows, quantizer.codebook.float().clone()  # a copy: EMA updates its codebook buffer in place


@pytest.mark.parametrize("name", ALL)
def test_bf16_indices_equal_fp32_wherever_the_margin_allows(name):
    # The margin of a row: second-best minus best distance. With d_k(p) = ||p||^2 - 2 p.e_k + ||e_k||^2, moving the
    # search point p to p' (z rounded to bf16) changes d_j - d_w by 2 (p - p').(e_j - e_w): by at most
    # 2 ||p' - p|| max_j ||e_j - e_w||. A margin above that (plus fp32 slack) means no rounding can change the
    # winner w, so on those rows the bf16 indices must equal the fp32 ones.
    torch.manual_seed(0)
    fp32 = build_quantizer(name, 64, 8, **KWARGS.get(name, {})).train()
    if getattr(fp32, "codebook_init", None) == "data":  # draw the codes once, from other latents, for both
        fp32(torch.randn(4, 8, 8, 8) * 0.5)
    bf16 = build_quantizer(name, 64, 8, **KWARGS.get(name, {})).train()
    bf16.load_state_dict(fp32.state_dict())
    z = torch.randn(4, 8, 8, 8) * 0.5
    rows = z.permute(0, 2, 3, 1).reshape(-1, 8)
    points, codes = search_space(fp32, rows)  # before the training forward updates anything
    rounded, _ = search_space(fp32, rows.bfloat16().float())
    reference = fp32(z)[2][2]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        indices = bf16(z.bfloat16())[2][2]

    distances = torch.cdist(points.double(), codes.double()).square()
    best_two, winners = distances.topk(2, dim=1, largest=False)
    margin = best_two[:, 1] - best_two[:, 0]
    spread = torch.cdist(codes.double()[winners[:, 0]], codes.double()).max(dim=1).values  # max_j ||e_j - e_w||
    bound = 2 * (rounded - points).double().norm(dim=1) * spread
    slack = 1e-5 * (points.double().square().sum(dim=1) + codes.double().square().sum(dim=1).max())
    decidable = margin > bound + slack
    assert decidable.float().mean() > 0.5, "margins too small for the test to say anything"
    assert torch.equal(indices[decidable], reference[decidable])
    assert torch.equal(reference, distances.argmin(dim=1))  # and fp32 is the exact nearest code


@pytest.mark.parametrize("name", ALL)
def test_fp16_weights_load_and_run_in_eval_with_fp32_distances(name, tmp_path, distance_blocks):
    trained = tiny_model(name)
    trained.save_pretrained(tmp_path)
    model = NSVQModel.from_pretrained(tmp_path, torch_dtype=torch.float16).eval()
    assert model.dtype == torch.float16
    images = (torch.rand(2, 3, 16, 16) * 2 - 1).half()
    with torch.no_grad():
        sample = model(images).sample
        latents = model.encode(images).latents
        indices = model.encode_to_indices(images)
        decoded = model.decode_indices(indices)
        stock = model.to_diffusers()
    assert sample.dtype == decoded.dtype == torch.float16 and stock.dtype == torch.float16
    assert torch.isfinite(sample).all() and torch.isfinite(decoded).all()
    assert distance_blocks and all(block[0] == torch.float32 for block in distance_blocks)
    # fp16 latents and codes, upcast exactly, searched in fp32: the exact nearest codes of the fp16 values
    points, codes = search_space(model.quantize, latents.float().permute(0, 2, 3, 1).reshape(-1, latents.shape[1]))
    assert torch.equal(indices.flatten(), torch.cdist(points.double(), codes.double()).argmin(dim=1))

"""`codebook_init="data"`: codes drawn from the first training batch, once, for every explicit-codebook quantizer."""

import pytest
import torch
import torch.nn.functional as F

from hf_nsvq import NSVQModel
from hf_nsvq.quantizers import build_quantizer
from hf_nsvq.quantizers.codebook_init import sample_codes_from_latents

K, D = 16, 3
EXPLICIT = ["vanilla", "ema", "nsvq", "vqgan_fc"]


def rows_of(z: torch.Tensor) -> torch.Tensor:
    return z.permute(0, 2, 3, 1).reshape(-1, z.shape[1])


def searched_codes(quantizer) -> torch.Tensor:
    """The codes the quantizer searches, in the space its first batch was sampled in."""
    if quantizer.__class__.__name__.startswith("VQGANFC"):
        return quantizer.normalized_codes().detach()
    return quantizer.codebook.detach().float()


def sampled_space(quantizer, rows: torch.Tensor) -> torch.Tensor:
    if quantizer.__class__.__name__.startswith("VQGANFC"):
        return F.normalize(quantizer._project(rows), dim=1).detach()
    return rows


@pytest.mark.parametrize("name", EXPLICIT)
def test_first_training_batch_sets_distinct_codes_once(name):
    torch.manual_seed(0)
    quantizer = build_quantizer(name, K, D, codebook_init="data").train()
    first = torch.randn(2, D, 3, 4) * 5 + 3  # 24 rows >= K, far from the uniform init
    quantizer.eval()
    quantizer(first)
    assert not bool(quantizer.codebook_initialized)  # eval never initialises
    quantizer.train()
    with torch.no_grad():
        candidates = sampled_space(quantizer, rows_of(first))
        quantizer(first)
    codes = searched_codes(quantizer)
    if name == "ema":  # its first update already moved the codes toward their assigned latents
        codes = quantizer.embed_sum.detach() / quantizer.cluster_size.detach().unsqueeze(1)
    distances = torch.cdist(codes.double(), candidates.double())
    if name != "ema":
        assert distances.min(dim=1).values.max() < 1e-5  # every code is one of the batch's rows
        assert torch.unique(distances.argmin(dim=1)).numel() == K  # and no row twice
    assert bool(quantizer.codebook_initialized)
    before = codes.clone()
    with torch.no_grad():
        quantizer(torch.randn(2, D, 3, 4) * 5 - 3)
    if name in ("vanilla", "nsvq", "vqgan_fc"):  # no optimizer step: a second batch must leave the codes alone
        torch.testing.assert_close(searched_codes(quantizer), before)


def test_small_batches_use_every_row_then_jittered_repeats():
    torch.manual_seed(0)
    z = torch.randn(5, D) * 2
    codes = sample_codes_from_latents(z, K)
    assert codes.shape == (K, D)
    torch.testing.assert_close(codes[:5], z)
    assert torch.pdist(codes).min() > 0  # no two codes coincide
    assert (torch.cdist(codes[5:], z).min(dim=1).values < 1e-2 * z.std()).all()


def test_loaded_and_swapped_codebooks_are_never_replaced(tmp_path):
    model = NSVQModel(
        quantizer_type="nsvq",
        block_out_channels=(8,),
        norm_num_groups=4,
        latent_channels=D,
        num_vq_embeddings=K,
        down_block_types=("DownEncoderBlock2D",),
        up_block_types=("UpDecoderBlock2D",),
    ).train()
    model(torch.rand(2, 3, 8, 8) * 2 - 1)
    trained = model.quantize.embedding.weight.detach().clone()
    model.save_pretrained(tmp_path)
    loaded = NSVQModel.from_pretrained(tmp_path).train()
    assert bool(loaded.quantize.codebook_initialized)
    loaded(torch.rand(2, 3, 8, 8) * 2 - 1)
    torch.testing.assert_close(loaded.quantize.embedding.weight.detach(), trained)

    # A checkpoint from before the flag existed: from_pretrained treats its codebook as initialised too.
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "diffusion_pytorch_model.safetensors"
    state = load_file(weights)
    del state["quantize.codebook_initialized"]
    save_file(state, weights)
    old, info = NSVQModel.from_pretrained(tmp_path, output_loading_info=True)
    assert "quantize.codebook_initialized" in info["missing_keys"] and bool(old.quantize.codebook_initialized)

    fresh = build_quantizer("nsvq", K, D).train()
    assert fresh.init_from_codebook(trained) and bool(fresh.codebook_initialized)


def test_bad_value_raises():
    with pytest.raises(ValueError, match=r"codebook_init must be one of \['data', 'uniform'\]; got 'kmeans'"):
        build_quantizer("vanilla", K, D, codebook_init="kmeans")

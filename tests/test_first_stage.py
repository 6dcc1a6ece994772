"""The frozen first stage of the downstream scripts: what `--vqvae` may name, tokens, the token cache, scaling."""

import json
import logging

import numpy as np
import pytest
import torch
from accelerate import Accelerator
from diffusers import LDMPipeline, VQModel
from downstream_helpers import reset_accelerate, save_tokenizer, tiny_tokenizer, write_images

from hf_nsvq import NSVQModel
from hf_nsvq.data import ImageTransform, load_image_dataset
from hf_nsvq.pipelines import (
    cached_tokens,
    decode_tokens,
    encode_tokens,
    estimate_scaling_factor,
    load_first_stage,
    scaling_factor_indices,
)


@pytest.fixture
def accelerator():
    yield Accelerator(cpu=True)
    reset_accelerate()


def test_first_stage_from_every_kind_of_folder(tmp_path):
    bare = save_tokenizer(tmp_path / "bare", "vqgan_fc")
    stage = load_first_stage(str(bare))
    assert type(stage.tokenizer) is NSVQModel and type(stage.vqvae) is VQModel and "to_diffusers" in stage.source
    assert not stage.tokenizer.training and not any(p.requires_grad for p in stage.vqvae.parameters())

    baked = save_tokenizer(tmp_path / "baked", "ema", baked=True)  # top-level and vqvae/ weights have other keys
    (baked / "vqvae" / "config.json").write_text(
        json.dumps({**json.loads((baked / "vqvae" / "config.json").read_text()), "scaling_factor": 0.5})
    )
    stage = load_first_stage(str(baked))
    assert stage.vqvae.config.scaling_factor == 0.5 and "baked vqvae/" in stage.source  # the folder's own bake
    assert torch.equal(stage.vqvae.quantize.embedding.weight, stage.tokenizer.quantize.codebook)  # vqvae/'s weights

    stock = load_first_stage(str(baked / "vqvae"))
    assert stock.tokenizer is stock.vqvae and type(stock.vqvae) is VQModel

    LDMPipeline(vqvae=stock.vqvae, unet=None, scheduler=None).save_pretrained(tmp_path / "pipeline")
    assert type(load_first_stage(str(tmp_path / "pipeline")).vqvae) is VQModel  # a pipeline folder's vqvae/

    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=r"a folder without config\.json"):
        load_first_stage(str(tmp_path / "empty"))
    with pytest.raises(ValueError, match=r"expected an existing model folder or a Hub id"):
        load_first_stage(str(tmp_path / "missing"))


@pytest.mark.parametrize("quantizer", ["vqgan_fc", "transvq"])
def test_nsvq_and_stock_tokens_agree_and_decode_alike(quantizer):
    model = tiny_tokenizer(quantizer)
    stock = model.to_diffusers()
    images = torch.rand(3, 3, 16, 16) * 2 - 1
    tokens = encode_tokens(model, images)
    assert tokens.shape == (3, 4, 4) and tokens.dtype == torch.long
    assert torch.equal(tokens, encode_tokens(stock, images))  # the diffusers idiom quantize(...)[2][2]
    with torch.no_grad():
        torch.testing.assert_close(decode_tokens(stock, tokens), decode_tokens(model, tokens), rtol=0, atol=1e-5)
    with pytest.raises(ValueError, match=r"tokens got \(48,\)"):
        decode_tokens(stock, tokens.reshape(-1))


def test_token_cache_is_reused_and_rebuilt_when_the_tokenizer_changes(tmp_path, accelerator, caplog):
    data = load_image_dataset(train_data_dir=str(write_images(tmp_path / "images", 5)), resolution=16)
    transform = ImageTransform(16)
    tokenizer = tiny_tokenizer("nsvq")
    caplog.set_level(logging.INFO, logger="hf_nsvq.pipelines.token_cache")

    tokens, path = cached_tokens(accelerator, tokenizer, data, transform, tmp_path / "cache", batch_size=2)
    assert tokens.shape == (5, 4, 4) and tokens.dtype == np.uint16 and "tokenizing 5 images" in caplog.text
    expected = torch.stack(
        [encode_tokens(tokenizer, data.to_torch(transform)[i]["pixel_values"][None])[0] for i in range(5)]
    )
    np.testing.assert_array_equal(tokens, expected.numpy())
    written = path.stat().st_mtime_ns

    caplog.clear()
    again, same_path = cached_tokens(accelerator, tokenizer, data, transform, tmp_path / "cache")
    assert same_path == path and path.stat().st_mtime_ns == written and "reusing cached tokens" in caplog.text
    np.testing.assert_array_equal(again, tokens)

    caplog.clear()
    with torch.no_grad():
        tokenizer.quantize.embedding.weight[0] += 1.0  # one changed code: another tokenizer
    _, new_path = cached_tokens(accelerator, tokenizer, data, transform, tmp_path / "cache")
    assert new_path != path and "tokenizing 5 images" in caplog.text
    assert sorted(p.name for p in (tmp_path / "cache").iterdir()) == sorted(
        [path.name, path.with_suffix(".json").name, new_path.name, new_path.with_suffix(".json").name]
    )

    caplog.clear()
    _, cropped = cached_tokens(accelerator, tokenizer, data, ImageTransform(16, center_crop=True), tmp_path / "cache")
    assert cropped == new_path  # same settings, same entry
    with pytest.raises(ValueError, match=r"one fixed view"):
        cached_tokens(accelerator, tokenizer, data, ImageTransform(16, random_flip=True), tmp_path / "cache")


def test_scaling_factor_is_one_over_the_latent_std():
    vqvae = tiny_tokenizer("vanilla").to_diffusers()
    batches = [torch.rand(4, 3, 16, 16) * 2 - 1 for _ in range(3)]
    with torch.no_grad():
        latents = torch.cat([vqvae.encode(batch).latents for batch in batches]).double()
    expected = 1 / latents.std(unbiased=False).item()
    assert estimate_scaling_factor(vqvae, batches) == pytest.approx(expected, rel=1e-5)
    # a reduce that doubles every sum (two identical processes) leaves the factor unchanged
    assert estimate_scaling_factor(vqvae, batches, reduce=lambda stats: 2 * stats) == pytest.approx(expected, rel=1e-5)
    with pytest.raises(ValueError, match=r"no latents"):
        estimate_scaling_factor(vqvae, [])
    # the subset does not depend on the number of processes
    shards = [scaling_factor_indices(100, 10, seed=0, rank=rank, world_size=3) for rank in range(3)]
    assert sorted(sum(shards, [])) == scaling_factor_indices(100, 10, seed=0)

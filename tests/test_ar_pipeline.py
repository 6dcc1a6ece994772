"""VQTokenARPipeline: sampling, seeds, the key-value cache, save/load, and its argument checks."""

import json

import numpy as np
import PIL.Image
import pytest
import torch
from diffusers import VQModel
from downstream_helpers import tiny_tokenizer
from transformers import GPT2LMHeadModel

from hf_nsvq.pipelines import VQTokenARPipeline, filter_logits
from hf_nsvq.pipelines.prior import build_prior, evaluate_prior, prior_inputs

K = 32  # tiny_tokenizer's codebook; 16 px images give 4 x 4 tokens


@pytest.fixture
def pipeline():
    vqvae = tiny_tokenizer("nsvq").to_diffusers()
    transformer = build_prior(K, 16, n_layer=1, n_head=2, n_embd=16).eval()
    pipeline = VQTokenARPipeline(vqvae=vqvae, transformer=transformer)
    pipeline.set_progress_bar_config(disable=True)
    return pipeline


def sample(pipeline, seed, **kwargs):
    return pipeline(batch_size=2, generator=torch.Generator().manual_seed(seed), output_type="np", **kwargs)


def test_output_types_shapes_and_ranges(pipeline):
    output = sample(pipeline, 0)
    assert output.images.shape == (2, 16, 16, 3) and output.images.dtype == np.float32
    assert output.images.min() >= 0 and output.images.max() <= 1
    assert output.tokens.shape == (2, 4, 4) and output.tokens.min() >= 0 and output.tokens.max() < K  # never BOS
    images = pipeline(batch_size=2, output_type="pil").images
    assert len(images) == 2 and all(isinstance(image, PIL.Image.Image) and image.size == (16, 16) for image in images)
    tensor = pipeline(batch_size=1, output_type="pt", return_dict=False)[0]
    assert tensor.shape == (1, 3, 16, 16) and 0 <= tensor.min() <= tensor.max() <= 1


def test_same_seed_same_images_other_seed_other_images(pipeline):
    first, again, other = sample(pipeline, 0), sample(pipeline, 0), sample(pipeline, 1)
    np.testing.assert_array_equal(first.images, again.images)
    assert torch.equal(first.tokens, again.tokens)
    assert not torch.equal(first.tokens, other.tokens) and np.abs(first.images - other.images).max() > 0
    generators = [torch.Generator().manual_seed(seed) for seed in (3, 4)]
    per_image = pipeline(batch_size=2, generator=generators, output_type="np").tokens
    generators = [torch.Generator().manual_seed(seed) for seed in (3, 4)]
    assert torch.equal(per_image, pipeline(batch_size=2, generator=generators, output_type="np").tokens)


def test_cached_decoding_matches_a_full_forward(pipeline):
    # top_k=1 is greedy: every token must be the argmax of a full, uncached forward over the tokens before it
    tokens = pipeline(batch_size=2, top_k=1, output_type="np").tokens.reshape(2, -1)
    with torch.no_grad():
        logits = pipeline.transformer(input_ids=prior_inputs(tokens, K)).logits[..., :K]
    assert torch.equal(logits.argmax(-1), tokens)


def test_save_and_load_round_trip(pipeline, tmp_path):
    before = sample(pipeline, 7, top_k=10, top_p=0.9, temperature=0.8)
    pipeline.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["vqvae"] == ["diffusers", "VQModel"]
    assert index["transformer"] == ["transformers", "GPT2LMHeadModel"]
    assert index["_class_name"] == "VQTokenARPipeline" and index["latent_size"] == [4, 4]
    reloaded = VQTokenARPipeline.from_pretrained(tmp_path)
    reloaded.set_progress_bar_config(disable=True)
    assert type(reloaded.vqvae) is VQModel and type(reloaded.transformer) is GPT2LMHeadModel
    after = sample(reloaded, 7, top_k=10, top_p=0.9, temperature=0.8)
    assert torch.equal(before.tokens, after.tokens)
    np.testing.assert_allclose(before.images, after.images, atol=1e-6)
    # the components alone need no hf_nsvq
    assert GPT2LMHeadModel.from_pretrained(tmp_path / "transformer").config.bos_token_id == K


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"temperature": 0}, r"temperature got 0"),
        ({"top_k": 0}, r"top_k got 0"),
        ({"top_p": 1.5}, r"top_p got 1\.5"),
        ({"top_p": 0.0}, r"top_p got 0\.0"),
        ({"output_type": "latent"}, r"output_type got 'latent'"),
        ({"batch_size": 0}, r"batch_size got 0"),
        ({"generator": [torch.Generator()]}, r"got 1 generators for a batch of 2"),
    ],
)
def test_bad_call_arguments(pipeline, kwargs, message):
    with pytest.raises(ValueError, match=message):
        pipeline(**{"batch_size": 2, **kwargs})


def test_components_must_agree():
    vqvae = tiny_tokenizer("vanilla").to_diffusers()
    with pytest.raises(ValueError, match=r"vocab_size got 32; expected at least num_vq_embeddings \+ 1 = 33"):
        VQTokenARPipeline(vqvae=vqvae, transformer=build_prior(K - 1, 16, n_layer=1, n_head=2, n_embd=16))
    with pytest.raises(ValueError, match=r"needs 16 positions"):
        VQTokenARPipeline(vqvae=vqvae, transformer=build_prior(K, 15, n_layer=1, n_head=2, n_embd=16))


def test_top_k_and_nucleus_filtering():
    logits = torch.tensor([[0.5, 0.3, 0.15, 0.05]]).log()
    kept = lambda filtered: torch.isfinite(filtered)[0].tolist()  # noqa: E731
    assert kept(filter_logits(logits, top_k=2)) == [True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.75)) == [True, True, False, False]
    assert kept(filter_logits(logits, top_p=0.85)) == [True, True, True, False]
    assert kept(filter_logits(logits, top_p=0.1)) == [True, False, False, False]  # the most likely always stays
    assert kept(filter_logits(logits[:, [2, 0, 3, 1]], top_p=0.75)) == [False, True, False, True]  # any order


def test_prior_metrics_count_every_token_once():
    prior = build_prior(K, 16, n_layer=1, n_head=2, n_embd=16).eval()
    tokens = torch.randint(0, K, (5, 16))
    whole = evaluate_prior(prior, tokens, K, batch_size=2)
    assert whole["num_validation_tokens"] == 80 and whole["uniform_bits_per_token"] == 5.0
    assert whole["validation_perplexity"] == pytest.approx(np.exp(whole["validation_loss"]))
    assert whole["validation_bits_per_token"] == pytest.approx(whole["validation_loss"] / np.log(2))
    # a process without rows (fewer rows than processes) still joins the reduce, which brings in the others' sums
    others = torch.tensor([whole["validation_loss"] * 80, 80.0], dtype=torch.float64)
    alone = evaluate_prior(prior, tokens[:0], K, batch_size=2, reduce=lambda stats: stats + others)
    assert alone["validation_loss"] == pytest.approx(whole["validation_loss"])

"""examples/swap_quantizer_in_pipeline.py: a stock LDMPipeline's VQModel gets NSVQ, is fine-tuned by train_vqvae.py
(`--pretrained_model`), baked, and put back into the same LDMPipeline class, which samples and reloads."""

import json
import sys

import numpy as np
import pytest
import torch
from conftest import tiny_model_config
from diffusers import DDIMScheduler, DiffusionPipeline, LDMPipeline, VQModel
from downstream_helpers import ROOT, reset_accelerate, tiny_unet, write_images

from hf_nsvq import NSVQModel

sys.path.insert(0, str(ROOT / "training_scripts"))
sys.path.insert(0, str(ROOT / "examples"))
import swap_quantizer_in_pipeline as example  # noqa: E402
import train_vqvae  # noqa: E402

SMALL_FLAGS = [  # the flag-built model is replaced by the pretrained one; small flags keep building it cheap
    "--base_channels", "8", "--norm_num_groups", "4", "--latent_channels", "4", "--num_vq_embeddings", "16",
    "--layers_per_block", "1", "--no_mid_block_attention", "--downsample_factor", "2",
]  # fmt: skip


@pytest.fixture
def fresh_accelerate():
    yield
    reset_accelerate()


def tiny_ldm_pipeline() -> LDMPipeline:
    vqvae = VQModel(**tiny_model_config(scaling_factor=0.37)).eval()
    unet = tiny_unet()
    return LDMPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler(num_train_timesteps=10, clip_sample=False))


def sample(pipeline) -> np.ndarray:
    pipeline.set_progress_bar_config(disable=True)
    generator = torch.Generator().manual_seed(0)
    return pipeline(batch_size=2, num_inference_steps=2, generator=generator, output_type="np").images


def test_swap_fine_tune_bake_and_put_back(tmp_path, fresh_accelerate):
    tiny_ldm_pipeline().save_pretrained(tmp_path / "original")
    pipeline = DiffusionPipeline.from_pretrained(tmp_path / "original")
    assert type(pipeline) is LDMPipeline

    swapped = example.swap(pipeline, tmp_path, "nsvq")
    model = NSVQModel.from_pretrained(swapped)
    assert model.config.quantizer_type == "nsvq"
    assert torch.equal(model.quantize.codebook, pipeline.vqvae.quantize.embedding.weight)  # the codebook carried over

    command = example.fine_tune_command(swapped, tmp_path / "tokenizer", "nsvq", ["--max_train_steps", "2"])
    assert command[command.index("--pretrained_model") + 1] == str(swapped)
    train_args = command[command.index(str(ROOT / "training_scripts" / "train_vqvae.py")) + 1 :]
    train_args += ["--train_data_dir", str(write_images(tmp_path / "images", 8)), "--resolution", "16"]
    train_args += ["--train_batch_size", "4", "--learning_rate", "1e-5", "--report_to", "none", *SMALL_FLAGS]
    train_args += ["--validation_steps", "1000", "--checkpointing_steps", "1000"]
    train_vqvae.main(train_vqvae.parse_args(train_args))

    tuned = NSVQModel.from_pretrained(tmp_path / "tokenizer")
    assert tuned.config.num_vq_embeddings == 32  # the pretrained architecture, not the size flags
    before, after = model.decoder.conv_out.weight, tuned.decoder.conv_out.weight
    assert 0 < (after - before).abs().max() < 1e-3  # started from the pretrained weights, then moved a little

    result = example.reassemble(pipeline, tmp_path / "tokenizer")
    assert type(result) is LDMPipeline and type(result.vqvae) is VQModel and result.unet is pipeline.unet
    assert result.vqvae.config.scaling_factor == 0.37  # the factor the UNet was trained with
    images = sample(result)
    assert images.shape == (2, 16, 16, 3) and 0 <= images.min() <= images.max() <= 1

    result.save_pretrained(tmp_path / "final")
    assert json.loads((tmp_path / "final" / "model_index.json").read_text())["vqvae"] == ["diffusers", "VQModel"]
    np.testing.assert_allclose(sample(LDMPipeline.from_pretrained(tmp_path / "final")), images, atol=1e-5)


def test_example_passes_unknown_flags_to_train_vqvae():
    args = example.parse_args(["--pipeline", "p", "--output_dir", "o", "--resolution", "32", "--max_train_steps", "5"])
    assert args.quantizer == "nsvq" and args.train_args == ["--resolution", "32", "--max_train_steps", "5"]
    with pytest.raises(ValueError, match=r"without a vqvae component"):
        example.swap(object(), "unused")

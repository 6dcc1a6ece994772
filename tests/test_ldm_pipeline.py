"""A baked tokenizer is the first stage of a stock diffusers LDMPipeline that saves and reloads."""

import json

import torch
from conftest import tiny_model
from diffusers import DDIMScheduler, LDMPipeline, VQModel
from downstream_helpers import tiny_unet


def test_ldm_pipeline_with_baked_vqvae_round_trips(tmp_path):
    vqvae = tiny_model("transvq", scaling_factor=0.7).eval().to_diffusers()
    unet = tiny_unet()
    pipeline = LDMPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler(num_train_timesteps=10))
    samples = pipeline(
        batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert samples.shape == (2, 16, 16, 3) and samples.min() >= 0 and samples.max() <= 1

    pipeline.save_pretrained(tmp_path)
    index = json.loads((tmp_path / "model_index.json").read_text())
    assert index["vqvae"] == ["diffusers", "VQModel"]  # loadable without hf_nsvq installed
    assert json.loads((tmp_path / "vqvae" / "config.json").read_text())["scaling_factor"] == 0.7

    reloaded = LDMPipeline.from_pretrained(tmp_path)
    assert type(reloaded.vqvae) is VQModel
    again = reloaded(
        batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert abs(again - samples).max() < 1e-5

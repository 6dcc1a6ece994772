#!/usr/bin/env python
"""Swap a collapse-resistant quantizer into an existing latent-diffusion pipeline, fine-tune it, and put it back.

    python examples/swap_quantizer_in_pipeline.py --pipeline CompVis/ldm-celebahq-256 --quantizer nsvq \
        --dataset_name korexyz/celeba-hq-256x256 --resolution 256 --max_train_steps 2000 --output_dir out/swap

Three steps, each a function below so they can be run (and tested) one by one:

1. `swap`: `hf_nsvq.replace_quantizer(pipeline.vqvae, quantizer)` turns the pipeline's stock `VQModel` into an
   `NSVQModel` (encoder, decoder and codebook copied where the new quantizer can hold it) and saves it.
2. `fine_tune_command`: `training_scripts/train_vqvae.py --pretrained_model` fine-tunes it (run under
   `accelerate launch`).
3. `reassemble`: the fine-tuned model is baked into a stock `VQModel` with `to_diffusers()` and put back into the
   same pipeline class, with the pipeline's original `scaling_factor`: its UNet was trained on latents scaled by
   that factor, so decoding must undo the same one. (Retrain the UNet with `train_ldm.py` once the latents drift far.)

The result is saved with `save_pretrained` and loads with plain diffusers (`LDMPipeline.from_pretrained`).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import torch
from diffusers import DiffusionPipeline

from hf_nsvq import NSVQModel, replace_quantizer

ROOT = Path(__file__).resolve().parents[1]
SWAPPED = "swapped-vqvae"
TOKENIZER = "fine-tuned-tokenizer"
PIPELINE = "pipeline"


def swap(pipeline: DiffusionPipeline, output_dir: str | Path, quantizer: str = "nsvq", **quantizer_kwargs) -> Path:
    """Save `replace_quantizer(pipeline.vqvae, quantizer)` to `output_dir/swapped-vqvae`; returns that folder."""
    if not hasattr(pipeline, "vqvae"):
        raise ValueError(
            f"pipeline got a {type(pipeline).__name__} without a vqvae component; expected e.g. LDMPipeline"
        )
    model = replace_quantizer(pipeline.vqvae, quantizer, **quantizer_kwargs)
    path = Path(output_dir) / SWAPPED
    model.save_pretrained(path)
    return path


def fine_tune_command(swapped: str | Path, output_dir: str | Path, quantizer: str, train_args: list[str]) -> list[str]:
    """The `accelerate launch train_vqvae.py` command that fine-tunes the swapped model into `output_dir`."""
    return [
        sys.executable, "-m", "accelerate.commands.launch", str(ROOT / "training_scripts" / "train_vqvae.py"),
        "--pretrained_model", str(swapped), "--quantizer", quantizer, "--output_dir", str(output_dir), *train_args,
    ]  # fmt: skip


def reassemble(pipeline: DiffusionPipeline, tokenizer_dir: str | Path) -> DiffusionPipeline:
    """The same pipeline class with the fine-tuned tokenizer, baked into a stock `VQModel`, as its vqvae."""
    baked = NSVQModel.from_pretrained(tokenizer_dir).eval().to_diffusers()
    # the UNet's latents are scaled by the pipeline's factor, not by the one train_vqvae estimated for the new latents
    baked.register_to_config(scaling_factor=pipeline.vqvae.config.scaling_factor)
    baked = baked.to(pipeline.vqvae.device)
    if baked.dtype != pipeline.vqvae.dtype:  # e.g. a pipeline loaded in fp16
        baked = baked.to(dtype=pipeline.vqvae.dtype)
    return type(pipeline)(**{**pipeline.components, "vqvae": baked})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--pipeline", required=True, help="a pipeline folder or Hub id with a vqvae (e.g. LDMPipeline)"
    )
    parser.add_argument("--output_dir", required=True)
    parser.add_argument("--quantizer", default="nsvq")
    parser.add_argument("--num_inference_steps", type=int, default=50, help="of the sample the result draws")
    args, train_args = parser.parse_known_args(argv)
    args.train_args = train_args  # everything else goes to train_vqvae.py (data, resolution, steps, lr, ...)
    return args


def main(args: argparse.Namespace) -> None:
    output_dir = Path(args.output_dir)
    pipeline = DiffusionPipeline.from_pretrained(args.pipeline)
    swapped = swap(pipeline, output_dir, args.quantizer)
    command = fine_tune_command(swapped, output_dir / TOKENIZER, args.quantizer, args.train_args)
    print("fine-tuning:", " ".join(command))
    subprocess.run(command, check=True)
    result = reassemble(pipeline, output_dir / TOKENIZER)
    result.save_pretrained(output_dir / PIPELINE)
    generator = torch.Generator().manual_seed(0)
    image = result(batch_size=1, num_inference_steps=args.num_inference_steps, generator=generator).images[0]
    image.save(output_dir / "sample.png")
    print(f"saved the {type(result).__name__} to {output_dir / PIPELINE} and a sample to {output_dir / 'sample.png'}")


if __name__ == "__main__":
    main(parse_args())

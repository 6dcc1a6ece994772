#!/usr/bin/env python
"""Evaluate a trained VQ-VAE (rFID, LPIPS, SSIM, PSNR, codebook usage) under Accelerate; writes metrics.json.

The same evaluation as `hf-nsvq evaluate`, with the same flags, launchable on several processes (each evaluates a
shard; counts and features are gathered, so the numbers are those of the whole split). On the offline sample set:

    accelerate launch training_scripts/evaluate_vqvae.py --model out/nsvq-embedded --dataset_name embedded \
        --split validation --resolution 64 --output out/nsvq-embedded/metrics.json

CelebA-HQ validation on 8 GPUs, with the standard FID Inception and LPIPS weights from local files
(`pip install "hf_nsvq[metrics]"`; rFID / LPIPS are reported as skipped, with the reason, when they are missing):

    accelerate launch --multi_gpu --num_processes 8 training_scripts/evaluate_vqvae.py \
        --model out/nsvq-celebahq --dataset_name korexyz/celeba-hq-256x256 --split validation --resolution 64 \
        --batch_size 64 --inception_weights weights/pt_inception-2015-12-05-6726825d.pth \
        --output out/nsvq-celebahq/metrics.json

`--subfolder vqvae` evaluates the baked stock `diffusers.VQModel` of a training output folder instead. On a machine
without GPUs, `ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 ...` runs two gloo processes
(without the variable accelerate 1.x starts two independent single-process runs).
"""

from __future__ import annotations

import argparse
import logging

from accelerate import Accelerator

from hf_nsvq.commands.evaluate import add_arguments, run


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_arguments(parser)
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> dict:
    logging.basicConfig(format="%(levelname)s %(name)s: %(message)s", level=logging.INFO)
    return run(args, accelerator=Accelerator())


if __name__ == "__main__":
    main(parse_args())

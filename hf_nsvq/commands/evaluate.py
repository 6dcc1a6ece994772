"""`hf-nsvq evaluate`: rFID, LPIPS, SSIM, PSNR and codebook usage of a saved VQ-VAE on a dataset split."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The evaluation flags, shared by `hf-nsvq evaluate` and `training_scripts/evaluate_vqvae.py`."""
    model = parser.add_argument_group("model")
    model.add_argument("--model", required=True, help="folder or Hub id of an NSVQModel or a stock diffusers VQModel")
    model.add_argument("--subfolder", default=None, help='e.g. "vqvae" for the baked stock model of a training run')
    model.add_argument("--revision", default=None, help="Hub revision of the model")
    data = parser.add_argument_group("data")
    data.add_argument("--dataset_name", default=None, help='Hub dataset id, local dataset directory, or "embedded"')
    data.add_argument("--train_data_dir", default=None, help="local image folder (instead of --dataset_name)")
    data.add_argument("--dataset_revision", default=None, help="Hub revision of the dataset")
    data.add_argument("--split", default="validation")
    data.add_argument("--image_column", default=None)
    data.add_argument("--resolution", type=int, default=None, help="image side (default: the model's sample_size)")
    data.add_argument("--batch_size", type=int, default=16, help="per process")
    data.add_argument("--max_samples", type=int, default=None, help="evaluate the first N readable images only")
    data.add_argument("--num_workers", type=int, default=0)
    data.add_argument("--cache_dir", default=None)
    metrics = parser.add_argument_group("metric networks (local files only; a metric without them is skipped)")
    metrics.add_argument(
        "--inception_weights",
        default=None,
        help="FID Inception-v3 weights (pt_inception-2015-12-05-6726825d.pth or weights-inception-2015-12-05-"
        "6726825d.pth); default: the torch hub cache",
    )
    metrics.add_argument("--lpips_weights", default=None, help="a full lpips.LPIPS state dict, or its linear layers")
    metrics.add_argument("--lpips_net", default="alex", choices=["alex", "vgg"])
    parser.add_argument("--output", default="metrics.json", help="where to write the metrics JSON")


def register(subparsers) -> None:
    evaluate = subparsers.add_parser(
        "evaluate", help="rFID, LPIPS, SSIM, PSNR and codebook usage of a saved VQ-VAE on a dataset split"
    )
    add_arguments(evaluate)
    evaluate.set_defaults(func=run)


def run(args: argparse.Namespace, accelerator=None) -> dict:
    from accelerate import Accelerator

    from ..evaluation.run import format_metrics, run_evaluation

    accelerator = accelerator or Accelerator()
    kwargs = {key: value for key, value in vars(args).items() if key not in ("command", "func")}
    metrics = run_evaluation(**kwargs, accelerator=accelerator)
    if accelerator.is_main_process:
        print(f"{metrics['num_images']} images of {metrics['dataset_name']!r} ({metrics['split']}):")
        print(format_metrics(metrics))
        if args.output:
            print(f"wrote {args.output}")
    return metrics

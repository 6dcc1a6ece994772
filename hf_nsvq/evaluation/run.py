"""`run_evaluation`: model + dataset + metric networks -> metrics.json; what `hf-nsvq evaluate` and
`training_scripts/evaluate_vqvae.py` both call."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import torch

from .. import __version__
from ..data import ImageTransform, check_resolution, collate_fn, load_image_dataset
from .evaluate import evaluate_model
from .fid import load_inception_or_skip
from .loading import load_vq_model
from .perceptual import load_lpips_or_skip
from .skipped import SkippedMetric

logger = logging.getLogger(__name__)


def run_evaluation(
    model: str,
    subfolder: str | None = None,
    revision: str | None = None,
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    dataset_revision: str | None = None,
    split: str = "validation",
    image_column: str | None = None,
    resolution: int | None = None,
    batch_size: int = 16,
    max_samples: int | None = None,
    num_workers: int = 0,
    cache_dir: str | None = None,
    inception_weights: str | None = None,
    lpips_weights: str | None = None,
    lpips_net: str = "alex",
    output: str | None = None,
    accelerator=None,
) -> dict:
    """Evaluate a saved VQ-VAE on one split of a dataset and write the metrics JSON.

    Everything that can fail cheaply (the model, the metric networks, the arguments) is loaded before the dataset,
    whose images are all decoded once to validate them. Images are resized (shorter side) and center-cropped to
    `resolution`. Under `accelerate launch` each process evaluates its shard and every process gets the same
    numbers; only the main process writes `output`.

    Args:
        model (`str`): Folder or Hub id of an `NSVQModel` or a stock `diffusers.VQModel` (see [`load_vq_model`]).
        subfolder (`str`, *optional*): E.g. `"vqvae"` for the baked stock model of a training output folder.
        revision (`str`, *optional*): Hub revision of the model.
        dataset_name (`str`, *optional*): Hub dataset id, local dataset directory, or `"embedded"`.
        train_data_dir (`str`, *optional*): Local image folder (instead of `dataset_name`).
        dataset_revision (`str`, *optional*): Hub revision of the dataset; the resolved commit is recorded.
        split (`str`, *optional*, defaults to `"validation"`): Split to evaluate on.
        image_column (`str`, *optional*): Column holding the images.
        resolution (`int`, *optional*): Image side; defaults to the model config's `sample_size`.
        batch_size (`int`, *optional*, defaults to 16): Images per batch and process.
        max_samples (`int`, *optional*): Evaluate the first `max_samples` readable images only.
        num_workers (`int`, *optional*, defaults to 0): Dataloader workers.
        cache_dir (`str`, *optional*): Hub / `datasets` cache folder.
        inception_weights (`str`, *optional*): Local FID Inception weights file (rFID is skipped without one).
        lpips_weights (`str`, *optional*): Local LPIPS weights (see [`load_lpips`]).
        lpips_net (`str`, *optional*, defaults to `"alex"`): LPIPS backbone.
        output (`str`, *optional*): Where to write the metrics JSON.
        accelerator (`accelerate.Accelerator`, *optional*): Created if not given.

    Returns:
        `dict`: The metrics (see [`evaluate_model`]).
    """
    from accelerate import Accelerator

    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive int; got {batch_size!r}")
    accelerator = accelerator or Accelerator()
    vq_model = load_vq_model(model, subfolder=subfolder, revision=revision, cache_dir=cache_dir)
    resolution = resolution or vq_model.config.sample_size
    check_resolution(resolution, 2 ** (len(vq_model.config.block_out_channels) - 1))
    feature_extractor = load_inception_or_skip(inception_weights)
    lpips_model = load_lpips_or_skip(lpips_weights, net=lpips_net)
    for name, network in (("rfid", feature_extractor), ("lpips", lpips_model)):
        if isinstance(network, SkippedMetric):
            logger.warning("%s will be skipped: %s", name, network.reason)

    data = load_image_dataset(
        dataset_name=dataset_name,
        train_data_dir=train_data_dir,
        split=split,
        revision=dataset_revision,
        image_column=image_column,
        max_samples=max_samples,
        cache_dir=cache_dir,
        resolution=resolution,
    )
    dataset = data.to_torch(ImageTransform(resolution, center_crop=True, random_flip=False))
    dataloader = torch.utils.data.DataLoader(
        dataset, batch_size=batch_size, shuffle=False, collate_fn=collate_fn, num_workers=num_workers
    )
    dataloader = accelerator.prepare(dataloader)
    vq_model.to(accelerator.device)

    provenance = {
        "dataset_name": data.name,
        "dataset_revision": data.revision,
        "split": data.split,
        "dataset_source": data.source
        + (f" ({data.num_skipped} unreadable images left out)" if data.num_skipped else ""),
        "preprocessing": f"shorter side resized to {resolution} (PIL bicubic), center crop, no flip",
        "model": model if subfolder is None else f"{model} (subfolder {subfolder})",
        "hf_nsvq_version": __version__,
    }
    metrics = evaluate_model(
        vq_model,
        dataloader,
        accelerator,
        feature_extractor=feature_extractor,
        lpips_model=lpips_model,
        provenance=provenance,
    )
    if output is not None and accelerator.is_main_process:
        path = Path(output)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics


def format_metrics(metrics: dict) -> str:
    """The headline numbers, one per line, for the terminal."""
    lines = []
    for key in ("rfid", "lpips", "ssim", "psnr", "mse", "utilisation", "perplexity", "dead_codes"):
        value = metrics.get(key)
        if isinstance(value, dict):
            lines.append(f"{key:>12}  skipped: {value['reason']}")
        elif isinstance(value, float):
            lines.append(f"{key:>12}  {value:.6g}")
        else:
            lines.append(f"{key:>12}  {value}")
    return "\n".join(lines)

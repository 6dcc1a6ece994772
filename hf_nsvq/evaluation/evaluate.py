"""Evaluate a VQ-VAE (an `NSVQModel` or a stock `diffusers.VQModel`) on a dataloader: the metrics of ALGORITHMS.md.

rFID, LPIPS, SSIM, PSNR and MSE of the reconstructions, and the codebook utilisation / perplexity / dead codes of
the whole set. Under Accelerate every per-image quantity (code indices, features, per-image scores) goes through
`accelerator.gather_for_metrics`, which also drops the samples the sharded dataloader repeats to even out the last
batch, so every process returns the numbers of exactly the evaluation set.
"""

from __future__ import annotations

import math

import torch
from diffusers import VQModel
from torch import nn
from tqdm.auto import tqdm

from ..modeling import NSVQModel
from .codebook import CodebookUsage
from .fid import FeatureStatistics, describe_feature_extractor, frechet_distance_from_statistics
from .image_metrics import mse_per_image, psnr_per_image, ssim_per_image, to_unit_range
from .perceptual import describe_lpips
from .skipped import SkippedMetric

PSNR_CAP_DB = 100.0

# How SSIM/PSNR/MSE were computed, recorded with the numbers (SSIM implementations differ by ~1e-3).
IMAGE_METRICS_TEXT = (
    "on [0, 1] images (model output clamped to [-1, 1]), data_range=1, averaged per image; SSIM: Wang et al. 2004, "
    "11x11 Gaussian window sigma=1.5, K1=0.01, K2=0.03, valid positions, mean over channels; PSNR capped at "
    f"{PSNR_CAP_DB:g} dB per image"
)


def encode_reconstruct(model: VQModel, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Code indices (B, h, w) and the reconstruction `model(images).sample` clamped to [-1, 1], one encoder pass.

    `NSVQModel` indices come from its quantizer's state-free `encode_indices`; a stock `VQModel`'s from
    `model.quantize(h)[2][2]`, the idiom diffusers code relies on. The decoder runs as in `VQModel.forward`.
    """
    latents = model.encode(images).latents
    if isinstance(model, NSVQModel):
        indices = model.quantize.encode_indices(latents)
    else:
        indices = model.quantize(latents)[2][2].reshape(latents.shape[0], latents.shape[2], latents.shape[3])
    reconstruction = model.decode(latents).sample.clamp(-1, 1)
    return indices, reconstruction


@torch.no_grad()
def evaluate_model(
    model: VQModel,
    dataloader,
    accelerator=None,
    feature_extractor: nn.Module | SkippedMetric | None = None,
    lpips_model: nn.Module | SkippedMetric | None = None,
    max_batches: int | None = None,
    provenance: dict | None = None,
) -> dict:
    """Reconstruction and codebook metrics of `model` over `dataloader`.

    Args:
        model (`VQModel`): An `hf_nsvq.NSVQModel` or a stock `diffusers.VQModel`. Run in eval mode; its previous
            mode is restored on return.
        dataloader (iterable): Batches `{"pixel_values": (B, 3, H, W) float in [-1, 1]}`; under Accelerate, pass it
            through `accelerator.prepare` first so each process sees its shard.
        accelerator (`accelerate.Accelerator`, *optional*): Gathers per-image results across processes. Without it
            the evaluation is single-process.
        feature_extractor (`nn.Module`, *optional*): Maps images in [0, 1] (N, 3, H, W) to features (N, F) for rFID,
            e.g. [`load_inception_feature_extractor`]'s result (a [`SkippedMetric`] is reported as is). Moved to the
            model's device. `None` skips rFID.
        lpips_model (`nn.Module`, *optional*): Called as `lpips_model(reconstruction, original)` on images in
            [-1, 1], returning one distance per image (e.g. [`load_lpips`]'s result). `None` skips LPIPS.
        max_batches (`int`, *optional*): Stop after this many batches per process.
        provenance (`dict`, *optional*): Copied into the result (dataset name, revision, split, model path, ...).

    Returns:
        `dict`: One flat JSON-ready object (the `metrics.json` schema of `hf_nsvq.hub`): `num_images`, `resolution`
        (an int for square images), `rfid`, `lpips` (floats, or `{"skipped": true, "reason": ...}`), `ssim`, `psnr`,
        `mse`, `utilisation`, `perplexity`, `dead_codes` (of the histogram of every token of the set), strings that
        say how they were computed (`image_metrics`, `rfid_network`, `rfid_weights`, `lpips_network`, ...), and the
        `provenance` entries.
    """
    if not isinstance(model, VQModel):
        raise ValueError(f"model must be a diffusers VQModel or an hf_nsvq NSVQModel; got {type(model).__name__}")
    if max_batches is not None and (
        isinstance(max_batches, bool) or not isinstance(max_batches, int) or max_batches < 1
    ):
        raise ValueError(f"max_batches must be a positive int or None; got {max_batches!r}")
    device = model.device
    extractor = feature_extractor if isinstance(feature_extractor, nn.Module) else None
    perceptual = lpips_model if isinstance(lpips_model, nn.Module) else None
    was_training = model.training
    model.eval()
    for network in (extractor, perceptual):
        if network is not None:
            network.to(device).eval()

    usage = CodebookUsage(model.config.num_vq_embeddings, device=device)
    real_stats, fake_stats = FeatureStatistics(device), FeatureStatistics(device)
    per_image: dict[str, list[torch.Tensor]] = {"mse": [], "psnr": [], "ssim": [], "lpips": []}
    resolution = None
    total = len(dataloader) if hasattr(dataloader, "__len__") else None
    if total is not None and max_batches is not None:
        total = min(total, max_batches)
    progress = tqdm(total=total, desc="evaluate", disable=accelerator is not None and not accelerator.is_main_process)
    left_early = True
    try:
        for step, batch in enumerate(dataloader):
            images = _pixel_values(batch).to(device=device, dtype=model.dtype)
            resolution = list(images.shape[-2:])
            results = _batch_results(model, images, extractor, perceptual)
            if accelerator is not None:
                results = accelerator.gather_for_metrics(results)
            usage.update(results["indices"])
            for name in per_image:
                if name in results:
                    per_image[name].append(results[name].cpu())
            if extractor is not None:
                real_stats.update(results["real_features"])
                fake_stats.update(results["fake_features"])
            progress.update(1)
            if max_batches is not None and step + 1 >= max_batches:
                break
        else:
            left_early = False
    finally:
        progress.close()
        model.train(was_training)
        if left_early:
            _leave_early(dataloader)

    scores = {name: torch.cat(values) if values else torch.empty(0) for name, values in per_image.items()}
    num_images = scores["mse"].numel()
    if num_images == 0:
        raise ValueError("the dataloader yielded no batches; expected at least one batch of pixel_values")
    height, width = resolution
    # One flat object of numbers, skipped entries and strings: the schema hf_nsvq.hub reads from metrics.json.
    metrics = {
        "num_images": num_images,
        "resolution": height if height == width else f"{height}x{width}",
        "rfid": _rfid(feature_extractor, real_stats, fake_stats),
        "lpips": _mean(scores["lpips"]) if perceptual is not None else _skipped(lpips_model, "no lpips_model given"),
        "ssim": _mean(scores["ssim"]),
        "psnr": _mean(scores["psnr"]),
        "mse": _mean(scores["mse"]),
        "utilisation": usage.utilisation,
        "perplexity": usage.perplexity,
        "dead_codes": usage.dead_codes,
        "model_class": type(model).__name__,
        "quantizer_type": model.config.get("quantizer_type") or "diffusers VectorQuantizer",
        "image_metrics": IMAGE_METRICS_TEXT,
    }
    if extractor is not None:
        metrics.update(describe_feature_extractor(extractor))
    if perceptual is not None:
        metrics.update(describe_lpips(perceptual))
    metrics.update(provenance or {})
    return metrics


def _batch_results(model: VQModel, images: torch.Tensor, extractor, perceptual) -> dict[str, torch.Tensor]:
    """Per-image results of one batch, as tensors with the batch first (what `gather_for_metrics` concatenates)."""
    indices, reconstruction = encode_reconstruct(model, images)
    original01, reconstruction01 = to_unit_range(images), to_unit_range(reconstruction)
    results = {
        "indices": indices,
        "mse": mse_per_image(reconstruction01, original01),
        "psnr": psnr_per_image(reconstruction01, original01, max_db=PSNR_CAP_DB),
        "ssim": ssim_per_image(reconstruction01, original01),
    }
    if perceptual is not None:
        distances = perceptual(reconstruction.float(), images.float().clamp(-1, 1))
        results["lpips"] = distances.reshape(images.shape[0], -1).mean(dim=1).double()
    if extractor is not None:
        results["real_features"] = extractor(original01)
        results["fake_features"] = extractor(reconstruction01)
    return results


def _leave_early(dataloader) -> None:
    # An Accelerate dataloader registers itself in the shared GradientState while it is iterated and unregisters only
    # when exhausted; one left after `max_batches` would make a training loop that runs next believe it is still
    # inside this dataloader (its end-of-dataloader gradient sync would follow ours).
    end = getattr(dataloader, "end", None)
    if callable(end) and hasattr(dataloader, "gradient_state"):
        end()


def _pixel_values(batch) -> torch.Tensor:
    images = batch.get("pixel_values") if isinstance(batch, dict) else None
    if not isinstance(images, torch.Tensor) or images.ndim != 4 or images.shape[1] != 3:
        got = tuple(images.shape) if isinstance(images, torch.Tensor) else _describe_batch(batch)
        raise ValueError(f'expected batches {{"pixel_values": (batch, 3, height, width) in [-1, 1]}}; got {got}')
    return images


def _describe_batch(batch) -> str:
    return f"a dict with keys {sorted(batch)!r}" if isinstance(batch, dict) else type(batch).__name__


def _mean(values: torch.Tensor) -> float:
    return float(values.mean()) if values.numel() else math.nan


def _skipped(given, default_reason: str) -> dict:
    return given.to_dict() if isinstance(given, SkippedMetric) else SkippedMetric(default_reason).to_dict()


def _rfid(feature_extractor, real: FeatureStatistics, fake: FeatureStatistics) -> float | dict:
    if not isinstance(feature_extractor, nn.Module):
        return _skipped(feature_extractor, "no feature_extractor given")
    if real.num_samples < 2:
        return SkippedMetric(f"rFID needs at least 2 images; got {real.num_samples}").to_dict()
    return frechet_distance_from_statistics(real, fake)

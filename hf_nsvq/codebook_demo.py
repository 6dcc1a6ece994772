"""The quick-start demo: fit every quantizer's codebook to the patches of a real photograph and compare usage.

The patches are standardised, so a codebook initialised near zero (diffusers' U(-1/K, 1/K)) starts far from most
of the data: exactly the situation in which hard-assignment VQ leaves most codes unused.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .quantizers import build_quantizer, list_quantizers
from .quantizers.base import perplexity_from_counts
from .sample_images import image_to_patches, load_sample_image, patches_to_image


def demo_quantizer_kwargs(name: str, steps: int) -> dict:
    """Per-method settings for a run of `steps` steps (NSVQ's bandwidth halves ten times over the run)."""
    if name == "nsvq":
        return {"steps_per_period": max(1, steps // 10)}
    if name == "transvq":
        return {"width": 64}
    return {}


def fit_codebook(name: str, patches: torch.Tensor, codebook_size: int, steps: int, batch_size: int, seed: int):
    """Train one quantizer's codebook on fixed patches (no encoder), then quantize every patch in eval mode."""
    torch.manual_seed(seed)
    quantizer = build_quantizer(name, codebook_size, patches.shape[1], **demo_quantizer_kwargs(name, steps)).train()
    params = [p for p in quantizer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=1e-2) if params else None
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = patches[torch.randint(0, patches.shape[0], (batch_size,), generator=generator)]
        _, loss, _ = quantizer(batch.T.reshape(1, -1, 1, batch_size))
        if optimizer is not None:
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    quantizer.eval()
    with torch.no_grad():
        quant, _, (_, _, indices) = quantizer(patches.T.reshape(1, -1, 1, patches.shape[0]))
    return quant.reshape(patches.shape[1], -1).T, indices


def run_demo(
    image: str = "astronaut",
    patch_size: int = 4,
    codebook_size: int = 256,
    steps: int = 300,
    batch_size: int = 1024,
    seed: int = 0,
    quantizers: list[str] | None = None,
    output_dir: str | None = None,
) -> list[dict]:
    """Fit each quantizer and return one row of metrics per quantizer (also written as JSON to `output_dir`)."""
    pixels = load_sample_image(image).astype(np.float32) / 255.0
    raw = torch.from_numpy(image_to_patches(pixels, patch_size))
    mean, std = raw.mean(dim=0), raw.std(dim=0)
    patches = (raw - mean) / std
    rows = []
    for name in tqdm(quantizers or list_quantizers(), desc="quantizers"):
        start = time.perf_counter()
        quant, indices = fit_codebook(name, patches, codebook_size, steps, batch_size, seed)
        counts = torch.bincount(indices, minlength=codebook_size)
        reconstruction = (quant * std + mean).clamp(0, 1)
        mse = float(torch.mean((reconstruction - raw) ** 2))
        rows.append(
            {
                "quantizer": name,
                "utilisation": float((counts > 0).float().mean()),
                "perplexity": float(perplexity_from_counts(counts)),
                "psnr_db": 10 * math.log10(1.0 / mse),
                "seconds": time.perf_counter() - start,
            }
        )
        if output_dir:
            _save_reconstruction(reconstruction.numpy(), pixels.shape, patch_size, Path(output_dir) / f"{name}.png")
    if output_dir:
        config = dict(
            image=image,
            patch_size=patch_size,
            codebook_size=codebook_size,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            num_patches=int(patches.shape[0]),
        )
        path = Path(output_dir) / "codebook_demo.json"
        path.write_text(json.dumps({"config": config, "results": rows}, indent=2))
    return rows


def _save_reconstruction(patches: np.ndarray, shape, patch_size: int, path: Path) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    image = patches_to_image(patches, shape[0] // patch_size, shape[1] // patch_size, patch_size)
    Image.fromarray((image * 255).round().astype(np.uint8)).save(path)


def format_table(rows: list[dict]) -> str:
    lines = ["| quantizer | utilisation | perplexity | PSNR (dB) | seconds |", "|---|---:|---:|---:|---:|"]
    for row in rows:
        lines.append(
            f"| {row['quantizer']} | {row['utilisation']:.1%} | {row['perplexity']:.1f} | "
            f"{row['psnr_db']:.2f} | {row['seconds']:.1f} |"
        )
    return "\n".join(lines)

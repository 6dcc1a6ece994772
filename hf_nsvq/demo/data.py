"""The demo's images: the embedded sample set, decoded once into uint8 tensors (fast batches on a laptop CPU)."""

from __future__ import annotations

import numpy as np
import torch

from ..data import load_image_dataset


def load_split_tensor(split: str, resolution: int, max_samples: int | None = None) -> torch.Tensor:
    """(N, 3, R, R) uint8 crops of the embedded set, through the same `datasets` path as the training script.

    The embedded crops are cut at exactly `resolution`, so the images are read as one numpy batch instead of
    through the per-image training transform (which would resize and crop to the same pixels).
    """
    loaded = load_image_dataset(dataset_name="embedded", split=split, resolution=resolution, max_samples=max_samples)
    pixels = np.asarray(loaded.dataset.with_format("numpy")[:][loaded.image_column])
    if pixels.ndim != 4 or pixels.shape[1:] != (resolution, resolution, 3):
        raise ValueError(f"embedded crops should be ({resolution}, {resolution}, 3); got {pixels.shape[1:]}")
    return torch.from_numpy(pixels).permute(0, 3, 1, 2).contiguous()


def to_model_range(images: torch.Tensor) -> torch.Tensor:
    """uint8 -> float in [-1, 1]."""
    return images.float().div(127.5).sub(1.0)


def model_range_batches(images: torch.Tensor, batch_size: int = 64) -> list[dict]:
    """uint8 crops as the `{"pixel_values": ...}` batches in [-1, 1] that `evaluate_model` takes."""
    return [{"pixel_values": to_model_range(images[i : i + batch_size])} for i in range(0, len(images), batch_size)]

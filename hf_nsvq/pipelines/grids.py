"""Sample grids for training logs: one PNG per validation step, and the same image in TensorBoard."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from PIL import Image


def image_grid(images: np.ndarray, columns: int | None = None) -> Image.Image:
    """Images (N, H, W, 3) in [0, 1] tiled row by row into one RGB image (`columns` defaults to ceil(sqrt(N)))."""
    if images.ndim != 4 or images.shape[-1] != 3 or len(images) == 0:
        raise ValueError(f"images got shape {images.shape}; expected (N >= 1, H, W, 3)")
    count, height, width, _ = images.shape
    columns = columns or math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.ones((rows * height, columns * width, 3), dtype=np.float32)  # white where no image falls
    for index, image in enumerate(images):
        row, column = divmod(index, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = image
    return Image.fromarray((grid.clip(0, 1) * 255).round().astype(np.uint8))


def save_sample_grid(accelerator, images: np.ndarray, output_dir: Path, step: int, tag: str = "samples") -> Path:
    """Save `validation/step-<step>-<tag>.png` under `output_dir` and log the grid to TensorBoard when it is on."""
    grid = image_grid(images)
    folder = Path(output_dir) / "validation"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"step-{step:07d}-{tag}.png"
    grid.save(path)
    for tracker in accelerator.trackers:
        if tracker.name == "tensorboard":
            tracker.writer.add_image(tag, np.asarray(grid), step, dataformats="HWC")
    return path

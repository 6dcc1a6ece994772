"""The demo's figures: utilisation vs step, per-code usage histograms, originals vs reconstructions."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_utilisation(curves: dict[str, tuple[list[int], list[float]]], window: int, path: Path) -> None:
    """All quantizers on one plot: fraction of codes used over the last `window` steps."""
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 4), dpi=100)
    for name, (steps, values) in curves.items():
        axis.plot(steps, [100 * v for v in values], label=name, linewidth=2 if name in ("nsvq", "transvq") else 1.2)
    axis.set_xlabel("training step")
    axis.set_ylabel(f"codes used in last {window} steps (%)")
    axis.set_ylim(0, 102)
    axis.grid(alpha=0.3)
    axis.legend(ncol=3, fontsize=8)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def plot_usage_histograms(histograms: dict[str, torch.Tensor], path: Path) -> None:
    """One panel per quantizer: per-code counts on the held-out crops, codes sorted by count."""
    plt = _pyplot()
    columns = 3
    rows = (len(histograms) + columns - 1) // columns
    figure, axes = plt.subplots(rows, columns, figsize=(3.6 * columns, 2.6 * rows), dpi=90, squeeze=False)
    for axis, (name, counts) in zip(axes.flat, histograms.items(), strict=False):
        values = counts.float().sort(descending=True).values.numpy()
        axis.bar(np.arange(len(values)), values, width=1.0)
        axis.set_title(f"{name}: {int((counts > 0).sum())}/{len(values)} codes used", fontsize=9)
        axis.set_xlabel("code (sorted)", fontsize=8)
        axis.tick_params(labelsize=7)
    for axis in list(axes.flat)[len(histograms) :]:
        axis.axis("off")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)


def save_reconstruction_grid(originals: torch.Tensor, reconstructions: dict[str, torch.Tensor], path: Path) -> None:
    """Rows: originals, then each quantizer's reconstructions of the same held-out crops; labelled on the left."""
    from PIL import Image, ImageDraw

    def row(images: torch.Tensor) -> np.ndarray:
        array = ((images.clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
        return np.concatenate(list(array), axis=1)

    label_width = 70
    scale = max(1, 64 // originals.shape[-1])  # nearest-neighbour upscaling so small crops stay visible
    rows = [("original", row(originals))] + [(name, row(images)) for name, images in reconstructions.items()]
    height = rows[0][1].shape[0] * scale
    canvas = Image.new("RGB", (label_width + rows[0][1].shape[1] * scale, height * len(rows)), "white")
    draw = ImageDraw.Draw(canvas)
    for index, (name, pixels) in enumerate(rows):
        tile = Image.fromarray(pixels)
        tile = tile.resize((tile.width * scale, tile.height * scale), Image.NEAREST)
        canvas.paste(tile, (label_width, index * height))
        draw.text((4, index * height + height // 2 - 5), name, fill="black")
    canvas.save(path)

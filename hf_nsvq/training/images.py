"""Images for logs: originals next to reconstructions, and a code-usage histogram."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image


def to_uint8(images: torch.Tensor) -> np.ndarray:
    """(N, 3, H, W) in [-1, 1] -> (N, H, W, 3) uint8."""
    array = ((images.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return array.permute(0, 2, 3, 1).cpu().numpy()


def reconstruction_grid(originals: torch.Tensor, reconstructions: torch.Tensor, max_images: int = 8) -> Image.Image:
    """Two rows: originals on top, reconstructions below."""
    top = to_uint8(originals[:max_images])
    bottom = to_uint8(reconstructions[:max_images])
    return Image.fromarray(np.concatenate([np.concatenate(list(top), 1), np.concatenate(list(bottom), 1)], 0))


def usage_histogram(counts: torch.Tensor, title: str = "code usage"):
    """A matplotlib figure of per-code usage, codes sorted by count (so collapse shows as a cliff)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sorted_counts = counts.detach().float().sort(descending=True).values.cpu().numpy()
    figure, axis = plt.subplots(figsize=(6, 3), dpi=100)
    axis.bar(np.arange(len(sorted_counts)), sorted_counts, width=1.0)
    used = int((counts > 0).sum())
    axis.set_title(f"{title}: {used}/{len(sorted_counts)} codes used")
    axis.set_xlabel("code (sorted by usage)")
    axis.set_ylabel("count")
    figure.tight_layout()
    return figure


def figure_to_image(figure) -> Image.Image:
    import matplotlib.pyplot as plt

    figure.canvas.draw()
    image = Image.fromarray(np.asarray(figure.canvas.buffer_rgba())[..., :3].copy())
    plt.close(figure)
    return image

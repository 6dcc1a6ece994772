"""Real photographs available offline: the RGB images scikit-image ships inside its wheel."""

from __future__ import annotations

import numpy as np

# RGB photographs bundled in scikit-image's wheel (no download): name -> skimage.data loader name
SAMPLE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "hubble_deep_field", "immunohistochemistry", "retina")


def load_sample_image(name: str = "astronaut") -> np.ndarray:
    """A bundled photograph as a (H, W, 3) uint8 array."""
    if name not in SAMPLE_IMAGES:
        raise ValueError(f"unknown sample image {name!r}; available: {', '.join(SAMPLE_IMAGES)}")
    import skimage.data

    return getattr(skimage.data, name)()


def image_to_patches(image: np.ndarray, patch_size: int) -> np.ndarray:
    """Non-overlapping patches of an (H, W, C) image as rows of length patch_size**2 * C (edges cropped)."""
    if patch_size <= 0:
        raise ValueError(f"patch_size must be a positive int; got {patch_size!r}")
    height, width, channels = image.shape
    rows, cols = height // patch_size, width // patch_size
    cropped = image[: rows * patch_size, : cols * patch_size]
    patches = cropped.reshape(rows, patch_size, cols, patch_size, channels).transpose(0, 2, 1, 3, 4)
    return patches.reshape(rows * cols, patch_size * patch_size * channels)


def patches_to_image(patches: np.ndarray, rows: int, cols: int, patch_size: int, channels: int = 3) -> np.ndarray:
    """Inverse of `image_to_patches` for a (rows * cols, patch_size**2 * channels) array."""
    grid = patches.reshape(rows, cols, patch_size, patch_size, channels).transpose(0, 2, 1, 3, 4)
    return grid.reshape(rows * patch_size, cols * patch_size, channels)

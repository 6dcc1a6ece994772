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

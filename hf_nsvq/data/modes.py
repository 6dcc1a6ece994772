"""Any PIL image to 8-bit RGB: the one pixel format the transforms and the models see."""

from __future__ import annotations

import numpy as np
from PIL import Image

# Modes with an alpha channel, composited on white by `to_rgb`.
ALPHA_MODES = ("RGBA", "RGBa", "LA", "PA")
# Integer modes that hold 16-bit samples (PNG/TIFF greyscale at 16 bits per sample opens as one of these).
SIXTEEN_BIT_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")


def to_rgb(image: Image.Image) -> Image.Image:
    r"""Convert a PIL image of any mode to 8-bit RGB.

    - RGB is returned as is; L, 1, CMYK, YCbCr, and palette images without transparency go through PIL's
      `convert("RGB")` (CMYK without colour management: PIL's naive conversion, no ICC profile).
    - Images with alpha (RGBA, LA, and palette images with a transparent colour) are **composited on white**.
      Dropping the alpha channel instead would expose whatever colours the encoder left under fully transparent
      pixels (often black, sometimes leftover content), i.e. pixels nobody sees when the image is displayed;
      white is how such images (logos, product shots, icons) are meant to be seen and is deterministic.
    - 16-bit greyscale (`I;16*`; also `I`, which older Pillow releases and some formats use for 16-bit files) is
      rescaled from [0, 65535] to [0, 255]; PIL's own conversion would clip every value above 255 to white.
    - Other modes (e.g. `F`) use PIL's conversion, which raises for modes it cannot convert (e.g. `LAB`); the
      up-front validation in `load_image_dataset` reports such files as unreadable.
    """
    if image.mode == "RGB":
        return image
    if image.mode in SIXTEEN_BIT_MODES:
        samples = np.asarray(image, dtype=np.float64) / 257.0
        return Image.fromarray(np.clip(np.rint(samples), 0, 255).astype(np.uint8)).convert("RGB")
    if image.mode == "P" and "transparency" in image.info:
        image = image.convert("RGBA")
    if image.mode in ALPHA_MODES:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    return image.convert("RGB")

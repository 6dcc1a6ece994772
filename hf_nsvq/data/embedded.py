"""The embedded sample set: square crops of the real photographs inside scikit-image's wheel, usable offline.

Each of the seven photographs of `hf_nsvq.sample_images.SAMPLE_IMAGES` is split into **disjoint regions before
any resizing**: a grid of square cells of side `2 * resolution` (original pixels) is laid over it, and a seeded
eighth of the full cells (at least one per photograph; only cells with visible content) is held out for
validation. Then, at each scale of `EMBEDDED_SCALES` (1, 3/4 and 1/2), crops of `resolution` pixels are cut on a
grid of stride `resolution // 2`:

- validation crops come from each held-out cell on its own (the cell is cut out first, then rescaled), so a cell
  gives a 3 x 3 grid at scale 1, 2 x 2 at scale 3/4 and one crop at scale 1/2;
- training crops come from the whole rescaled photograph, keeping only crops whose source region, widened by the
  reach of the bicubic resampling kernel, touches no held-out cell.

So no validation pixel is ever seen, not even through resampling, by a training crop. Crops with almost no
content (grey-level standard deviation below `MIN_CROP_STD`, e.g. the black border of the retina photograph)
are dropped. Everything is a pure function of `resolution`: two builds are identical.

At resolution 64 this gives 3,430 training and 350 validation crops (32: 11,850 / 1,356; 128: 807 / 125). The
two large photographs dominate: retina (1411 x 1411) gives 38% of the training crops and hubble_deep_field
(872 x 1000) 30%, the five others 3 to 8% each.

Besides `image`, the dataset has `photo` (the scikit-image name), `scale`, and `box`: the crop's footprint
`(left, top, right, bottom)` in the original photograph's pixels, rounded outwards.
"""

from __future__ import annotations

import io
import math
from typing import NamedTuple

import datasets
import numpy as np
from PIL import Image

from ..sample_images import SAMPLE_IMAGES, load_sample_image

EMBEDDED_DATASET = "embedded"
EMBEDDED_SPLITS = ("train", "validation")
EMBEDDED_SCALES = (1.0, 0.75, 0.5)
# Fraction of each photograph's full cells held out for validation, and the seed that picks them.
VALIDATION_CELL_FRACTION = 1 / 8
EMBEDDED_SEED = 0
# Grey-level std (0-255 scale) under which a crop is featureless: the retina's black border, empty sky.
MIN_CROP_STD = 4.0
# Below this the crops would number in the tens of thousands (about 12k at 32, 4x more per halving).
MIN_RESOLUTION = 16
# PIL's bicubic kernel reads 2 output pixels either side, i.e. 2 / scale source pixels when downscaling.
BICUBIC_RADIUS = 2.0


class Crop(NamedTuple):
    """One crop of the embedded set: pixels (resolution, resolution, 3) uint8 and where they come from."""

    pixels: np.ndarray
    photo: str
    scale: float
    box: tuple[int, int, int, int]


def _grid(size: int, resolution: int) -> range:
    return range(0, size - resolution + 1, max(1, resolution // 2))


def _rescale(image: Image.Image, scale: float) -> Image.Image:
    if scale == 1.0:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC)


def _has_content(pixels: np.ndarray) -> bool:
    return float(pixels.mean(axis=2).std()) >= MIN_CROP_STD


def _footprint(left: int, top: int, resolution: int, fx: float, fy: float, origin=(0, 0)) -> tuple[int, ...]:
    """The source-pixel box (rounded outwards) that a crop of the rescaled image depicts."""
    x0, y0 = origin
    return (
        x0 + math.floor(left * fx),
        y0 + math.floor(top * fy),
        x0 + math.ceil((left + resolution) * fx),
        y0 + math.ceil((top + resolution) * fy),
    )


def _validation_cells(pixels: np.ndarray, cell: int, photo_index: int) -> list[tuple[int, int]]:
    """(left, top) of the held-out cells of one photograph, chosen by a generator seeded with its index."""
    rows, cols = pixels.shape[0] // cell, pixels.shape[1] // cell
    cells = [(col * cell, row * cell) for row in range(rows) for col in range(cols)]
    candidates = [(x, y) for x, y in cells if _has_content(pixels[y : y + cell, x : x + cell])]
    count = min(len(candidates), max(1, round(len(cells) * VALIDATION_CELL_FRACTION)))
    rng = np.random.default_rng((EMBEDDED_SEED, photo_index))
    return [candidates[i] for i in sorted(rng.choice(len(candidates), size=count, replace=False))]


def _photo_crops(pixels: np.ndarray, photo: str, photo_index: int, resolution: int, split: str) -> list[Crop]:
    cell = 2 * resolution
    held_out = _validation_cells(pixels, cell, photo_index)
    photograph = Image.fromarray(pixels)
    crops = []
    if split == "validation":
        for x0, y0 in held_out:
            region = photograph.crop((x0, y0, x0 + cell, y0 + cell))
            for scale in EMBEDDED_SCALES:
                scaled = np.asarray(_rescale(region, scale))
                fx, fy = cell / scaled.shape[1], cell / scaled.shape[0]
                for top in _grid(scaled.shape[0], resolution):
                    for left in _grid(scaled.shape[1], resolution):
                        crop = scaled[top : top + resolution, left : left + resolution]
                        if _has_content(crop):
                            box = _footprint(left, top, resolution, fx, fy, origin=(x0, y0))
                            crops.append(Crop(crop.copy(), photo, scale, box))
        return crops

    held_out_mask = np.zeros(pixels.shape[:2], dtype=bool)
    for x0, y0 in held_out:
        held_out_mask[y0 : y0 + cell, x0 : x0 + cell] = True
    for scale in EMBEDDED_SCALES:
        scaled = np.asarray(_rescale(photograph, scale))
        fx, fy = pixels.shape[1] / scaled.shape[1], pixels.shape[0] / scaled.shape[0]
        reach = 0 if scale == 1.0 else math.ceil(BICUBIC_RADIUS * max(fx, fy))
        for top in _grid(scaled.shape[0], resolution):
            for left in _grid(scaled.shape[1], resolution):
                box = _footprint(left, top, resolution, fx, fy)
                x_start, y_start = max(0, box[0] - reach), max(0, box[1] - reach)
                if held_out_mask[y_start : box[3] + reach, x_start : box[2] + reach].any():
                    continue
                crop = scaled[top : top + resolution, left : left + resolution]
                if _has_content(crop):
                    crops.append(Crop(crop.copy(), photo, scale, box))
    return crops


def embedded_crops(resolution: int = 64, split: str = "train") -> list[Crop]:
    r"""The crops of one split of the embedded sample set, in a fixed order (photograph, scale, row, column).

    Args:
        resolution (`int`, defaults to 64): Side of the square crops, in pixels (at least `MIN_RESOLUTION`).
        split (`str`, defaults to `"train"`): `"train"` or `"validation"`.

    Returns:
        `list[Crop]`: see the module docstring for how the photographs are cut.
    """
    if split not in EMBEDDED_SPLITS:
        raise ValueError(
            f"split {split!r} is not a split of the embedded sample set; available splits: train, validation"
        )
    if not isinstance(resolution, int) or resolution < MIN_RESOLUTION:
        raise ValueError(
            f"resolution must be an int >= {MIN_RESOLUTION} for the embedded sample set; got {resolution!r}"
        )
    crops = []
    for photo_index, photo in enumerate(SAMPLE_IMAGES):
        crops.extend(_photo_crops(load_sample_image(photo), photo, photo_index, resolution, split))
    if not crops:
        raise ValueError(
            f"resolution {resolution} leaves no {split} crops in the embedded sample set (its photographs are "
            f"300 to 1411 pixels high); use a smaller resolution or --train_data_dir"
        )
    return crops


def _encode_png(pixels: np.ndarray) -> bytes:
    # Uncompressed PNG: lossless like any PNG, but about 3x faster to write than zlib level 1 (thousands of crops).
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG", compress_level=0)
    return buffer.getvalue()


def load_embedded_dataset(resolution: int = 64, split: str = "train") -> datasets.Dataset:
    """The embedded sample set as a `datasets.Dataset` with columns `image` (PNG), `photo`, `scale`, `box`."""
    crops = embedded_crops(resolution, split)
    features = datasets.Features(
        image=datasets.Image(),
        photo=datasets.Value("string"),
        scale=datasets.Value("float32"),
        box=datasets.Sequence(datasets.Value("int32"), length=4),
    )
    columns = {
        "image": [{"bytes": _encode_png(crop.pixels), "path": None} for crop in crops],
        "photo": [crop.photo for crop in crops],
        "scale": [crop.scale for crop in crops],
        "box": [list(crop.box) for crop in crops],
    }
    return datasets.Dataset.from_dict(columns, features=features)

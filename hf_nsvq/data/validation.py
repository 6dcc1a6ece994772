"""Up-front image validation: find unreadable files before training, so a run never dies on one mid-epoch."""

from __future__ import annotations

import io
from typing import NamedTuple

import datasets
from PIL import Image

from .modes import to_rgb


class BadImage(NamedTuple):
    """An image that failed to decode: its row in the dataset, a name for messages, and PIL's complaint."""

    index: int
    name: str
    reason: str


class ValidationResult(NamedTuple):
    """Rows that decoded (in dataset order) and the ones that did not."""

    good_indices: list[int]
    bad: list[BadImage]


def check_image(data: bytes | None, path: str | None, draft_size: int | None = None) -> str | None:
    """Decode one encoded image fully and convert it to RGB; `None` if that works, else why it failed.

    A full decode is needed: `PIL.Image.verify` misses truncated JPEG data, and `Image.open` reads only the
    header. `draft_size` lets JPEGs decode at a reduced DCT scale (never below `draft_size` pixels per side),
    which reads the whole stream, so truncation is still caught, at a fraction of the cost.
    """
    try:
        with Image.open(io.BytesIO(data) if data is not None else path) as image:
            if draft_size is not None:
                image.draft("RGB", (draft_size, draft_size))
            image.load()
            if image.width == 0 or image.height == 0:
                return "image has zero size"
            to_rgb(image)
    except Exception as error:  # PIL signals corrupt data with OSError, SyntaxError, ValueError, struct.error...
        return f"{type(error).__name__}: {error}"
    return None


def find_bad_images(
    dataset: datasets.Dataset,
    image_column: str,
    max_good: int | None = None,
    draft_size: int | None = None,
    stop_at_first_bad: bool = False,
) -> ValidationResult:
    """Try to decode every image of `dataset[image_column]` in order, stopping after `max_good` readable ones.

    The column is read with `decode=False` (raw bytes or a file path), so a corrupt file is reported here instead
    of raising inside `datasets`' decoder.
    """
    raw = dataset.select_columns([image_column]).cast_column(image_column, datasets.Image(decode=False))
    good: list[int] = []
    bad: list[BadImage] = []
    for index, example in enumerate(raw):
        if max_good is not None and len(good) >= max_good:
            break
        encoded = example[image_column]
        if encoded is None:
            bad.append(BadImage(index, f"row {index}", "no image (null)"))
        else:
            data, path = encoded.get("bytes"), encoded.get("path")
            reason = check_image(data, path, draft_size)
            if reason is None:
                good.append(index)
                continue
            bad.append(BadImage(index, path or f"row {index}", reason))
        if stop_at_first_bad:
            break
    return ValidationResult(good, bad)

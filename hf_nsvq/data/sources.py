"""`load_image_dataset`: one entry point for the Hub, a local folder, or the embedded sample set, validated up front."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import datasets

from .embedded import EMBEDDED_DATASET, load_embedded_dataset
from .folder import load_image_folder
from .hub import HubUnreachableError, load_hub_split
from .splits import load_split
from .transforms import ImageTransform, TransformedImageDataset
from .validation import find_bad_images

logger = logging.getLogger(__name__)

ON_BAD_IMAGE = ("skip", "fail")
# Column names taken as the images without asking, in this order, when they hold images.
IMAGE_COLUMN_NAMES = ("image", "img")


@dataclass(frozen=True)
class LoadedDataset:
    r"""A validated split of images and where it came from.

    Attributes:
        dataset (`datasets.Dataset`): The rows whose image decoded; `dataset[i][image_column]` is a PIL image in
            its stored mode (`ImageTransform` and `to_rgb` convert to RGB).
        image_column (`str`): The column holding the images.
        source (`str`): One line saying what was loaded, for logs and the training config.
        kind (`str`): `"hub"`, `"folder"`, `"local"` (a directory given as `dataset_name`) or `"embedded"`.
        name (`str`): The Hub id, the folder path, or `"embedded"`.
        split (`str`): The split loaded.
        revision (`str` or `None`): The commit sha of a Hub dataset (always known online; offline only when the
            requested revision was a sha); `None` for other sources.
        num_skipped (`int`): Unreadable images left out (`on_bad_image="skip"`).
        skipped (`tuple[str, ...]`): Their paths (or `"row i"`), with the reason.
        fell_back (`bool`): Whether the Hub was unreachable and the embedded set was loaded instead.
    """

    dataset: datasets.Dataset
    image_column: str
    source: str
    kind: str
    name: str
    split: str
    revision: str | None = None
    num_skipped: int = 0
    skipped: tuple[str, ...] = field(default=(), repr=False)
    fell_back: bool = False

    def __len__(self) -> int:
        return len(self.dataset)

    def to_torch(self, transform: ImageTransform, seed: int = 0) -> TransformedImageDataset:
        """A torch `Dataset` of `{"pixel_values": transform(image)}`, augmentations seeded from (seed, epoch, index)."""
        return TransformedImageDataset(self.dataset, transform, self.image_column, seed)

    def metadata(self) -> dict[str, Any]:
        """JSON-serialisable record of the data, for a training config or a model card."""
        return {
            "source": self.source,
            "kind": self.kind,
            "name": self.name,
            "split": self.split,
            "revision": self.revision,
            "image_column": self.image_column,
            "num_images": len(self.dataset),
            "num_skipped": self.num_skipped,
            "skipped_examples": list(self.skipped[:10]),
            "fell_back_to_embedded": self.fell_back,
        }


def find_image_column(dataset: datasets.Dataset, image_column: str | None, description: str) -> str:
    """`image_column` checked to hold images, or, if `None`: "image", "img", or the only column of images."""
    features = dataset.features
    available = ", ".join(f"{name} ({type(feature).__name__})" for name, feature in features.items())
    if image_column is not None:
        if image_column not in features:
            raise ValueError(
                f"image_column {image_column!r} is not a column of {description}; available columns: {available}"
            )
        if not isinstance(features[image_column], datasets.Image):
            raise ValueError(
                f"image_column {image_column!r} of {description} holds {features[image_column]!r}, not images; "
                f"available columns: {available}"
            )
        return image_column
    image_columns = [name for name, feature in features.items() if isinstance(feature, datasets.Image)]
    for name in IMAGE_COLUMN_NAMES:
        if name in image_columns:
            return name
    if len(image_columns) == 1:
        return image_columns[0]
    what = "several image columns" if image_columns else "no image column"
    raise ValueError(
        f"{description} has {what}; pass image_column (--image_column) naming one; available columns: {available}"
    )


def _check_arguments(dataset_name, train_data_dir, split, max_samples, resolution, on_bad_image) -> None:
    if (dataset_name is None) == (train_data_dir is None):
        raise ValueError(
            f"pass exactly one of dataset_name and train_data_dir; got dataset_name={dataset_name!r}, "
            f"train_data_dir={train_data_dir!r}"
        )
    if not isinstance(split, str) or not split:
        raise ValueError(f"split must be a non-empty str such as 'train'; got {split!r}")
    if max_samples is not None and (not isinstance(max_samples, int) or max_samples < 1):
        raise ValueError(f"max_samples must be a positive int or None; got {max_samples!r}")
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int; got {resolution!r}")
    if on_bad_image not in ON_BAD_IMAGE:
        raise ValueError(f"on_bad_image must be one of {', '.join(ON_BAD_IMAGE)}; got {on_bad_image!r}")


def _no_revision(revision: str | None, what: str) -> None:
    if revision is not None:
        raise ValueError(f"revision applies only to Hub datasets; got revision={revision!r} with {what}")


class _Source(NamedTuple):
    dataset: datasets.Dataset
    description: str
    kind: str
    name: str
    revision: str | None = None
    fell_back: bool = False


def _embedded_source(split: str, resolution: int, fell_back: bool = False) -> _Source:
    description = f"embedded sample set ({resolution}px crops of scikit-image photographs)"
    return _Source(
        load_embedded_dataset(resolution, split), description, "embedded", EMBEDDED_DATASET, None, fell_back
    )


def _open_source(
    dataset_name, train_data_dir, split, revision, cache_dir, resolution, fallback_to_embedded
) -> _Source:
    """The unvalidated split, from whichever of the four sources the arguments name."""
    if train_data_dir is not None:
        _no_revision(revision, "train_data_dir")
        name = str(train_data_dir)
        return _Source(load_image_folder(train_data_dir, split, cache_dir), f"image folder {name!r}", "folder", name)
    if dataset_name == EMBEDDED_DATASET:
        _no_revision(revision, "the embedded sample set")
        return _embedded_source(split, resolution)
    if Path(dataset_name).expanduser().is_dir():
        _no_revision(revision, f"the local directory {dataset_name!r}")
        description = f"local dataset {dataset_name!r}"
        dataset = load_split(str(Path(dataset_name).expanduser()), split, description, cache_dir=cache_dir)
        return _Source(dataset, description, "local", dataset_name)
    try:
        dataset, sha = load_hub_split(dataset_name, split, revision, cache_dir)
    except HubUnreachableError:
        if not fallback_to_embedded:
            raise
        source = _embedded_source(split, resolution, fell_back=True)
        logger.warning("the Hub cannot be reached for %r: using the %s instead", dataset_name, source.description)
        return source
    return _Source(dataset, f"Hub dataset {dataset_name!r} at {sha or revision or 'main'}", "hub", dataset_name, sha)


def load_image_dataset(
    dataset_name: str | None = None,
    train_data_dir: str | None = None,
    split: str = "train",
    revision: str | None = None,
    image_column: str | None = None,
    max_samples: int | None = None,
    cache_dir: str | None = None,
    resolution: int = 64,
    on_bad_image: str = "skip",
    fallback_to_embedded: bool = False,
) -> LoadedDataset:
    r"""Load one split of images from the Hub, a local folder or the embedded sample set, and validate every image.

    Every image is decoded once here (JPEGs at a reduced DCT scale, never below `resolution`), so an unreadable
    file fails or is skipped now, not in the middle of training.

    Args:
        dataset_name (`str`, *optional*): A Hub dataset id (e.g. `DEFAULT_DATASET`), a local directory that
            `datasets.load_dataset` reads, or `"embedded"` for the offline sample set (see `hf_nsvq.data.embedded`).
        train_data_dir (`str`, *optional*): A local image folder, read with datasets' `imagefolder`. Exactly one of
            `dataset_name` and `train_data_dir` must be given.
        split (`str`, defaults to `"train"`): The split to load; an unknown one raises, listing those that exist.
        revision (`str`, *optional*): Hub branch, tag or commit (default `"main"`), resolved to a commit sha when
            online and recorded in the result. Only for Hub datasets.
        image_column (`str`, *optional*): Defaults to `"image"`, `"img"`, or the only column of images.
        max_samples (`int`, *optional*): Keep the first `max_samples` readable images, in the stored order (no
            shuffle, so a small run reads and validates only the start of a large dataset).
        cache_dir (`str`, *optional*): `datasets` cache directory (Hub and folder sources).
        resolution (`int`, defaults to 64): Crop size of the embedded set, and the JPEG draft size for validation.
        on_bad_image (`str`, defaults to `"skip"`): `"skip"` leaves unreadable images out (counted and logged);
            `"fail"` raises `ValueError` naming the first one.
        fallback_to_embedded (`bool`, defaults to `False`): If the Hub cannot be reached, log one line and return
            the embedded set instead of raising `HubUnreachableError`.

    Returns:
        [`LoadedDataset`]
    """
    _check_arguments(dataset_name, train_data_dir, split, max_samples, resolution, on_bad_image)
    source = _open_source(dataset_name, train_data_dir, split, revision, cache_dir, resolution, fallback_to_embedded)
    dataset = source.dataset
    # a column named for the Hub dataset means nothing to the embedded set that replaced it
    image_column = find_image_column(dataset, None if source.fell_back else image_column, source.description)
    description = f"{source.description}, split {split!r}"

    if len(dataset) == 0:
        raise ValueError(f"{description} has no rows")
    stop_at_first_bad = on_bad_image == "fail"
    good, bad = find_bad_images(dataset, image_column, max_samples, resolution, stop_at_first_bad)
    if bad and stop_at_first_bad:
        raise ValueError(
            f"unreadable image {bad[0].name} in {description}: {bad[0].reason}; fix or remove it, or pass "
            "on_bad_image='skip' (--on_bad_image skip) to leave such images out"
        )
    if not good:
        raise ValueError(
            f"none of the {len(bad)} images of {description} could be read; first: {bad[0].name} ({bad[0].reason})"
        )
    if bad:
        logger.warning(
            "skipped %d unreadable image(s) of %s, e.g. %s",
            len(bad),
            description,
            "; ".join(f"{item.name} ({item.reason})" for item in bad[:3]),
        )
    if len(good) < len(dataset):
        dataset = dataset.select(good)
    return LoadedDataset(
        dataset=dataset,
        image_column=image_column,
        source=description,
        kind=source.kind,
        name=source.name,
        split=split,
        revision=source.revision,
        num_skipped=len(bad),
        skipped=tuple(f"{item.name}: {item.reason}" for item in bad),
        fell_back=source.fell_back,
    )

"""Local image folders, read by datasets' `imagefolder` builder (which ignores files that are not images)."""

from __future__ import annotations

from pathlib import Path

import datasets

from .splits import load_split

try:  # the exact list imagefolder accepts, so "no images found" here means imagefolder would find none either
    from datasets.packaged_modules.imagefolder.imagefolder import ImageFolder

    IMAGE_EXTENSIONS = frozenset(extension.lower() for extension in ImageFolder.EXTENSIONS)
except (ImportError, AttributeError):  # a datasets release that moved it: the common formats
    IMAGE_EXTENSIONS = frozenset({".bmp", ".gif", ".jpeg", ".jpg", ".png", ".tif", ".tiff", ".webp"})


def _visible(path: Path, root: Path) -> bool:
    # imagefolder skips hidden files and folders (".thumbnails", ".DS_Store") and "__pycache__"-like names
    return not any(part.startswith((".", "__")) for part in path.relative_to(root).parts)


def scan_folder(directory: Path) -> tuple[int, list[str]]:
    """Number of image files under `directory` (recursively) and the relative paths of the other files."""
    images, others = 0, []
    for path in sorted(directory.rglob("*")):
        if not path.is_file() or not _visible(path, directory):
            continue
        if path.suffix.lower() in IMAGE_EXTENSIONS:
            images += 1
        else:
            others.append(str(path.relative_to(directory)))
    return images, others


def load_image_folder(train_data_dir: str, split: str = "train", cache_dir: str | None = None) -> datasets.Dataset:
    r"""One split of a local image folder via `datasets.load_dataset("imagefolder", data_dir=...)`.

    Sub-folders become a `label` column; `train/`, `validation/` or `test/` sub-folders become splits. Files that
    are not images (by extension: `.txt`, `.csv`, ...) are ignored; `metadata.csv` / `metadata.jsonl` add columns.
    """
    directory = Path(train_data_dir).expanduser()
    if not directory.is_dir():
        raise ValueError(f"train_data_dir {str(train_data_dir)!r} is not a directory")
    num_images, others = scan_folder(directory)
    if num_images == 0:
        more = f" and {len(others) - 5} more" if len(others) > 5 else ""
        found = f"; it holds only {', '.join(others[:5])}{more}" if others else "; it is empty"
        raise ValueError(
            f"no images found in train_data_dir {str(train_data_dir)!r} (looked recursively for image files such "
            f"as .png, .jpg, .webp){found}"
        )
    description = f"image folder {str(train_data_dir)!r}"
    return load_split("imagefolder", split, description, data_dir=str(directory), cache_dir=cache_dir)

"""Image -> (3, H, W) tensor in [-1, 1], with PIL, numpy and torch only (torchvision breaks diffusers' imports).

Random crops and flips draw from a `torch.Generator`. `TransformedImageDataset` seeds one per sample from
`(seed, epoch, index)`, so the augmentation of every sample is a pure function of those three numbers: a resumed
run (or a different number of dataloader workers) sees exactly the augmentations of the original run.
"""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image, ImageOps

from .modes import to_rgb

# Pillow: reduce by an integer factor first when downscaling by more than 3x; indistinguishable from a plain
# resize at that gap (Pillow's docs), and much faster on large photographs.
RESIZE_REDUCING_GAP = 3.0


def check_resolution(resolution: int, downsample_factor: int) -> None:
    """Raise `ValueError` unless `resolution` is a positive multiple of the autoencoder's `downsample_factor`."""
    if not isinstance(downsample_factor, int) or downsample_factor < 1:
        raise ValueError(f"downsample_factor must be a positive int; got {downsample_factor!r}")
    if not isinstance(resolution, int) or resolution < 1:
        raise ValueError(f"resolution must be a positive int; got {resolution!r}")
    if resolution % downsample_factor != 0:
        lower = max(downsample_factor, resolution - resolution % downsample_factor)
        raise ValueError(
            f"resolution {resolution} is not divisible by the model's downsample factor {downsample_factor}; "
            f"expected a multiple of {downsample_factor} (e.g. {lower} or {lower + downsample_factor})"
        )


def sample_seed(seed: int, epoch: int, index: int) -> int:
    """A 63-bit seed for one sample's augmentation, well mixed from `(seed, epoch, index)` by numpy's SeedSequence."""
    high, low = np.random.SeedSequence((seed, epoch, index)).generate_state(2, dtype=np.uint32)
    return ((int(high) << 32) | int(low)) >> 1


class ImageTransform:
    r"""Resize the shorter side to `resolution`, crop a `resolution` square, optionally flip, scale to [-1, 1].

    Parameters:
        resolution (`int`): Side of the output square, in pixels.
        center_crop (`bool`, defaults to `True`): Center crop; `False` crops at a random position.
        random_flip (`bool`, defaults to `False`): Flip left-right with probability 1/2.

    Calling it on a PIL image returns a float32 tensor of shape (3, resolution, resolution) in [-1, 1]. The image is
    first turned upright from its EXIF orientation and converted to RGB with `to_rgb` (alpha composited on white).
    Resizing is PIL bicubic, which is antialiased when downscaling. Both random draws (crop offset, then flip) are
    always made, from `generator` if given (else torch's global generator), so the draws of one sample never
    depend on the image size or the options.
    """

    def __init__(self, resolution: int, center_crop: bool = True, random_flip: bool = False):
        if not isinstance(resolution, int) or resolution < 1:
            raise ValueError(f"resolution must be a positive int; got {resolution!r}")
        self.resolution = resolution
        self.center_crop = center_crop
        self.random_flip = random_flip

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(resolution={self.resolution}, center_crop={self.center_crop}, "
            f"random_flip={self.random_flip})"
        )

    def __call__(self, image: Image.Image, generator: torch.Generator | None = None) -> torch.Tensor:
        image = to_rgb(ImageOps.exif_transpose(image))
        size = self.resolution
        width, height = image.size
        scale = size / min(width, height)
        new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
        if new_size != image.size:
            image = image.resize(new_size, Image.Resampling.BICUBIC, reducing_gap=RESIZE_REDUCING_GAP)
        width, height = image.size

        offsets = torch.rand(2, generator=generator)
        flip = bool(torch.rand((), generator=generator) < 0.5) and self.random_flip
        if self.center_crop:
            left, top = (width - size) // 2, (height - size) // 2
        else:
            left = min(int(offsets[0] * (width - size + 1)), width - size)
            top = min(int(offsets[1] * (height - size + 1)), height - size)
        pixels = np.asarray(image.crop((left, top, left + size, top + size)), dtype=np.float32)
        tensor = torch.from_numpy(pixels).permute(2, 0, 1).div_(127.5).sub_(1.0)
        if flip:
            tensor = tensor.flip(dims=(2,))
        return tensor.contiguous()


class TransformedImageDataset(torch.utils.data.Dataset):
    r"""A torch `Dataset` over the images of a `datasets.Dataset`: item `i` is `{"pixel_values": transform(image_i)}`.

    Parameters:
        dataset (`datasets.Dataset`): The images, decoded by `datasets` to PIL.
        transform (`ImageTransform`): Called as `transform(image, generator)`.
        image_column (`str`, defaults to `"image"`): Column holding the images.
        seed (`int`, defaults to 0): With the epoch and the index, seeds each sample's generator.

    Call `set_epoch(epoch)` at the start of every epoch to draw new augmentations; the `set_epoch` of a dataloader
    prepared by Accelerate forwards to it. With `num_workers > 0` keep `persistent_workers=False` (the default):
    workers started anew each epoch see the new epoch, persistent ones keep the epoch they were started with.
    """

    def __init__(self, dataset, transform: ImageTransform, image_column: str = "image", seed: int = 0):
        self.dataset = dataset
        self.transform = transform
        self.image_column = image_column
        self.seed = seed
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if not 0 <= index < len(self.dataset):
            raise IndexError(f"index {index} out of range for a dataset of {len(self.dataset)} images")
        generator = torch.Generator().manual_seed(sample_seed(self.seed, self.epoch, int(index)))
        image = self.dataset[int(index)][self.image_column]
        return {"pixel_values": self.transform(image, generator)}


def collate_fn(examples: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack `pixel_values` into a contiguous float32 (B, 3, H, W) batch."""
    pixel_values = torch.stack([example["pixel_values"] for example in examples])
    return {"pixel_values": pixel_values.to(memory_format=torch.contiguous_format).float()}

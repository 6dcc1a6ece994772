"""Shared by the tests of the downstream scripts (train_ldm, train_ar_prior) and the quantizer swap example."""

from pathlib import Path

import numpy as np
from accelerate.state import AcceleratorState, GradientState, PartialState
from conftest import tiny_model
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def write_images(folder: Path, count: int, size: int = 20, seed: int = 0) -> Path:
    """`count` real PNG files of random pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"image_{index:03d}.png")
    return folder


# Three encoder blocks: 16 px images -> 4 x 4 tokens, so an autoregressive sample takes 16 forwards (each one costs
# tens of milliseconds of transformers overhead on a CPU, whatever the model's size).
F4 = dict(
    block_out_channels=(8, 8, 16),
    down_block_types=("DownEncoderBlock2D",) * 3,
    up_block_types=("UpDecoderBlock2D",) * 3,
)


def tiny_tokenizer(quantizer: str = "nsvq", seed: int = 0):
    """A tiny NSVQModel with downsample factor 4 and K = 32, in eval mode."""
    import torch

    torch.manual_seed(seed)
    return tiny_model(quantizer, **F4).eval()


def save_tokenizer(folder: Path, quantizer: str = "nsvq", baked: bool = False, seed: int = 0) -> Path:
    """`tiny_tokenizer` saved to `folder`, with its baked stock VQModel in `vqvae/` when `baked`."""
    model = tiny_tokenizer(quantizer, seed)
    model.save_pretrained(folder)
    if baked:
        model.to_diffusers().save_pretrained(folder / "vqvae")
    return folder


def reset_accelerate() -> None:
    """Each in-process run builds its own Accelerator; accelerate keeps process-wide singletons."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()

"""Shared by the tests of the downstream scripts (train_ldm, train_ar_prior) and the quantizer swap example."""

from pathlib import Path

from conftest import tiny_model
from diffusers import UNet2DModel
from training_helpers import reset_accelerate, write_images  # noqa: F401  (re-exported for the downstream tests)

ROOT = Path(__file__).resolve().parents[1]


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


def tiny_unet() -> UNet2DModel:
    """A two-level UNet over 8 x 8 latents with 4 channels (the tiny tokenizers' latent shape at 16 px)."""
    return UNet2DModel(
        sample_size=8,
        in_channels=4,
        out_channels=4,
        block_out_channels=(8, 16),
        down_block_types=("DownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "UpBlock2D"),
        layers_per_block=1,
        norm_num_groups=4,
    )

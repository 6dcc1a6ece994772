"""Test setup: offline Hub, deterministic CPU runs, tiny shared fixtures."""

import os

# Without these every Hub call waits for a network timeout before failing.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("DIFFUSERS_VERBOSITY", "error")

import pytest  # noqa: E402
import torch  # noqa: E402

from hf_nsvq import NSVQModel  # noqa: E402

# Small but valid settings per quantizer (TransVQ's default width 256 is slow to build at test sizes).
TEST_KWARGS = {"transvq": {"width": 32}, "vqgan_fc": {"codebook_dim": 4}}


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny_model_config(**overrides) -> dict:
    config = dict(
        block_out_channels=(8, 16),
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"),
        norm_num_groups=4,
        latent_channels=4,
        num_vq_embeddings=32,
        layers_per_block=1,
        sample_size=16,
    )
    config.update(overrides)
    return config


def tiny_model(quantizer_type: str, **overrides) -> NSVQModel:
    return NSVQModel(
        **tiny_model_config(**overrides),
        quantizer_type=quantizer_type,
        quantizer_kwargs=TEST_KWARGS.get(quantizer_type),
    )

"""Build the NSVQModel a training run asks for, and the NSVQ schedule in optimizer steps."""

from __future__ import annotations

import json
import math
from pathlib import Path

from ..modeling import NSVQModel
from ..quantizers import accepted_kwargs, list_quantizers

CHANNEL_MULTIPLIERS = (1, 2, 2, 4, 4, 4)  # per resolution level, as in VQGAN's f=4..16 configs


def block_out_channels_for(base_channels: int, downsample_factor: int) -> tuple[int, ...]:
    """One block per resolution level: f = 2 ** (len(blocks) - 1)."""
    levels = math.log2(downsample_factor) if downsample_factor > 0 else -1
    if levels < 0 or levels != int(levels) or int(levels) >= len(CHANNEL_MULTIPLIERS):
        raise ValueError(
            f"downsample_factor must be a power of two between 1 and {2 ** (len(CHANNEL_MULTIPLIERS) - 1)}; "
            f"got {downsample_factor!r}"
        )
    return tuple(base_channels * CHANNEL_MULTIPLIERS[i] for i in range(int(levels) + 1))


def downsample_factor_of(config) -> int:
    return 2 ** (len(config["block_out_channels"]) - 1)


def parse_quantizer_kwargs(text: str | None, quantizer: str) -> dict:
    """`--quantizer_kwargs` JSON -> dict, with the registry's check of the keys."""
    if quantizer not in list_quantizers():
        raise ValueError(f"unknown quantizer {quantizer!r}; available: {', '.join(list_quantizers())}")
    if not text:
        return {}
    try:
        kwargs = json.loads(text)
    except json.JSONDecodeError as error:
        raise ValueError(f"--quantizer_kwargs must be a JSON object; got {text!r} ({error})") from None
    if not isinstance(kwargs, dict):
        raise ValueError(f"--quantizer_kwargs must be a JSON object; got {text!r}")
    unknown = sorted(set(kwargs) - set(accepted_kwargs(quantizer)))
    if unknown:
        raise ValueError(
            f"--quantizer_kwargs has unknown key(s) {unknown} for {quantizer!r}; "
            f"accepted: {', '.join(accepted_kwargs(quantizer))}"
        )
    return kwargs


def add_bandwidth_schedule(
    quantizer: str,
    kwargs: dict,
    forwards_per_update: int,
    updates_per_epoch: int,
    max_train_steps: int,
    period_steps: int | None,
    period_epochs: float | None,
) -> dict:
    """Express NSVQ's bandwidth schedule in optimizer steps (or epochs) for its per-forward step counter.

    The quantizer advances its counter once per training forward, i.e. `forwards_per_update` times per optimizer
    step (gradient accumulation). The authors halve tau once per epoch: that is the default period here (it also
    paces the optional decay of the default `adaptive` schedule, which does not decay unless `bandwidth_decay` < 1).
    """
    if quantizer != "nsvq":
        if period_steps is not None or period_epochs is not None:
            raise ValueError(
                f"--bandwidth_period_steps/--bandwidth_period_epochs apply to nsvq only; got {quantizer!r}"
            )
        return kwargs
    kwargs = dict(kwargs)
    if period_steps is not None and period_epochs is not None:
        raise ValueError("pass either --bandwidth_period_steps or --bandwidth_period_epochs, not both")
    if "steps_per_period" in kwargs and (period_steps is not None or period_epochs is not None):
        raise ValueError("steps_per_period is in --quantizer_kwargs and a --bandwidth_period_* flag is set: pick one")
    if "steps_per_period" not in kwargs:
        if period_steps is None:
            period_steps = max(1, round((1.0 if period_epochs is None else period_epochs) * updates_per_epoch))
        kwargs["steps_per_period"] = int(period_steps) * forwards_per_update
    if kwargs.get("bandwidth_schedule") in ("cosine", "linear") and "decay_steps" not in kwargs:
        kwargs["decay_steps"] = max_train_steps * forwards_per_update
    return kwargs


def build_model(
    model_config: str | None,
    quantizer: str,
    quantizer_kwargs: dict,
    resolution: int,
    base_channels: int,
    block_out_channels: list[int] | None,
    downsample_factor: int,
    layers_per_block: int,
    latent_channels: int,
    num_vq_embeddings: int,
    vq_embed_dim: int | None,
    norm_num_groups: int,
    mid_block_attention: bool,
) -> NSVQModel:
    """An NSVQModel from a config.json (`--model_config`) or from the size flags."""
    if model_config:
        path = Path(model_config)
        if path.is_dir():
            path = path / "config.json"
        if not path.is_file():
            raise ValueError(f"--model_config {model_config!r} does not exist; pass a config.json or its folder")
        config = {k: v for k, v in json.loads(path.read_text()).items() if not k.startswith("_")}
        config.update(quantizer_type=quantizer, quantizer_kwargs=quantizer_kwargs or None, sample_size=resolution)
        return NSVQModel(**config)
    channels = (
        tuple(block_out_channels) if block_out_channels else block_out_channels_for(base_channels, downsample_factor)
    )
    blocks = len(channels)
    return NSVQModel(
        block_out_channels=channels,
        down_block_types=("DownEncoderBlock2D",) * blocks,
        up_block_types=("UpDecoderBlock2D",) * blocks,
        layers_per_block=layers_per_block,
        latent_channels=latent_channels,
        num_vq_embeddings=num_vq_embeddings,
        vq_embed_dim=vq_embed_dim,
        norm_num_groups=norm_num_groups,
        sample_size=resolution,
        mid_block_add_attention=mid_block_attention,
        quantizer_type=quantizer,
        quantizer_kwargs=quantizer_kwargs or None,
    )

"""The frozen first stage of a latent-diffusion or autoregressive pipeline: load it, tokenize with it, decode tokens.

`--vqvae PATH` of the downstream training scripts may name any of:

- an hf_nsvq training output folder (`NSVQModel` at the top, the baked stock `VQModel` in `vqvae/`);
- an `NSVQModel` folder without `vqvae/` (it is baked here with `to_diffusers()`);
- a stock `diffusers.VQModel` folder;
- a pipeline folder holding one of those in `vqvae/` (e.g. an `LDMPipeline`);
- a Hub id of an `NSVQModel` or `VQModel` repository.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from diffusers import VQModel

from ..evaluation.loading import load_vq_model
from ..modeling import NSVQModel

CONFIG_NAME = "config.json"
VQVAE_SUBFOLDER = "vqvae"


@dataclass(frozen=True)
class FirstStage:
    r"""A frozen tokenizer and the stock `VQModel` that goes into pipelines.

    Attributes:
        tokenizer (`diffusers.VQModel`): The model tokens are computed with: the `NSVQModel` when the path holds one
            (its own quantizer), else the stock model. Eval mode, no gradients.
        vqvae (`diffusers.VQModel`): A stock `VQModel` with the same codebook (the baked `vqvae/` when present),
            what a saved pipeline names as `["diffusers", "VQModel"]`. Eval mode, no gradients. May be `tokenizer`.
        source (`str`): One line saying what was loaded, for logs and training configs.
    """

    tokenizer: VQModel
    vqvae: VQModel
    source: str


def load_first_stage(path: str) -> FirstStage:
    """Load the first stage named by `path` (see the module docstring for what it may be), frozen and in eval mode.

    Raises:
        ValueError: when `path` is a folder without a `config.json` (nor `vqvae/config.json`), holds a model other than
            `NSVQModel` / `VQModel`, or is neither an existing folder nor a Hub id.
    """
    local = Path(path).expanduser()
    if local.is_dir():
        if not (local / CONFIG_NAME).is_file():
            if (local / VQVAE_SUBFOLDER / CONFIG_NAME).is_file():
                return load_first_stage(str(local / VQVAE_SUBFOLDER))  # a pipeline folder
            raise ValueError(
                f"--vqvae got {path!r}, a folder without {CONFIG_NAME} or {VQVAE_SUBFOLDER}/{CONFIG_NAME}; expected an "
                "hf_nsvq training output folder, a VQModel/NSVQModel folder or a pipeline folder with vqvae/"
            )
        class_name = json.loads((local / CONFIG_NAME).read_text()).get("_class_name")
        if class_name == "NSVQModel":
            tokenizer = NSVQModel.from_pretrained(local)
            baked = local / VQVAE_SUBFOLDER / CONFIG_NAME
            if baked.is_file() and json.loads(baked.read_text()).get("_class_name") == "VQModel":
                # by path, not subfolder=: diffusers' local loader takes a top-level weights file before the subfolder's
                vqvae = VQModel.from_pretrained(local / VQVAE_SUBFOLDER)
                source = f"NSVQModel {str(local)!r} ({tokenizer.config.quantizer_type}) with its baked vqvae/"
            else:
                vqvae = tokenizer.eval().to_diffusers()
                source = f"NSVQModel {str(local)!r} ({tokenizer.config.quantizer_type}), baked with to_diffusers()"
            return FirstStage(_freeze(tokenizer), _freeze(vqvae), source)
        if class_name == "VQModel":
            vqvae = _freeze(VQModel.from_pretrained(local))
            return FirstStage(vqvae, vqvae, f"VQModel {str(local)!r}")
        raise ValueError(f"--vqvae got {path!r}, which holds a {class_name!r}; expected an NSVQModel or a VQModel")
    model = load_vq_model(path)  # a Hub id; fails fast offline, with what to do
    if isinstance(model, NSVQModel):
        return FirstStage(_freeze(model), _freeze(model.eval().to_diffusers()), f"NSVQModel {path!r} (Hub), baked")
    return FirstStage(_freeze(model), _freeze(model), f"VQModel {path!r} (Hub)")


def _freeze(model: VQModel) -> VQModel:
    return model.eval().requires_grad_(False)


def downsample_factor(vqvae: VQModel) -> int:
    """Pixels per latent position along each side: one halving per encoder block after the first."""
    return 2 ** (len(vqvae.config.block_out_channels) - 1)


@torch.no_grad()
def encode_tokens(tokenizer: VQModel, images: torch.Tensor) -> torch.Tensor:
    """Code indices (B, h, w) long of images (B, 3, H, W) in [-1, 1].

    An `NSVQModel` tokenizes with its own quantizer (`encode_to_indices`); a stock `VQModel` with the diffusers idiom
    `quantize(encode(x).latents)[2][2]`. Call it in eval mode: a quantizer in training mode updates its state.
    """
    images = images.to(device=tokenizer.device, dtype=tokenizer.dtype)
    if isinstance(tokenizer, NSVQModel):
        return tokenizer.encode_to_indices(images)
    latents = tokenizer.encode(images).latents
    indices = tokenizer.quantize(latents)[2][2]
    return indices.reshape(latents.shape[0], latents.shape[2], latents.shape[3])


def decode_tokens(vqvae: VQModel, tokens: torch.Tensor) -> torch.Tensor:
    """Images (B, 3, H, W), nominally in [-1, 1], from code indices (B, h, w): codebook lookup, then the decoder."""
    if not isinstance(tokens, torch.Tensor) or tokens.ndim != 3:
        got = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
        raise ValueError(f"tokens got {got}; expected a (batch, height, width) integer tensor")
    if isinstance(vqvae, NSVQModel):
        return vqvae.decode_indices(tokens)
    batch, height, width = tokens.shape
    shape = (batch, height, width, vqvae.config.vq_embed_dim or vqvae.config.latent_channels)
    indices = tokens.reshape(-1).to(vqvae.device)
    if vqvae.config.lookup_from_codebook:  # then `decode` looks the indices up itself
        return vqvae.decode(indices, force_not_quantize=True, shape=shape).sample
    quant = vqvae.quantize.get_codebook_entry(indices, shape)
    return vqvae.decode(quant.to(vqvae.dtype), force_not_quantize=True).sample

"""`NSVQModel`: diffusers' `VQModel` with a quantizer from the hf_nsvq registry, and the bridges to stock diffusers."""

from __future__ import annotations

import inspect
import logging
import os
from typing import Any

import torch
from diffusers import VQModel
from diffusers.configuration_utils import register_to_config
from diffusers.models.modeling_utils import ModelMixin  # noqa: F401  (diffusers' local-folder loader looks it up here)

from .offline import hub_offline
from .quantizers import BaseVectorQuantizer, build_quantizer

logger = logging.getLogger(__name__)

# The constructor arguments of stock VQModel, read from diffusers itself so a new diffusers key is carried over.
VQMODEL_CONFIG_KEYS = tuple(name for name in inspect.signature(VQModel.__init__).parameters if name != "self")


class NSVQModel(VQModel):
    r"""A VQ-VAE whose quantizer is any hf_nsvq quantizer (NSVQ, TransVQ, or a baseline).

    Same config keys as [`diffusers.VQModel`] plus `quantizer_type` and `quantizer_kwargs`, so `config.json` alone
    rebuilds the model and `from_pretrained` restores the right quantizer. `isinstance(model, VQModel)` holds, so
    pipelines typed for `VQModel` accept it; [`~NSVQModel.to_diffusers`] bakes it into a stock `VQModel` for users
    who do not install hf_nsvq.

    Parameters:
        quantizer_type (`str`, *optional*, defaults to `"nsvq"`): A name from `hf_nsvq.quantizers.list_quantizers()`.
        quantizer_kwargs (`dict`, *optional*): JSON-primitive keyword arguments of that quantizer.
        **VQModel arguments**: `in_channels`, `out_channels`, `down_block_types`, `up_block_types`,
            `block_out_channels`, `layers_per_block`, `act_fn`, `latent_channels`, `sample_size`,
            `num_vq_embeddings`, `norm_num_groups`, `vq_embed_dim`, `scaling_factor`, `norm_type`,
            `mid_block_add_attention`, `lookup_from_codebook`, `force_upcast` (see [`diffusers.VQModel`]).
    """

    @register_to_config
    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        down_block_types: tuple[str, ...] = ("DownEncoderBlock2D",),
        up_block_types: tuple[str, ...] = ("UpDecoderBlock2D",),
        block_out_channels: tuple[int, ...] = (64,),
        layers_per_block: int = 1,
        act_fn: str = "silu",
        latent_channels: int = 3,
        sample_size: int = 32,
        num_vq_embeddings: int = 256,
        norm_num_groups: int = 32,
        vq_embed_dim: int | None = None,
        scaling_factor: float = 0.18215,
        norm_type: str = "group",
        mid_block_add_attention: bool = True,
        lookup_from_codebook: bool = False,
        force_upcast: bool = False,
        quantizer_type: str = "nsvq",
        quantizer_kwargs: dict[str, Any] | None = None,
    ):
        # Build (and validate) the quantizer first: a bad config fails before the encoder and decoder are built.
        quantizer = build_quantizer(
            quantizer_type, num_vq_embeddings, vq_embed_dim or latent_channels, **(quantizer_kwargs or {})
        )
        super().__init__(
            in_channels=in_channels,
            out_channels=out_channels,
            down_block_types=down_block_types,
            up_block_types=up_block_types,
            block_out_channels=block_out_channels,
            layers_per_block=layers_per_block,
            act_fn=act_fn,
            latent_channels=latent_channels,
            sample_size=sample_size,
            num_vq_embeddings=num_vq_embeddings,
            norm_num_groups=norm_num_groups,
            vq_embed_dim=vq_embed_dim,
            scaling_factor=scaling_factor,
            norm_type=norm_type,
            mid_block_add_attention=mid_block_add_attention,
            lookup_from_codebook=lookup_from_codebook,
            force_upcast=force_upcast,
        )
        self.quantize: BaseVectorQuantizer = quantizer  # stays at `.quantize`: diffusers keeps it out of casting

    @classmethod
    def from_pretrained(cls, pretrained_model_name_or_path, **kwargs):
        """diffusers' `from_pretrained`, with a clear message when a Hub id cannot be fetched (offline, no network).

        A checkpoint saved before its quantizer had a `codebook_initialized` flag holds a codebook all the same: the
        flag is set, so fine-tuning never replaces the loaded codes with a data-dependent initialisation.
        """
        wants_info = kwargs.pop("output_loading_info", False)
        try:
            model, info = super().from_pretrained(pretrained_model_name_or_path, output_loading_info=True, **kwargs)
        except OSError as error:
            location = str(pretrained_model_name_or_path)
            if os.path.isdir(location):
                raise
            why = (
                "the Hub is offline here (HF_HUB_OFFLINE is set)" if hub_offline() else "the Hub could not be reached"
            )
            raise OSError(
                f"cannot load {location!r}: it is not a local folder and {why}; pass the path of a downloaded or "
                f"saved model folder instead ({error})"
            ) from error
        if "quantize.codebook_initialized" in info.get("missing_keys", []):
            model.quantize.codebook_initialized.fill_(True)
        return (model, info) if wants_info else model

    # ------------------------------------------------------------------------------------------------ tokens
    @torch.no_grad()
    def encode_to_indices(self, images: torch.Tensor) -> torch.Tensor:
        """Code indices of images in [-1, 1], shape (B, C, H, W) -> (B, H / f, W / f) long. Changes no state."""
        latents = self.encode(images).latents
        return self.quantize.encode_indices(latents)

    def decode_indices(self, indices: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) from code indices (B, h, w) (the inverse of `encode_to_indices` up to quantization)."""
        if not isinstance(indices, torch.Tensor) or indices.ndim != 3:
            got = tuple(indices.shape) if isinstance(indices, torch.Tensor) else type(indices).__name__
            raise ValueError(f"indices must be a (batch, height, width) integer tensor; got {got}")
        batch, height, width = indices.shape
        quant = self.quantize.get_codebook_entry(indices, (batch, height, width, self.quantize.vq_embed_dim))
        return self.decode(quant.to(self.dtype), force_not_quantize=True).sample

    # ------------------------------------------------------------------------------------------------ export
    @torch.no_grad()
    def to_diffusers(self) -> VQModel:
        """Bake this model into a stock `diffusers.VQModel` with the same eval-mode outputs.

        The effective codebook (materialised for SimVQ/TransVQ) becomes `quantize.embedding.weight`; VQGAN-FC's
        projections are folded into `quant_conv` and `post_quant_conv`, so the stock model's latents are the
        low-dimensional projections its codebook lives in. The result holds no hf_nsvq class.
        """
        codebook, project_in, project_out = self.quantize.export_codebook()
        config = {key: self.config[key] for key in VQMODEL_CONFIG_KEYS if key in self.config}
        if project_in is not None:
            if self.config.norm_type == "spatial":
                raise ValueError(
                    f"cannot fold {self.config.quantizer_type!r} into a stock VQModel with norm_type='spatial' "
                    "(its decoder is conditioned on the quantized latents); use norm_type='group'"
                )
            config["vq_embed_dim"] = codebook.shape[1]
        stock = VQModel(**config).to(device=self.device)
        if self.dtype != stock.dtype:
            stock = stock.to(dtype=self.dtype)
        own_state = self.state_dict()
        stock_state = {key: value for key, value in own_state.items() if not key.startswith("quantize.")}
        stock_state["quantize.embedding.weight"] = codebook
        if project_in is not None:
            stock_state.update(_fold_linear_after_conv(self.quant_conv, project_in, "quant_conv"))
            stock_state.update(_fold_linear_before_conv(self.post_quant_conv, project_out, "post_quant_conv"))
        stock.load_state_dict({key: value.to(self.dtype) for key, value in stock_state.items()}, strict=True)
        return stock.train(self.training)


def _fold_linear_after_conv(conv: torch.nn.Conv2d, linear: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """1x1 conv (W, b) followed by `linear` (d, D) == 1x1 conv (linear W, linear b)."""
    weight = conv.weight.float().flatten(1)
    folded = linear.float() @ weight
    return {
        f"{prefix}.weight": folded.view(linear.shape[0], -1, 1, 1),
        f"{prefix}.bias": linear.float() @ conv.bias.float(),
    }


def _fold_linear_before_conv(conv: torch.nn.Conv2d, linear: torch.Tensor, prefix: str) -> dict[str, torch.Tensor]:
    """`linear` (D, d) followed by 1x1 conv (W, b) == 1x1 conv (W linear, b)."""
    weight = conv.weight.float().flatten(1)
    folded = weight @ linear.float()
    return {f"{prefix}.weight": folded.view(weight.shape[0], -1, 1, 1), f"{prefix}.bias": conv.bias.float()}


def replace_quantizer(vq_model: VQModel, quantizer_type: str, **quantizer_kwargs) -> NSVQModel:
    """Turn a (pretrained) `VQModel` into an `NSVQModel` with a new quantizer, for fine-tuning.

    Encoder, decoder and convolutions are copied; the new codebook starts from the old one where the quantizer can
    represent it exactly (vanilla, EMA, NSVQ: copied; SimVQ: frozen basis = old codebook, map = identity) and from
    its own initialisation otherwise (logged). The result is on the same device, in the same dtype.
    """
    if not isinstance(vq_model, VQModel):
        raise ValueError(f"vq_model must be a diffusers VQModel; got {type(vq_model).__name__}")
    config = {key: vq_model.config[key] for key in VQMODEL_CONFIG_KEYS if key in vq_model.config}
    model = NSVQModel(**config, quantizer_type=quantizer_type, quantizer_kwargs=quantizer_kwargs or None)
    state = {key: value for key, value in vq_model.state_dict().items() if not key.startswith("quantize.")}
    missing, unexpected = model.load_state_dict(state, strict=False)
    missing = [key for key in missing if not key.startswith("quantize.")]
    if missing or unexpected:
        raise ValueError(f"vq_model does not match its own config: missing {missing}, unexpected {unexpected}")
    old_codebook = getattr(vq_model.quantize, "codebook", None)
    if old_codebook is None:
        old_codebook = vq_model.quantize.embedding.weight
    model = model.to(device=vq_model.device, dtype=vq_model.dtype)
    if not model.quantize.init_from_codebook(old_codebook.detach().to(model.dtype)):
        logger.info(
            "quantizer %r starts from its own initialisation (old codebook shape %s does not map onto it)",
            quantizer_type,
            tuple(old_codebook.shape),
        )
    return model.train(vq_model.training)

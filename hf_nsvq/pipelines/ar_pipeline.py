"""`VQTokenARPipeline`: a GPT-2 prior over VQ code indices in raster order, decoded by a stock VQModel."""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import PIL.Image
import torch
from diffusers import DiffusionPipeline, VQModel
from diffusers.pipelines.pipeline_utils import ImagePipelineOutput
from transformers import GPT2LMHeadModel

from .first_stage import decode_tokens, downsample_factor
from .sampling import check_sampling_arguments, sample_tokens

OUTPUT_TYPES = ("pil", "np", "pt")
# transformers 5 renamed the key-value cache argument (and output field) `past_key_values` -> `cache`.
_CACHE_NAME = "cache" if "cache" in inspect.signature(GPT2LMHeadModel.forward).parameters else "past_key_values"


@dataclass
class VQTokenARPipelineOutput(ImagePipelineOutput):
    r"""Output of [`VQTokenARPipeline`].

    Args:
        images (`list[PIL.Image.Image]`, `np.ndarray` or `torch.Tensor`): The images: PIL images, a numpy array
            (B, H, W, 3) in [0, 1], or a tensor (B, 3, H, W) in [0, 1].
        tokens (`torch.Tensor`): The sampled code indices, (B, h, w) long.
    """

    tokens: torch.Tensor | None = None


class VQTokenARPipeline(DiffusionPipeline):
    r"""Unconditional image generation with an autoregressive prior over the codes of a VQ tokenizer.

    The transformer is a `transformers.GPT2LMHeadModel` whose vocabulary is the K codes of the tokenizer plus a
    beginning-of-sequence token with id K. It predicts the h x w code indices of an image in raster order (row by
    row, left to right), one token per forward with a key-value cache; the VQModel's decoder turns them into pixels.

    Save with `save_pretrained(folder)` and load with `VQTokenARPipeline.from_pretrained(folder)` (on this class:
    `model_index.json` names it, and diffusers resolves only its own pipeline classes by name). The components are
    stock `diffusers.VQModel` and `transformers.GPT2LMHeadModel`, so their subfolders load without hf_nsvq.

    Parameters:
        vqvae ([`diffusers.VQModel`]): Decodes code indices to images (an `NSVQModel` works too; bake it with
            `to_diffusers()` before saving so the folder names only diffusers classes).
        transformer ([`transformers.GPT2LMHeadModel`]): The prior, with `vocab_size >= K + 1` and
            `bos_token_id == K` for K = `vqvae.config.num_vq_embeddings`.
        latent_size (`list[int]`, *optional*): The token grid `[h, w]`; defaults to the square grid of
            `vqvae.config.sample_size`. Stored in `model_index.json`.
    """

    model_cpu_offload_seq = "transformer->vqvae"

    def __init__(self, vqvae: VQModel, transformer: GPT2LMHeadModel, latent_size: list[int] | None = None):
        super().__init__()
        if vqvae is not None and transformer is not None:
            _check_components(vqvae, transformer)
        if latent_size is None and vqvae is not None:
            side = vqvae.config.sample_size // downsample_factor(vqvae)
            latent_size = [side, side]
        if latent_size is not None:
            latent_size = [int(size) for size in latent_size]
            if len(latent_size) != 2 or min(latent_size) < 1:
                raise ValueError(f"latent_size got {latent_size!r}; expected [height, width] of positive ints")
            if transformer is not None and latent_size[0] * latent_size[1] > transformer.config.n_positions:
                raise ValueError(
                    f"latent_size {latent_size} needs {latent_size[0] * latent_size[1]} positions; the transformer has "
                    f"n_positions={transformer.config.n_positions}"
                )
        self.register_modules(vqvae=vqvae, transformer=transformer)
        self.register_to_config(latent_size=latent_size)

    @property
    def bos_token_id(self) -> int:
        return self.vqvae.config.num_vq_embeddings

    @torch.no_grad()
    def __call__(
        self,
        batch_size: int = 1,
        temperature: float = 1.0,
        top_k: int | None = None,
        top_p: float | None = None,
        generator: torch.Generator | list[torch.Generator] | None = None,
        output_type: str = "pil",
        return_dict: bool = True,
    ) -> VQTokenARPipelineOutput | tuple:
        r"""Sample `batch_size` images.

        Args:
            batch_size (`int`, *optional*, defaults to 1): Number of images.
            temperature (`float`, *optional*, defaults to 1.0): Logits are divided by it (> 0; lower is more
                conservative).
            top_k (`int`, *optional*): Sample only among the `top_k` most likely codes.
            top_p (`float`, *optional*): Sample only among the smallest set of codes whose probability reaches
                `top_p` (nucleus sampling), in (0, 1].
            generator (`torch.Generator` or `list[torch.Generator]`, *optional*): Makes sampling deterministic: the
                same seed gives the same images. A list gives one generator per image.
            output_type (`str`, *optional*, defaults to `"pil"`): `"pil"` (list of `PIL.Image.Image`), `"np"`
                (array (B, H, W, 3) in [0, 1]) or `"pt"` (tensor (B, 3, H, W) in [0, 1]).
            return_dict (`bool`, *optional*, defaults to `True`): Return a [`VQTokenARPipelineOutput`] instead of
                the tuple `(images,)`.

        Returns:
            [`VQTokenARPipelineOutput`] (`images`, and the sampled `tokens` (B, h, w)) or `tuple`.
        """
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size got {batch_size!r}; expected an int >= 1")
        if output_type not in OUTPUT_TYPES:
            raise ValueError(f"output_type got {output_type!r}; expected one of {', '.join(OUTPUT_TYPES)}")
        num_codes = self.bos_token_id
        check_sampling_arguments(temperature, top_k, top_p, num_codes)
        height, width = self.config.latent_size
        device = self._execution_device

        tokens = torch.empty(batch_size, height * width, dtype=torch.long, device=device)
        next_input = torch.full((batch_size, 1), self.bos_token_id, dtype=torch.long, device=device)
        cache = None
        for position in self.progress_bar(range(height * width)):
            output = self.transformer(input_ids=next_input, use_cache=True, **{_CACHE_NAME: cache})
            cache = output[_CACHE_NAME]
            # only the K codes: the BOS id (and any padding of the vocabulary) is never an image token
            logits = output.logits[:, -1, :num_codes]
            tokens[:, position] = sample_tokens(logits, temperature, top_k, top_p, generator)
            next_input = tokens[:, position : position + 1]
        tokens = tokens.view(batch_size, height, width)

        images = (decode_tokens(self.vqvae, tokens).float() / 2 + 0.5).clamp(0, 1)
        self.maybe_free_model_hooks()
        images = _convert(images, output_type)
        if not return_dict:
            return (images,)
        return VQTokenARPipelineOutput(images=images, tokens=tokens)


def _check_components(vqvae: VQModel, transformer: GPT2LMHeadModel) -> None:
    num_codes = vqvae.config.num_vq_embeddings
    config = transformer.config
    if config.vocab_size < num_codes + 1:
        raise ValueError(
            f"transformer vocab_size got {config.vocab_size}; expected at least num_vq_embeddings + 1 = "
            f"{num_codes + 1} (K codes plus the BOS token)"
        )
    if config.bos_token_id != num_codes:
        raise ValueError(
            f"transformer bos_token_id got {config.bos_token_id!r}; expected num_vq_embeddings = {num_codes}"
        )


def _convert(images: torch.Tensor, output_type: str) -> list[PIL.Image.Image] | np.ndarray | torch.Tensor:
    """(B, 3, H, W) in [0, 1] -> the requested type."""
    if output_type == "pt":
        return images.cpu()
    array = images.cpu().permute(0, 2, 3, 1).numpy()
    if output_type == "np":
        return array
    return DiffusionPipeline.numpy_to_pil(array)

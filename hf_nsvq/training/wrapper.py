"""One forward that returns everything a training step needs, so DDP sees a single module call."""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

from ..modeling import NSVQModel


class TrainingOutput(NamedTuple):
    reconstruction: torch.Tensor
    quantizer_loss: torch.Tensor
    indices: torch.Tensor
    perplexity: torch.Tensor


class VQTrainingModule(nn.Module):
    """Wraps an NSVQModel: `forward(images)` runs encoder, quantizer and decoder once.

    diffusers' `VQModel.forward` returns only the reconstruction and loss; the loop also needs the code indices, and
    under DistributedDataParallel the whole step must go through one `forward` of the wrapped module.
    """

    def __init__(self, model: NSVQModel):
        super().__init__()
        self.model = model

    def forward(self, images: torch.Tensor) -> TrainingOutput:
        latents = self.model.encode(images).latents
        quant, loss, (perplexity, _, indices) = self.model.quantize(latents)
        decoder_input = self.model.post_quant_conv(quant)
        spatial = quant if self.model.config.norm_type == "spatial" else None
        reconstruction = self.model.decoder(decoder_input, spatial)
        return TrainingOutput(reconstruction, loss, indices, perplexity)

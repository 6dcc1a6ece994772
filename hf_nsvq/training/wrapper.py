"""One forward that returns everything a training step needs, so DDP sees a single module call."""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.distributed as dist
from torch import nn

from ..modeling import NSVQModel
from ..quantizers.base import is_distributed


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
        if getattr(self.model.quantize, "check_finite", True):
            check_finite_on_every_process(latents)
        quant, loss, (perplexity, _, indices) = self.model.quantize(latents)
        decoder_input = self.model.post_quant_conv(quant)
        spatial = quant if self.model.config.norm_type == "spatial" else None
        reconstruction = self.model.decoder(decoder_input, spatial)
        return TrainingOutput(reconstruction, loss, indices, perplexity)


def check_finite_on_every_process(latents: torch.Tensor) -> None:
    """Raise the quantizer's NaN/Inf `ValueError` on every process as soon as any process's latents are not finite.

    Each quantizer checks its own input, but under torch.distributed a process that raises alone leaves the others
    waiting in the step's next collective (EMA statistics, DDP's gradient all-reduce) until a launcher or a timeout
    ends them, with nothing in their logs. One all-reduced count, which every process reaches before the quantizer's
    and the backward pass's collectives, makes them all stop at the same step with the same message. Outside
    torch.distributed the quantizer's own check is enough, so this costs nothing there.
    """
    if not is_distributed():
        return
    local = (~torch.isfinite(latents.detach())).sum()
    counts = torch.stack([local, (local > 0).long()])
    dist.all_reduce(counts, op=dist.ReduceOp.SUM)
    if int(counts[1]):
        raise ValueError(
            f"z holds NaN or Inf ({int(counts[0])} values on {int(counts[1])} of {dist.get_world_size()} processes, "
            f"{int(local)} here); the encoder output diverged. Lower the learning rate or enable gradient clipping."
        )

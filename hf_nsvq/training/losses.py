"""VQGAN-style training losses: reconstruction, PatchGAN hinge loss and the adaptive generator weight.

Esser et al. 2021 (Taming Transformers, https://huggingface.co/papers/2012.09841), Sec. 3.1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def reconstruction_loss(reconstruction: torch.Tensor, target: torch.Tensor, kind: str) -> torch.Tensor:
    """Mean l1 or l2 error, in fp32."""
    if kind == "l1":
        return F.l1_loss(reconstruction.float(), target.float())
    if kind == "l2":
        return F.mse_loss(reconstruction.float(), target.float())
    raise ValueError(f"reconstruction loss must be 'l1' or 'l2'; got {kind!r}")


class PatchGANDiscriminator(nn.Module):
    """The PatchGAN discriminator of pix2pix / VQGAN: a stack of strided 4x4 convolutions giving a logit map.

    Args:
        in_channels (`int`, *optional*, defaults to 3): Image channels.
        channels (`int`, *optional*, defaults to 64): Width of the first layer (doubles per layer, capped at 8x).
        num_layers (`int`, *optional*, defaults to 3): Number of strided layers.
    """

    def __init__(self, in_channels: int = 3, channels: int = 64, num_layers: int = 3):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, channels, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        width = channels
        for index in range(1, num_layers + 1):
            out = channels * min(2**index, 8)
            stride = 2 if index < num_layers else 1
            # BatchNorm as in VQGAN; under DDP its running statistics follow rank 0 (broadcast buffers).
            layers += [nn.Conv2d(width, out, 4, stride, 1, bias=False), nn.BatchNorm2d(out), nn.LeakyReLU(0.2, True)]
            width = out
        layers.append(nn.Conv2d(width, 1, 4, 1, 1))
        self.main = nn.Sequential(*layers)
        self.apply(_init_weights)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.main(images)


def _init_weights(module: nn.Module) -> None:
    if isinstance(module, nn.Conv2d):
        nn.init.normal_(module.weight, 0.0, 0.02)
    elif isinstance(module, nn.BatchNorm2d):
        nn.init.normal_(module.weight, 1.0, 0.02)
        nn.init.zeros_(module.bias)


def hinge_discriminator_loss(logits_real: torch.Tensor, logits_fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1.0 - logits_real.float()).mean() + F.relu(1.0 + logits_fake.float()).mean())


def hinge_generator_loss(logits_fake: torch.Tensor) -> torch.Tensor:
    return -logits_fake.float().mean()


def adaptive_generator_weight(
    reconstruction_term: torch.Tensor, generator_term: torch.Tensor, last_layer: torch.Tensor, max_weight: float = 1e4
) -> torch.Tensor:
    """VQGAN's lambda = ||grad_L rec|| / (||grad_L gan|| + 1e-4) at the decoder's last layer, detached.

    It balances the adversarial term against the reconstruction term whatever their scales.
    """
    rec_grad = torch.autograd.grad(reconstruction_term, last_layer, retain_graph=True)[0]
    gan_grad = torch.autograd.grad(generator_term, last_layer, retain_graph=True)[0]
    weight = rec_grad.norm() / (gan_grad.norm() + 1e-4)
    return weight.clamp(0.0, max_weight).detach()

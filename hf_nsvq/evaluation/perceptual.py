"""LPIPS (Zhang et al. 2018, https://huggingface.co/papers/1801.03924) from local weights only, inputs in [-1, 1].

The `lpips` package (optional extra, `pip install "hf_nsvq[metrics]"`) ships the calibrated linear layers; its
backbone (AlexNet or VGG16 ImageNet weights) comes from torchvision's download cache. [`load_lpips`] checks that
every file is on disk BEFORE building the network, so an offline machine gets a [`SkippedMetric`] at once instead
of a download that hangs.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
from torch import nn

from .fid import METRICS_EXTRA_HINT
from .skipped import SkippedMetric

# torchvision's file names for the ImageNet backbones lpips builds with `pretrained=True`.
LPIPS_BACKBONE_FILES = {"alex": "alexnet-owt-7be5be79.pth", "vgg": "vgg16-397923af.pth"}


def load_lpips(weights_path: str | os.PathLike | None = None, net: str = "alex") -> nn.Module:
    """An `lpips.LPIPS` network in eval mode with frozen parameters; never downloads.

    Raises [`MetricUnavailableError`] (a `ValueError`) saying what to install or pass when the package or a weights
    file is missing; [`load_lpips_or_skip`] returns that reason as a [`SkippedMetric`] instead.

    Args:
        weights_path (`str`, *optional*): Either a FULL `lpips.LPIPS(...).state_dict()` (backbone included, keys
            `net.*` and `lin*`; no other file is needed), or the package's linear-layer file (keys `lin*`, like
            `lpips/weights/v0.1/alex.pth`), in which case the backbone must be in the torch hub cache. Without it,
            the package's bundled linear layers and the cached backbone are used. A path that does not exist raises
            a `ValueError`.
        net (`str`, *optional*, defaults to `"alex"`): Backbone, `"alex"` (the usual choice for evaluation) or
            `"vgg"`.
    """
    loaded = load_lpips_or_skip(weights_path, net)
    if isinstance(loaded, SkippedMetric):
        loaded.raise_error()
    return loaded


def load_lpips_or_skip(weights_path: str | os.PathLike | None = None, net: str = "alex") -> nn.Module | SkippedMetric:
    """[`load_lpips`], but what is missing comes back as a [`SkippedMetric`] (for evaluation reports)."""
    if net not in LPIPS_BACKBONE_FILES:
        raise ValueError(f"net must be one of {sorted(LPIPS_BACKBONE_FILES)!r}; got {net!r}")
    if weights_path is not None and not Path(weights_path).is_file():
        raise ValueError(f"lpips weights file not found; got {str(weights_path)!r}; expected an existing .pth")
    try:
        import lpips
    except Exception as error:  # an ImportError, or a broken torchvision that fails while importing
        return SkippedMetric(f"LPIPS needs the lpips package ({METRICS_EXTRA_HINT}): {error}")

    state = torch.load(weights_path, map_location="cpu", weights_only=True) if weights_path is not None else None
    full_state = state is not None and any(key.startswith("net.") for key in state)
    backbone_file = Path(torch.hub.get_dir()) / "checkpoints" / LPIPS_BACKBONE_FILES[net]
    if not full_state and not backbone_file.is_file():
        return SkippedMetric(
            f"LPIPS needs the {net} ImageNet backbone weights, not found at {backbone_file}: put torchvision's "
            f"{LPIPS_BACKBONE_FILES[net]} there, or pass --lpips_weights with a full lpips.LPIPS state dict"
        )
    if full_state:
        # A random trunk is built (nothing to download) and then overwritten by the file's backbone.
        model = lpips.LPIPS(net=net, pretrained=False, pnet_rand=True, verbose=False)
        model.load_state_dict(state, strict=True)
        source = f"{weights_path} (full lpips.LPIPS state dict)"
    else:
        model = lpips.LPIPS(net=net, pretrained=True, model_path=weights_path, verbose=False)
        linear = weights_path if weights_path is not None else "the lpips package's v0.1 linear layers"
        source = f"{linear}; backbone {backbone_file}"
    model.description = {"lpips_network": f"lpips v0.1, {net} backbone, inputs in [-1, 1]", "lpips_weights": source}
    return model.eval().requires_grad_(False)


def describe_lpips(lpips_model: nn.Module) -> dict[str, str]:
    """What goes into the metrics JSON about the LPIPS network: its own `description` if it has one."""
    description = getattr(lpips_model, "description", None)
    if isinstance(description, dict):
        return {key: str(value) for key, value in description.items()}
    return {"lpips_network": f"{type(lpips_model).__name__} (caller-supplied; not comparable to published LPIPS)"}

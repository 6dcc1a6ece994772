"""Per-image MSE, PSNR and SSIM of images in [0, 1] (data_range fixed at 1.0), in float64.

SSIM follows Wang et al. 2004 ("Image quality assessment: from error visibility to structural similarity",
https://ece.uwaterloo.ca/~z70wang/publications/ssim.pdf): an 11x11 Gaussian window with sigma = 1.5, K1 = 0.01,
K2 = 0.03, population (not sample) statistics, the map averaged over the VALID window positions (the reference
MATLAB code's `filter2(..., 'valid')`) and over channels. It equals scikit-image's
`structural_similarity(..., channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
data_range=1)` (tested to 1e-6). torchmetrics' SSIM is not used on purpose: it also averages the border positions
of a reflect-padded map, which moves scores by about 1e-3 at 32x32.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def _check_pair(prediction: torch.Tensor, target: torch.Tensor) -> None:
    for name, images in (("prediction", prediction), ("target", target)):
        if not isinstance(images, torch.Tensor) or images.ndim != 4:
            got = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
            raise ValueError(f"{name} must be a (batch, channels, height, width) tensor; got {got}")
    if prediction.shape != target.shape:
        raise ValueError(
            f"prediction and target must have the same shape; got {tuple(prediction.shape)} and {tuple(target.shape)}"
        )


def mse_per_image(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error of each image, shape (N,) float64."""
    _check_pair(prediction, target)
    return (prediction.double() - target.double()).pow(2).flatten(1).mean(dim=1)


def psnr_per_image(
    prediction: torch.Tensor, target: torch.Tensor, data_range: float = 1.0, max_db: float | None = None
) -> torch.Tensor:
    """PSNR in dB of each image, `10 log10(data_range^2 / MSE)`, shape (N,) float64.

    An exact copy has infinite PSNR; `max_db` caps it (the evaluation uses 100 dB, so one blank image that the
    decoder saturates exactly cannot turn the mean into inf).
    """
    psnr = 10.0 * torch.log10(data_range**2 / mse_per_image(prediction, target))
    return psnr if max_db is None else psnr.clamp_max(max_db)


def gaussian_window(kernel_size: int = 11, sigma: float = 1.5, dtype=torch.float64, device=None) -> torch.Tensor:
    """Normalised 2-D Gaussian window (kernel_size, kernel_size)."""
    offsets = torch.arange(kernel_size, dtype=dtype, device=device) - (kernel_size - 1) / 2
    profile = torch.exp(-(offsets**2) / (2 * sigma**2))
    profile = profile / profile.sum()
    return profile[:, None] * profile[None, :]


def ssim_per_image(
    prediction: torch.Tensor,
    target: torch.Tensor,
    data_range: float = 1.0,
    kernel_size: int = 11,
    sigma: float = 1.5,
    k1: float = 0.01,
    k2: float = 0.03,
) -> torch.Tensor:
    """SSIM of each image (Wang et al. 2004, valid window positions, mean over channels), shape (N,) float64.

    Args:
        prediction (`torch.Tensor`): Images (N, C, H, W), e.g. reconstructions in [0, 1].
        target (`torch.Tensor`): Reference images of the same shape.
        data_range (`float`, *optional*, defaults to 1.0): Max minus min of the pixel range (1.0 for [0, 1]).
        kernel_size (`int`, *optional*, defaults to 11): Side of the Gaussian window.
        sigma (`float`, *optional*, defaults to 1.5): Standard deviation of the Gaussian window.
        k1 (`float`, *optional*, defaults to 0.01): Luminance constant, `C1 = (k1 * data_range)^2`.
        k2 (`float`, *optional*, defaults to 0.03): Contrast constant, `C2 = (k2 * data_range)^2`.
    """
    _check_pair(prediction, target)
    height, width = prediction.shape[-2:]
    if height < kernel_size or width < kernel_size:
        raise ValueError(
            f"SSIM needs images of at least {kernel_size}x{kernel_size} (its window); got {height}x{width}"
        )
    x, y = prediction.double(), target.double()
    channels = x.shape[1]
    window = gaussian_window(kernel_size, sigma, device=x.device).expand(channels, 1, kernel_size, kernel_size)
    # One grouped convolution over the five local moments: each channel is filtered on its own.
    moments = F.conv2d(torch.cat([x, y, x * x, y * y, x * y]), window, groups=channels)
    mu_x, mu_y, xx, yy, xy = moments.split(x.shape[0])
    var_x, var_y, cov_xy = xx - mu_x**2, yy - mu_y**2, xy - mu_x * mu_y
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return ssim_map.flatten(1).mean(dim=1)


def to_unit_range(images: torch.Tensor) -> torch.Tensor:
    """Images in [-1, 1] (the model's range) -> [0, 1], clamped, float32."""
    return ((images.float().clamp(-1, 1) + 1) / 2).clamp(0, 1)

"""rFID: Fréchet distance between Inception-v3 pool features of originals and of their reconstructions.

The feature network is any `nn.Module` mapping images in [0, 1] (N, 3, H, W) to features (N, F); tests inject a
small one. The standard one, [`InceptionFeatureExtractor`], is the FID Inception-v3 (TF 2015-12-05 weights, 2048-d
pool features) of torch-fidelity, loaded from a LOCAL weights file through the optional extra
(`pip install "hf_nsvq[metrics]"`); when that or the file is missing, [`load_inception_or_skip`] returns a
[`SkippedMetric`] saying which (and `load_inception_feature_extractor` raises), instead of downloading anything. Statistics are accumulated as float64 sums, so memory is O(F^2) whatever
the number of images.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from torch import nn

from .skipped import SkippedMetric

# File names of the same converted TF weights (sha256 prefix 6726825d): torch-fidelity's and pytorch-fid's.
INCEPTION_WEIGHT_FILES = ("weights-inception-2015-12-05-6726825d.pth", "pt_inception-2015-12-05-6726825d.pth")
INCEPTION_RESIZE = {"size": 299, "mode": "bilinear", "antialias": True, "align_corners": False}
INCEPTION_RESIZE_TEXT = "F.interpolate to 299x299, mode='bilinear', antialias=True, align_corners=False"
METRICS_EXTRA_HINT = 'pip install "hf_nsvq[metrics]"'


class FeatureStatistics:
    """Running mean and covariance of feature vectors, accumulated in float64.

    Args:
        device (`torch.device` or `str`, *optional*): Where the sums live (the device of the features).
    """

    def __init__(self, device: torch.device | str | None = None):
        self.device = device
        self.num_samples = 0
        self.feature_sum: torch.Tensor | None = None
        self.outer_sum: torch.Tensor | None = None

    def update(self, features: torch.Tensor) -> None:
        """Add a batch of features (N, F)."""
        if not isinstance(features, torch.Tensor) or features.ndim != 2:
            got = tuple(features.shape) if isinstance(features, torch.Tensor) else type(features).__name__
            raise ValueError(f"features must be a (batch, num_features) tensor; got {got}")
        features = features.detach().to(device=self.device, dtype=torch.float64)
        if self.feature_sum is None:
            dim = features.shape[1]
            self.feature_sum = features.new_zeros(dim)
            self.outer_sum = features.new_zeros(dim, dim)
        elif features.shape[1] != self.feature_sum.numel():
            raise ValueError(
                f"features must keep their width; got {features.shape[1]} after {self.feature_sum.numel()}"
            )
        self.feature_sum += features.sum(dim=0)
        self.outer_sum += features.t() @ features
        self.num_samples += features.shape[0]

    def mean(self) -> torch.Tensor:
        return self.feature_sum / self.num_samples

    def covariance(self) -> torch.Tensor:
        """Unbiased (N - 1) covariance, as numpy's `np.cov` in the reference FID code."""
        mean = self.mean()
        return (self.outer_sum - self.num_samples * torch.outer(mean, mean)) / (self.num_samples - 1)


def frechet_distance(mu1: torch.Tensor, sigma1: torch.Tensor, mu2: torch.Tensor, sigma2: torch.Tensor) -> float:
    """Fréchet distance `||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2))` of two Gaussians, in float64.

    The trace of `(S1 S2)^(1/2)` is computed as the sum of square roots of the eigenvalues of the symmetric PSD
    matrix `S1^(1/2) S2 S1^(1/2)` (similar to `S1 S2`, so the same eigenvalues). Only symmetric eigensolvers are
    involved, so singular covariances (fewer images than feature dimensions) give a finite real number where a
    general `sqrtm(S1 @ S2)` returns complex noise.
    """
    mu1, mu2, sigma1, sigma2 = (t.detach().to("cpu", torch.float64) for t in (mu1, mu2, sigma1, sigma2))
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.numel(), mu1.numel()):
        raise ValueError(
            f"expected means (F,) and covariances (F, F) of one F; got {tuple(mu1.shape)}, {tuple(sigma1.shape)}, "
            f"{tuple(mu2.shape)}, {tuple(sigma2.shape)}"
        )
    eigenvalues, eigenvectors = torch.linalg.eigh((sigma1 + sigma1.t()) / 2)
    sqrt_sigma1 = (eigenvectors * eigenvalues.clamp_min(0).sqrt()) @ eigenvectors.t()
    middle = sqrt_sigma1 @ sigma2 @ sqrt_sigma1
    trace_sqrt_product = torch.linalg.eigvalsh((middle + middle.t()) / 2).clamp_min(0).sqrt().sum()
    diff = mu1 - mu2
    return float(diff.dot(diff) + sigma1.trace() + sigma2.trace() - 2 * trace_sqrt_product)


def frechet_distance_from_statistics(real: FeatureStatistics, fake: FeatureStatistics) -> float:
    return frechet_distance(real.mean(), real.covariance(), fake.mean(), fake.covariance())


class InceptionFeatureExtractor(nn.Module):
    """FID Inception-v3 2048-d pool features of images in [0, 1] (N, 3, H, W).

    Images are rounded to uint8 (what a saved PNG holds, and what the FID network was fed when its reference
    statistics were computed), then resized to 299x299 by `F.interpolate(mode="bilinear", antialias=True)` and
    mapped to [-1, 1] inside torchmetrics' `NoTrainInceptionV3` (torch-fidelity's network). Needs the optional
    extra; build it with [`load_inception_feature_extractor`].

    Args:
        weights_path (`str`): Local file with the converted TF Inception weights (see `INCEPTION_WEIGHT_FILES`).
    """

    def __init__(self, weights_path: str | os.PathLike):
        super().__init__()
        from torchmetrics.image.fid import NoTrainInceptionV3

        self.network = NoTrainInceptionV3(
            name="inception-v3-compat",
            features_list=["2048"],
            feature_extractor_weights_path=str(weights_path),
            antialias=INCEPTION_RESIZE["antialias"],
        )
        # Flat strings: they land as they are in metrics.json, which the model card reads.
        self.description = {
            "rfid_network": "inception-v3-compat 2048-d pool features (torch-fidelity's FID Inception, TF 2015-12-05 "
            "weights, through torchmetrics' NoTrainInceptionV3)",
            "rfid_weights": str(weights_path),
            "rfid_weights_sha256": _sha256(weights_path),
            "rfid_input": f"[0, 1] rounded to uint8, then {INCEPTION_RESIZE_TEXT}",
        }

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.network((images.clamp(0, 1) * 255).round().to(torch.uint8))


def load_inception_feature_extractor(weights_path: str | os.PathLike | None = None) -> InceptionFeatureExtractor:
    """The standard FID feature network (an [`InceptionFeatureExtractor`]) from a local weights file.

    Raises [`MetricUnavailableError`] (a `ValueError`) saying what to install or pass when the optional package or
    the weights are missing; [`load_inception_or_skip`] returns that reason as a [`SkippedMetric`] instead. Nothing is
    downloaded: without `weights_path`, the torch hub cache (`<torch.hub.get_dir()>/checkpoints`) is searched for the
    file names in `INCEPTION_WEIGHT_FILES`, which is where torch-fidelity and pytorch-fid keep them.

    Args:
        weights_path (`str`, *optional*): The weights file. A path that does not exist raises a `ValueError` (a typo
            should not silently drop a metric).
    """
    loaded = load_inception_or_skip(weights_path)
    if isinstance(loaded, SkippedMetric):
        loaded.raise_error()
    return loaded


def load_inception_or_skip(weights_path: str | os.PathLike | None = None) -> InceptionFeatureExtractor | SkippedMetric:
    """[`load_inception_feature_extractor`], but what is missing comes back as a [`SkippedMetric`]."""
    if weights_path is not None and not Path(weights_path).is_file():
        raise ValueError(f"inception weights file not found; got {str(weights_path)!r}; expected an existing .pth")
    if weights_path is None:
        checkpoints = Path(torch.hub.get_dir()) / "checkpoints"
        cached = [checkpoints / name for name in INCEPTION_WEIGHT_FILES if (checkpoints / name).is_file()]
        weights_path = cached[0] if cached else None
    missing = []
    try:
        import torch_fidelity  # noqa: F401
        from torchmetrics.image.fid import NoTrainInceptionV3  # noqa: F401
    except Exception as error:  # an ImportError, or a broken torchvision that fails while importing
        missing.append(
            f"the FID Inception network needs torch-fidelity and torchmetrics ({METRICS_EXTRA_HINT}): {error}"
        )
    if weights_path is None:
        missing.append(
            f"no Inception weights on this machine: pass --inception_weights PATH (torch-fidelity's "
            f"{INCEPTION_WEIGHT_FILES[0]} or pytorch-fid's {INCEPTION_WEIGHT_FILES[1]}) or put the file in "
            f"{Path(torch.hub.get_dir()) / 'checkpoints'}"
        )
    if missing:
        return SkippedMetric("; ".join(missing))
    return InceptionFeatureExtractor(weights_path)


def describe_feature_extractor(feature_extractor: nn.Module) -> dict[str, str]:
    """What goes into the metrics JSON about the network: its own `description` if it has one."""
    description = getattr(feature_extractor, "description", None)
    if isinstance(description, dict):
        return {key: str(value) for key, value in description.items()}
    return {"rfid_network": f"{type(feature_extractor).__name__} (caller-supplied; not comparable to published rFID)"}


def _sha256(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()

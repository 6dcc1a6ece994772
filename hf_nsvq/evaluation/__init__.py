"""Evaluation of VQ tokenizers: codebook usage (pure torch) and reconstruction metrics (rFID, LPIPS, SSIM, PSNR).

The metric definitions are those of the design notes (ALGORITHMS.md, "Metrics"). Networks with pretrained weights
(Inception-v3 for rFID, LPIPS) come from local files through the optional extra `hf_nsvq[metrics]`; when they are
missing the metric is reported as `{"skipped": true, "reason": ...}`, never as a number.
"""

from .codebook import CodebookUsage, WindowedCodebookUsage, code_histogram, usage_summary
from .evaluate import encode_reconstruct, evaluate_model
from .fid import (
    FeatureStatistics,
    InceptionFeatureExtractor,
    frechet_distance,
    frechet_distance_from_statistics,
    load_inception_feature_extractor,
    load_inception_or_skip,
)
from .image_metrics import mse_per_image, psnr_per_image, ssim_per_image
from .loading import load_vq_model
from .perceptual import load_lpips, load_lpips_or_skip
from .skipped import MetricUnavailableError, SkippedMetric

__all__ = [
    "CodebookUsage",
    "FeatureStatistics",
    "InceptionFeatureExtractor",
    "MetricUnavailableError",
    "SkippedMetric",
    "WindowedCodebookUsage",
    "code_histogram",
    "encode_reconstruct",
    "evaluate_model",
    "frechet_distance",
    "frechet_distance_from_statistics",
    "load_inception_feature_extractor",
    "load_inception_or_skip",
    "load_lpips",
    "load_lpips_or_skip",
    "load_vq_model",
    "mse_per_image",
    "psnr_per_image",
    "ssim_per_image",
    "usage_summary",
]

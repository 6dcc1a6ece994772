"""A metric that cannot be computed here, and why.

Loaders come in two flavours: the strict one (`load_lpips`, `load_inception_feature_extractor`) raises
[`MetricUnavailableError`], for a training loss that must not silently disappear; the `..._or_skip` one returns a
[`SkippedMetric`], which an evaluation reports as `{"skipped": true, "reason": ...}`, never as a number.
"""

from __future__ import annotations

from dataclasses import dataclass


class MetricUnavailableError(ValueError):
    """A metric network cannot be built on this machine: an optional package or a weights file is missing."""


@dataclass(frozen=True)
class SkippedMetric:
    """Stands in for a feature network (or a metric value) that is not available on this machine.

    The loaders return one instead of raising when an optional package or a weights file is missing, so an
    evaluation still reports every metric it can; the reason says what to install or which flag to pass.

    Args:
        reason (`str`): What is missing and how to provide it.
    """

    reason: str

    def raise_error(self):
        raise MetricUnavailableError(self.reason)

    def to_dict(self) -> dict:
        return {"skipped": True, "reason": self.reason}

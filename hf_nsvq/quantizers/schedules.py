"""Bandwidth (tau) schedules of NSVQ, as pure functions of the training step.

The authors halve tau every epoch from 1 with a floor of 1e-8; here an "epoch" is `steps_per_period` steps, so the
schedule depends only on the step counter the quantizer keeps in its state dict and a resumed run continues it.
"""

from __future__ import annotations

import math

# "adaptive" is NSVQ's error-relative schedule (see NSVQVectorQuantizer); the others are pure functions of the step.
STEP_SCHEDULES = ("constant", "exponential", "cosine", "linear")
BANDWIDTH_SCHEDULES = (*STEP_SCHEDULES, "adaptive")


def bandwidth_at_step(
    schedule: str,
    step: int,
    bandwidth: float,
    min_bandwidth: float,
    steps_per_period: int,
    bandwidth_decay: float,
    decay_steps: int | None,
) -> float:
    """tau at `step`.

    - `constant`: `bandwidth`.
    - `exponential`: `max(bandwidth * bandwidth_decay ** (step // steps_per_period), min_bandwidth)` (a staircase:
      with decay 0.5, tau halves once per period, as the authors' per-epoch halving).
    - `cosine`: from `bandwidth` to `min_bandwidth` along a half cosine over `decay_steps`, then flat.
    - `linear`: from `bandwidth` to `min_bandwidth` linearly over `decay_steps`, then flat.
    """
    if step < 0:
        raise ValueError(f"step must be >= 0; got {step!r}")
    if schedule == "constant":
        return bandwidth
    if schedule == "exponential":
        return max(bandwidth * bandwidth_decay ** (step // steps_per_period), min_bandwidth)
    if schedule in ("cosine", "linear"):
        progress = min(step / decay_steps, 1.0)
        if schedule == "cosine":
            return min_bandwidth + (bandwidth - min_bandwidth) * 0.5 * (1.0 + math.cos(math.pi * progress))
        return min_bandwidth + (bandwidth - min_bandwidth) * (1.0 - progress)
    raise ValueError(f"bandwidth_at_step takes one of {list(STEP_SCHEDULES)!r}; got {schedule!r}")

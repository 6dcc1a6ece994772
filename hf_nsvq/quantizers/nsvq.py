"""NSVQ: non-stationary vector quantization (arXiv 2602.18896, Sec. 4.1).

Not to be confused with "Noise Substitution in Vector Quantization" (Vali & Baeckstroem 2022), which shares the
acronym: nothing here substitutes noise. Non-winning codes are dragged along with the (non-stationary) encoder
output by a kernel-weighted codebook loss whose bandwidth decays, so early training tracks the encoder's drift and
late training is plain online k-means.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

from .base import (
    _check_choice,
    _check_non_negative,
    _check_positive_int,
    all_reduce_sum_,
    block_rows,
    mse,
    nearest_codes,
    squared_distances,
    straight_through,
)
from .schedules import BANDWIDTH_SCHEDULES, bandwidth_at_step
from .vanilla import VanillaVectorQuantizer

KERNELS = ("softmax", "gaussian")


class KernelStatistics(NamedTuple):
    """The sums the dense term needs, gathered without gradient; w excludes each row's winner.

    `weighted_latents` = W^T Z (K, D); `code_weights` = sum_i w_ik (K,); `latent_term` = sum_i (sum_k w_ik) ||z_i||^2.
    """

    weighted_latents: torch.Tensor
    code_weights: torch.Tensor
    latent_term: torch.Tensor


def kernel_weights(
    sq_dist: torch.Tensor, min_dist: torch.Tensor, kernel: str, bandwidth: float, kernel_weight: float
) -> torch.Tensor:
    """Kernel weights of a (rows, K) block of squared distances; overwrites `sq_dist`.

    - `softmax` (the authors' code): `clamp(lambda * K * softmax_k(-d_ik / tau), 0, 1)`; a uniform softmax gives
      lambda, and a code gets full weight once its softmax mass reaches 1 / (lambda K). The row minimum
      `min_dist` is the softmax's stabilising shift, known from the winner search, so no max pass is needed.
    - `gaussian` (the paper's figure): `0.5 * exp(-d_ik / tau)`, tau = 2 sigma^2.
    """
    if kernel == "softmax":
        num_codes = sq_dist.shape[1]
        # exp of inputs below ~-87 underflows through a ~12x slower path on CPU; exp(-80) ~ 2e-35 is already zero
        # next to the winner's exp(0) = 1, so clamping changes no weight that matters.
        weights = sq_dist.sub_(min_dist.unsqueeze(1)).mul_(-1.0 / bandwidth).clamp_(min=-80.0).exp_()
        scale = (kernel_weight * num_codes) / weights.sum(dim=1, keepdim=True)
        return weights.mul_(scale).clamp_(max=1.0)
    return sq_dist.clamp_(min=0).mul_(-1.0 / bandwidth).clamp_(min=-80.0).exp_().mul_(0.5)  # see above


def negligible_rows(
    min_dist: torch.Tensor,
    second_dist: torch.Tensor,
    num_codes: int,
    kernel: str,
    bandwidth: float,
    kernel_weight: float,
    threshold: float,
) -> torch.Tensor:
    """Rows whose total non-winner weight is provably below `threshold` (relative to the winner's weight 1).

    softmax: w_ik <= lambda K exp(-(d_ik - d_i,min) / tau) <= lambda K exp(-gap_i / tau), gap = second - min;
    gaussian: w_ik <= 0.5 exp(-d_i,second / tau). Each times the K - 1 non-winners.
    """
    if kernel == "softmax":
        per_code = torch.exp(-(second_dist - min_dist) / bandwidth).mul_(kernel_weight * num_codes).clamp_(max=1.0)
    else:
        per_code = torch.exp(-second_dist.clamp(min=0) / bandwidth).mul_(0.5)
    return per_code.mul_(num_codes - 1) < threshold


@torch.no_grad()
def assign_and_gather_kernel_statistics(
    z: torch.Tensor,
    codebook: torch.Tensor,
    kernel: str,
    bandwidth: float,
    kernel_weight: float,
    skip_threshold: float,
    block_elements: int | None = None,
) -> tuple[torch.Tensor, KernelStatistics | None, torch.Tensor]:
    """One pass over row blocks: winners, the kernel sums of the dense term (None when all were negligible), and the
    sum over rows of the winners' squared distances (the quantization error the adaptive bandwidth tracks).

    Uses sum_ik w_ik ||z_i - e_k||^2 = sum_i r_i ||z_i||^2 + sum_k c_k ||e_k||^2 - 2 sum_k e_k . (W^T Z)_k, so memory
    is O(block_rows * K) and the work is two GEMMs per block: never an M x K x D tensor. Rows whose non-winner
    weight is provably below `skip_threshold` (see `negligible_rows`) are left out, so once the bandwidth has
    decayed only near-ties still cost kernel work and a step costs about what vanilla costs.
    """
    num_rows, dim = z.shape
    num_codes = codebook.shape[0]
    codebook_sq = codebook.pow(2).sum(dim=1)
    indices = torch.empty(num_rows, dtype=torch.long, device=z.device)
    winner_distance_sum = torch.zeros((), device=z.device)
    stats = None
    rows = block_rows(num_codes, block_elements)
    for start in range(0, num_rows, rows):
        z_block = z[start : start + rows]
        dist_block = squared_distances(z_block, codebook, codebook_sq)
        min_dist, winners = dist_block.min(dim=1)
        indices[start : start + rows] = winners
        winner_distance_sum += min_dist.clamp(min=0).sum()  # fp32 rounding can make ||z||^2+||e||^2-2ze < 0
        if num_codes == 1:
            continue
        # second-smallest distance: hide the winner for one more pass, then put it back (cheaper than topk)
        dist_block.scatter_(1, winners.unsqueeze(1), float("inf"))
        second_dist = dist_block.amin(dim=1)
        dist_block.scatter_(1, winners.unsqueeze(1), min_dist.unsqueeze(1))
        active = ~negligible_rows(min_dist, second_dist, num_codes, kernel, bandwidth, kernel_weight, skip_threshold)
        num_active = int(active.sum())
        if num_active == 0:
            continue
        if num_active < active.numel():
            dist_block, z_block, min_dist, winners = (
                dist_block[active],
                z_block[active],
                min_dist[active],
                winners[active],
            )
        weights = kernel_weights(dist_block, min_dist, kernel, bandwidth, kernel_weight)
        weights.scatter_(1, winners.unsqueeze(1), 0.0)  # the winner's weight 1 is the exact mse(q, sg z) term
        if stats is None:
            stats = KernelStatistics(
                torch.zeros(num_codes, dim, device=z.device),
                torch.zeros(num_codes, device=z.device),
                torch.zeros((), device=z.device),
            )
        stats.weighted_latents.addmm_(weights.t(), z_block)
        stats.code_weights.add_(weights.sum(dim=0))
        stats.latent_term.add_(weights.sum(dim=1).dot(z_block.pow(2).sum(dim=1)))
    return indices, stats, winner_distance_sum


def dense_codebook_term(codebook: torch.Tensor, stats: KernelStatistics, num_elements: int) -> torch.Tensor:
    """(1 / (M D)) sum_i sum_{k != k*} w_ik ||sg(z_i) - e_k||^2 as a differentiable function of the codebook.

    Its gradient is (2 / (M D)) sum_i w_ik (e_k - z_i), as ALGORITHMS.md states.
    """
    value = (
        stats.latent_term
        + (stats.code_weights * codebook.pow(2).sum(dim=1)).sum()
        - 2.0 * (codebook * stats.weighted_latents).sum()
    )
    return value / num_elements


def nonstationary_straight_through(z: torch.Tensor, q: torch.Tensor, codebook_weight: float) -> torch.Tensor:
    """The authors' `q_flag` estimator: `z + a q + sg((1 - a) q - z)`, a = 2 * codebook_weight / (M D).

    Forward value q, encoder gradient unchanged, and the winning codes also receive a * (decoder gradient).
    """
    if not z.requires_grad and not q.requires_grad:
        return q
    a = 2.0 * codebook_weight / z.numel()
    return z + a * q + ((1.0 - a) * q - z).detach()


class NSVQVectorQuantizer(VanillaVectorQuantizer):
    """Non-stationary VQ: vanilla VQ whose codebook loss also pulls non-winning codes toward current latents.

    Training loss: `commitment_weight * mse(z, sg q) + codebook_weight * L_ns`, with
    `L_ns = (1 / (M D)) sum_i sum_k w_ik ||sg(z_i) - e_k||^2`, `w_{i,k*} = 1` and kernel weights for the other codes
    (see `kernel_weights`), w detached. In eval mode NSVQ is plain nearest-code lookup, so a trained NSVQ codebook
    is a plain codebook.

    The bandwidth tau (`bandwidth_schedule`):

    - `"exponential"` (the authors'), `"constant"`, `"cosine"`, `"linear"`: a pure function of the step counter kept
      in the `step` buffer (advanced once per training forward) with tau_0 = `bandwidth` in the latents' absolute
      squared-distance units.
    - `"adaptive"` (the default; beyond the paper): scale-free and self-tuning,

          tau_t = max(rho * err_t * gamma ** floor(t / P), min_bandwidth),
          err_t = beta * err_{t-1} + (1 - beta) * (1 / (M D)) sum_i min_k ||z_i - e_k||^2   (rows of all processes),

      rho = `relative_bandwidth`, beta = `error_momentum`, gamma = `bandwidth_decay` (1: no decay), P =
      `steps_per_period`. err is the quantization error per element (the commitment MSE); it starts at the first
      batch's and lives in the `quantization_error` buffer, so a resumed run continues it. Why this rule:
        * scale-free: scaling the latents by c scales err and tau by c^2 and leaves every kernel weight unchanged;
        * self-tuning: when the latents move away from the codes (encoder drift, a jump to a new domain) the error
          grows and tau widens with it, so the kernel reaches the codes the data left behind; once they have caught
          up, the error and tau shrink again and training ends as online k-means, as the authors' decay intends;
        * per element, not per row: tau is then a per-coordinate variance, the temperature of a soft assignment
          at the scale of the quantization noise (as in deterministic annealing), and one rho works across code
          dimensions (in the ablation rho = 32 suits D = 2 and D = 16 alike; exploratory runs with a per-row error,
          not committed, needed about 16 on the 2-D toy and 2 on the 16-D images).
      tau at step t uses err up to step t - 1 (one step of lag, no extra pass over the distances). Too large a rho
      feeds back on itself (a wide kernel pulls codes together, which raises the error, which widens the kernel):
      benchmarks/nsvq_bandwidth_ablation.py shows where that starts.

    Args:
        num_vq_embeddings (`int`): Number of codes K.
        vq_embed_dim (`int`): Code dimension D.
        commitment_weight (`float`, *optional*, defaults to 0.25): Weight of `mse(z, sg(q))`.
        codebook_weight (`float`, *optional*, defaults to 1.0): Weight of `L_ns`.
        kernel (`str`, *optional*, defaults to `"softmax"`): `"softmax"` (authors' code) or `"gaussian"` (paper).
        kernel_weight (`float`, *optional*, defaults to 0.01): lambda of the softmax kernel.
        bandwidth (`float`, *optional*, defaults to 1.0): tau_0, the initial bandwidth (2 sigma^2 for the gaussian),
            of the step-driven schedules. Unused by `"adaptive"`.
        bandwidth_schedule (`str`, *optional*, defaults to `"adaptive"`): `"adaptive"`, `"exponential"` (the
            authors'), `"constant"`, `"cosine"` or `"linear"`.
        relative_bandwidth (`float`, *optional*, defaults to 32.0): rho of `"adaptive"`: tau in units of the
            running quantization error per element (benchmarks/nsvq_bandwidth_ablation.py picked it).
        error_momentum (`float`, *optional*, defaults to 0.9): beta of `"adaptive"`, in [0, 1): the running error
            forgets with a time constant of 1 / (1 - beta) steps.
        steps_per_period (`int`, *optional*, defaults to 1000): Steps per decay period of the exponential
            schedule (the authors' period is one epoch: set it to your steps per epoch) and of `"adaptive"`'s decay.
        bandwidth_decay (`float`, *optional*): Factor applied to tau once per period, in (0, 1]. Defaults to 0.5
            for `"exponential"` (the authors' halving) and 1.0 (no decay) for `"adaptive"`.
        min_bandwidth (`float`, *optional*, defaults to 1e-8): Floor of tau.
        decay_steps (`int`, *optional*): Length of the cosine and linear decays; required by those schedules.
        nonstationary_ste (`bool`, *optional*, defaults to `False`): Use the authors' `q_flag` estimator.
        kernel_skip_threshold (`float`, *optional*, defaults to 1e-6): Leave out of the dense term the rows whose
            total non-winner weight is provably below this (relative to the winner's weight 1).
        codebook_init (`str`, *optional*, defaults to `"data"`): `"data"` starts the codes at K latents of the first
            training batch; `"uniform"` is diffusers' U(-1/K, 1/K) (the authors' setting). From a uniform init every
            code is about equally far from every latent, the kernel weighs them alike and drags them as one blob.
        **kwargs: `legacy`, `distance_block_elements`, `check_finite`.
    """

    def __init__(
        self,
        num_vq_embeddings: int,
        vq_embed_dim: int,
        commitment_weight: float = 0.25,
        codebook_weight: float = 1.0,
        kernel: str = "softmax",
        kernel_weight: float = 0.01,
        bandwidth: float = 1.0,
        bandwidth_schedule: str = "adaptive",
        relative_bandwidth: float = 32.0,
        error_momentum: float = 0.9,
        steps_per_period: int = 1000,
        bandwidth_decay: float | None = None,
        min_bandwidth: float = 1e-8,
        decay_steps: int | None = None,
        nonstationary_ste: bool = False,
        kernel_skip_threshold: float = 1e-6,
        codebook_init: str = "data",
        **kwargs,
    ):
        super().__init__(
            num_vq_embeddings, vq_embed_dim, commitment_weight, codebook_weight, codebook_init=codebook_init, **kwargs
        )
        _check_choice("kernel", kernel, KERNELS)
        _check_choice("bandwidth_schedule", bandwidth_schedule, BANDWIDTH_SCHEDULES)
        _check_non_negative("kernel_weight", kernel_weight)
        _check_non_negative("kernel_skip_threshold", kernel_skip_threshold)
        for name, value in (
            ("bandwidth", bandwidth),
            ("min_bandwidth", min_bandwidth),
            ("relative_bandwidth", relative_bandwidth),
        ):
            _check_non_negative(name, value)
            if value == 0:
                raise ValueError(f"{name} must be > 0; got {value!r}")
        if min_bandwidth > bandwidth and bandwidth_schedule != "adaptive":
            raise ValueError(f"min_bandwidth must be <= bandwidth; got {min_bandwidth!r} > {bandwidth!r}")
        if (
            isinstance(error_momentum, bool)
            or not isinstance(error_momentum, int | float)
            or not 0 <= error_momentum < 1
        ):
            raise ValueError(f"error_momentum must be a number in [0, 1); got {error_momentum!r}")
        _check_positive_int("steps_per_period", steps_per_period)
        if bandwidth_decay is None:
            bandwidth_decay = 1.0 if bandwidth_schedule == "adaptive" else 0.5
        if (
            isinstance(bandwidth_decay, bool)
            or not isinstance(bandwidth_decay, int | float)
            or not 0 < bandwidth_decay <= 1
        ):
            raise ValueError(f"bandwidth_decay must be a number in (0, 1]; got {bandwidth_decay!r}")
        if bandwidth_schedule in ("cosine", "linear"):
            if decay_steps is None:
                raise ValueError(f"bandwidth_schedule={bandwidth_schedule!r} needs decay_steps (an int > 0); got None")
            _check_positive_int("decay_steps", decay_steps)
        self.kernel = kernel
        self.kernel_weight = float(kernel_weight)
        self.initial_bandwidth = float(bandwidth)
        self.bandwidth_schedule = bandwidth_schedule
        self.relative_bandwidth = float(relative_bandwidth)
        self.error_momentum = float(error_momentum)
        self.steps_per_period = steps_per_period
        self.bandwidth_decay = float(bandwidth_decay)
        self.min_bandwidth = float(min_bandwidth)
        self.decay_steps = decay_steps
        self.nonstationary_ste = bool(nonstationary_ste)
        self.kernel_skip_threshold = float(kernel_skip_threshold)
        # Training progress lives in the state dict so a resumed run continues the schedule.
        self.register_buffer("step", torch.zeros((), dtype=torch.long))
        if self.adaptive:
            # Registered only for "adaptive", so state dicts of the other schedules keep their keys. -1 = not yet set.
            self.register_buffer("quantization_error", torch.full((), -1.0))

    @property
    def adaptive(self) -> bool:
        return self.bandwidth_schedule == "adaptive"

    def bandwidth_at(self, step: int) -> float:
        """tau at a given training step: a pure function of the step, except that `"adaptive"` multiplies its decay
        by rho times the current running quantization error (0 before the first training step)."""
        if self.adaptive:
            if isinstance(step, bool) or not isinstance(step, int) or step < 0:
                raise ValueError(f"step must be an int >= 0; got {step!r}")
            # The exponential staircase, started from rho * err instead of a fixed tau_0.
            base = self.relative_bandwidth * max(float(self.quantization_error), 0.0)
            schedule = "exponential"
        else:
            base, schedule = self.initial_bandwidth, self.bandwidth_schedule
        return bandwidth_at_step(
            schedule,
            step,
            base,
            self.min_bandwidth,
            self.steps_per_period,
            self.bandwidth_decay,
            self.decay_steps,
        )

    @property
    def bandwidth(self) -> float:
        """tau for the next training forward."""
        return self.bandwidth_at(int(self.step))

    def set_step(self, step: int) -> None:
        """Jump the schedule to `step` (e.g. to align it with an optimizer step count)."""
        if isinstance(step, bool) or not isinstance(step, int) or step < 0:
            raise ValueError(f"step must be an int >= 0; got {step!r}")
        self.step.fill_(step)

    @torch.no_grad()
    def _track_error(self, winner_distance_sum: torch.Tensor, num_elements: int) -> None:
        """Fold this step's quantization error per element (over every process's rows) into the running error."""
        totals = torch.stack([winner_distance_sum.float(), torch.tensor(float(num_elements), device=self.step.device)])
        all_reduce_sum_(totals)
        mean_error = totals[0] / totals[1].clamp_min(1.0)
        running = self.quantization_error
        # torch.where, not a Python branch on the buffer: no device-to-host sync in the training step
        updated = running.mul(self.error_momentum).add(mean_error, alpha=1.0 - self.error_momentum)
        running.copy_(torch.where(running < 0, mean_error, updated))

    def _quantize_flat(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if not self.training:
            return super()._quantize_flat(z)
        self._init_codebook_from_data(z)
        weight = self.embedding.weight
        if self.adaptive and float(self.quantization_error) < 0:
            # First training step: nothing to lag behind yet, so measure this batch's error before the kernel pass.
            _, min_dist = nearest_codes(z.detach(), weight.detach().float(), self.distance_block_elements)
            self._track_error(min_dist.clamp(min=0).sum(), z.numel())
        indices, stats, winner_distance_sum = assign_and_gather_kernel_statistics(
            z.detach(),
            weight.detach().float(),
            self.kernel,
            self.bandwidth,
            self.kernel_weight,
            self.kernel_skip_threshold,
            self.distance_block_elements,
        )
        if self.adaptive:
            self._track_error(winner_distance_sum, z.numel())
        self.step.add_(1)
        q = F.embedding(indices, weight).float()
        codebook_term = mse(q, z.detach())  # the winners' weight-1 part of L_ns, exact
        if stats is not None:
            codebook_term = codebook_term + dense_codebook_term(weight.float(), stats, z.numel())
        loss = self._combine_losses(mse(q.detach(), z), codebook_term)
        if self.nonstationary_ste:
            return nonstationary_straight_through(z, q, self.codebook_weight), loss, indices
        return straight_through(z, q), loss, indices

    def extra_repr(self) -> str:
        if self.adaptive:
            schedule = f"relative_bandwidth={self.relative_bandwidth}, error_momentum={self.error_momentum}"
        else:
            schedule = f"bandwidth={self.initial_bandwidth}"
        return (
            f"{super().extra_repr()}, kernel={self.kernel!r}, bandwidth_schedule={self.bandwidth_schedule!r}, "
            f"{schedule}"
        )

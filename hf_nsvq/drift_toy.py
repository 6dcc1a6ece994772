"""The drift toy: a 2-D codebook trained online on data whose distribution moves (the paper's motivating experiment).

"Why codebooks collapse" (ALGORITHMS.md) argues that hard-assignment VQ strands codes when the encoder's output
distribution drifts: a code that stops winning stops moving and never wins again. This module reproduces that
without an encoder: the *data itself* drifts, which is what a codebook sees from a non-stationary encoder.

Setup (one run = one scenario x one method x one seed):

- Data: uniform on a disc in R^2 whose centre and radius follow a `Scenario` as functions of training progress
  p = step / steps. Every scenario starts at the unit disc centred at the origin, which is where every quantizer's
  default initialisation puts its codes (vanilla / EMA / NSVQ: U(-1/K, 1/K); SimVQ / TransVQ: a learned map of a
  zero-mean Gaussian basis; VQGAN-FC: W_out times unit vectors). So every method starts from its own default init
  on top of the data, and a stationary warm-up (the first 20 % of the steps) lets each one fit the disc before the
  drift begins: the "pre-drift" metrics separate collapse caused by the initialisation from collapse caused by
  the drift. A disc (not a Gaussian) gives the support a sharp edge, so "inside the support" is exact.
- Training: K codes of dimension 2, minibatches of the *current* distribution reshaped to z of shape (1, 2, 1, B),
  the quantizer's own loss, Adam on the quantizer's parameters (EMA has none: it updates its buffers itself in
  train mode). Every method sees the same data stream for a given seed, and the same lr.
- Metrics, every `steps // eval_points` steps, on a fresh sample of the current distribution (a separate generator, so
  evaluation never changes the training stream):
    * alive fraction: the fraction of the K codes that the quantizer itself (eval mode) assigns to at least one
      point of the sample, i.e. codes that would be used;
    * in-support fraction: the fraction of the codes (in the output space, `quantizer.codebook`) that lie inside
      the current disc, ||e_k - c|| <= r;
    * quantization error: the mean over points of ||z - quant(z)||^2, and the same divided by the disc's
      variance r^2 / 2 (the error of one code at the centre), which is comparable across scenarios.

NSVQ runs twice: `nsvq-authors` is the authors' setting in the data's units (U(-1/K, 1/K) init, softmax kernel with
lambda = 0.01, tau_0 = 1 = r_0^2, the squared radius of the initial disc, halved every `steps // 10` steps, so tau
ends at about 1e-3 = (r_0/32)^2); `nsvq` is this package's default (codes drawn from the first batch, tau = 32 times
the running quantization error per element: no scale to set). One setting for every scenario: nothing is tuned per
scenario or per method.
"""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import re
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from .quantizers import build_quantizer

DIM = 2  # the toy is 2-D so the codebook can be looked at

# ------------------------------------------------------------------------------------------------------ scenarios


@dataclass(frozen=True)
class Scenario:
    """A disc whose centre and radius move from a start to an end state during [drift_start, drift_end].

    Progress p is step / steps in [0, 1]. Before `drift_start` the disc is at its start state, after `drift_end`
    at its end state; in between the centre moves linearly and the radius geometrically (a constant relative rate,
    so shrinking by 4x and growing by 4x are mirror images). `drift_start == drift_end` is an abrupt jump.
    """

    name: str
    description: str
    start_center: tuple[float, float] = (0.0, 0.0)
    end_center: tuple[float, float] = (0.0, 0.0)
    start_radius: float = 1.0
    end_radius: float = 1.0
    drift_start: float = 0.2
    drift_end: float = 0.7

    def drift_amount(self, progress: float) -> float:
        """How far the drift has gone at `progress`: 0 before it starts, 1 after it ends."""
        if progress < self.drift_start:
            return 0.0
        if progress >= self.drift_end:
            return 1.0
        return (progress - self.drift_start) / (self.drift_end - self.drift_start)

    def state(self, progress: float) -> tuple[tuple[float, float], float]:
        """(centre, radius) of the disc at `progress`."""
        s = self.drift_amount(progress)
        center = tuple(a + s * (b - a) for a, b in zip(self.start_center, self.end_center, strict=True))
        radius = self.start_radius * (self.end_radius / self.start_radius) ** s
        return center, radius

    def sample(self, num: int, progress: float, generator: torch.Generator) -> torch.Tensor:
        """`num` points (num, 2) uniform on the disc at `progress`."""
        center, radius = self.state(progress)
        return sample_disc(num, center, radius, generator)

    def change_steps(self, steps: int) -> tuple[int, int]:
        """The first step of the drift and the first step after it (equal-ish for a jump)."""
        return math.ceil(self.drift_start * steps), math.ceil(self.drift_end * steps)


def sample_disc(num: int, center, radius: float, generator: torch.Generator) -> torch.Tensor:
    """Uniform points on a disc: the radius is r * sqrt(u) so that the density is uniform in area."""
    angle = torch.rand(num, generator=generator) * (2 * math.pi)
    rho = radius * torch.rand(num, generator=generator).sqrt()
    return torch.stack([center[0] + rho * angle.cos(), center[1] + rho * angle.sin()], dim=1)


# The cloud travels 4 radii (translation, jump), so that it ends fully outside its starting footprint; the radius
# changes by 4x (shrinking, expansion). Warm-up 20 %, drift 50 %, then a stationary tail of 30 % in which a method
# that lagged behind can catch up, and a dead code shows that it stays dead.
SCENARIOS: dict[str, Scenario] = {
    scenario.name: scenario
    for scenario in (
        Scenario("translation", "the unit disc slides from (0, 0) to (4, 0)", end_center=(4.0, 0.0)),
        Scenario("shrinking", "the disc's radius contracts from 1 to 0.25", end_radius=0.25),
        Scenario("expansion", "the disc's radius grows from 1 to 4", end_radius=4.0),
        Scenario(
            "jump",
            "the unit disc jumps from (0, 0) to (4, 0) at half of training",
            end_center=(4.0, 0.0),
            drift_start=0.5,
            drift_end=0.5,
        ),
    )
}


# -------------------------------------------------------------------------------------------------------- methods


@dataclass(frozen=True)
class Method:
    """A quantizer configuration: a label, a registry name and its keyword arguments.

    `steps_per_period_fraction` (NSVQ) sets `steps_per_period = steps * fraction`, so the bandwidth decays over the
    same share of training whatever `steps` is.
    """

    label: str
    quantizer: str
    kwargs: dict = field(default_factory=dict)
    steps_per_period_fraction: float | None = None

    def build_kwargs(self, steps: int) -> dict:
        kwargs = dict(self.kwargs)
        if self.steps_per_period_fraction is not None:
            kwargs["steps_per_period"] = max(1, round(steps * self.steps_per_period_fraction))
        return kwargs


# check_finite=False: the data is synthetic and finite, and the check is a per-step sync we need not pay for.
DEFAULT_METHODS: tuple[Method, ...] = (
    Method("vanilla", "vanilla", {"check_finite": False}),
    Method("ema", "ema", {"check_finite": False}),
    # codebook_dim must be <= 2 in 2-D; with 2 the codes are W_out times unit vectors (an ellipse) and the winner
    # is the nearest *direction* of W_in z: a quantizer of the angle around the origin, kept as the paper's baseline.
    Method("vqgan_fc", "vqgan_fc", {"codebook_dim": 2, "check_finite": False}),
    # E = C0 W^T has no bias: the codebook stays centred where C0 is (about the origin), so it can stretch and
    # rotate but not move as a whole.
    Method("simvq", "simvq", {"check_finite": False}),
    # The authors' setting: diffusers' U(-1/K, 1/K) init, softmax kernel, tau_0 = 1 (= the initial disc's squared
    # radius), halved 10 times.
    Method(
        "nsvq-authors",
        "nsvq",
        {
            "bandwidth": 1.0,
            "bandwidth_schedule": "exponential",
            "kernel": "softmax",
            "codebook_init": "uniform",
            "check_finite": False,
        },
        steps_per_period_fraction=0.1,
    ),
    # hf_nsvq's default: adaptive bandwidth (32 x the running quantization error per element), data-initialised codes.
    Method("nsvq", "nsvq", {"check_finite": False}),
    Method("transvq", "transvq", {"width": 64, "check_finite": False}),
)


# ---------------------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class DriftConfig:
    """Everything a run depends on besides the scenario, the method and the seed."""

    num_codes: int = 64
    steps: int = 2000
    batch_size: int = 256
    lr: float = 1e-2
    eval_points: int = 50  # metrics are recorded about this many times per run, plus at step 0
    eval_samples: int = 8192

    @classmethod
    def quick(cls) -> DriftConfig:
        """A smoke run of a few seconds: same toy, fewer steps (so every drift is 20x faster), smaller samples."""
        return cls(steps=100, batch_size=128, eval_points=10, eval_samples=2048)

    @property
    def eval_every(self) -> int:
        return max(1, self.steps // self.eval_points)

    def __post_init__(self):
        for name in ("num_codes", "steps", "batch_size", "eval_points", "eval_samples"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive int; got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"lr must be > 0; got {self.lr!r}")


# ---------------------------------------------------------------------------------------------------------- metrics


def alive_fraction(indices: torch.Tensor, num_codes: int) -> float:
    """Fraction of the `num_codes` codes that appear at least once in `indices` (the codes that would be used)."""
    return torch.unique(indices).numel() / num_codes


def quantization_error(samples: torch.Tensor, quantized: torch.Tensor) -> float:
    """Mean over points of the squared distance between each point (N, D) and its quantized value (N, D)."""
    return float((samples - quantized).pow(2).sum(dim=1).mean())


def inside_support_fraction(codes: torch.Tensor, center, radius: float) -> float:
    """Fraction of codes (K, 2) inside the disc ||e - c|| <= r."""
    distances = (codes - torch.as_tensor(center, dtype=codes.dtype)).norm(dim=1)
    return float((distances <= radius).float().mean())


def codebook_metrics(codebook: torch.Tensor, samples: torch.Tensor) -> tuple[float, float]:
    """(alive fraction, quantization error) of a plain codebook (K, D) under nearest-code assignment."""
    indices = torch.cdist(samples, codebook).argmin(dim=1)  # ties go to the lowest index, as in the quantizers
    return alive_fraction(indices, codebook.shape[0]), quantization_error(samples, codebook[indices])


@torch.no_grad()
def quantizer_metrics(quantizer, samples: torch.Tensor) -> tuple[float, float, torch.Tensor]:
    """(alive fraction, quantization error, per-code used mask) of a quantizer's own eval-mode assignment.

    Uses the quantizer's forward rather than its codebook, so VQGAN-FC is judged by the codes it really picks.
    """
    was_training = quantizer.training
    quantizer.eval()
    quant, _, (_, _, indices) = quantizer(samples.T.reshape(1, DIM, 1, -1))
    quantizer.train(was_training)
    used = torch.bincount(indices, minlength=quantizer.num_vq_embeddings) > 0
    return (
        alive_fraction(indices, quantizer.num_vq_embeddings),
        quantization_error(samples, quant.reshape(DIM, -1).T),
        used,
    )


# ------------------------------------------------------------------------------------------------------ simulation


def eval_steps(config: DriftConfig) -> list[int]:
    """Steps after which the metrics are recorded: 0 (the initial codebook), every `eval_every`, and the last."""
    steps = list(range(0, config.steps, config.eval_every))
    return steps + [config.steps] if steps[-1] != config.steps else steps


def run_one(scenario: Scenario, method: Method, seed: int, config: DriftConfig) -> dict:
    """Train one codebook online on one drifting scenario; return its metric curves and final codebook.

    The metrics after `s` steps are taken on the distribution of step `s - 1` (the one just trained on).
    """
    start = time.perf_counter()
    torch.manual_seed(seed)  # the init depends on the seed only: a method starts identically in every scenario
    quantizer = build_quantizer(method.quantizer, config.num_codes, DIM, **method.build_kwargs(config.steps)).train()
    params = [p for p in quantizer.parameters() if p.requires_grad]
    optimizer = torch.optim.Adam(params, lr=config.lr) if params else None
    data_generator = torch.Generator().manual_seed(seed)
    eval_generator = torch.Generator().manual_seed(1_000_003 + seed)
    record = {key: [] for key in ("steps", "alive", "in_support", "error", "relative_error")}
    checkpoints = set(eval_steps(config))

    def evaluate(done: int) -> tuple[torch.Tensor, torch.Tensor]:
        progress = max(done - 1, 0) / config.steps
        center, radius = scenario.state(progress)
        samples = sample_disc(config.eval_samples, center, radius, eval_generator)
        alive, error, used = quantizer_metrics(quantizer, samples)
        quantizer.eval()
        with torch.no_grad():
            codes = quantizer.codebook.detach().float().clone()
        quantizer.train()
        record["steps"].append(done)
        record["alive"].append(alive)
        record["in_support"].append(inside_support_fraction(codes, center, radius))
        record["error"].append(error)
        record["relative_error"].append(error / (radius**2 / 2))
        return codes, used

    codes, used = evaluate(0)
    for step in range(config.steps):
        batch = scenario.sample(config.batch_size, step / config.steps, data_generator)
        _, loss, _ = quantizer(batch.T.reshape(1, DIM, 1, config.batch_size))
        if optimizer is not None:
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if step + 1 in checkpoints:
            codes, used = evaluate(step + 1)
    record.update(
        scenario=scenario.name,
        method=method.label,
        seed=seed,
        final_codes=codes.tolist(),
        final_used=used.tolist(),
        seconds=time.perf_counter() - start,
    )
    return record


def run_summary(record: dict, scenario: Scenario, config: DriftConfig) -> dict:
    """Scalar summaries of one run: before the drift, at the end, and the worst point after the drift began."""
    drift_step = scenario.change_steps(config.steps)[0]
    steps = np.asarray(record["steps"])
    alive = np.asarray(record["alive"])
    pre = int(np.flatnonzero(steps <= drift_step)[-1])
    return {
        "alive_pre_drift": float(alive[pre]),
        "alive_final": float(alive[-1]),
        "alive_min_after_drift": float(alive[pre:].min()),
        "in_support_final": float(record["in_support"][-1]),
        "error_pre_drift": float(record["error"][pre]),
        "error_final": float(record["error"][-1]),
        "relative_error_final": float(record["relative_error"][-1]),
    }


SUMMARY_KEYS = (
    "alive_pre_drift",
    "alive_final",
    "alive_min_after_drift",
    "in_support_final",
    "error_pre_drift",
    "error_final",
    "relative_error_final",
)
CURVE_KEYS = ("alive", "in_support", "error", "relative_error")


def _init_worker() -> None:
    # Each run is tiny: one thread per process, and the processes take the cores.
    torch.set_num_threads(1)


def _run_job(job: tuple) -> dict:
    return run_one(*job)


def run_drift_toy(
    config: DriftConfig | None = None,
    scenarios: list[str] | None = None,
    methods: tuple[Method, ...] | list[Method] | None = None,
    seeds: list[int] | tuple[int, ...] = (0, 1, 2),
    workers: int = 1,
    progress: bool = True,
) -> dict:
    """Run every scenario x method x seed and aggregate over seeds (mean and std).

    `workers > 1` runs the independent runs in that many spawned processes (results are identical: each run seeds
    its own generators). Returns the dict that `write_results` writes as JSON.
    """
    config = config or DriftConfig()
    scenario_names = list(scenarios or SCENARIOS)
    unknown = sorted(set(scenario_names) - set(SCENARIOS))
    if unknown:
        raise ValueError(f"unknown scenario(s) {unknown}; available: {', '.join(SCENARIOS)}")
    methods = list(methods or DEFAULT_METHODS)
    seeds = list(seeds)
    if not seeds:
        raise ValueError("seeds must name at least one seed")
    # The slowest method first, so the process pool does not end waiting on one long run.
    jobs = [
        (SCENARIOS[s], m, seed, config)
        for m in sorted(methods, key=lambda m: m.quantizer != "transvq")
        for s in scenario_names
        for seed in seeds
    ]
    start = time.perf_counter()
    records = []
    with tqdm(total=len(jobs), desc="drift toy", disable=not progress) as bar:
        if workers <= 1:
            # Multi-threaded kernels on these tiny tensors are slower, and much slower on a busy machine.
            threads = torch.get_num_threads()
            torch.set_num_threads(1)
            try:
                for job in jobs:
                    bar.set_postfix_str(f"{job[0].name}/{job[1].label}/seed {job[2]}")
                    records.append(_run_job(job))
                    bar.update()
            finally:
                torch.set_num_threads(threads)
        else:
            context = multiprocessing.get_context("spawn")  # fork after torch has run threads can deadlock
            with ProcessPoolExecutor(workers, mp_context=context, initializer=_init_worker) as pool:
                for future in as_completed([pool.submit(_run_job, job) for job in jobs]):
                    records.append(future.result())
                    bar.update()
    wall_seconds = time.perf_counter() - start
    return aggregate(records, config, scenario_names, methods, seeds, wall_seconds, workers)


def aggregate(records, config, scenario_names, methods, seeds, wall_seconds, workers) -> dict:
    """Mean and std over seeds of the summaries and of the curves, keyed by scenario then method label."""
    by_key = {(r["scenario"], r["method"], r["seed"]): r for r in records}
    summary, curves, runs = {}, {}, []
    for name in scenario_names:
        scenario = SCENARIOS[name]
        summary[name], curves[name] = {}, {}
        for method in methods:
            group = [by_key[(name, method.label, seed)] for seed in seeds]
            per_seed = [run_summary(r, scenario, config) for r in group]
            summary[name][method.label] = {key: _mean_std([s[key] for s in per_seed]) for key in SUMMARY_KEYS}
            curve = {"steps": group[0]["steps"]}
            for key in CURVE_KEYS:
                values = np.asarray([r[key] for r in group])
                curve[f"{key}_mean"] = values.mean(axis=0).tolist()
                curve[f"{key}_std"] = values.std(axis=0).tolist()
            curve["final_codes"] = {str(r["seed"]): r["final_codes"] for r in group}
            curve["final_used"] = {str(r["seed"]): r["final_used"] for r in group}
            curves[name][method.label] = curve
            runs += [
                {"scenario": name, "method": method.label, "seed": r["seed"], "seconds": r["seconds"], **s}
                for r, s in zip(group, per_seed, strict=True)
            ]
    return {
        "config": {**asdict(config), "eval_every": config.eval_every},
        "seeds": seeds,
        "scenarios": {name: asdict(SCENARIOS[name]) for name in scenario_names},
        "methods": {m.label: {"quantizer": m.quantizer, "kwargs": m.build_kwargs(config.steps)} for m in methods},
        "summary": summary,
        "curves": curves,
        "runs": runs,
        "wall_seconds": wall_seconds,
        "workers": workers,
        "torch": torch.__version__,
        "cpu_count": os.cpu_count(),
    }


def _mean_std(values: list[float]) -> dict:
    # Population std (ddof=0): with 3 seeds it is a spread, not an estimate to build intervals on.
    return {"mean": float(np.mean(values)), "std": float(np.std(values))}


# ---------------------------------------------------------------------------------------------------------- output


def format_table(results: dict) -> str:
    """A markdown table: one row per scenario x method, mean +- std over seeds."""
    header = (
        "| scenario | quantizer | alive pre-drift | alive final | min alive after drift | codes in support | "
        "error final | error / var final |"
    )
    lines = [header, "|---|---|---:|---:|---:|---:|---:|---:|"]
    for name, by_method in results["summary"].items():
        for label, s in by_method.items():
            lines.append(
                f"| {name} | {label} | {_pct(s['alive_pre_drift'])} | {_pct(s['alive_final'])} | "
                f"{_pct(s['alive_min_after_drift'])} | {_pct(s['in_support_final'])} | "
                f"{_num(s['error_final'])} | {_num(s['relative_error_final'])} |"
            )
    return "\n".join(lines)


def _pct(stat: dict) -> str:
    return f"{stat['mean']:.0%} ± {stat['std']:.0%}"


def _num(stat: dict) -> str:
    return f"{stat['mean']:.3g} ± {stat['std']:.2g}"


def write_results(results: dict, json_path: str | Path, figure_dir: str | Path | None = None, dpi: int = 90) -> list:
    """Write the JSON and, when `figure_dir` is given, two PNGs per scenario; returns the paths written."""
    json_path = Path(json_path)
    json_path.parent.mkdir(parents=True, exist_ok=True)
    json_path.write_text(dumps_compact(results))
    written = [json_path]
    if figure_dir is not None:
        written += plot_results(results, figure_dir, dpi=dpi)
    return written


def dumps_compact(results: dict, digits: int = 4) -> str:
    """JSON with floats to `digits` significant digits and each innermost list on one line.

    Four digits resolve a fraction of 64 codes and an error to 0.1 %; the full precision would only triple the file.
    """

    def rounded(value):
        if isinstance(value, float):
            return float(f"{value:.{digits}g}")
        if isinstance(value, dict):
            return {key: rounded(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [rounded(item) for item in value]
        return value

    text = json.dumps(rounded(results), indent=1)
    # a list holding no string, list or dict (numbers, booleans) goes on one line
    return re.sub(r"\[\s+([^\[\]{}\"]*?)\s+\]", lambda m: "[" + re.sub(r"\s+", " ", m.group(1)) + "]", text)


def plot_results(results: dict, figure_dir: str | Path, dpi: int = 90) -> list[Path]:
    """`{scenario}_curves.png` (alive fraction and error vs step) and `{scenario}_codes.png` (final codes)."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a server; set before pyplot is imported
    import matplotlib.pyplot as plt

    figure_dir = Path(figure_dir)
    figure_dir.mkdir(parents=True, exist_ok=True)
    labels = list(results["methods"])
    colors = {label: plt.get_cmap("tab10")(i % 10) for i, label in enumerate(labels)}
    written = []
    for name, curves in results["curves"].items():
        scenario = SCENARIOS[name]
        path = figure_dir / f"{name}_curves.png"
        _plot_curves(plt, scenario, curves, colors, results, path, dpi)
        written.append(path)
        path = figure_dir / f"{name}_codes.png"
        _plot_codes(plt, scenario, curves, colors, results, path, dpi)
        written.append(path)
    return written


def _plot_curves(plt, scenario, curves, colors, results, path, dpi) -> None:
    steps_total = results["config"]["steps"]
    fig, axes = plt.subplots(1, 2, figsize=(12, 3.6))
    for label, curve in curves.items():
        steps = np.asarray(curve["steps"])
        for ax, key in zip(axes, ("alive", "error"), strict=True):
            mean, std = np.asarray(curve[f"{key}_mean"]), np.asarray(curve[f"{key}_std"])
            ax.plot(steps, mean, label=label, color=colors[label], lw=1.5)
            ax.fill_between(steps, mean - std, mean + std, color=colors[label], alpha=0.15, lw=0)
    start, end = scenario.change_steps(steps_total)
    for ax in axes:
        if end > start:
            ax.axvspan(start, end, color="0.9", zorder=0)
        else:
            ax.axvline(start, color="0.6", ls="--", lw=1, zorder=0)
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("alive fraction (codes used)")
    axes[0].set_ylim(-0.02, 1.02)
    axes[1].set_ylabel("quantization error (MSE)")
    axes[1].set_yscale("log")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, fontsize=8, loc="center right")
    seeds = len(results["seeds"])
    change = "drift shaded" if end > start else "jump dashed"
    fig.suptitle(f"{scenario.name}: {scenario.description} (mean ± std over {seeds} seed(s); {change})", fontsize=10)
    fig.tight_layout(rect=(0, 0, 0.9, 1))  # leave the right margin to the legend
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def _plot_codes(plt, scenario, curves, colors, results, path, dpi) -> None:
    seed = str(results["seeds"][0])
    labels = list(curves)
    ncols = min(3, len(labels))
    nrows = math.ceil(len(labels) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(3.3 * ncols, 3.1 * nrows), squeeze=False)
    center, radius = scenario.state(1.0)
    start_center, start_radius = scenario.state(0.0)
    data = sample_disc(1200, center, radius, torch.Generator().manual_seed(0)).numpy()
    for ax, label in zip(axes.flat, labels, strict=False):
        codes = np.asarray(curves[label]["final_codes"][seed])
        used = np.asarray(curves[label]["final_used"][seed], dtype=bool)
        ax.scatter(data[:, 0], data[:, 1], s=1, color="0.75")
        ax.add_patch(plt.Circle(start_center, start_radius, fill=False, ls=":", color="0.4"))
        ax.scatter(codes[used, 0], codes[used, 1], s=12, color=colors[label], label="used")
        ax.scatter(codes[~used, 0], codes[~used, 1], s=14, marker="x", color="black", label="unused")
        ax.set_title(f"{label}: {used.mean():.0%} used", fontsize=9)
        ax.set_aspect("equal", adjustable="datalim")
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(labels) :]:
        ax.axis("off")
    fig.suptitle(
        f"{scenario.name}: final codes (seed {seed}) on the final data; dotted circle = the initial disc", fontsize=10
    )
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    plt.close(fig)


def default_workers() -> int:
    """One process per core (each run is single-threaded)."""
    return max(1, os.cpu_count() or 1)


__all__ = [
    "DEFAULT_METHODS",
    "SCENARIOS",
    "DriftConfig",
    "Method",
    "Scenario",
    "alive_fraction",
    "codebook_metrics",
    "format_table",
    "inside_support_fraction",
    "plot_results",
    "quantization_error",
    "quantizer_metrics",
    "run_drift_toy",
    "run_one",
    "write_results",
]

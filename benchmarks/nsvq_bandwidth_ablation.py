#!/usr/bin/env python
"""Ablation of NSVQ's bandwidth rule: the drift toy (every scenario, jump included) and the embedded real-image set.

    python benchmarks/nsvq_bandwidth_ablation.py            # 3 drift-toy seeds, 2 image seeds (~15 min, 2 cores)
    python benchmarks/nsvq_bandwidth_ablation.py --quick    # a smoke run of about a minute

Same methods in both parts: vanilla, ema, simvq, transvq (also with the authors' N(0, 1) per-code table); NSVQ with the authors' setting (U(-1/K, 1/K) init,
tau_0 = 1 halved every period) with and without the data-dependent init; NSVQ adaptive (tau = rho x the running
quantization error per element, data init) over a grid of rho, and at the default rho from the uniform init.
Drift toy: `hf_nsvq.drift_toy` (K = 64 in 2-D, 2000 steps); alive fraction and relative quantization error at the
end of each scenario. Images: the demo's VQ-VAE (K = 1024, D = 16, 400 steps of batch 32 on 16 px crops);
utilisation, perplexity, PSNR and SSIM on the held-out crops. Prints both tables and writes
benchmarks/results/nsvq_bandwidth_ablation.json and .png (the --quick run writes *_quick files instead).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from dataclasses import replace
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hf_nsvq.demo import DemoConfig
from hf_nsvq.demo.data import load_split_tensor, model_range_batches
from hf_nsvq.demo.train import train_and_evaluate
from hf_nsvq.drift_toy import SCENARIOS, DriftConfig, Method, default_workers, run_drift_toy

RESULTS_DIR = Path(__file__).resolve().parent / "results"
RHO_GRID = (8.0, 16.0, 32.0, 64.0)
DEFAULT_RHO = 32.0
IMAGE_METRICS = ("utilisation", "perplexity", "psnr", "ssim")


def ablation_methods(rho_grid=RHO_GRID) -> list[Method]:
    """The ablated methods; NSVQ's decay period is 10 % of the steps in the drift toy, one epoch on images."""
    quiet = {"check_finite": False}  # synthetic data: skip the per-step finiteness sync
    authors = {"bandwidth": 1.0, "bandwidth_schedule": "exponential", **quiet}
    methods = [
        Method("vanilla", "vanilla", quiet),
        Method("ema", "ema", quiet),
        Method("simvq", "simvq", quiet),
        Method("transvq", "transvq", {"width": 64, **quiet}),
        # TransVQ with the authors' N(0, 1) per-code table (the default starts it at the shared path's scale)
        Method("transvq, P ~ N(0, 1)", "transvq", {"width": 64, "code_embedding_std": 1.0, **quiet}),
        Method("nsvq authors", "nsvq", {**authors, "codebook_init": "uniform"}, steps_per_period_fraction=0.1),
        Method(
            "nsvq authors + data init", "nsvq", {**authors, "codebook_init": "data"}, steps_per_period_fraction=0.1
        ),
    ]
    adaptive = {"bandwidth_schedule": "adaptive", **quiet}
    for rho in rho_grid:
        methods.append(Method(f"nsvq adaptive rho={rho:g}", "nsvq", {**adaptive, "relative_bandwidth": rho}))
    methods.append(
        Method(
            f"nsvq adaptive rho={DEFAULT_RHO:g}, uniform init",
            "nsvq",
            {**adaptive, "relative_bandwidth": DEFAULT_RHO, "codebook_init": "uniform"},
        )
    )
    return methods


def image_kwargs(method: Method) -> dict:
    """The drift toy's kwargs minus its toy-only settings; the image run keeps TransVQ at its default width and
    lets the demo set NSVQ's period to one epoch (the authors' per-epoch halving)."""
    kwargs = {k: v for k, v in method.kwargs.items() if k != "check_finite"}
    if method.quantizer == "transvq":
        kwargs.pop("width", None)
    return kwargs


def run_images(methods: list[Method], seeds: list[int], config: DemoConfig, max_train, max_eval) -> dict:
    train_images = load_split_tensor("train", config.resolution, max_train)
    eval_images = load_split_tensor("validation", config.resolution, max_eval)
    eval_batches = model_range_batches(eval_images)
    runs = []
    for method, seed in tqdm([(m, s) for m in methods for s in seeds], desc="image runs"):
        record, metrics = train_and_evaluate(
            method.quantizer, config, train_images, eval_batches, seed=seed, quantizer_kwargs=image_kwargs(method)
        )
        runs.append({"method": method.label, "seed": seed, "seconds": record.seconds,
                     **{name: metrics[name] for name in IMAGE_METRICS}})  # fmt: skip
    summary = {}
    for method in methods:
        members = [r for r in runs if r["method"] == method.label]
        summary[method.label] = {
            name: {
                "mean": statistics.fmean(r[name] for r in members),
                "std": statistics.pstdev(r[name] for r in members),
            }
            for name in IMAGE_METRICS
        }
    return {
        "config": vars(config),
        "num_train_images": len(train_images),
        "num_eval_images": len(eval_images),
        "seeds": seeds,
        "summary": summary,
        "runs": runs,
    }


def drift_table(drift: dict) -> str:
    scenarios = list(drift["summary"])
    header = "| method | " + " | ".join(f"{s}: alive / rel. error" for s in scenarios) + " | worst alive |"
    lines = [header, "|---|" + "---:|" * (len(scenarios) + 1)]
    for label in drift["methods"]:
        cells, worst = [], 1.0
        for s in scenarios:
            stats = drift["summary"][s][label]
            alive, error = stats["alive_final"], stats["relative_error_final"]
            worst = min(worst, alive["mean"])
            cells.append(f"{alive['mean']:.0%} ± {alive['std']:.0%} / {error['mean']:.3f}")
        lines.append(f"| {label} | " + " | ".join(cells) + f" | {worst:.0%} |")
    return "\n".join(lines)


def image_table(images: dict) -> str:
    lines = ["| method | utilisation | perplexity | PSNR (dB) | SSIM |", "|---|---:|---:|---:|---:|"]
    for label, stats in images["summary"].items():
        u, p, psnr, ssim = (stats[name] for name in IMAGE_METRICS)
        lines.append(
            f"| {label} | {u['mean']:.1%} ± {u['std']:.1%} | {p['mean']:.0f} ± {p['std']:.0f} | "
            f"{psnr['mean']:.2f} ± {psnr['std']:.2f} | {ssim['mean']:.3f} ± {ssim['std']:.3f} |"
        )
    return "\n".join(lines)


def plot(drift: dict | None, images: dict | None, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    panels = ([("drift", s) for s in drift["summary"]] if drift else []) + (
        [("images", "utilisation"), ("images", "psnr")] if images else []
    )
    labels = list(drift["methods"]) if drift else list(images["summary"])
    fig, axes = plt.subplots(1, len(panels), figsize=(3.2 * len(panels), 4.8), sharey=False)
    axes = np.atleast_1d(axes)
    colors = [plt.get_cmap("tab20")(i % 20) for i in range(len(labels))]
    for ax, (part, key) in zip(axes, panels, strict=True):
        if part == "drift":
            stats = [drift["summary"][key][label]["alive_final"] for label in labels]
            title, scale = f"drift toy: {key}\nalive at end", 100
        else:
            stats = [images["summary"][label][key] for label in labels]
            title, scale = ("images: utilisation (%)", 100) if key == "utilisation" else ("images: PSNR (dB)", 1)
        means = [s["mean"] * scale for s in stats]
        ax.barh(range(len(labels)), means, xerr=[s["std"] * scale for s in stats], color=colors)
        ax.set_yticks(range(len(labels)), labels if ax is axes[0] else [""] * len(labels), fontsize=7)
        ax.invert_yaxis()
        ax.set_title(title, fontsize=9)
        ax.tick_params(axis="x", labelsize=7)
        if key == "psnr":
            ax.set_xlim(min(means) - 1, max(means) + 0.5)
    fig.tight_layout()
    fig.subplots_adjust(left=0.13)  # room for the longest method label
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="smoke run: 100 toy steps, 40 image steps, 1 seed")
    parser.add_argument("--drift_seeds", type=int, default=3)
    parser.add_argument("--image_seeds", type=int, default=2)
    parser.add_argument("--skip_drift", action="store_true")
    parser.add_argument("--skip_images", action="store_true")
    parser.add_argument("--workers", type=int, default=None, help="drift-toy processes (default: one per core)")
    parser.add_argument("--output_dir", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    start = time.perf_counter()
    methods = ablation_methods()
    drift_config = DriftConfig.quick() if args.quick else DriftConfig()
    image_config = replace(DemoConfig(), steps=40) if args.quick else DemoConfig()
    drift_seeds = list(range(1 if args.quick else args.drift_seeds))
    image_seeds = list(range(1 if args.quick else args.image_seeds))
    drift = images = None
    if not args.skip_drift:
        workers = args.workers or (1 if args.quick else default_workers())
        drift = run_drift_toy(drift_config, list(SCENARIOS), methods, drift_seeds, workers=workers)
        drift.pop("curves")  # the per-step curves are the drift toy benchmark's business; keep the summaries
        print(
            f"\nDrift toy (alive fraction and relative error at the end; mean ± std over {len(drift_seeds)} seeds)\n"
        )
        print(drift_table(drift))
    if not args.skip_images:
        max_samples = (2048, 512) if args.quick else (None, None)
        images = run_images(methods, image_seeds, image_config, *max_samples)
        print(f"\nEmbedded images (held-out; mean ± std over {len(image_seeds)} seeds)\n")
        print(image_table(images))
    name = "nsvq_bandwidth_ablation" + ("_quick" if args.quick else "")
    args.output_dir.mkdir(parents=True, exist_ok=True)
    result = {
        "command": "python benchmarks/nsvq_bandwidth_ablation.py" + (" --quick" if args.quick else ""),
        "date": time.strftime("%Y-%m-%d"),
        "torch": torch.__version__,
        "default_rho": DEFAULT_RHO,
        "methods": {m.label: {"quantizer": m.quantizer, "kwargs": m.kwargs} for m in methods},
        "drift_toy": drift,
        "images": images,
        "seconds": time.perf_counter() - start,
    }
    (args.output_dir / f"{name}.json").write_text(json.dumps(result, indent=1, default=str))
    if drift or images:
        plot(drift, images, args.output_dir / f"{name}.png")
    print(f"\nwrote {args.output_dir / name}.json and .png in {result['seconds']:.0f} s")


if __name__ == "__main__":
    main()

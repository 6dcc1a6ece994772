#!/usr/bin/env python
"""Same-budget quality benchmark: every quantizer, K in {1024, 8192}, several seeds, on the embedded sample set.

    python benchmarks/quality.py                      # the full grid (slow on a 2-core CPU: see --help)
    python benchmarks/quality.py --steps 200 --seeds 0 1 --codebook_sizes 1024

Each run trains the demo's small VQ-VAE (hf_nsvq.demo) for `--steps` steps and evaluates it on the held-out crops.
Prints a mean ± std table of utilisation, perplexity, PSNR and SSIM and writes benchmarks/results/quality.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from hf_nsvq.demo import DemoConfig
from hf_nsvq.demo.data import load_split_tensor, model_range_batches
from hf_nsvq.demo.train import train_and_evaluate
from hf_nsvq.quantizers import list_quantizers

METRICS = ("utilisation", "perplexity", "psnr", "ssim", "mse")


def parse_args(argv=None) -> argparse.Namespace:
    defaults = DemoConfig()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quantizers", nargs="+", choices=list_quantizers(), default=list_quantizers())
    parser.add_argument("--codebook_sizes", type=int, nargs="+", default=[1024, 8192])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--batch_size", type=int, default=defaults.batch_size)
    parser.add_argument("--max_train_samples", type=int, default=None)
    parser.add_argument("--max_eval_samples", type=int, default=None)
    parser.add_argument("--output", default="benchmarks/results/quality.json")
    return parser.parse_args(argv)


def main(args: argparse.Namespace) -> None:
    config = DemoConfig(steps=args.steps, batch_size=args.batch_size)
    train_images = load_split_tensor("train", config.resolution, args.max_train_samples)
    eval_images = load_split_tensor("validation", config.resolution, args.max_eval_samples)
    eval_batches = model_range_batches(eval_images)
    runs = []
    grid = [(k, q, s) for k in args.codebook_sizes for q in args.quantizers for s in args.seeds]
    for codebook_size, quantizer, seed in tqdm(grid, desc="runs"):
        record, metrics = train_and_evaluate(quantizer, config, train_images, eval_batches, seed, codebook_size)
        runs.append({"codebook_size": codebook_size, "quantizer": quantizer, "seed": seed, "seconds": record.seconds,
                     **{name: metrics[name] for name in METRICS}})  # fmt: skip
    summary = summarise(runs)
    print(format_table(summary, len(args.seeds)))
    output = Path(args.output)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(
        json.dumps(
            {
                "command": "python benchmarks/quality.py " + " ".join(_argv_of(args)),
                "config": {**vars(args), "demo_model": vars(config)},
                "num_train_images": len(train_images),
                "num_eval_images": len(eval_images),
                "torch": torch.__version__,
                "date": time.strftime("%Y-%m-%d"),
                "summary": summary,
                "runs": runs,
            },
            indent=2,
            default=str,
        )
    )
    print(f"\nwrote {output}")


def summarise(runs: list[dict]) -> list[dict]:
    groups: dict[tuple[int, str], list[dict]] = {}
    for run in runs:
        groups.setdefault((run["codebook_size"], run["quantizer"]), []).append(run)
    summary = []
    for (codebook_size, quantizer), members in groups.items():
        row = {"codebook_size": codebook_size, "quantizer": quantizer, "seeds": len(members)}
        for name in METRICS:
            values = [m[name] for m in members]
            row[name] = {"mean": statistics.fmean(values), "std": statistics.pstdev(values)}
        summary.append(row)
    return summary


def format_table(summary: list[dict], num_seeds: int) -> str:
    lines = [
        f"| K | quantizer | utilisation | perplexity | PSNR (dB) | SSIM |  (mean ± std over {num_seeds} seeds)",
        "|---:|---|---:|---:|---:|---:|",
    ]
    for row in summary:
        u, p, psnr, ssim = (row[name] for name in ("utilisation", "perplexity", "psnr", "ssim"))
        lines.append(
            f"| {row['codebook_size']} | {row['quantizer']} | {u['mean']:.1%} ± {u['std']:.1%} | "
            f"{p['mean']:.1f} ± {p['std']:.1f} | {psnr['mean']:.2f} ± {psnr['std']:.2f} | "
            f"{ssim['mean']:.4f} ± {ssim['std']:.4f} |"
        )
    return "\n".join(lines)


def _argv_of(args: argparse.Namespace) -> list[str]:
    parts = []
    for key, value in vars(args).items():
        if key == "output" or value is None:
            continue
        values = value if isinstance(value, list) else [value]
        parts += [f"--{key}", *map(str, values)]
    return parts


if __name__ == "__main__":
    main(parse_args())

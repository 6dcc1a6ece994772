"""Run the demo: same budget for every quantizer, evaluated on held-out crops, with a table and three figures."""

from __future__ import annotations

import json
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm.auto import tqdm

from .. import __version__
from ..evaluation import code_histogram
from ..modeling import NSVQModel
from ..quantizers import list_quantizers
from .data import load_split_tensor, model_range_batches, to_model_range
from .plots import plot_usage_histograms, plot_utilisation, save_reconstruction_grid
from .train import train_and_evaluate

TABLE_COLUMNS = ("utilisation", "perplexity", "psnr", "ssim", "mse", "train_seconds")


@dataclass
class DemoConfig:
    """The demo's budget and model; the defaults finish in a few minutes on a 2-core CPU."""

    quantizers: list[str] = field(default_factory=list_quantizers)
    steps: int = 400
    batch_size: int = 32
    learning_rate: float = 1e-3
    resolution: int = 16
    codebook_size: int = 1024
    latent_channels: int = 16
    base_channels: int = 16
    downsample_factor: int = 2  # 16px crops -> 8x8 tokens: 2048 tokens a batch for 1024 codes
    log_every: int = 10
    window: int = 50
    seed: int = 0
    max_train_samples: int | None = None
    max_eval_samples: int | None = None


@dataclass
class DemoModels:
    """What `run_demo(..., keep_models=True)` hands on: the trained models and the crops, for downstream use."""

    models: dict[str, NSVQModel]
    train_images: torch.Tensor
    eval_images: torch.Tensor


def run_demo(
    config: DemoConfig, output_dir: str | Path, keep_models: bool = False
) -> list[dict] | tuple[list[dict], DemoModels]:
    """Train and evaluate every quantizer in `config`; write results.{json,md} and the PNGs to `output_dir`.

    Args:
        config (`DemoConfig`): The budget and model.
        output_dir (`str` or `Path`): Where the table and figures go.
        keep_models (`bool`, *optional*, defaults to `False`): Also return a [`DemoModels`] (so `--downstream` reuses
            the trained tokenizers and the decoded crops instead of training and loading them again).

    Returns:
        The result rows, or `(rows, DemoModels)` when `keep_models`.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    train_images = load_split_tensor("train", config.resolution, config.max_train_samples)
    eval_images = load_split_tensor("validation", config.resolution, config.max_eval_samples)
    eval_batches = model_range_batches(eval_images)
    rows, curves, histograms, reconstructions, models = [], {}, {}, {}, {}
    grid_images = to_model_range(eval_images[torch.linspace(0, len(eval_images) - 1, 8).long()])
    for name in tqdm(config.quantizers, desc="quantizers"):
        record, metrics = train_and_evaluate(
            name, config, train_images, eval_batches, provenance={"dataset_name": "embedded", "split": "validation"}
        )
        with torch.no_grad():
            indices = torch.cat([record.model.encode_to_indices(b["pixel_values"]).flatten() for b in eval_batches])
            reconstructions[name] = record.model(grid_images).sample
        histograms[name] = code_histogram(indices, config.codebook_size)
        curves[name] = (record.steps, record.utilisation)
        if keep_models:
            models[name] = record.model
        rows.append(
            {
                "quantizer": name,
                **{key: metrics[key] for key in ("utilisation", "perplexity", "psnr", "ssim", "mse", "dead_codes")},
                "train_seconds": record.seconds,
                "final_train_utilisation": record.utilisation[-1],
                "utilisation_curve": {"step": record.steps, "utilisation": record.utilisation},
            }
        )
    plot_utilisation(curves, config.window, output / "utilisation.png")
    plot_usage_histograms(histograms, output / "code_usage.png")
    save_reconstruction_grid(grid_images, reconstructions, output / "reconstructions.png")
    _write_results(config, rows, len(train_images), len(eval_images), output)
    if keep_models:
        return rows, DemoModels(models, train_images, eval_images)
    return rows


def format_table(rows: list[dict]) -> str:
    """Markdown table of the held-out metrics."""
    lines = [
        "| quantizer | utilisation | perplexity | PSNR (dB) | SSIM | MSE | train s |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['quantizer']} | {row['utilisation']:.1%} | {row['perplexity']:.1f} | {row['psnr']:.2f} | "
            f"{row['ssim']:.4f} | {row['mse']:.5f} | {row['train_seconds']:.0f} |"
        )
    return "\n".join(lines)


def _write_results(config: DemoConfig, rows: list[dict], num_train: int, num_eval: int, output: Path) -> None:
    header = {
        "command": "hf-nsvq demo",
        "config": asdict(config),
        "num_train_images": num_train,
        "num_eval_images": num_eval,
        "data": f"embedded sample set (scikit-image photographs), {config.resolution}px crops; eval on held-out crops",
        "hf_nsvq": __version__,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.machine(),
        "date": time.strftime("%Y-%m-%d"),
    }
    (output / "results.json").write_text(json.dumps({**header, "results": rows}, indent=2))
    summary = (
        f"# hf-nsvq demo\n\n{config.steps} steps, batch {config.batch_size}, K = {config.codebook_size}, "
        f"D = {config.latent_channels}, f = {config.downsample_factor}, {config.resolution}px crops; metrics on "
        f"{num_eval} held-out crops ({num_train} training crops).\n\n{format_table(rows)}\n"
    )
    (output / "results.md").write_text(summary)

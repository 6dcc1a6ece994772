"""`hf-nsvq demo --downstream`: what a tokenizer's codebook does for a prior trained on its tokens.

For each tokenizer, the embedded crops are tokenized, a tiny GPT-2 prior (`hf_nsvq.pipelines.prior`) is trained on the
training tokens with the next-token loss of `training_scripts/train_ar_prior.py`, and its validation cross-entropy on
the held-out tokens is reported together with a grid of samples from `VQTokenARPipeline`.

Read the bits per token together with the utilisation: a collapsed codebook is easy to predict (few codes, low bits)
but carries little about the image; the uniform baseline log2(K) is what a prior that learned nothing scores.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import torch
from tqdm.auto import tqdm

from ..modeling import NSVQModel
from ..pipelines.ar_pipeline import VQTokenARPipeline
from ..pipelines.first_stage import encode_tokens
from ..pipelines.grids import image_grid
from ..pipelines.prior import build_prior, evaluate_prior, prior_nll
from .data import to_model_range

DOWNSTREAM_QUANTIZERS = ("vanilla", "nsvq")
_PRIOR_DEFAULTS = {"n_layer": 2, "n_head": 2, "n_embd": 64, "dropout": 0.0}  # no dropout: a few hundred steps underfit


def run_downstream(
    records: dict,
    train_images: torch.Tensor,
    eval_images: torch.Tensor,
    output_dir: str | Path,
    steps: int = 300,
    batch_size: int = 64,
    learning_rate: float = 1e-3,
    seed: int = 0,
    num_samples: int = 8,
    prior_kwargs: dict | None = None,
) -> list[dict]:
    r"""Train a tiny AR prior on each tokenizer's tokens; write `downstream.{json,md}` and one sample grid each.

    Args:
        records (`dict[str, TrainingRecord | NSVQModel]`): Tokenizers by quantizer name (anything with a `.model`
            is unwrapped), in eval mode.
        train_images (`torch.Tensor`): uint8 crops (N, 3, R, R) the prior trains on.
        eval_images (`torch.Tensor`): uint8 held-out crops (M, 3, R, R) for the validation loss.
        output_dir (`str` or `Path`): Where `downstream.json`, `downstream.md` and `downstream_samples_<name>.png` go.
        steps (`int`, *optional*, defaults to 300): Prior updates per tokenizer.
        batch_size (`int`, *optional*, defaults to 64): Token rows per update.
        learning_rate (`float`, *optional*, defaults to 1e-3): AdamW learning rate.
        seed (`int`, *optional*, defaults to 0): Seeds the prior's init, its batches and the samples.
        num_samples (`int`, *optional*, defaults to 8): Images in each sample grid.
        prior_kwargs (`dict`, *optional*): Overrides of the prior's size for `build_prior` (defaults: 2 layers,
            2 heads, width 64, no dropout).

    Returns:
        One row per tokenizer: `val_loss` (nats/token), `perplexity`, `bits_per_token`, `uniform_bits_per_token`,
        `unigram_bits_per_token`, `token_utilisation`, `train_seconds` and the sample grid's file name.
    """
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, record in tqdm(records.items(), desc="downstream priors"):
        model = getattr(record, "model", record).eval()
        train_tokens, latent_size = tokenize(model, train_images)
        eval_tokens, _ = tokenize(model, eval_images)
        num_codes = model.config.num_vq_embeddings
        start = time.perf_counter()
        prior = train_prior(train_tokens, num_codes, steps, batch_size, learning_rate, seed, prior_kwargs)
        seconds = time.perf_counter() - start
        metrics = evaluate_prior(prior, eval_tokens, num_codes, batch_size=256)
        grid = f"downstream_samples_{name}.png"
        save_samples(model, prior, latent_size, num_samples, seed, output / grid)
        rows.append(
            {
                "quantizer": name,
                "val_loss": metrics["validation_loss"],
                "perplexity": metrics["validation_perplexity"],
                "bits_per_token": metrics["validation_bits_per_token"],
                "uniform_bits_per_token": metrics["uniform_bits_per_token"],
                "unigram_bits_per_token": unigram_bits(train_tokens, eval_tokens, num_codes),
                "token_utilisation": eval_tokens.unique().numel() / num_codes,
                "num_codes": num_codes,
                "num_validation_tokens": metrics["num_validation_tokens"],
                "train_seconds": seconds,
                "samples": grid,
            }
        )
    config = {"steps": steps, "batch_size": batch_size, "learning_rate": learning_rate, "seed": seed}
    config["prior"] = {**_PRIOR_DEFAULTS, **(prior_kwargs or {})}
    _write_results(config, rows, len(train_images), len(eval_images), output)
    return rows


def tokenizers_for_downstream(trained: dict[str, NSVQModel], train_one) -> dict[str, NSVQModel]:
    """The vanilla and NSVQ tokenizers: the demo's own when it trained them, else `train_one(name)` (same budget)."""
    return {name: trained[name] if name in trained else train_one(name) for name in DOWNSTREAM_QUANTIZERS}


@torch.no_grad()
def tokenize(model: NSVQModel, images: torch.Tensor, batch_size: int = 1024) -> tuple[torch.Tensor, list[int]]:
    """Flat raster-order token rows (N, h * w) of uint8 crops, and the grid size [h, w]."""
    grids = torch.cat([encode_tokens(model, to_model_range(batch)) for batch in images.split(batch_size)])
    return grids.flatten(1).cpu(), list(grids.shape[1:])


def train_prior(
    tokens: torch.Tensor,
    num_codes: int,
    steps: int,
    batch_size: int,
    learning_rate: float,
    seed: int,
    prior_kwargs: dict | None = None,
):
    """AdamW on the next-token loss of `train_ar_prior.py` ([BOS] + tokens, K code logits), seeded batches."""
    torch.manual_seed(seed)
    prior = build_prior(num_codes, tokens.shape[1], **{**_PRIOR_DEFAULTS, **(prior_kwargs or {})}).train()
    optimizer = torch.optim.AdamW(prior.parameters(), lr=learning_rate)
    generator = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        batch = tokens[torch.randint(0, len(tokens), (batch_size,), generator=generator)]
        loss = prior_nll(prior, batch, num_codes)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return prior.eval()


def unigram_bits(train_tokens: torch.Tensor, eval_tokens: torch.Tensor, num_codes: int) -> float:
    """Cross-entropy (bits) of the eval tokens under the train tokens' code frequencies (add-one smoothed).

    The context-free baseline: what the prior gains over it is what it learned about spatial structure.
    """
    counts = torch.bincount(train_tokens.flatten(), minlength=num_codes).double() + 1
    log_probs = (counts / counts.sum()).log2()
    return float(-log_probs[eval_tokens.flatten()].mean())


def save_samples(model: NSVQModel, prior, latent_size: list[int], count: int, seed: int, path: Path) -> Path:
    """Sample `count` images with `VQTokenARPipeline` (the tokenizer baked to a stock VQModel) into one PNG grid."""
    pipeline = VQTokenARPipeline(vqvae=model.to_diffusers().eval(), transformer=prior, latent_size=latent_size)
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(batch_size=count, generator=torch.Generator().manual_seed(seed), output_type="np").images
    image_grid(images, columns=count).save(path)
    return path


def format_downstream_table(rows: list[dict]) -> str:
    """Markdown table of the priors' validation metrics."""
    lines = [
        "| tokenizer | token utilisation | val loss (nats) | perplexity | bits/token | unigram bits | uniform bits |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for row in rows:
        lines.append(
            f"| {row['quantizer']} | {row['token_utilisation']:.1%} | {row['val_loss']:.3f} | "
            f"{row['perplexity']:.1f} | {row['bits_per_token']:.2f} | {row['unigram_bits_per_token']:.2f} | "
            f"{row['uniform_bits_per_token']:.2f} |"
        )
    return "\n".join(lines)


def _write_results(config: dict, rows: list[dict], num_train: int, num_eval: int, output: Path) -> None:
    header = {
        "command": "hf-nsvq demo --downstream",
        "config": config,
        "num_train_images": num_train,
        "num_eval_images": num_eval,
        "torch": torch.__version__,
        "date": time.strftime("%Y-%m-%d"),
    }
    (output / "downstream.json").write_text(json.dumps({**header, "results": rows}, indent=2))
    prior = config["prior"]
    summary = (
        f"# hf-nsvq demo: downstream AR prior\n\nGPT-2 prior ({prior['n_layer']} layers, {prior['n_head']} heads, "
        f"width {prior['n_embd']}), {config['steps']} AdamW steps of batch {config['batch_size']} on the tokens of "
        f"{num_train} training crops; validation on the tokens of {num_eval} held-out crops. Lower bits per token is "
        "easier to model, not better: read it with the token utilisation (a collapsed codebook is cheap to predict "
        f"and carries little).\n\n{format_downstream_table(rows)}\n"
    )
    (output / "downstream.md").write_text(summary)

"""Train one small VQ-VAE on the demo images and record its codebook usage along the way."""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from ..evaluation import WindowedCodebookUsage
from ..modeling import NSVQModel
from ..training.model_factory import build_model
from ..training.wrapper import VQTrainingModule
from .data import to_model_range


@dataclass
class TrainingRecord:
    """What one quantizer's run produced."""

    model: NSVQModel
    steps: list[int] = field(default_factory=list)
    utilisation: list[float] = field(default_factory=list)  # over the last `window` steps, at each step logged
    loss: list[float] = field(default_factory=list)
    seconds: float = 0.0


def demo_quantizer_kwargs(name: str, steps_per_epoch: int, extra: dict | None = None) -> dict:
    """NSVQ's decay period (used by the authors' schedule) is one epoch of the demo data; others their defaults."""
    kwargs = dict(extra or {})
    if name == "nsvq":
        kwargs.setdefault("steps_per_period", steps_per_epoch)
    return kwargs


def train_vqvae(
    quantizer: str,
    images: torch.Tensor,
    steps: int,
    batch_size: int,
    learning_rate: float,
    codebook_size: int,
    latent_channels: int,
    base_channels: int,
    downsample_factor: int,
    seed: int,
    log_every: int,
    window: int,
    quantizer_kwargs: dict | None = None,
    position: int = 0,
) -> TrainingRecord:
    """Adam on l2 reconstruction + the quantizer's loss, minibatches drawn with a seeded generator."""
    torch.manual_seed(seed)
    steps_per_epoch = max(1, len(images) // batch_size)
    model = build_model(
        None,
        quantizer,
        demo_quantizer_kwargs(quantizer, steps_per_epoch, quantizer_kwargs),
        images.shape[-1],
        base_channels,
        None,
        downsample_factor,
        1,
        latent_channels,
        codebook_size,
        None,
        8,
        False,
    ).train()
    step_module = VQTrainingModule(model)  # the training script's one-call forward
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    usage = WindowedCodebookUsage(codebook_size, window)
    generator = torch.Generator().manual_seed(seed)
    record = TrainingRecord(model)
    start = time.perf_counter()
    progress = tqdm(range(1, steps + 1), desc=f"train {quantizer}", position=position, leave=False)
    for step in progress:
        batch = to_model_range(images[torch.randint(0, len(images), (batch_size,), generator=generator)])
        reconstruction, quantizer_loss, indices, _ = step_module(batch)
        loss = F.mse_loss(reconstruction, batch) + quantizer_loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        usage.update(indices)
        usage.end_step()
        if step % log_every == 0 or step == steps:
            record.steps.append(step)
            record.utilisation.append(usage.utilisation)
            record.loss.append(float(loss.detach()))
            progress.set_postfix(loss=f"{float(loss.detach()):.4f}", util=f"{usage.utilisation:.0%}")
    record.seconds = time.perf_counter() - start
    model.eval()
    return record


def train_and_evaluate(
    quantizer: str,
    config,
    train_images: torch.Tensor,
    eval_batches: list[dict],
    seed: int | None = None,
    codebook_size: int | None = None,
    quantizer_kwargs: dict | None = None,
    position: int = 1,
    provenance: dict | None = None,
) -> tuple[TrainingRecord, dict]:
    """Train with a `DemoConfig`'s budget and model, then evaluate on `eval_batches`: `(record, metrics)`.

    `seed` and `codebook_size` override the config's (the benchmarks sweep them); `provenance` goes to
    `evaluate_model`.
    """
    from ..evaluation import evaluate_model  # the evaluation stack is only needed here

    record = train_vqvae(
        quantizer,
        train_images,
        config.steps,
        config.batch_size,
        config.learning_rate,
        codebook_size or config.codebook_size,
        config.latent_channels,
        config.base_channels,
        config.downsample_factor,
        config.seed if seed is None else seed,
        config.log_every,
        config.window,
        quantizer_kwargs=quantizer_kwargs,
        position=position,
    )
    return record, evaluate_model(record.model, eval_batches, provenance=provenance)

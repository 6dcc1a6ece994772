"""The GPT-2 prior over code indices: its config, its training inputs and its likelihood.

A token grid (h, w) is read in raster order as h * w tokens; the model sees `[BOS, t_0, ..., t_{n-2}]` and predicts
`[t_0, ..., t_{n-1}]`. Only the K code logits enter the likelihood (the BOS id K is never a target, and never sampled by
`VQTokenARPipeline`), so the loss is the negative log-likelihood of exactly the distribution the pipeline samples from
at temperature 1.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from transformers import GPT2Config, GPT2LMHeadModel


def build_prior(
    num_codes: int, num_tokens: int, n_layer: int = 4, n_head: int = 4, n_embd: int = 256, dropout: float = 0.1
) -> GPT2LMHeadModel:
    """A GPT-2 with vocabulary K + 1 (BOS = K) and `num_tokens` = h * w positions."""
    if n_embd % n_head != 0:
        raise ValueError(f"n_embd got {n_embd}; expected a multiple of n_head = {n_head}")
    config = GPT2Config(
        vocab_size=num_codes + 1,
        n_positions=num_tokens,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=dropout,
        embd_pdrop=dropout,
        attn_pdrop=dropout,
        bos_token_id=num_codes,
        eos_token_id=num_codes,
    )
    return GPT2LMHeadModel(config)


def prior_inputs(tokens: torch.Tensor, bos_token_id: int) -> torch.Tensor:
    """`[BOS, t_0, ..., t_{n-2}]` for flat token rows (B, n)."""
    bos = torch.full((tokens.shape[0], 1), bos_token_id, dtype=torch.long, device=tokens.device)
    return torch.cat([bos, tokens[:, :-1].long()], dim=1)


def prior_nll(model, tokens: torch.Tensor, num_codes: int, reduction: str = "mean") -> torch.Tensor:
    """Negative log-likelihood (nats) of flat token rows (B, n) under the prior, over the K code logits, in fp32."""
    logits = model(input_ids=prior_inputs(tokens, num_codes)).logits[..., :num_codes]
    return F.cross_entropy(logits.float().reshape(-1, num_codes), tokens.reshape(-1).long(), reduction=reduction)


@torch.no_grad()
def evaluate_prior(model, tokens: torch.Tensor, num_codes: int, batch_size: int, reduce=None) -> dict[str, float]:
    r"""Validation loss (nats per token), perplexity and bits per token of flat token rows (M, n).

    Args:
        model (`GPT2LMHeadModel`): The prior (not DDP-wrapped: processes may see different numbers of batches).
        tokens (`torch.Tensor`): This process's share of the validation rows; may be empty.
        num_codes (`int`): K.
        batch_size (`int`): Rows per forward.
        reduce (`Callable`, *optional*): Sums a float64 tensor over processes (every process must call this).
    """
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    stats = torch.zeros(2, dtype=torch.float64)
    for batch in tokens.split(batch_size):
        if len(batch) == 0:  # a process with no validation rows (fewer rows than processes) only joins the reduce
            continue
        batch = batch.to(device)
        stats[0] += float(prior_nll(model, batch, num_codes, reduction="sum"))
        stats[1] += batch.numel()
    model.train(was_training)
    if reduce is not None:
        stats = reduce(stats.to(device)).cpu()
    total, count = float(stats[0]), float(stats[1])
    if count == 0:
        raise ValueError("no validation tokens on any process; expected at least one validation image")
    loss = total / count
    return {
        "validation_loss": loss,
        "validation_perplexity": math.exp(loss),
        "validation_bits_per_token": loss / math.log(2),
        "uniform_bits_per_token": math.log2(num_codes),  # what a prior that learned nothing scores
        "num_validation_tokens": int(count),
    }

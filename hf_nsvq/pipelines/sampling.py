"""Next-token sampling for the autoregressive prior: temperature, top-k, nucleus (top-p), seeded multinomial draws."""

from __future__ import annotations

import torch


def check_sampling_arguments(temperature: float, top_k: int | None, top_p: float | None, vocab_size: int) -> None:
    """Raise `ValueError` on a temperature, top-k or top-p that would not define a distribution."""
    if isinstance(temperature, bool) or not isinstance(temperature, int | float) or not temperature > 0:
        raise ValueError(f"temperature got {temperature!r}; expected a number > 0")
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or not 1 <= top_k):
        raise ValueError(f"top_k got {top_k!r}; expected None or an int >= 1 (at most {vocab_size} matters)")
    if top_p is not None and (isinstance(top_p, bool) or not isinstance(top_p, int | float) or not 0.0 < top_p <= 1.0):
        raise ValueError(f"top_p got {top_p!r}; expected None or a number in (0, 1]")


def filter_logits(logits: torch.Tensor, top_k: int | None = None, top_p: float | None = None) -> torch.Tensor:
    """Set to -inf every logit (last dim) outside the `top_k` largest and outside the nucleus of mass `top_p`.

    The nucleus is the smallest set of most likely tokens whose probability reaches `top_p`; the most likely token is
    always kept. Ties at the k-th value are all kept.
    """
    if top_k is not None and top_k < logits.shape[-1]:
        kth = torch.topk(logits, top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        sorted_logits, order = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        # drop a token when the tokens before it already reach top_p (so the first one always stays)
        drop_sorted = (probs.cumsum(dim=-1) - probs) >= top_p
        drop = torch.zeros_like(drop_sorted).scatter(-1, order, drop_sorted)
        logits = logits.masked_fill(drop, float("-inf"))
    return logits


def sample_tokens(
    logits: torch.Tensor,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | list[torch.Generator] | None = None,
) -> torch.Tensor:
    """One token per row of `logits` (B, V), drawn with `torch.multinomial` from `generator`.

    Probabilities are computed in fp32. A list of generators draws row `i` from `generator[i]` (one seed per image);
    a generator on another device than the logits (e.g. a CPU generator with a model on GPU) draws on its device.
    """
    probs = filter_logits(logits.float() / temperature, top_k, top_p).softmax(dim=-1)
    if isinstance(generator, list):
        if len(generator) != probs.shape[0]:
            raise ValueError(
                f"got {len(generator)} generators for a batch of {probs.shape[0]}; expected one per image"
            )
        rows = [_draw(probs[i : i + 1], g) for i, g in enumerate(generator)]
        return torch.cat(rows)
    return _draw(probs, generator)


def _draw(probs: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    if generator is not None and generator.device != probs.device:
        return torch.multinomial(probs.to(generator.device), 1, generator=generator).squeeze(-1).to(probs.device)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)

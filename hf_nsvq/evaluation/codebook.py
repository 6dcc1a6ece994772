"""Codebook usage over a whole evaluation set or a window of training steps (pure torch).

Utilisation is the fraction of the K codes used at least once; perplexity is exp(entropy) of the usage histogram
(K when every code is used equally often, 1 when one code takes every token). Both are read from ONE histogram of
all tokens seen, never averaged over batches: the mean of per-batch perplexities understates collapse-free usage
whenever batches are smaller than the codebook (see ALGORITHMS.md, "Metrics"). Everything is a `bincount`, so the
cost is O(tokens + K) per update whatever K is (K = 65536 included); no K x K or tokens x K tensor is formed.
"""

from __future__ import annotations

from collections import deque

import torch

from ..quantizers.base import all_reduce_sum_, perplexity_from_counts


def _check_num_codes(num_codes) -> int:
    if isinstance(num_codes, bool) or not isinstance(num_codes, int) or num_codes <= 0:
        raise ValueError(f"num_codes must be a positive int; got {num_codes!r}")
    return num_codes


def code_histogram(indices: torch.Tensor, num_codes: int) -> torch.Tensor:
    """Counts (K,) long of code `indices` (any shape, integer, values in [0, K))."""
    if not isinstance(indices, torch.Tensor) or indices.dtype.is_floating_point or indices.dtype == torch.bool:
        got = indices.dtype if isinstance(indices, torch.Tensor) else type(indices).__name__
        raise ValueError(f"indices must be an integer tensor of code ids; got {got}")
    flat = indices.reshape(-1).long()
    if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= num_codes):
        raise ValueError(
            f"indices must lie in [0, {num_codes}); got values in [{int(flat.min())}, {int(flat.max())}] "
            "(indices from a codebook of another size?)"
        )
    return torch.bincount(flat, minlength=num_codes)


def usage_summary(counts: torch.Tensor) -> dict:
    """Utilisation, perplexity, dead codes and token count of a usage histogram, as JSON-ready numbers."""
    used = int((counts > 0).sum())
    return {
        "num_codes": counts.numel(),
        "num_tokens": int(counts.sum()),
        "utilisation": used / counts.numel(),
        "perplexity": float(perplexity_from_counts(counts)),
        "dead_codes": counts.numel() - used,
    }


class _HistogramStatistics:
    """Statistics read off a (K,) usage histogram `self.counts`; shared by whole-set and windowed usage."""

    counts: torch.Tensor
    num_codes: int

    @property
    def num_tokens(self) -> int:
        return int(self.counts.sum())

    @property
    def utilisation(self) -> float:
        """Fraction of codes used at least once."""
        return float((self.counts > 0).sum()) / self.num_codes

    @property
    def perplexity(self) -> float:
        """exp(entropy) of the histogram, between 1 and K (1.0 while it is empty)."""
        return float(perplexity_from_counts(self.counts))

    @property
    def dead_codes(self) -> int:
        """Number of codes not used."""
        return int((self.counts == 0).sum())


class CodebookUsage(_HistogramStatistics):
    """Histogram of the code indices seen since the last `reset()`.

    Under torch.distributed each process counts its own tokens; `all_reduce()` then sums the histograms, so every
    process reads the usage of the whole evaluation set. Call it once, after the last `update` (a second call, or an
    `update` followed by another call, would count the earlier tokens again).

    Args:
        num_codes (`int`): Codebook size K.
        device (`torch.device` or `str`, *optional*): Where the histogram lives (put it where the indices are).

    Example:
        ```py
        usage = CodebookUsage(model.config.num_vq_embeddings, device=accelerator.device)
        for batch in dataloader:
            usage.update(model.encode_to_indices(batch["pixel_values"]))
        usage.all_reduce()
        print(usage.utilisation, usage.perplexity, usage.dead_codes)
        ```
    """

    def __init__(self, num_codes: int, device: torch.device | str | None = None):
        self.num_codes = _check_num_codes(num_codes)
        self.counts = torch.zeros(num_codes, dtype=torch.long, device=device)

    def update(self, indices: torch.Tensor) -> None:
        """Count the code indices of one batch (any shape; (B, h, w) or the quantizer's flat (B*h*w,))."""
        self.counts += code_histogram(indices.to(self.counts.device), self.num_codes)

    def all_reduce(self) -> CodebookUsage:
        """Sum the histograms of all processes in place (no-op outside torch.distributed); returns `self`."""
        all_reduce_sum_(self.counts)
        return self

    def reset(self) -> None:
        self.counts.zero_()

    def summary(self) -> dict:
        """`{"num_codes", "num_tokens", "utilisation", "perplexity", "dead_codes"}`."""
        return usage_summary(self.counts)


class WindowedCodebookUsage(_HistogramStatistics):
    """Codebook usage over the last `window` training steps, for "utilisation over a window of steps" logs.

    `update(indices)` adds tokens to the current step (call it once per micro-batch under gradient accumulation);
    `end_step()` closes the step, which enters the window while the oldest step leaves it. The statistics read the
    closed steps only. A running histogram gains each step's counts and loses those of the step that leaves, and each
    step is kept sparse (its distinct codes and their counts), so memory is O(K + window * distinct codes per step)
    rather than O(window * K): at K = 65536 a dense window of 1000 steps would hold half a gigabyte.

    Under torch.distributed, either pass every process's tokens (e.g. `accelerator.gather(indices)`), or keep the
    local ones and set `sync=True`: `end_step` then sums the step's histogram over processes (a collective, so every
    process must call it at every step). Doing both counts every token world-size times.

    Args:
        num_codes (`int`): Codebook size K.
        window (`int`): Number of most recent steps the statistics cover.
        device (`torch.device` or `str`, *optional*): Where the histograms live.
        sync (`bool`, *optional*, defaults to `False`): All-reduce each step's histogram across processes.
    """

    def __init__(self, num_codes: int, window: int, device: torch.device | str | None = None, sync: bool = False):
        self.num_codes = _check_num_codes(num_codes)
        if isinstance(window, bool) or not isinstance(window, int) or window <= 0:
            raise ValueError(f"window must be a positive int (a number of steps); got {window!r}")
        self.window = window
        self.sync = bool(sync)
        self.counts = torch.zeros(num_codes, dtype=torch.long, device=device)
        self._current = torch.zeros_like(self.counts)
        self._steps: deque[tuple[torch.Tensor, torch.Tensor]] = deque()

    def update(self, indices: torch.Tensor) -> None:
        """Add code indices (any shape) to the current step."""
        self._current += code_histogram(indices.to(self.counts.device), self.num_codes)

    def end_step(self) -> None:
        """Close the current step: it enters the window, and the oldest step leaves once `window` are held."""
        if self.sync:
            all_reduce_sum_(self._current)
        codes = self._current.nonzero().squeeze(1)
        self._steps.append((codes, self._current[codes]))
        self.counts += self._current
        self._current.zero_()
        if len(self._steps) > self.window:
            old_codes, old_counts = self._steps.popleft()
            self.counts.index_add_(0, old_codes, old_counts, alpha=-1)

    def reset(self) -> None:
        self.counts.zero_()
        self._current.zero_()
        self._steps.clear()

    def window_counts(self) -> torch.Tensor:
        """A copy of the window's (K,) usage histogram (e.g. for a usage plot)."""
        return self.counts.clone()

    @property
    def num_steps(self) -> int:
        """Closed steps currently in the window (at most `window`)."""
        return len(self._steps)

    def summary(self) -> dict:
        """`CodebookUsage.summary()` of the window, plus `window_steps`."""
        return {**usage_summary(self.counts), "window_steps": self.num_steps}

"""Peak memory of training and evaluating a K = 65536 quantizer, measured in a fresh process for
tests/test_large_codebooks.py (not a test module: pytest collects `test_*.py` only).

`MALLOC_MMAP_THRESHOLD_=131072 python tests/large_codebook_worker.py '<json list of cases>'` prints one JSON line per
case (the fixed threshold makes glibc map and unmap every block above 128 KiB, so the resident size follows the live
tensors instead of a heap that keeps freed blocks). Each case builds its
quantizer, input and optimizer, then resets the process's peak resident set size (Linux: writing 5 to
/proc/self/clear_refs resets VmHWM) and reports how far the peak rose above the resident size at that point while it
trained for `steps` SGD steps, then evaluated (nearest codes of every row, whole-set and windowed usage). Without a
resettable peak (not Linux, or a restricted /proc) it reports `"reset": false` and the caller runs one case per
process instead.
"""

from __future__ import annotations

import ctypes
import gc
import json
import sys
import time
from pathlib import Path

import torch

from hf_nsvq.evaluation import CodebookUsage, WindowedCodebookUsage
from hf_nsvq.quantizers import build_quantizer


def _status_kib(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def _reset_peak() -> bool:
    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)  # hand freed heap back, so the baseline holds live memory only
    except (OSError, AttributeError):
        pass
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return _status_kib("VmHWM") <= _status_kib("VmRSS") + 1024  # the reset took (within 1 MiB)


def run_case(name: str, num_codes: int, dim: int, rows: int, steps: int, block_elements: int, kwargs: dict) -> dict:
    torch.manual_seed(0)
    quantizer = build_quantizer(name, num_codes, dim, distance_block_elements=block_elements, **kwargs).train()
    z = torch.randn(1, dim, rows // 32, 32)
    optimizer = torch.optim.SGD(quantizer.parameters(), lr=0.1)
    reset = _reset_peak()
    baseline_kib = _status_kib("VmRSS")
    start = time.perf_counter()
    losses = []
    for _ in range(steps):
        quant, loss, _ = quantizer(z)
        (loss + quant.square().mean()).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(float(loss.detach()))
    quantizer.eval()
    usage = CodebookUsage(num_codes)
    windowed = WindowedCodebookUsage(num_codes, window=4)
    with torch.no_grad():
        for chunk in z.split(max(1, z.shape[2] // 4), dim=2):  # evaluation in batches, as a dataloader would give
            codes = quantizer.encode_indices(chunk)
            usage.update(codes)
            windowed.update(codes)
            windowed.end_step()
    return {
        "name": name,
        "num_codes": num_codes,
        "dim": dim,
        "rows": z.shape[2] * z.shape[3],
        "block_elements": block_elements,
        "reset": reset,
        "peak_growth_bytes": (_status_kib("VmHWM") - baseline_kib) * 1024,
        "seconds": time.perf_counter() - start,
        "losses": losses,
        "utilisation": usage.utilisation,
        "window_tokens": windowed.num_tokens,
        "tokens": usage.num_tokens,
        "nsvq_step": int(quantizer.step) if hasattr(quantizer, "step") else None,
    }


if __name__ == "__main__":
    torch.set_num_threads(1)
    # one small case first, so the measured ones do not pay for lazily allocated runtime buffers (autograd, BLAS)
    run_case("nsvq", 16, 4, 64, 1, 1 << 20, {})
    for case in json.loads(sys.argv[1]):
        print(json.dumps(run_case(**case)), flush=True)

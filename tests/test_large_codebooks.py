"""K = 65536 codes: training and evaluation work, and memory is bounded by the distance block, not by tokens x K.

The peak memory is measured in a fresh process (tests/large_codebook_worker.py), at quantizer level, for vanilla,
NSVQ and TransVQ at D = 8 and D = 64 with `distance_block_elements` = 2**20 (4 MiB fp32 blocks). TransVQ runs at
width 16 here (its default 256 makes the codebook map hold about 16x more activations: O(K * width) per step, on top
of what is measured here). Counting usage at K = 65536 is also tested on its own in
tests/test_evaluation.py::test_codebook_usage_scales_to_65536_codes.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import tiny_model_config
from training_helpers import SUBPROCESS_ENV, one_thread

from hf_nsvq import NSVQModel
from hf_nsvq.evaluation import evaluate_model
from hf_nsvq.training.wrapper import VQTrainingModule

K = 65536
ROWS = 1024  # tokens per step: a full fp32 distance matrix would be ROWS x K x 4 bytes = 256 MiB
BLOCK = 1 << 20  # elements of one fp32 distance block: 4 MiB, 16 rows of 65536 distances
MiB = 1 << 20
KWARGS = {"transvq": {"width": 16}}
WORKER = Path(__file__).with_name("large_codebook_worker.py")
CASES = [
    {"name": name, "num_codes": K, "dim": dim, "rows": ROWS, "steps": 2, "block_elements": BLOCK, "kwargs": KWARGS.get(name, {})}
    for dim in (8, 64)
    for name in ("vanilla", "nsvq", "transvq")
]  # fmt: skip
# NSVQ's kernel pass does the most per-block work: once with twice the tokens, once with 16x larger blocks
MORE_TOKENS = {**CASES[1], "rows": 2 * ROWS}
LARGER_BLOCKS = {**CASES[1], "block_elements": 16 * BLOCK}


def run_worker(cases):
    env = {**os.environ, **SUBPROCESS_ENV, "MALLOC_MMAP_THRESHOLD_": "131072"}
    result = subprocess.run(
        [sys.executable, str(WORKER), json.dumps(cases)], capture_output=True, text=True, env=env, timeout=300
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]


@pytest.fixture(scope="module")
def measured():
    cases = [*CASES, MORE_TOKENS, LARGER_BLOCKS]
    results = run_worker(cases)
    if not all(result["reset"] for result in results):  # no resettable peak here: one fresh process per case
        results = [run_worker([case])[0] for case in cases]
    return results


def test_peak_memory_is_bounded_by_the_distance_block_not_by_tokens_times_codes(measured):
    *cases, more_tokens, larger_blocks = measured
    for case in cases:
        label = f"{case['name']} D={case['dim']}"
        rows, dim, growth = case["rows"], case["dim"], case["peak_growth_bytes"]
        # far below one full fp32 distance matrix, and the tokens x K x D tensor of a naive kernel loss
        assert growth < rows * K * 4 / 2 and growth < rows * K * dim * 4 / 10, (label, growth / MiB)
        # what grows is the codebook's own tensors (weights' gradient, NSVQ's K x D kernel sums, TransVQ's map
        # activations over the K codes) plus a few distance blocks
        codebook_bytes = K * (dim + (32 * KWARGS["transvq"]["width"] if case["name"] == "transvq" else 0)) * 4
        assert growth < 6 * codebook_bytes + 4 * BLOCK * 4 + 16 * MiB, (label, growth / MiB)
        assert all(torch.isfinite(torch.tensor(case["losses"])))
        assert case["tokens"] == case["window_tokens"] == rows and 0 < case["utilisation"] <= rows / K
        if case["name"] == "nsvq":
            assert case["nsvq_step"] == case_steps(case)
    # twice the tokens cost no more memory; 16x larger blocks do (so the measure sees the blocks)
    nsvq_d8 = cases[1]
    assert more_tokens["peak_growth_bytes"] < nsvq_d8["peak_growth_bytes"] + 8 * MiB
    assert larger_blocks["peak_growth_bytes"] > nsvq_d8["peak_growth_bytes"] + 16 * BLOCK * 4


def case_steps(case) -> int:
    return next(c["steps"] for c in CASES if c["name"] == case["name"] and c["dim"] == case["dim"])


@pytest.mark.parametrize("dim", [8, 64])
@pytest.mark.parametrize("name", ["vanilla", "nsvq", "transvq"])
def test_a_65536_code_model_trains_and_evaluates(name, dim):
    torch.manual_seed(0)
    kwargs = {"distance_block_elements": BLOCK, **KWARGS.get(name, {})}
    config = tiny_model_config(num_vq_embeddings=K, latent_channels=dim, norm_num_groups=4)
    model = NSVQModel(**config, quantizer_type=name, quantizer_kwargs=kwargs).train()
    module = VQTrainingModule(model)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    images = torch.rand(8, 3, 16, 16) * 2 - 1
    with one_thread():
        for _ in range(2):
            output = module(images[:4])
            (output.reconstruction.square().mean() + output.quantizer_loss).backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
        metrics = evaluate_model(model, [{"pixel_values": images[:4]}, {"pixel_values": images[4:]}])
    assert torch.isfinite(output.quantizer_loss) and output.indices.max() < K
    used = round(metrics["utilisation"] * K)
    assert 1 <= used <= 8 * 8 * 8 and metrics["dead_codes"] == K - used  # at most one code per latent
    assert 1 <= metrics["perplexity"] <= used and metrics["num_images"] == 8
    if name == "nsvq":
        assert int(model.quantize.step) == 2

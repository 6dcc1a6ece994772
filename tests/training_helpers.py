"""Helpers shared by the scale and fault tests: tiny training runs, real launches, per-rank results.

Not a test module (pytest collects `test_*.py` only).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
from accelerate.state import AcceleratorState, GradientState, PartialState
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "training_scripts" / "train_vqvae.py"
WORKER = Path(__file__).with_name("distributed_worker.py")

# A model of a few thousand parameters: every step takes milliseconds, so the runs cost what start-up costs.
TINY = [
    "--resolution", "16", "--base_channels", "8", "--norm_num_groups", "4", "--latent_channels", "4",
    "--num_vq_embeddings", "16", "--layers_per_block", "1", "--no_mid_block_attention", "--downsample_factor", "2",
    "--train_batch_size", "4", "--report_to", "none", "--validation_steps", "1000", "--logging_steps", "1",
]  # fmt: skip

# One intra-op thread for every run these tests start: on a loaded 2-core machine two OpenMP threads spin against
# each other and a tiny step takes 10x longer (0.22 s against 0.025 s measured). Results are unaffected.
SUBPROCESS_ENV = {
    "HF_HUB_OFFLINE": "1",
    "HF_DATASETS_OFFLINE": "1",
    "TRANSFORMERS_OFFLINE": "1",
    "OMP_NUM_THREADS": "1",
}


@contextlib.contextmanager
def one_thread():
    """The in-process counterpart of `SUBPROCESS_ENV`'s OMP_NUM_THREADS=1 (also what makes in-process and subprocess
    runs bitwise comparable); restores the previous count for the tests that follow."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def write_images(folder: Path, count: int, size: int = 20, seed: int = 0) -> Path:
    """`count` real PNG files of random pixels."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for index in range(count):
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(folder / f"image_{index:03d}.png")
    return folder


def reset_accelerate() -> None:
    """Each in-process run builds its own Accelerator; accelerate keeps process-wide singletons."""
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def import_train_vqvae():
    if str(ROOT / "training_scripts") not in sys.path:
        sys.path.insert(0, str(ROOT / "training_scripts"))
    import train_vqvae

    return train_vqvae


def run_in_process(args: list[str]) -> None:
    train_vqvae = import_train_vqvae()
    reset_accelerate()
    try:
        train_vqvae.main(train_vqvae.parse_args(args))
    finally:
        reset_accelerate()


def free_port() -> int:
    # Other test sessions may launch process groups at the same time: never rely on accelerate's default 29500.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def launch_two_processes(
    script_args: list[str], timeout: float, mixed_precision: str = "no"
) -> subprocess.CompletedProcess:
    """`ACCELERATE_USE_CPU=1 accelerate launch --multi_gpu --num_processes 2 tests/distributed_worker.py ...`.

    Raises `subprocess.TimeoutExpired` (after killing the whole process group) when the launch hangs.
    """
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--multi_gpu", "--num_processes", "2",
        "--num_machines", "1", "--mixed_precision", mixed_precision, "--dynamo_backend", "no",
        "--main_process_port", str(free_port()), str(WORKER), *script_args,
    ]  # fmt: skip
    env = {**os.environ, **SUBPROCESS_ENV, "ACCELERATE_USE_CPU": "1"}
    process = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, start_new_session=True
    )
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, 9)  # the launcher and both ranks: its own session
        stdout, stderr = process.communicate()
        raise subprocess.TimeoutExpired(command, timeout, stdout, stderr) from None
    return subprocess.CompletedProcess(command, process.returncode, stdout, stderr)

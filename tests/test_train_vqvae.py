"""training_scripts/train_vqvae.py: real launches on tiny local data, exact resume, and the up-front errors."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from accelerate.state import AcceleratorState, GradientState, PartialState
from PIL import Image

from hf_nsvq import NSVQModel

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "training_scripts"))
import train_vqvae  # noqa: E402

TINY = [
    "--resolution", "16", "--base_channels", "8", "--norm_num_groups", "4", "--latent_channels", "4",
    "--num_vq_embeddings", "16", "--layers_per_block", "1", "--no_mid_block_attention", "--downsample_factor", "2",
    "--train_batch_size", "4", "--report_to", "none", "--validation_steps", "1000", "--logging_steps", "1",
]  # fmt: skip


def write_images(folder: Path, count: int, size: int = 20) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for index in range(count):
        pixels = rng.integers(0, 256, (size, size, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"image_{index:03d}.png")
    return folder


@pytest.fixture
def fresh_accelerate():
    """Each in-process run builds its own Accelerator; accelerate keeps process-wide singletons."""
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    PartialState._reset_state()


def run_in_process(args: list[str]) -> None:
    train_vqvae.main(train_vqvae.parse_args(args))


@pytest.mark.parametrize("quantizer, kwargs", [("nsvq", "{}"), ("transvq", '{"width": 16}')])
def test_accelerate_launch_trains_and_writes_loadable_outputs(tmp_path, quantizer, kwargs):
    data = write_images(tmp_path / "images", 12)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "training_scripts" / "train_vqvae.py"),
        "--train_data_dir", str(data), "--quantizer", quantizer, "--quantizer_kwargs", kwargs,
        "--max_train_steps", "3", "--checkpointing_steps", "2", "--output_dir", str(out), *TINY,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    model = NSVQModel.from_pretrained(out).eval()
    assert model.config.quantizer_type == quantizer
    assert model.config.scaling_factor != 0.18215  # estimated from the latents, not the VQModel default
    from diffusers import VQModel

    stock = VQModel.from_pretrained(out / "vqvae").eval()
    images = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(stock(images).sample, model(images).sample, rtol=0, atol=1e-5)
    config = json.loads((out / "training_config.json").read_text())
    assert config["global_step"] == 3 and config["num_train_images"] == 12
    assert (out / "checkpoint-2" / "checkpoint_complete").exists()
    assert (out / "README.md").exists() and list((out / "validation").glob("*.png"))
    if quantizer == "nsvq":
        assert int(model.quantize.step) == 3  # one bandwidth step per training forward


@pytest.mark.parametrize("quantizer", ["nsvq", "ema"])
def test_resume_continues_exactly(tmp_path, fresh_accelerate, quantizer):
    data = str(write_images(tmp_path / "images", 16))
    common = ["--train_data_dir", data, "--quantizer", quantizer, "--random_flip", "--random_crop", *TINY]
    common += ["--checkpointing_steps", "2", "--bandwidth_period_steps", "1"] if quantizer == "nsvq" else []
    common += ["--checkpointing_steps", "2"] if quantizer == "ema" else []
    run_in_process([*common, "--max_train_steps", "6", "--output_dir", str(tmp_path / "straight")])
    AcceleratorState._reset_state(True), GradientState._reset_state(), PartialState._reset_state()
    run_in_process([*common, "--max_train_steps", "2", "--output_dir", str(tmp_path / "resumed")])
    AcceleratorState._reset_state(True), GradientState._reset_state(), PartialState._reset_state()
    run_in_process(
        [*common, "--max_train_steps", "6", "--output_dir", str(tmp_path / "resumed"), "--resume_from_checkpoint",
         "latest"]
    )  # fmt: skip
    straight = NSVQModel.from_pretrained(tmp_path / "straight").state_dict()
    resumed = NSVQModel.from_pretrained(tmp_path / "resumed").state_dict()
    assert straight.keys() == resumed.keys()
    for key, value in straight.items():
        assert torch.equal(value, resumed[key]), key  # bitwise on CPU: same data order, optimizer, buffers
    if quantizer == "nsvq":
        assert int(resumed["quantize.step"]) == 6


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--dataset_name", "someone/some-faces"], r"--train_data_dir PATH.*--dataset_name embedded"),
        (["--train_data_dir", "{empty}"], r"no images"),
        (["--train_data_dir", "{images}", "--image_column", "pixels"], r"pixels"),
        (["--train_data_dir", "{images}", "--resolution", "18", "--downsample_factor", "4"], r"18.*4"),
        (["--train_data_dir", "{images}", "--resume_from_checkpoint", "{missing}"], r"does not exist"),
        (
            ["--train_data_dir", "{images}", "--quantizer_kwargs", '{"bandwith": 1}'],
            r"unknown key\(s\) \['bandwith'\]",
        ),
        (["--train_data_dir", "{broken}", "--on_bad_image", "fail"], r"broken\.png"),
    ],
)
def test_clear_errors_before_training(tmp_path, fresh_accelerate, extra, message):
    images = write_images(tmp_path / "images", 8)
    (tmp_path / "empty").mkdir()
    broken = write_images(tmp_path / "broken", 8)
    (broken / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    paths = {"empty": tmp_path / "empty", "images": images, "broken": broken, "missing": tmp_path / "nope"}
    args = [str(paths[arg[1:-1]]) if arg[1:-1] in paths else arg for arg in extra]
    out = tmp_path / "out"
    with pytest.raises(Exception, match=message):
        run_in_process([*TINY, *args, "--output_dir", str(out), "--max_train_steps", "1"])
    assert not list(out.glob("checkpoint-*")) and not (out / "config.json").exists()  # nothing trained


def test_unreadable_images_are_skipped_with_a_count(tmp_path, fresh_accelerate):
    folder = write_images(tmp_path / "images", 8)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    run_in_process(
        ["--train_data_dir", str(folder), "--max_train_steps", "1", "--output_dir", str(tmp_path / "o"), *TINY]
    )
    config = json.loads((tmp_path / "o" / "training_config.json").read_text())
    assert config["skipped_images"] == 1 and config["num_train_images"] == 8


def test_vqgan_fc_baked_model_gets_the_scaling_factor_of_its_own_latents(tmp_path, fresh_accelerate):
    """The baked VQGAN-FC latents are the low-dim projections: their scale, not the NSVQModel's, is what an LDM sees."""
    from diffusers import VQModel

    data = str(write_images(tmp_path / "images", 8))
    out = tmp_path / "out"
    run_in_process(["--train_data_dir", data, "--quantizer", "vqgan_fc", "--max_train_steps", "1", "--output_dir",
                    str(out), "--scaling_factor_batches", "2", *TINY])  # fmt: skip
    model = NSVQModel.from_pretrained(out).eval()
    stock = VQModel.from_pretrained(out / "vqvae").eval()
    images = torch.stack(
        [torch.from_numpy(np.asarray(Image.open(p).convert("RGB").resize((16, 16)))).permute(2, 0, 1) for p in
         sorted((tmp_path / "images").glob("*.png"))]
    ).float() / 127.5 - 1  # fmt: skip
    with torch.no_grad():
        stock_std = stock.encode(images).latents.std().item()
        model_std = model.encode(images).latents.std().item()
    assert stock.config.scaling_factor != model.config.scaling_factor
    assert abs(stock.config.scaling_factor * stock_std - 1) < abs(model.config.scaling_factor * stock_std - 1)
    assert abs(model.config.scaling_factor * model_std - 1) < 0.5

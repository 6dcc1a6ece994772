"""training_scripts/train_ldm.py: a real `accelerate launch`, a plain-diffusers reload, exact resume, up-front errors."""

import json
import os
import subprocess
import sys

import pytest
import torch
from diffusers import LDMPipeline, UNet2DModel, VQModel
from downstream_helpers import ROOT, reset_accelerate, save_tokenizer, write_images

sys.path.insert(0, str(ROOT / "training_scripts"))
import train_ldm  # noqa: E402

TINY = [
    "--resolution", "16", "--train_batch_size", "2", "--unet_block_out_channels", "8", "16",
    "--unet_norm_num_groups", "4", "--unet_layers_per_block", "1", "--lr_warmup_steps", "0",
    "--num_validation_images", "2", "--validation_inference_steps", "2", "--scaling_factor_samples", "4",
    "--logging_steps", "1",
]  # fmt: skip


@pytest.fixture
def fresh_accelerate():
    yield
    reset_accelerate()


def run_in_process(args: list[str]) -> None:
    train_ldm.main(train_ldm.parse_args(args))
    reset_accelerate()


def test_accelerate_launch_writes_a_plain_diffusers_ldm_pipeline(tmp_path):
    tokenizer = save_tokenizer(tmp_path / "tokenizer", "nsvq", baked=True)
    data = write_images(tmp_path / "images", 6)
    out = tmp_path / "out"
    command = [
        sys.executable, "-m", "accelerate.commands.launch", "--num_processes", "1", "--num_machines", "1",
        "--mixed_precision", "no", "--dynamo_backend", "no", str(ROOT / "training_scripts" / "train_ldm.py"),
        "--vqvae", str(tokenizer), "--train_data_dir", str(data), "--max_train_steps", "2", "--use_ema",
        "--checkpointing_steps", "1", "--validation_steps", "1", "--output_dir", str(out), *TINY,
    ]  # fmt: skip
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]

    index = json.loads((out / "model_index.json").read_text())
    assert index["_class_name"] == "LDMPipeline"
    assert {name: index[name] for name in ("vqvae", "unet", "scheduler")} == {
        "vqvae": ["diffusers", "VQModel"],
        "unet": ["diffusers", "UNet2DModel"],
        "scheduler": ["diffusers", "DDIMScheduler"],
    }
    config = json.loads((out / "training_config.json").read_text())
    scaling_factor = json.loads((out / "vqvae" / "config.json").read_text())["scaling_factor"]
    assert scaling_factor == config["scaling_factor"] and scaling_factor not in (0.18215, 1.0)
    assert config["global_step"] == 2 and "baked vqvae/" in config["vqvae_source"]
    assert (out / "checkpoint-2" / "checkpoint_complete").exists() and (
        out / "checkpoint-2" / "custom_checkpoint_0.pkl"
    ).is_file()
    assert sorted(path.name for path in (out / "validation").glob("*.png")) == [
        "step-0000001-samples.png",
        "step-0000002-samples.png",
    ]
    assert list((out / "logs").rglob("events.out.tfevents.*")) and (out / "README.md").is_file()

    pipeline = LDMPipeline.from_pretrained(out)  # plain diffusers: no hf_nsvq class involved
    pipeline.set_progress_bar_config(disable=True)
    assert type(pipeline.vqvae) is VQModel and pipeline.scheduler.config.clip_sample is False
    images = pipeline(
        batch_size=2, num_inference_steps=2, generator=torch.Generator().manual_seed(0), output_type="np"
    ).images
    assert images.shape == (2, 16, 16, 3) and 0 <= images.min() <= images.max() <= 1


def test_resume_continues_exactly(tmp_path, fresh_accelerate):
    tokenizer = str(save_tokenizer(tmp_path / "tokenizer", "vanilla"))
    common = ["--vqvae", tokenizer, "--train_data_dir", str(write_images(tmp_path / "images", 8)), "--random_flip"]
    common += ["--use_ema", "--checkpointing_steps", "2", "--validation_steps", "100", "--report_to", "none", *TINY]
    common += ["--lr_scheduler", "constant"]  # a schedule over --max_train_steps would differ between 2 and 3 steps
    run_in_process([*common, "--max_train_steps", "3", "--output_dir", str(tmp_path / "straight")])
    run_in_process([*common, "--max_train_steps", "2", "--output_dir", str(tmp_path / "resumed")])
    resumed_args = [*common, "--max_train_steps", "3", "--output_dir", str(tmp_path / "resumed")]
    run_in_process([*resumed_args, "--resume_from_checkpoint", "latest"])
    straight = UNet2DModel.from_pretrained(tmp_path / "straight" / "unet").state_dict()
    resumed = UNet2DModel.from_pretrained(tmp_path / "resumed" / "unet").state_dict()
    assert straight.keys() == resumed.keys()
    for key, value in straight.items():  # EMA weights: both the EMA and the weights it follows resumed bit for bit
        assert torch.equal(value, resumed[key]), key
    factors = [json.loads((tmp_path / name / "vqvae" / "config.json").read_text())["scaling_factor"] for name in (
        "straight", "resumed")]  # fmt: skip
    assert factors[0] == factors[1]


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--vqvae", "{missing}"], r"expected an existing model folder or a Hub id"),
        (["--unet_attention_levels", "2"], r"--unet_attention_levels got \[2\]; expected levels among 0\.\.1"),
        (["--resolution", "18"], r"resolution 18 is not divisible by the model's downsample factor 4"),
        (["--train_batch_size", "64"], r"fewer than one batch"),
    ],
)
def test_clear_errors_before_training(tmp_path, fresh_accelerate, extra, message):
    paths = {"missing": str(tmp_path / "nope")}
    tokenizer = str(save_tokenizer(tmp_path / "tokenizer", "vanilla", seed=1))
    args = ["--vqvae", tokenizer, "--train_data_dir", str(write_images(tmp_path / "images", 4)), *TINY]
    args += [paths.get(arg[1:-1], arg) for arg in extra]
    out = tmp_path / "out"
    with pytest.raises(ValueError, match=message):
        train_ldm.main(train_ldm.parse_args([*args, "--output_dir", str(out), "--max_train_steps", "1"]))
    assert not (out / "model_index.json").exists() and not list(out.glob("checkpoint-*"))


def test_push_to_hub_fails_before_training_when_offline(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit):
        train_ldm.parse_args(["--vqvae", "x", "--output_dir", str(tmp_path), "--push_to_hub", "--hub_model_id", "a/b"])
    assert "HF_HUB_OFFLINE is set" in capsys.readouterr().err


def test_push_uploads_the_pipeline_folder_without_training_state(tmp_path):
    from hf_nsvq.pipelines.publish import push_pipeline_folder

    class RecordingApi:
        calls = []

        def create_repo(self, repo_id, **kwargs):
            self.calls.append(("create_repo", repo_id, kwargs))

        def upload_folder(self, **kwargs):
            self.calls.append(("upload_folder", kwargs))
            return type("Commit", (), {"commit_url": "https://example.invalid/commit/1"})()

    with pytest.raises(FileNotFoundError, match=r"no model_index\.json"):
        push_pipeline_folder(tmp_path, "user/ldm", api=RecordingApi())
    (tmp_path / "model_index.json").write_text("{}")
    api = RecordingApi()
    assert push_pipeline_folder(tmp_path, "user/ldm", private=True, api=api).endswith("/commit/1")
    (_, repo_id, create), (_, upload) = api.calls
    assert repo_id == "user/ldm" and create["private"] is True and create["exist_ok"] is True
    assert {"checkpoint-*", "logs/*", "token_cache/*"} <= set(upload["ignore_patterns"])
    assert upload["repo_id"] == "user/ldm" and upload["folder_path"] == str(tmp_path)

"""training_scripts/train_ar_prior.py: outputs, validation metrics, the token cache across runs, exact resume, errors."""

import json
import logging
import re
import sys

import numpy as np
import pytest
import torch
from downstream_helpers import ROOT, reset_accelerate, save_tokenizer, write_images
from transformers import GPT2LMHeadModel

from hf_nsvq.pipelines import VQTokenARPipeline

sys.path.insert(0, str(ROOT / "training_scripts"))
import train_ar_prior  # noqa: E402

TINY = [
    "--resolution", "16", "--train_batch_size", "2", "--n_layer", "1", "--n_head", "2", "--n_embd", "16",
    "--lr_warmup_steps", "0", "--lr_scheduler", "constant", "--num_validation_images", "2", "--logging_steps", "1",
    "--validation_fraction", "0.25", "--tokenize_batch_size", "3",
]  # fmt: skip


@pytest.fixture
def fresh_accelerate():
    yield
    reset_accelerate()


def run_in_process(args: list[str]) -> None:
    train_ar_prior.main(train_ar_prior.parse_args(args))
    reset_accelerate()


def test_trains_reuses_cached_tokens_and_resumes_exactly(tmp_path, fresh_accelerate, caplog):
    caplog.set_level(logging.INFO, logger="hf_nsvq.pipelines.token_cache")
    tokenizer = str(save_tokenizer(tmp_path / "tokenizer", "nsvq", baked=True))
    common = ["--vqvae", tokenizer, "--train_data_dir", str(write_images(tmp_path / "images", 8)), *TINY]
    common += ["--token_cache_dir", str(tmp_path / "cache"), "--checkpointing_steps", "2"]

    straight = tmp_path / "straight"
    run_in_process([*common, "--max_train_steps", "3", "--validation_steps", "2", "--output_dir", str(straight)])
    assert "tokenizing 8 images" in caplog.text and "reusing" not in caplog.text
    (entry,) = (tmp_path / "cache").glob("tokens-*.npy")
    written = entry.stat().st_mtime_ns

    index = json.loads((straight / "model_index.json").read_text())
    assert index["vqvae"] == ["diffusers", "VQModel"] and index["transformer"] == ["transformers", "GPT2LMHeadModel"]
    metrics = json.loads((straight / "metrics.json").read_text())
    assert metrics["num_validation_tokens"] == 2 * 16 and metrics["global_step"] == 3  # 2 held-out images, 4 x 4
    assert metrics["validation_perplexity"] == pytest.approx(np.exp(metrics["validation_loss"]))
    assert metrics["validation_bits_per_token"] == pytest.approx(metrics["validation_loss"] / np.log(2))
    assert metrics["uniform_bits_per_token"] == 5.0  # log2(32)
    config = json.loads((straight / "training_config.json").read_text())
    assert config["num_train_sequences"] == 6 and config["num_validation_sequences"] == 2
    assert config["token_cache"] == str(entry) and len(config["tokenizer_sha256"]) == 64
    assert sorted(p.name for p in (straight / "validation").glob("*.png")) == [
        "step-0000002-samples.png",
        "step-0000003-samples.png",
    ]
    assert "| validation_bits_per_token |" in (straight / "README.md").read_text()

    pipeline = VQTokenARPipeline.from_pretrained(straight)
    pipeline.set_progress_bar_config(disable=True)
    images = pipeline(batch_size=2, generator=torch.Generator().manual_seed(0), output_type="np").images
    assert images.shape == (2, 16, 16, 3) and 0 <= images.min() <= images.max() <= 1

    caplog.clear()
    resumed = tmp_path / "resumed"
    run_in_process([*common, "--max_train_steps", "2", "--validation_steps", "2", "--output_dir", str(resumed)])
    run_in_process(
        [*common, "--max_train_steps", "3", "--validation_steps", "2", "--output_dir", str(resumed),
         "--resume_from_checkpoint", "latest"]
    )  # fmt: skip
    assert caplog.text.count("reusing cached tokens") == 2 and "tokenizing" not in caplog.text
    assert entry.stat().st_mtime_ns == written
    expected = GPT2LMHeadModel.from_pretrained(straight / "transformer").state_dict()
    got = GPT2LMHeadModel.from_pretrained(resumed / "transformer").state_dict()
    for key, value in expected.items():  # dropout, data order and optimizer continue bit for bit
        assert torch.equal(value, got[key]), key
    assert json.loads((resumed / "metrics.json").read_text()) == metrics


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--validation_fraction", "1.0"], r"--validation_fraction got 1\.0"),
        (["--n_embd", "15"], r"--n_embd got 15; expected a multiple of --n_head 2"),
        (["--push_to_hub", "--hub_model_id", "a/b"], r"HF_HUB_OFFLINE is set"),
    ],
)
def test_bad_flags_fail_at_parse_time(tmp_path, capsys, monkeypatch, extra, message):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(SystemExit):
        train_ar_prior.parse_args(["--vqvae", "x", "--output_dir", str(tmp_path), *TINY, *extra])
    assert re.search(message, capsys.readouterr().err)


def test_too_few_images_for_a_validation_split_fail_before_training(tmp_path, fresh_accelerate):
    tokenizer = str(save_tokenizer(tmp_path / "tokenizer", "vanilla"))
    args = ["--vqvae", tokenizer, "--train_data_dir", str(write_images(tmp_path / "images", 1)), *TINY]
    with pytest.raises(ValueError, match=r"1 image\(s\) cannot give both training and validation images"):
        train_ar_prior.main(train_ar_prior.parse_args([*args, "--output_dir", str(tmp_path / "out")]))
    assert not (tmp_path / "out" / "model_index.json").exists()

"""`hf-nsvq demo --downstream` end to end on a small budget: AR priors on the demo's own vanilla and NSVQ tokens."""

import json
import math

from PIL import Image

from hf_nsvq.cli import main


def test_demo_downstream_writes_prior_metrics_and_sample_grids(tmp_path, capsys):
    out = tmp_path / "demo"
    main(
        ["demo", "--output_dir", str(out), "--quantizers", "vanilla", "nsvq", "--steps", "3", "--codebook_size", "32",
         "--max_train_samples", "64", "--max_eval_samples", "32", "--batch_size", "8", "--downstream",
         "--downstream_steps", "3"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "| tokenizer | token utilisation |" in printed
    results = json.loads((out / "downstream.json").read_text())
    assert results["config"]["steps"] == 3 and results["num_eval_images"] == 32
    assert [row["quantizer"] for row in results["results"]] == ["vanilla", "nsvq"]
    for row in results["results"]:
        assert math.isfinite(row["bits_per_token"]) and row["bits_per_token"] > 0
        assert row["perplexity"] >= 1 and math.isclose(row["perplexity"], math.exp(row["val_loss"]))
        assert math.isclose(row["bits_per_token"], row["val_loss"] / math.log(2))
        assert row["uniform_bits_per_token"] == math.log2(32) and row["num_codes"] == 32
        assert 0 < row["token_utilisation"] <= 1 and row["num_validation_tokens"] == 32 * 8 * 8
        with Image.open(out / row["samples"]) as image:
            assert image.size == (8 * 16, 16)  # one row of 8 samples of 16 px crops
    assert "| vanilla |" in (out / "downstream.md").read_text()


def test_tokenizers_for_downstream_reuses_trained_models_and_trains_the_rest():
    from hf_nsvq.demo.downstream import tokenizers_for_downstream

    trained = []
    tokenizers = tokenizers_for_downstream(
        {"nsvq": "kept", "simvq": "other"}, lambda name: trained.append(name) or name
    )
    assert tokenizers == {"vanilla": "vanilla", "nsvq": "kept"} and trained == ["vanilla"]

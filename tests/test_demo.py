"""`hf-nsvq demo` end to end on a small budget: real training on the embedded set, held-out metrics, figures."""

import json

from PIL import Image

from hf_nsvq.cli import main


def test_demo_writes_table_json_and_figures(tmp_path, capsys):
    out = tmp_path / "demo"
    main(
        ["demo", "--output_dir", str(out), "--quantizers", "vanilla", "nsvq", "--steps", "4", "--codebook_size", "64",
         "--max_train_samples", "64", "--max_eval_samples", "40", "--batch_size", "8"]
    )  # fmt: skip
    printed = capsys.readouterr().out
    assert "| vanilla |" in printed and "| nsvq |" in printed
    results = json.loads((out / "results.json").read_text())
    assert results["num_train_images"] == 64 and results["num_eval_images"] == 40
    assert [row["quantizer"] for row in results["results"]] == ["vanilla", "nsvq"]
    for row in results["results"]:
        assert 0 < row["utilisation"] <= 1 and 1 <= row["perplexity"] <= 64
        assert row["psnr"] > 0 and -1 <= row["ssim"] <= 1 and row["mse"] > 0
        assert row["utilisation_curve"]["step"][-1] == 4
    assert "| quantizer | utilisation |" in (out / "results.md").read_text()
    for figure in ("utilisation.png", "code_usage.png", "reconstructions.png"):
        with Image.open(out / figure) as image:
            assert image.width > 100 and image.height > 50

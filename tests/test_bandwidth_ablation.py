"""benchmarks/nsvq_bandwidth_ablation.py end to end at toy size: both parts, the tables, the JSON-ready dict, the plot."""

import importlib.util
import json
from dataclasses import replace
from pathlib import Path

import pytest

from hf_nsvq.demo import DemoConfig
from hf_nsvq.drift_toy import DriftConfig, run_drift_toy

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "nsvq_bandwidth_ablation.py"


@pytest.fixture(scope="module")
def ablation():
    spec = importlib.util.spec_from_file_location("nsvq_bandwidth_ablation", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_methods_cover_the_issue_grid(ablation):
    methods = {m.label: m for m in ablation.ablation_methods(rho_grid=(16.0, 32.0))}
    assert {"vanilla", "ema", "simvq", "transvq", "nsvq authors"} <= set(methods)
    assert methods["nsvq authors"].kwargs["bandwidth_schedule"] == "exponential"
    assert methods["nsvq authors"].kwargs["codebook_init"] == "uniform"
    assert methods["nsvq adaptive rho=16"].kwargs["relative_bandwidth"] == 16.0
    assert ablation.image_kwargs(methods["transvq"]) == {}  # the image run keeps TransVQ's default width
    assert "check_finite" not in ablation.image_kwargs(methods["nsvq adaptive rho=32"])


def test_tiny_run_writes_tables_and_plot(ablation, tmp_path):
    methods = [
        m for m in ablation.ablation_methods(rho_grid=(32.0,)) if m.label in ("vanilla", "nsvq adaptive rho=32")
    ]
    drift = run_drift_toy(DriftConfig(steps=12, batch_size=32, eval_points=3, eval_samples=256), ["jump"], methods,
                          [0], progress=False)  # fmt: skip
    drift.pop("curves")
    config = replace(DemoConfig(), steps=2, batch_size=4, codebook_size=32, log_every=1, window=2)
    images = ablation.run_images(methods, [0], config, 64, 16)
    assert set(images["summary"]) == {"vanilla", "nsvq adaptive rho=32"}
    for stats in images["summary"].values():
        assert 0 < stats["utilisation"]["mean"] <= 1 and stats["psnr"]["std"] == 0
    table = ablation.drift_table(drift)
    assert "| nsvq adaptive rho=32 |" in table and "jump: alive / rel. error" in table
    assert "| vanilla |" in ablation.image_table(images)
    json.dumps({"drift_toy": drift, "images": images}, default=str)  # what main() writes
    ablation.plot(drift, images, tmp_path / "ablation.png")
    assert (tmp_path / "ablation.png").stat().st_size > 1000

"""The drift toy: scenarios move as specified, metrics on hand-built codebooks, a tiny run, the CLI."""

import json
import math

import pytest
import torch

from hf_nsvq.cli import main
from hf_nsvq.drift_toy import (
    DEFAULT_METHODS,
    SCENARIOS,
    DriftConfig,
    Method,
    alive_fraction,
    codebook_metrics,
    inside_support_fraction,
    quantization_error,
    quantizer_metrics,
    run_drift_toy,
    run_one,
    run_summary,
)
from hf_nsvq.quantizers import build_quantizer

TINY = DriftConfig(steps=12, batch_size=32, eval_points=3, eval_samples=256)


def moments(scenario, progress, num=20000):
    """Sample mean and E||x - mean||^2 (= r^2 / 2 for a uniform disc of radius r)."""
    x = scenario.sample(num, progress, torch.Generator().manual_seed(0))
    mean = x.mean(dim=0)
    return mean, float((x - mean).pow(2).sum(dim=1).mean())


@pytest.mark.parametrize(
    "name, start_mean, end_mean, start_radius, end_radius",
    [
        ("translation", (0, 0), (4, 0), 1.0, 1.0),
        ("shrinking", (0, 0), (0, 0), 1.0, 0.25),
        ("expansion", (0, 0), (0, 0), 1.0, 4.0),
        ("jump", (0, 0), (4, 0), 1.0, 1.0),
    ],
)
def test_scenarios_move_as_specified(name, start_mean, end_mean, start_radius, end_radius):
    scenario = SCENARIOS[name]
    for progress, mean, radius in ((0.0, start_mean, start_radius), (1.0, end_mean, end_radius)):
        got_mean, spread = moments(scenario, progress)
        assert torch.allclose(got_mean, torch.tensor(mean, dtype=torch.float32), atol=0.03 * radius)
        assert spread == pytest.approx(radius**2 / 2, rel=0.03)
        points = scenario.sample(5000, progress, torch.Generator().manual_seed(1))
        assert float((points - torch.tensor(mean, dtype=torch.float32)).norm(dim=1).max()) <= radius * (1 + 1e-5)


def test_drift_is_stationary_outside_its_window_and_a_jump_is_abrupt():
    translation = SCENARIOS["translation"]
    assert translation.state(0.0) == translation.state(translation.drift_start - 1e-9)
    assert translation.state(translation.drift_end) == translation.state(1.0)
    halfway = (translation.drift_start + translation.drift_end) / 2
    assert translation.state(halfway)[0] == pytest.approx((2.0, 0.0))
    # the radius changes geometrically: halfway through a 4x shrink it is 1/2
    shrinking = SCENARIOS["shrinking"]
    assert shrinking.state((shrinking.drift_start + shrinking.drift_end) / 2)[1] == pytest.approx(0.5)
    jump = SCENARIOS["jump"]
    assert jump.state(0.5 - 1e-9)[0] == (0.0, 0.0)
    assert jump.state(0.5)[0] == (4.0, 0.0)
    assert jump.change_steps(2000) == (1000, 1000)


def test_metrics_on_hand_built_codebooks():
    samples = SCENARIOS["translation"].sample(1000, 0.0, torch.Generator().manual_seed(0))
    num_codes = 16
    # every code at one point: nearest-code ties all go to code 0, so one code of K is used
    alive, error = codebook_metrics(torch.zeros(num_codes, 2), samples)
    assert alive == pytest.approx(1 / num_codes)
    assert error == pytest.approx(float(samples.pow(2).sum(dim=1).mean()))
    # the codes are the points themselves: everything used, zero error
    alive, error = codebook_metrics(samples[:num_codes].clone(), samples[:num_codes])
    assert (alive, error) == (1.0, 0.0)
    # half the codes far from the data are never used
    codebook = torch.cat([samples[:8], torch.full((8, 2), 100.0)])
    assert codebook_metrics(codebook, samples)[0] == pytest.approx(0.5)
    assert alive_fraction(torch.tensor([3, 3, 1]), 4) == 0.5
    assert quantization_error(torch.tensor([[0.0, 0.0], [2.0, 0.0]]), torch.tensor([[1.0, 0.0], [1.0, 1.0]])) == 1.5
    codes = torch.tensor([[0.0, 0.0], [0.5, 0.0], [1.0, 0.0], [2.0, 0.0]])
    assert inside_support_fraction(codes, (0.0, 0.0), 1.0) == 0.75  # the boundary counts as inside
    assert inside_support_fraction(codes, (2.0, 0.0), 0.1) == 0.25


def test_quantizer_metrics_match_a_plain_codebook_and_keep_the_mode():
    quantizer = build_quantizer("vanilla", 8, 2).train()
    with torch.no_grad():
        quantizer.embedding.weight.copy_(torch.randn(8, 2))
    samples = torch.randn(500, 2)
    alive, error, used = quantizer_metrics(quantizer, samples)
    assert quantizer.training
    assert (alive, error) == pytest.approx(codebook_metrics(quantizer.embedding.weight.detach(), samples))
    assert float(used.float().mean()) == pytest.approx(alive)


def test_runs_are_deterministic_and_summaries_pick_the_pre_drift_point():
    scenario, method = SCENARIOS["jump"], Method("nsvq", "nsvq", {"bandwidth": 1.0}, steps_per_period_fraction=0.1)
    first, second = run_one(scenario, method, 3, TINY), run_one(scenario, method, 3, TINY)
    assert first["steps"] == [0, 4, 8, 12]
    for key in ("alive", "error", "final_codes"):
        assert first[key] == second[key]
    record = {
        "steps": [0, 4, 8, 12],
        "alive": [0.1, 0.9, 0.2, 0.3],
        "in_support": [1.0, 1.0, 0.0, 0.5],
        "error": [1.0, 0.5, 4.0, 2.0],
        "relative_error": [2.0, 1.0, 8.0, 4.0],
    }
    summary = run_summary(record, scenario, TINY)  # the jump is at step 6: the last point before it is step 4
    assert summary["alive_pre_drift"] == 0.9
    assert summary["alive_min_after_drift"] == 0.2
    assert (summary["alive_final"], summary["error_final"], summary["in_support_final"]) == (0.3, 2.0, 0.5)


def test_aggregate_over_seeds_and_input_checks():
    methods = [m for m in DEFAULT_METHODS if m.label in ("vanilla", "ema")]
    results = run_drift_toy(TINY, scenarios=["shrinking"], methods=methods, seeds=[0, 1], progress=False)
    assert set(results["summary"]["shrinking"]) == {"vanilla", "ema"}
    runs = [r for r in results["runs"] if r["method"] == "ema"]
    stat = results["summary"]["shrinking"]["ema"]["alive_final"]
    values = [r["alive_final"] for r in runs]
    assert stat["mean"] == pytest.approx(sum(values) / 2)
    assert stat["std"] == pytest.approx(abs(values[0] - values[1]) / 2)
    assert set(results["curves"]["shrinking"]["ema"]["final_codes"]) == {"0", "1"}
    with pytest.raises(ValueError, match="unknown scenario"):
        run_drift_toy(TINY, scenarios=["rotation"], progress=False)
    with pytest.raises(ValueError, match="steps must be a positive int"):
        DriftConfig(steps=0)


def test_cli_quick_run_writes_json_and_pngs(tmp_path, capsys):
    main(["drift", "--quick", "--output_dir", str(tmp_path)])
    results = json.loads((tmp_path / "drift_toy.json").read_text())
    assert {"config", "seeds", "scenarios", "methods", "summary", "curves", "runs", "wall_seconds"} <= set(results)
    assert set(results["scenarios"]) == {"translation", "shrinking", "expansion", "jump"}
    labels = {"vanilla", "ema", "vqgan_fc", "simvq", "nsvq-authors", "nsvq", "transvq"}
    assert set(results["methods"]) == labels
    # the authors' tau halves 10 times over the 100 steps; the default is adaptive (no step-driven decay)
    assert results["methods"]["nsvq-authors"]["kwargs"]["steps_per_period"] == 10
    assert "bandwidth_schedule" not in results["methods"]["nsvq"]["kwargs"]
    for by_method in results["summary"].values():
        assert set(by_method) == labels
        for stats in by_method.values():
            for stat in stats.values():
                assert set(stat) == {"mean", "std"} and math.isfinite(stat["mean"])
    curve = results["curves"]["jump"]["transvq"]
    assert curve["steps"][0] == 0 and curve["steps"][-1] == 100
    assert len(curve["alive_mean"]) == len(curve["steps"]) == len(curve["error_std"])
    for name in results["scenarios"]:
        for kind in ("curves", "codes"):
            png = tmp_path / "drift_toy" / f"{name}_{kind}.png"
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| translation | vanilla |" in capsys.readouterr().out

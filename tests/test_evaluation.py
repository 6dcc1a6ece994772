"""Evaluation: codebook usage math, SSIM/PSNR against scikit-image and hand values, the Fréchet distance against the
analytic case, evaluate_model on real tiny NSVQModel / stock VQModel pairs (2 real gloo processes included), the
skipped-metric path, and `hf-nsvq evaluate` end to end on a folder of real PNGs. CPU, offline."""

import json
import math
import os

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import tiny_model
from PIL import Image
from torch import nn

from hf_nsvq.evaluation import (
    CodebookUsage,
    FeatureStatistics,
    MetricUnavailableError,
    SkippedMetric,
    WindowedCodebookUsage,
    evaluate_model,
    frechet_distance,
    load_inception_feature_extractor,
    load_inception_or_skip,
    load_lpips_or_skip,
    load_vq_model,
    mse_per_image,
    psnr_per_image,
    ssim_per_image,
)
from hf_nsvq.sample_images import load_sample_image

# ------------------------------------------------------------------------------------------------ codebook usage


def test_codebook_usage_on_a_hand_histogram():
    usage = CodebookUsage(8)
    usage.update(torch.tensor([[0, 0, 1], [2, 2, 2]]))  # any shape; counts 2, 1, 3 for codes 0, 1, 2
    probs = np.array([2, 1, 3]) / 6
    assert usage.num_tokens == 6
    assert usage.utilisation == 3 / 8
    assert usage.dead_codes == 5
    assert usage.perplexity == pytest.approx(math.exp(-(probs * np.log(probs)).sum()), rel=1e-6)
    usage.update(torch.arange(8))  # every code once more: all used
    assert usage.utilisation == 1.0 and usage.dead_codes == 0
    assert usage.all_reduce() is usage and usage.num_tokens == 14  # no-op outside torch.distributed
    usage.reset()
    assert usage.num_tokens == 0 and usage.utilisation == 0.0 and usage.perplexity == 1.0


def test_codebook_usage_uniform_and_collapsed_extremes():
    uniform, collapsed = CodebookUsage(16), CodebookUsage(16)
    uniform.update(torch.arange(16).repeat(3))
    collapsed.update(torch.full((48,), 5))
    assert uniform.perplexity == pytest.approx(16.0, rel=1e-5)
    assert collapsed.perplexity == pytest.approx(1.0) and collapsed.dead_codes == 15


def test_codebook_usage_scales_to_65536_codes():
    num_codes = 65536
    indices = torch.randint(0, num_codes, (4, 128, 128), generator=torch.Generator().manual_seed(0))
    usage = CodebookUsage(num_codes)
    usage.update(indices)
    used = torch.unique(indices).numel()
    assert usage.utilisation == used / num_codes and usage.dead_codes == num_codes - used
    windowed = WindowedCodebookUsage(num_codes, window=2)
    for step in range(3):
        windowed.update(indices[step])
        windowed.end_step()
    assert windowed.num_tokens == 2 * 128 * 128
    assert torch.equal(windowed.window_counts(), torch.bincount(indices[1:3].reshape(-1), minlength=num_codes))


@pytest.mark.parametrize(
    ("indices", "message"),
    [
        (torch.tensor([0, 8]), r"indices must lie in \[0, 8\); got values in \[0, 8\]"),
        (torch.tensor([-1, 2]), r"indices must lie in \[0, 8\)"),
        (torch.tensor([0.0, 1.0]), "indices must be an integer tensor"),
    ],
)
def test_codebook_usage_rejects_bad_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        CodebookUsage(8).update(indices)


def test_windowed_usage_covers_the_last_closed_steps():
    usage = WindowedCodebookUsage(4, window=2)
    usage.update(torch.tensor([0, 0]))
    usage.end_step()
    usage.update(torch.tensor([1]))
    usage.update(torch.tensor([1, 2]))  # two micro-batches of one step
    usage.end_step()
    assert usage.utilisation == 3 / 4 and usage.num_tokens == 5
    usage.update(torch.tensor([3]))
    assert usage.utilisation == 3 / 4  # the open step is not read yet
    usage.end_step()  # the step with code 0 leaves the window
    assert usage.num_steps == 2 and usage.dead_codes == 1
    assert usage.window_counts().tolist() == [0, 2, 1, 1]
    assert usage.summary()["window_steps"] == 2
    with pytest.raises(ValueError, match="window must be a positive int"):
        WindowedCodebookUsage(4, window=0)


# ------------------------------------------------------------------------------------------------ image metrics


def test_mse_and_psnr_per_image_by_hand():
    target = torch.zeros(2, 3, 8, 8)
    prediction = torch.stack([torch.full((3, 8, 8), 0.1), torch.full((3, 8, 8), 0.01)])
    torch.testing.assert_close(mse_per_image(prediction, target), torch.tensor([1e-2, 1e-4], dtype=torch.float64))
    torch.testing.assert_close(psnr_per_image(prediction, target), torch.tensor([20.0, 40.0], dtype=torch.float64))
    assert psnr_per_image(target, target).isinf().all()
    assert psnr_per_image(target, target, max_db=100.0).tolist() == [100.0, 100.0]


def test_ssim_matches_scikit_image_per_image():
    from skimage.metrics import structural_similarity

    photo = torch.from_numpy(load_sample_image("astronaut")[100:164, 150:214]).permute(2, 0, 1).double() / 255
    generator = torch.Generator().manual_seed(0)
    target = torch.stack([photo, photo.flip(-1)])
    prediction = (target + 0.05 * torch.randn(target.shape, generator=generator, dtype=torch.float64)).clamp(0, 1)
    expected = [
        structural_similarity(
            t.permute(1, 2, 0).numpy(),
            p.permute(1, 2, 0).numpy(),
            channel_axis=-1,
            gaussian_weights=True,
            sigma=1.5,
            use_sample_covariance=False,
            data_range=1.0,
        )
        for p, t in zip(prediction, target, strict=True)
    ]
    torch.testing.assert_close(ssim_per_image(prediction, target), torch.tensor(expected, dtype=torch.float64))
    torch.testing.assert_close(ssim_per_image(target, target), torch.ones(2, dtype=torch.float64))


def test_image_metric_input_errors():
    with pytest.raises(ValueError, match="must have the same shape"):
        ssim_per_image(torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 12))
    with pytest.raises(ValueError, match="at least 11x11"):
        ssim_per_image(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8))


# ------------------------------------------------------------------------------------------------ Fréchet distance


def test_frechet_distance_of_gaussians_with_commuting_covariances():
    generator = torch.Generator().manual_seed(0)
    dim = 6
    mu1, mu2 = (torch.randn(dim, generator=generator, dtype=torch.float64) for _ in range(2))
    a, b = (torch.rand(dim, generator=generator, dtype=torch.float64) + 0.1 for _ in range(2))
    # With S1 = Q diag(a) Q^T and S2 = Q diag(b) Q^T, (S1 S2)^(1/2) = Q diag(sqrt(ab)) Q^T, so
    # FD = ||mu1 - mu2||^2 + sum (sqrt(a) - sqrt(b))^2.
    expected = float((mu1 - mu2).pow(2).sum() + (a.sqrt() - b.sqrt()).pow(2).sum())
    assert frechet_distance(mu1, torch.diag(a), mu2, torch.diag(b)) == pytest.approx(expected, rel=1e-10)
    q, _ = torch.linalg.qr(torch.randn(dim, dim, generator=generator, dtype=torch.float64))
    rotated = frechet_distance(mu1, q @ torch.diag(a) @ q.T, mu2, q @ torch.diag(b) @ q.T)
    assert rotated == pytest.approx(expected, rel=1e-9)
    assert frechet_distance(mu1, torch.diag(a), mu1, torch.diag(a)) == pytest.approx(0.0, abs=1e-10)


def test_frechet_distance_matches_the_scipy_sqrtm_reference_on_feature_statistics():
    from scipy import linalg

    generator = torch.Generator().manual_seed(1)
    real, fake = FeatureStatistics(), FeatureStatistics()
    real_batches = [torch.randn(20, 5, generator=generator) for _ in range(3)]
    fake_batches = [torch.randn(25, 5, generator=generator) * 1.5 + 0.3 for _ in range(2)]
    for batch in real_batches:
        real.update(batch)
    for batch in fake_batches:
        fake.update(batch)
    real_np, fake_np = torch.cat(real_batches).double().numpy(), torch.cat(fake_batches).double().numpy()
    np.testing.assert_allclose(real.covariance().numpy(), np.cov(real_np, rowvar=False), rtol=1e-10, atol=1e-12)
    mu1, mu2 = real_np.mean(0), fake_np.mean(0)
    sigma1, sigma2 = np.cov(real_np, rowvar=False), np.cov(fake_np, rowvar=False)
    reference = ((mu1 - mu2) ** 2).sum() + np.trace(sigma1 + sigma2 - 2 * linalg.sqrtm(sigma1 @ sigma2).real)
    assert frechet_distance(real.mean(), real.covariance(), fake.mean(), fake.covariance()) == pytest.approx(
        reference, rel=1e-8
    )


# ------------------------------------------------------------------------------------------------ evaluate_model


class SmallFeatures(nn.Module):
    """A stand-in for Inception: images in [0, 1] -> 8-d pooled conv features."""

    def __init__(self):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images):
        return self.net(images)


class MeanAbsoluteDistance(nn.Module):
    """A stand-in for LPIPS: (reconstruction, original) in [-1, 1] -> (N, 1, 1, 1)."""

    def forward(self, x, y):
        return (x - y).abs().mean(dim=(1, 2, 3), keepdim=True)


def photo_batches(num_images: int = 10, batch_size: int = 4, size: int = 16) -> list[dict]:
    photo = torch.from_numpy(load_sample_image("coffee")).permute(2, 0, 1).float() / 127.5 - 1
    crops = torch.stack([photo[:, 40 * i : 40 * i + size, 60 * i : 60 * i + size] for i in range(num_images)])
    return [{"pixel_values": crops[i : i + batch_size]} for i in range(0, num_images, batch_size)]


@pytest.fixture(scope="module")
def model_pair():
    torch.manual_seed(0)
    model = tiny_model("nsvq").eval()
    return model, model.to_diffusers().eval()


def test_evaluate_model_on_nsvq_and_its_stock_export(model_pair):
    model, stock = model_pair
    batches = photo_batches()
    model.train()  # the previous mode comes back
    torch.manual_seed(0)
    features = SmallFeatures()
    ours = evaluate_model(model, batches, feature_extractor=features, lpips_model=MeanAbsoluteDistance())
    assert model.training
    theirs = evaluate_model(stock, batches, feature_extractor=features, lpips_model=MeanAbsoluteDistance())
    model.eval()

    assert ours["num_images"] == theirs["num_images"] == 10 and ours["resolution"] == 16
    for key in ("rfid", "lpips", "ssim", "psnr", "mse", "utilisation", "perplexity"):
        assert isinstance(ours[key], float) and math.isfinite(ours[key]), key
    for key in ("utilisation", "perplexity", "dead_codes"):
        assert ours[key] == theirs[key], key
    for key in ("rfid", "lpips", "ssim", "psnr", "mse"):
        assert ours[key] == pytest.approx(theirs[key], rel=1e-4, abs=1e-6), key
    assert ours["model_class"] == "NSVQModel" and theirs["model_class"] == "VQModel"
    assert ours["rfid_network"].startswith("SmallFeatures")

    # The same numbers by hand: one histogram of every token, per-image means.
    images = torch.cat([batch["pixel_values"] for batch in batches])
    with torch.no_grad():
        usage = CodebookUsage(model.config.num_vq_embeddings)
        usage.update(model.encode_to_indices(images))
        reconstruction = model(images).sample.clamp(-1, 1)
    assert ours["utilisation"] == usage.utilisation and ours["dead_codes"] == usage.dead_codes
    assert ours["perplexity"] == pytest.approx(usage.perplexity, rel=1e-6)
    assert ours["lpips"] == pytest.approx(float((reconstruction - images).abs().mean()), rel=1e-5)
    assert ours["mse"] == pytest.approx(float(((reconstruction - images) / 2).pow(2).mean()), rel=1e-5)


def test_max_batches_and_provenance(model_pair):
    metrics = evaluate_model(model_pair[0], photo_batches(), max_batches=2, provenance={"split": "validation"})
    assert metrics["num_images"] == 8 and metrics["split"] == "validation"


def test_missing_networks_are_reported_as_skipped_never_as_numbers(model_pair, tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))  # an empty torch hub cache
    inception, lpips_model = load_inception_or_skip(), load_lpips_or_skip()
    assert isinstance(inception, SkippedMetric) and "--inception_weights" in inception.reason
    assert isinstance(lpips_model, SkippedMetric)
    metrics = evaluate_model(model_pair[0], photo_batches(4), feature_extractor=inception, lpips_model=lpips_model)
    assert metrics["rfid"] == {"skipped": True, "reason": inception.reason}
    assert metrics["lpips"] == {"skipped": True, "reason": lpips_model.reason}
    bare = evaluate_model(model_pair[0], photo_batches(4))
    assert bare["rfid"]["skipped"] is True and bare["lpips"]["skipped"] is True
    with pytest.raises(MetricUnavailableError, match="--inception_weights"):
        load_inception_feature_extractor()
    with pytest.raises(ValueError, match="inception weights file not found"):
        load_inception_or_skip(tmp_path / "missing.pth")


def test_evaluate_model_input_errors(model_pair):
    with pytest.raises(ValueError, match="model must be a diffusers VQModel"):
        evaluate_model(nn.Linear(2, 2), photo_batches())
    with pytest.raises(ValueError, match="pixel_values"):
        evaluate_model(model_pair[0], [{"images": torch.zeros(1, 3, 16, 16)}])
    with pytest.raises(ValueError, match="yielded no batches"):
        evaluate_model(model_pair[0], [])


def _two_process_worker(rank: int, world_size: int, port: str, model_dir: str, result_file: str) -> None:
    # One spawn for every cross-process check: starting a process that imports diffusers costs seconds.
    os.environ.update(
        MASTER_ADDR="127.0.0.1", MASTER_PORT=port, RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world_size)
    )
    from accelerate import Accelerator

    from hf_nsvq import NSVQModel

    accelerator = Accelerator(cpu=True)  # starts the gloo process group from the environment above
    try:
        usage = CodebookUsage(6)
        usage.update(torch.tensor([rank, rank, 4]))
        usage.all_reduce()
        windowed = WindowedCodebookUsage(6, window=1, sync=True)
        windowed.update(torch.tensor([rank + 2]))
        windowed.end_step()

        model = NSVQModel.from_pretrained(model_dir).eval()
        images = torch.cat([batch["pixel_values"] for batch in photo_batches(7)])
        dataloader = torch.utils.data.DataLoader([{"pixel_values": image} for image in images], batch_size=2)
        torch.manual_seed(0)
        metrics = evaluate_model(
            model, accelerator.prepare(dataloader), accelerator, feature_extractor=SmallFeatures()
        )
        gathered = [None] * world_size
        dist.all_gather_object(gathered, (usage.counts.tolist(), windowed.window_counts().tolist(), metrics))
        if rank == 0:
            torch.save(gathered, result_file)
    finally:
        dist.destroy_process_group()


def test_two_processes_sum_counts_and_give_the_single_process_numbers(model_pair, tmp_path):
    model_dir = tmp_path / "model"
    model_pair[0].save_pretrained(model_dir)
    result_file = str(tmp_path / "results.pt")
    port = str(29500 + os.getpid() % 1000)
    mp.spawn(_two_process_worker, args=(2, port, str(model_dir), result_file), nprocs=2, join=True)
    (counts0, window0, rank0), (counts1, window1, rank1) = torch.load(result_file)
    assert counts0 == counts1 == [2, 2, 0, 0, 2, 0]
    assert window0 == window1 == [0, 0, 1, 1, 0, 0]

    torch.manual_seed(0)
    single = evaluate_model(model_pair[0], photo_batches(7, batch_size=2), feature_extractor=SmallFeatures())
    # 7 images on 2 processes: the sampler repeats one to even out the shards; gather_for_metrics drops it.
    assert rank0["num_images"] == rank1["num_images"] == single["num_images"] == 7
    for key in ("utilisation", "perplexity", "dead_codes"):
        assert rank0[key] == rank1[key] == single[key], key
    for key in ("rfid", "ssim", "psnr", "mse"):
        assert rank0[key] == rank1[key], key
        assert rank0[key] == pytest.approx(single[key], rel=1e-5, abs=1e-7), key


# ------------------------------------------------------------------------------------------------ CLI and loading


@pytest.fixture
def saved_model(model_pair, tmp_path):
    folder = tmp_path / "run"
    model_pair[0].save_pretrained(folder)
    model_pair[1].save_pretrained(folder / "vqvae")
    return folder


@pytest.fixture
def png_folder(tmp_path):
    folder = tmp_path / "pngs"
    folder.mkdir()
    photo = load_sample_image("chelsea")
    for i in range(5):
        Image.fromarray(photo[30 * i : 30 * i + 40, 50 * i : 50 * i + 48]).save(folder / f"cat_{i}.png")
    return folder


def test_cli_evaluates_a_folder_of_pngs(saved_model, png_folder, tmp_path, monkeypatch, capsys):
    from hf_nsvq.cli import main

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    common = ["--train_data_dir", str(png_folder), "--split", "train", "--resolution", "16", "--batch_size", "2"]
    main(["evaluate", "--model", str(saved_model), *common, "--output", str(tmp_path / "nsvq.json")])
    main(
        [
            "evaluate",
            "--model",
            str(saved_model),
            "--subfolder",
            "vqvae",
            *common,
            "--output",
            str(tmp_path / "s.json"),
        ]
    )
    ours, stock = json.loads((tmp_path / "nsvq.json").read_text()), json.loads((tmp_path / "s.json").read_text())
    assert ours["num_images"] == 5 and ours["resolution"] == 16 and ours["split"] == "train"
    assert ours["dataset_name"] == str(png_folder) and ours["dataset_revision"] is None
    assert ours["rfid"]["skipped"] is True and "--inception_weights" in ours["rfid"]["reason"]
    assert ours["lpips"]["skipped"] is True
    assert (ours["model_class"], stock["model_class"]) == ("NSVQModel", "VQModel")
    for key in ("utilisation", "perplexity", "dead_codes"):
        assert ours[key] == stock[key]
    assert 0 < ours["ssim"] <= 1 and ours["psnr"] > 0
    assert "utilisation" in capsys.readouterr().out


def test_load_vq_model_picks_the_class_from_the_config(saved_model):
    assert type(load_vq_model(str(saved_model))).__name__ == "NSVQModel"
    assert type(load_vq_model(str(saved_model), subfolder="vqvae")).__name__ == "VQModel"


def test_offline_hub_id_fails_fast_with_what_to_do(tmp_path):
    from hf_nsvq.cli import main

    with pytest.raises(ValueError, match="HF_HUB_OFFLINE is set with no cached copy"):
        main(["evaluate", "--model", "someone/tiny-vq", "--dataset_name", "embedded", "--cache_dir", str(tmp_path)])
    with pytest.raises(ValueError, match="expected an existing model folder"):
        load_vq_model(str(tmp_path / "no" / "such" / "folder"))
    with pytest.raises(ValueError, match="has no config.json"):
        load_vq_model(str(tmp_path))


def test_load_vq_model_reads_a_local_subfolder_not_the_parent_weights(tmp_path):
    """An NSVQModel output folder has its own weights beside `vqvae/`; the stock model must load `vqvae/`'s."""
    from conftest import tiny_model

    from hf_nsvq.evaluation import load_vq_model

    model = tiny_model("transvq").eval()
    model.save_pretrained(tmp_path)
    model.to_diffusers().save_pretrained(tmp_path / "vqvae")
    stock = load_vq_model(str(tmp_path), subfolder="vqvae")
    assert type(stock).__name__ == "VQModel"
    torch.testing.assert_close(stock.quantize.embedding.weight, model.quantize.codebook, rtol=0, atol=0)

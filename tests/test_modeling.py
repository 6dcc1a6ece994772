"""NSVQModel: save/load, bake to a stock diffusers VQModel, quantizer swap, token helpers, errors."""

import json

import pytest
import torch
from conftest import tiny_model, tiny_model_config
from diffusers import VQModel

from hf_nsvq import NSVQModel, list_quantizers, replace_quantizer

ALL = list_quantizers()


def trained_a_little(name: str) -> NSVQModel:
    """A tiny model after two optimizer steps, so codebooks and buffers are not at their init."""
    model = tiny_model(name).train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    for _ in range(2):
        output = model(torch.rand(2, 3, 16, 16) * 2 - 1)
        (output.sample.square().mean() + output.commit_loss).backward()
        optimizer.step()
        optimizer.zero_grad()
    return model.eval()


@pytest.mark.parametrize("name", ALL)
def test_save_and_load_rebuild_the_same_model(name, tmp_path):
    model = trained_a_little(name)
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").exists()
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["_class_name"] == "NSVQModel" and config["quantizer_type"] == name
    loaded = NSVQModel.from_pretrained(tmp_path).eval()
    assert isinstance(loaded, VQModel) and type(loaded.quantize) is type(model.quantize)
    for key, value in model.state_dict().items():
        assert torch.equal(value, loaded.state_dict()[key]), key
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        assert torch.equal(model.encode_to_indices(x), loaded.encode_to_indices(x))
        # same weights; BLAS may round differently for differently aligned buffers, hence the tolerance
        torch.testing.assert_close(model(x).sample, loaded(x).sample, rtol=0, atol=1e-5)


@pytest.mark.parametrize("name", ALL)
def test_to_diffusers_matches_in_eval(name):
    model = trained_a_little(name)
    stock = model.to_diffusers()
    assert type(stock) is VQModel
    assert all(not type(module).__module__.startswith("hf_nsvq") for module in stock.modules())
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        latents = model.encode(x).latents
        stock_latents = stock.encode(x).latents
        if name == "vqgan_fc":  # stock latents are the low-dim projections the codebook lives in
            expected = model.quantize.project_in(latents.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
            torch.testing.assert_close(stock_latents, expected, rtol=0, atol=1e-5)
        else:
            torch.testing.assert_close(stock_latents, latents, rtol=0, atol=1e-5)
        assert torch.equal(stock.quantize(stock_latents)[2][2].flatten(), model.quantize(latents)[2][2])
        torch.testing.assert_close(stock(x).sample, model(x).sample, rtol=0, atol=1e-5)


def test_baked_model_saves_and_loads_with_plain_diffusers(tmp_path):
    stock = trained_a_little("transvq").to_diffusers()
    stock.save_pretrained(tmp_path)
    assert json.loads((tmp_path / "config.json").read_text())["_class_name"] == "VQModel"
    reloaded = VQModel.from_pretrained(tmp_path).eval()
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(reloaded(x).sample, stock(x).sample, rtol=0, atol=1e-5)


def test_vqgan_fc_cannot_bake_with_spatial_norm():
    model = tiny_model("vqgan_fc", norm_type="spatial", block_out_channels=(32, 32))
    with pytest.raises(ValueError, match=r"cannot fold 'vqgan_fc' into a stock VQModel with norm_type='spatial'"):
        model.to_diffusers()


def test_fp16_weights_load_and_run_in_eval(tmp_path):
    trained_a_little("nsvq").save_pretrained(tmp_path)
    model = NSVQModel.from_pretrained(tmp_path, torch_dtype=torch.float16).eval()
    assert model.quantize.codebook.dtype == torch.float16
    with torch.no_grad():
        indices = model.quantize.encode_indices(torch.randn(1, 4, 3, 3, dtype=torch.float16))
        quant = model.quantize(torch.randn(1, 4, 3, 3, dtype=torch.float16))[0]
    assert indices.shape == (1, 3, 3) and quant.dtype == torch.float16 and torch.isfinite(quant).all()


@pytest.mark.parametrize("name", ["nsvq", "transvq", "simvq", "ema", "vqgan_fc"])
def test_replace_quantizer_on_a_stock_model(name):
    stock = VQModel(**tiny_model_config()).eval()
    model = replace_quantizer(stock, name, **({"width": 32} if name == "transvq" else {}))
    assert isinstance(model, NSVQModel) and model.config.quantizer_type == name
    assert model.dtype == stock.dtype and model.device == stock.device and not model.training
    x = torch.rand(1, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        torch.testing.assert_close(model.encode(x).latents, stock.encode(x).latents, rtol=0, atol=0)
        if name in ("nsvq", "simvq", "ema"):  # codebook taken over exactly: same model, new training rule
            torch.testing.assert_close(model.quantize.codebook, stock.quantize.embedding.weight)
            torch.testing.assert_close(model(x).sample, stock(x).sample, rtol=0, atol=1e-5)


def test_replace_quantizer_keeps_dtype():
    stock = VQModel(**tiny_model_config()).to(torch.float64)
    model = replace_quantizer(stock, "nsvq")
    assert model.dtype == torch.float64 and model.quantize.codebook.dtype == torch.float64


def test_replace_quantizer_rejects_other_models():
    with pytest.raises(ValueError, match=r"vq_model must be a diffusers VQModel; got Linear"):
        replace_quantizer(torch.nn.Linear(2, 2), "nsvq")


@pytest.mark.parametrize("name", ALL)
def test_token_round_trip(name):
    model = trained_a_little(name)
    x = torch.rand(2, 3, 16, 16) * 2 - 1
    with torch.no_grad():
        indices = model.encode_to_indices(x)
        assert indices.shape == (2, 8, 8) and indices.dtype == torch.long
        torch.testing.assert_close(model.decode_indices(indices), model(x).sample, rtol=0, atol=1e-5)


def test_encode_to_indices_changes_no_state_in_training_mode():
    model = tiny_model("ema").train()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.encode_to_indices(torch.rand(1, 3, 16, 16))
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize(
    "indices, message",
    [
        (torch.zeros(1, 8, 8), r"indices must be an integer \(long\) tensor of code ids; got torch.float32"),
        (torch.full((1, 8, 8), 64), r"indices must lie in \[0, 32\) for this codebook; got values in \[64, 64\]"),
        (torch.zeros(64, dtype=torch.long), r"indices must be a \(batch, height, width\) integer tensor; got \(64,\)"),
    ],
)
def test_decode_indices_rejects_bad_indices(indices, message):
    with pytest.raises(ValueError, match=message):
        tiny_model("nsvq").decode_indices(indices)


def test_config_with_unknown_quantizer_or_kwarg_fails_clearly(tmp_path):
    with pytest.raises(ValueError, match=r"unknown quantizer 'fsq'; available: vanilla, ema, vqgan_fc"):
        NSVQModel(**tiny_model_config(), quantizer_type="fsq")
    tiny_model("nsvq").save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    config["quantizer_kwargs"] = {"bandwith": 0.5}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"unknown keyword argument\(s\) \['bandwith'\] for quantizer 'nsvq'"):
        NSVQModel.from_pretrained(tmp_path)

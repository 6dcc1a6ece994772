"""Model cards and Hub publishing, offline: a real training output folder, a recording fake in place of HfApi."""

import json
import re
from fnmatch import fnmatch
from importlib import resources
from pathlib import Path
from types import SimpleNamespace

import huggingface_hub.constants
import pytest
import torch
import yaml
from conftest import tiny_model_config
from huggingface_hub import HfApi, ModelCard
from huggingface_hub.utils import OfflineModeIsEnabled, filter_repo_objects

import hf_nsvq.hub.push
from hf_nsvq import NSVQModel
from hf_nsvq.cli import main
from hf_nsvq.hub import push_to_hub, render_model_card, write_model_card

REPO_ID = "someone/celebahq-nsvq-f2"
QUANTIZER_KWARGS = {"steps_per_period": 7, "kernel": "gaussian"}
TRAINING_CONFIG = {
    "learning_rate": 0.0005,
    "train_batch_size": 16,
    "command": "accelerate launch training_scripts/train_vqvae.py --quantizer nsvq --resolution 16 --max_train_steps 3",
    "dataset_name": "korexyz/celeba-hq-256x256",
    "dataset_revision": "0123456789abcdef0123456789abcdef01234567",
    "train_data_dir": None,
    "resolution": 16,
    "max_train_steps": 3,
    "seed": 1234,
    "versions": {
        "torch": "2.9.1",
        "diffusers": "0.35.2",
        "transformers": "4.57.0",
        "hf_nsvq": "0.1.0",
        "accelerate": "1.11.0",
    },
}
METRICS = {
    "rfid": {"skipped": True, "reason": "no Inception weights offline"},
    "lpips": 0.123456789,
    "ssim": 0.8765,
    "psnr": 24.681357,
    "mse": 0.00321,
    "utilisation": 0.96875,
    "perplexity": 29.5,
    "dead_codes": 1,
    "num_images": 64,
    "resolution": 16,
    "dataset_name": "korexyz/celeba-hq-256x256",
    "dataset_revision": "fedcba9876543210fedcba9876543210fedcba98",
    "split": "validation",
    "rfid_network": "none",
    "eval_batch_size": 8,  # provenance: a number that is not a metric
}
MEASURED = {key: METRICS[key] for key in ("lpips", "ssim", "psnr", "mse", "utilisation", "perplexity", "dead_codes")}


@pytest.fixture
def folder(tmp_path) -> Path:
    """A training output folder as the training script and `hf-nsvq evaluate` leave it, plus what must not upload."""
    out = tmp_path / "nsvq-run"
    model = NSVQModel(**tiny_model_config(), quantizer_type="nsvq", quantizer_kwargs=QUANTIZER_KWARGS).eval()
    model.save_pretrained(out)
    model.to_diffusers().save_pretrained(out / "vqvae")
    (out / "training_config.json").write_text(json.dumps(TRAINING_CONFIG))
    (out / "metrics.json").write_text(json.dumps(METRICS))
    (out / "checkpoint-3").mkdir()
    (out / "checkpoint-3" / "model.safetensors").write_bytes(b"resumable state")
    (out / "logs" / "run").mkdir(parents=True)
    (out / "logs" / "run" / "events.out").write_bytes(b"tensorboard")
    (out / "partial.tmp").write_bytes(b"half written")
    return out


class RecordingApi:
    """Stands in for HfApi: records each call and the files `upload_folder` would send."""

    def __init__(self):
        self.calls = []
        self.uploaded = None

    def create_repo(self, repo_id, **kwargs):
        self.calls.append(("create_repo", repo_id, kwargs))
        return SimpleNamespace(repo_id=repo_id)

    def upload_folder(self, **kwargs):
        self.calls.append(("upload_folder", kwargs))
        # the same filter huggingface_hub applies to the folder before committing
        root = Path(kwargs["folder_path"])
        files = sorted(path.relative_to(root).as_posix() for path in root.rglob("*") if path.is_file())
        self.uploaded = list(filter_repo_objects(files, ignore_patterns=kwargs["ignore_patterns"]))
        self.readme = (root / "README.md").read_text()
        return SimpleNamespace(commit_url="fake://someone/celebahq-nsvq-f2/commit/1")


def python_snippets(text: str) -> list[str]:
    return re.findall(r"```python\n(.*?)```", text, flags=re.DOTALL)


# ------------------------------------------------------------------------------------------------ rendering
def test_model_index_holds_exactly_the_measured_metrics(folder):
    card = render_model_card(folder, REPO_ID)
    results = {result.metric_type: result for result in card.data.eval_results}
    assert {key: result.metric_value for key, result in results.items()} == MEASURED
    assert "rfid" not in results and "eval_batch_size" not in results
    for result in results.values():
        assert result.dataset_name == METRICS["dataset_name"] and result.dataset_type == METRICS["dataset_name"]
        assert result.dataset_revision == METRICS["dataset_revision"] and result.dataset_split == METRICS["split"]


def test_card_body_shows_metrics_skips_and_evaluation_details(folder):
    text = render_model_card(folder, REPO_ID).text
    assert "| rFID | skipped (no Inception weights offline) | lower |" in text
    assert "| LPIPS | 0.1235 | lower |" in text  # four significant digits of the JSON value
    assert "| dead codes | 1 | lower |" in text
    assert "Reconstruction of 64 images of `korexyz/celeba-hq-256x256` (split `validation`" in text
    assert "- rfid_network: none" in text and "- eval_batch_size: 8" in text
    assert "Not evaluated yet" not in text


def test_card_metadata_round_trips_through_yaml(folder, tmp_path):
    card = render_model_card(folder, REPO_ID)
    header = yaml.safe_load(str(card).split("---")[1])
    assert header["library_name"] == "diffusers" and header["license"] == "apache-2.0"
    assert header["tags"] == ["hf_nsvq", "vector-quantization", "vq-vae", "nsvq", "image-tokenizer"]
    assert header["datasets"] == [TRAINING_CONFIG["dataset_name"]]
    assert header["model-index"][0]["name"] == REPO_ID
    card.save(tmp_path / "README.md")
    loaded = ModelCard.load(tmp_path / "README.md")
    assert loaded.data.to_dict() == card.data.to_dict()
    assert {result.metric_type: result.metric_value for result in loaded.data.eval_results} == MEASURED


def test_card_describes_model_and_training_from_the_json_files(folder):
    text = render_model_card(folder, REPO_ID).text
    config = json.loads((folder / "config.json").read_text())
    assert f"| codebook size K | {config['num_vq_embeddings']} |" in text
    assert f"| code dimension D | {config['latent_channels']} |" in text  # vq_embed_dim is null: D = latent channels
    assert "| downsampling factor f | 2 = 2^1 " in text  # block_out_channels (8, 16)
    assert "| training resolution | 16 × 16 images → 8 × 8 tokens |" in text
    assert f"`{json.dumps(QUANTIZER_KWARGS, sort_keys=True)}`" in text
    assert f"```bash\n{TRAINING_CONFIG['command']}\n```" in text
    assert f"revision `{TRAINING_CONFIG['dataset_revision']}`" in text
    assert "- steps: 3" in text and "- seed: 1234" in text
    for name, version in TRAINING_CONFIG["versions"].items():
        assert f"- {name}: {version}" in text
    assert "arXiv:2602.18896" in text and "Beyond Stationarity" in text and "non-stationary" in text


def test_loading_snippets_name_the_repo_id(folder):
    text = render_model_card(folder, REPO_ID).text
    assert f'NSVQModel.from_pretrained("{REPO_ID}")' in text
    assert f'VQModel.from_pretrained("{REPO_ID}", subfolder="vqvae")' in text


def test_loading_snippets_run_against_the_folder(folder):
    # without a repo id the snippets load from the folder itself, so they can be executed offline as written
    snippets = python_snippets(render_model_card(folder).text)
    assert len(snippets) == 2
    outputs = []
    for snippet in snippets:
        namespace = {}
        exec(snippet, namespace)
        outputs.append(namespace)
    ours, stock = outputs
    assert ours["tokens"].shape == (1, 8, 8) and ours["reconstructions"].shape == (1, 3, 16, 16)
    assert stock["tokens"].shape == (64,) and stock["reconstructions"].shape == (1, 3, 16, 16)
    torch.testing.assert_close(
        NSVQModel.from_pretrained(folder).eval().encode_to_indices(stock["images"]).flatten(), stock["tokens"]
    )


def test_unevaluated_folder_says_so_and_has_no_model_index(folder):
    (folder / "metrics.json").unlink()
    card = render_model_card(folder, REPO_ID)
    assert card.data.eval_results is None and "model-index" not in str(card)
    assert "Not evaluated yet" in card.text
    assert f"hf-nsvq evaluate --model {REPO_ID}" in card.text


def test_local_training_data_is_not_listed_as_a_hub_dataset(folder):
    config = dict(TRAINING_CONFIG, dataset_name=None, dataset_revision=None, train_data_dir="/data/faces")
    (folder / "training_config.json").write_text(json.dumps(config))
    card = render_model_card(folder)
    assert card.data.datasets is None
    assert "the local image folder `/data/faces`" in card.text


def test_embedded_sample_set_is_not_listed_as_a_hub_dataset(folder):
    config = dict(TRAINING_CONFIG, dataset_name="embedded", dataset_revision=None)
    (folder / "training_config.json").write_text(json.dumps(config))
    card = render_model_card(folder)
    assert card.data.datasets is None
    assert "the dataset `embedded`, revision not recorded" in card.text


def test_non_square_evaluation_resolution(folder):
    (folder / "metrics.json").write_text(json.dumps(dict(METRICS, resolution="16x8")))
    assert "at 16x8, as recorded in" in render_model_card(folder).text


def test_template_is_packaged():
    template = resources.files("hf_nsvq").joinpath("model_card_template.md")
    assert template.is_file() and "{{ card_data }}" in template.read_text()


def test_template_is_declared_as_package_data():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    pyproject = tomllib.loads((Path(__file__).parents[1] / "pyproject.toml").read_text())
    patterns = pyproject["tool"]["setuptools"]["package-data"]["hf_nsvq"]
    assert any(fnmatch("model_card_template.md", pattern) for pattern in patterns)


def test_write_model_card_writes_readme(folder):
    path = write_model_card(folder, REPO_ID)
    assert path == folder / "README.md"
    assert ModelCard.load(path).data.to_dict() == render_model_card(folder, REPO_ID).data.to_dict()


# ------------------------------------------------------------------------------------------------ validation
@pytest.mark.parametrize(
    "name",
    ["config.json", "diffusion_pytorch_model.safetensors", "vqvae/config.json", "training_config.json"],
)
def test_missing_file_is_named(folder, name):
    (folder / name).unlink()
    with pytest.raises(FileNotFoundError, match=re.escape(f"is missing ['{name}']")):
        render_model_card(folder)


def test_missing_folder(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist or is not a directory"):
        render_model_card(tmp_path / "nowhere")


def test_stock_vqmodel_folder_is_refused(folder):
    with pytest.raises(FileNotFoundError, match=re.escape("is missing ['vqvae/config.json'")):
        render_model_card(folder / "vqvae")


@pytest.mark.parametrize("key", ["command", "dataset_revision", "versions"])
def test_missing_training_config_key_is_named(folder, key):
    config = {name: value for name, value in TRAINING_CONFIG.items() if name != key}
    (folder / "training_config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=re.escape(f"training_config.json is missing key(s) ['{key}']")):
        render_model_card(folder)


def test_missing_version_is_named(folder):
    versions = {name: value for name, value in TRAINING_CONFIG["versions"].items() if name != "accelerate"}
    (folder / "training_config.json").write_text(json.dumps(dict(TRAINING_CONFIG, versions=versions)))
    with pytest.raises(ValueError, match=re.escape("'versions' is missing key(s) ['accelerate']")):
        render_model_card(folder)


def test_missing_metrics_context_key_is_named(folder):
    metrics = {name: value for name, value in METRICS.items() if name != "split"}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=re.escape("metrics.json is missing key(s) ['split']")):
        render_model_card(folder)


@pytest.mark.parametrize(
    "value, expected",
    [
        (None, "expected a finite number"),
        (float("nan"), "expected a finite number"),
        (True, "expected a finite number"),
        ({"skipped": True}, 'expected {"skipped": true, "reason": "..."}'),
    ],
)
def test_bad_metric_value_is_refused(folder, value, expected):
    (folder / "metrics.json").write_text(json.dumps(dict(METRICS, lpips=value)))
    with pytest.raises(ValueError, match=re.escape(f"'lpips' got {value!r}; {expected}")):
        render_model_card(folder)


def test_bad_repo_id_is_refused(folder):
    with pytest.raises(ValueError, match="repo_id got 'not/a/repo'; expected a Hub repository id"):
        render_model_card(folder, "not/a/repo")


# ------------------------------------------------------------------------------------------------ pushing
def test_push_writes_the_card_then_creates_and_uploads(folder):
    api = RecordingApi()
    url = push_to_hub(folder, REPO_ID, token="hf_test", private=True, commit_message="first tokenizer", api=api)
    assert url == "fake://someone/celebahq-nsvq-f2/commit/1"
    assert api.calls == [
        ("create_repo", REPO_ID, {"exist_ok": True, "private": True, "repo_type": "model", "token": "hf_test"}),
        (
            "upload_folder",
            {
                "folder_path": str(folder),
                "repo_id": REPO_ID,
                "commit_message": "first tokenizer",
                "ignore_patterns": ["checkpoint-*", "logs/*", "*.tmp"],
                "token": "hf_test",
            },
        ),
    ]
    assert api.uploaded == [
        "README.md",
        "config.json",
        "diffusion_pytorch_model.safetensors",
        "metrics.json",
        "training_config.json",
        "vqvae/config.json",
        "vqvae/diffusion_pytorch_model.safetensors",
    ]
    assert f'NSVQModel.from_pretrained("{REPO_ID}")' in api.readme
    assert api.readme == (folder / "README.md").read_text()


def test_push_validates_before_any_call(folder):
    (folder / "vqvae" / "diffusion_pytorch_model.safetensors").unlink()
    api = RecordingApi()
    with pytest.raises(FileNotFoundError, match=re.escape("is missing ['vqvae/diffusion_pytorch_model.safetensors']")):
        push_to_hub(folder, REPO_ID, api=api)
    assert api.calls == []


def test_real_push_fails_fast_offline(folder, monkeypatch):
    def no_network(*args, **kwargs):
        raise AssertionError("the Hub was called in offline mode")

    monkeypatch.setattr(HfApi, "create_repo", no_network)
    monkeypatch.setattr(HfApi, "upload_folder", no_network)
    with pytest.raises(OfflineModeIsEnabled, match="HF_HUB_OFFLINE is set"):
        push_to_hub(folder, REPO_ID)


# ------------------------------------------------------------------------------------------------ CLI
def test_cli_card_writes_readme(folder, capsys):
    main(["card", str(folder), "--hub_model_id", REPO_ID, "--license", "mit"])
    card = ModelCard.load(folder / "README.md")
    assert card.data.license == "mit"
    assert f'VQModel.from_pretrained("{REPO_ID}", subfolder="vqvae")' in card.text
    assert "wrote" in capsys.readouterr().out


def test_cli_push_passes_its_options(folder, monkeypatch, capsys):
    created = []

    class RecordingHfApi(RecordingApi):
        def __init__(self):
            super().__init__()
            created.append(self)

    # online, with the default client replaced by the recording fake
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)  # push checks hf_nsvq.offline.hub_offline, which reads both
    monkeypatch.setattr(hf_nsvq.hub.push, "HfApi", RecordingHfApi)
    main(["push", str(folder), "--hub_model_id", REPO_ID, "--private", "--token", "t", "--commit_message", "m"])
    (api,) = created
    assert api.calls[0] == (
        "create_repo",
        REPO_ID,
        {"exist_ok": True, "private": True, "repo_type": "model", "token": "t"},
    )
    assert api.calls[1][1]["commit_message"] == "m" and api.calls[1][1]["token"] == "t"
    assert "fake://someone/celebahq-nsvq-f2/commit/1" in capsys.readouterr().out


def test_cli_push_fails_fast_offline(folder):
    with pytest.raises(OfflineModeIsEnabled, match="HF_HUB_OFFLINE is set"):
        main(["push", str(folder), "--hub_model_id", REPO_ID])

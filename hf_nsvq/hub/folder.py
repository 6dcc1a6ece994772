"""Read and validate a training output folder: the one schema the model card and the Hub upload accept.

A folder written by the training script looks like this (`metrics.json` is optional; evaluation adds it):

```
config.json                          NSVQModel.save_pretrained(folder)
diffusion_pytorch_model.safetensors
vqvae/config.json                    NSVQModel.to_diffusers().save_pretrained(folder / "vqvae")
vqvae/diffusion_pytorch_model.safetensors
training_config.json                 the script's arguments plus TRAINING_CONFIG_KEYS
metrics.json                         METRICS_CONTEXT_KEYS plus one entry per metric
```
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..evaluation.skipped import SkippedMetric  # one definition for evaluation and cards
from ..quantizers import list_quantizers

MODEL_FILES = ("config.json", "diffusion_pytorch_model.safetensors")
BAKED_SUBFOLDER = "vqvae"
TRAINING_CONFIG_NAME = "training_config.json"
METRICS_NAME = "metrics.json"

# NSVQModel config keys the card reads (save_pretrained writes all of them, `null` where unset).
MODEL_CONFIG_KEYS = (
    "quantizer_type",
    "quantizer_kwargs",
    "num_vq_embeddings",
    "vq_embed_dim",
    "latent_channels",
    "block_out_channels",
    "sample_size",
)
# Keys the training script adds to its arguments; `dataset_name`, `dataset_revision` and `train_data_dir` may be null.
TRAINING_CONFIG_KEYS = (
    "command",
    "dataset_name",
    "dataset_revision",
    "train_data_dir",
    "resolution",
    "max_train_steps",
    "seed",
    "versions",
)
VERSION_KEYS = ("torch", "diffusers", "transformers", "hf_nsvq", "accelerate")
# metrics.json keys that describe the evaluation rather than measure it; `dataset_revision` may be null.
METRICS_CONTEXT_KEYS = ("dataset_name", "dataset_revision", "split", "num_images", "resolution")
# The metrics of metrics.json: key -> (name the card shows, which direction is better). Only these (and skipped
# entries) are metrics; every other entry is a detail of how they were computed and never reaches model-index.
METRICS = {
    "rfid": ("rFID", "lower"),
    "lpips": ("LPIPS", "lower"),
    "ssim": ("SSIM", "higher"),
    "psnr": ("PSNR (dB)", "higher"),
    "mse": ("MSE", "lower"),
    "utilisation": ("codebook utilisation", "higher"),
    "perplexity": ("codebook perplexity", "higher"),
    "dead_codes": ("dead codes", "lower"),
}


@dataclass(frozen=True)
class TrainingOutput:
    r"""A validated training output folder.

    Args:
        path (`Path`): The folder.
        model_config (`dict`): Its `config.json` (an `NSVQModel` config).
        training_config (`dict`): Its `training_config.json`.
        metrics (`dict[str, float | int | SkippedMetric]`): The measured (or skipped) metrics of `metrics.json`, in
            file order; empty when there is no `metrics.json`.
        evaluation (`dict`, *optional*): The other entries of `metrics.json`: `METRICS_CONTEXT_KEYS` and details such
            as the Inception weights used; `None` when there is no `metrics.json`.
    """

    path: Path
    model_config: dict[str, Any]
    training_config: dict[str, Any]
    metrics: dict[str, float | int | SkippedMetric]
    evaluation: dict[str, Any] | None


def read_training_output(folder: str | Path) -> TrainingOutput:
    """Read `folder` and check it against the schema in this module's docstring.

    Raises:
        FileNotFoundError: when the folder or one of its required files is missing.
        ValueError: when a JSON file is malformed, misses a key or holds a value of the wrong kind.
    """
    path = Path(folder)
    if not path.is_dir():
        raise FileNotFoundError(f"training output folder {str(path)!r} does not exist or is not a directory")
    required = [*MODEL_FILES, *(f"{BAKED_SUBFOLDER}/{name}" for name in MODEL_FILES), TRAINING_CONFIG_NAME]
    missing = [name for name in required if not (path / name).is_file()]
    if missing:
        raise FileNotFoundError(
            f"training output folder {str(path)!r} is missing {missing}; expected NSVQModel.save_pretrained(folder), "
            f"NSVQModel.to_diffusers().save_pretrained(folder / {BAKED_SUBFOLDER!r}) and {TRAINING_CONFIG_NAME}"
        )
    model_config = _read_model_config(path / MODEL_FILES[0])
    training_config = _read_training_config(path / TRAINING_CONFIG_NAME)
    metrics, evaluation = {}, None
    if (path / METRICS_NAME).is_file():
        metrics, evaluation = _read_metrics(path / METRICS_NAME)
    return TrainingOutput(path, model_config, training_config, metrics, evaluation)


def _read_json_object(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as error:
        raise ValueError(f"{path} is not valid JSON ({error})") from error
    if not isinstance(value, dict):
        raise ValueError(f"{path} holds a {type(value).__name__}; expected a JSON object")
    return value


def _require_keys(mapping: dict[str, Any], keys: tuple[str, ...], source: Path | str) -> None:
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise ValueError(f"{source} is missing key(s) {missing}; expected keys {list(keys)}")


def _check_type(value: Any, kinds: tuple[type, ...], key: str, source: Path, expected: str) -> None:
    # bool is an int to Python but never a count, size or seed here
    if isinstance(value, bool) or not isinstance(value, kinds):
        raise ValueError(f"{source}: {key!r} got {value!r}; expected {expected}")


def _read_model_config(path: Path) -> dict[str, Any]:
    config = _read_json_object(path)
    if config.get("_class_name") != "NSVQModel":
        raise ValueError(
            f"{path}: '_class_name' got {config.get('_class_name')!r}; expected 'NSVQModel' (the folder's top level "
            f"holds the hf_nsvq model, its {BAKED_SUBFOLDER}/ subfolder the stock diffusers VQModel)"
        )
    _require_keys(config, MODEL_CONFIG_KEYS, path)
    if config["quantizer_type"] not in list_quantizers():
        raise ValueError(
            f"{path}: 'quantizer_type' got {config['quantizer_type']!r}; expected one of {list_quantizers()}"
        )
    if config["quantizer_kwargs"] is not None and not isinstance(config["quantizer_kwargs"], dict):
        raise ValueError(f"{path}: 'quantizer_kwargs' got {config['quantizer_kwargs']!r}; expected an object or null")
    for key in ("num_vq_embeddings", "latent_channels"):
        _check_type(config[key], (int,), key, path, "an integer")
    if config["vq_embed_dim"] is not None:
        _check_type(config["vq_embed_dim"], (int,), "vq_embed_dim", path, "an integer or null")
    if not isinstance(config["block_out_channels"], list) or not config["block_out_channels"]:
        raise ValueError(
            f"{path}: 'block_out_channels' got {config['block_out_channels']!r}; expected a non-empty list"
        )
    return config


def _read_training_config(path: Path) -> dict[str, Any]:
    config = _read_json_object(path)
    _require_keys(config, TRAINING_CONFIG_KEYS, path)
    _check_type(config["command"], (str,), "command", path, "the launch command as a string")
    for key in ("resolution", "max_train_steps"):
        _check_type(config[key], (int,), key, path, "an integer")
    if config["seed"] is not None:
        _check_type(config["seed"], (int,), "seed", path, "an integer or null")
    for key in ("dataset_name", "dataset_revision", "train_data_dir"):
        if config[key] is not None:
            _check_type(config[key], (str,), key, path, "a string or null")
    if not isinstance(config["versions"], dict):
        raise ValueError(f"{path}: 'versions' got {config['versions']!r}; expected an object of package versions")
    _require_keys(config["versions"], VERSION_KEYS, f"{path}: 'versions'")
    return config


def _read_metrics(path: Path) -> tuple[dict[str, float | int | SkippedMetric], dict[str, Any]]:
    """Split metrics.json into metrics (`METRICS` keys and skipped entries) and the rest, the evaluation's details."""
    raw = _read_json_object(path)
    _require_keys(raw, METRICS_CONTEXT_KEYS, path)
    _check_type(raw["dataset_name"], (str,), "dataset_name", path, "a string")
    _check_type(raw["split"], (str,), "split", path, "a string")
    _check_type(raw["num_images"], (int,), "num_images", path, "an integer")
    _check_type(raw["resolution"], (int, str), "resolution", path, "an integer, or a string such as '64x48'")
    metrics: dict[str, float | int | SkippedMetric] = {}
    evaluation: dict[str, Any] = {}
    for key, value in raw.items():
        if key in METRICS or (isinstance(value, dict) and key not in METRICS_CONTEXT_KEYS):
            metrics[key] = _read_metric(value, key, path)
        else:
            # context, and how the metrics were computed (networks, weights, provenance); numbers here are not
            # metrics, so a provenance entry such as a batch size never reaches model-index
            evaluation[key] = value
    if not metrics:
        raise ValueError(f"{path} holds no metric; expected at least one of {list(METRICS)}")
    return metrics, evaluation


def _read_metric(value: Any, key: str, path: Path) -> float | int | SkippedMetric:
    if isinstance(value, dict):
        if value.get("skipped") is not True or not isinstance(value.get("reason"), str):
            raise ValueError(f'{path}: {key!r} got {value!r}; expected {{"skipped": true, "reason": "..."}}')
        return SkippedMetric(value["reason"])
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(
            f'{path}: {key!r} got {value!r}; expected a finite number or {{"skipped": true, "reason": "..."}}'
        )
    return value

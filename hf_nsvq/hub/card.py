"""Render a training output folder's model card: YAML metadata with model-index results, and the body.

Every number in a card comes from the folder's `config.json`, `training_config.json` or `metrics.json`, or is derived
from them (the downsampling factor, the token grid); the template holds text only.
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any

from huggingface_hub import EvalResult, ModelCard, ModelCardData
from huggingface_hub.utils import HFValidationError, validate_repo_id

from ..quantizers import get_quantizer_class
from .folder import METRICS, METRICS_CONTEXT_KEYS, SkippedMetric, TrainingOutput, read_training_output

TEMPLATE_NAME = "model_card_template.md"
CARD_NAME = "README.md"
DEFAULT_LICENSE = "apache-2.0"
# model-index needs a task; a tokenizer is judged on reconstructing its input.
TASK_TYPE, TASK_NAME = "image-to-image", "Image reconstruction"


def render_model_card(folder: str | Path, repo_id: str | None = None, *, license: str = DEFAULT_LICENSE) -> ModelCard:
    r"""Render the model card of a training output folder (the schema of `hf_nsvq.hub.folder`).

    Args:
        folder (`str` or `Path`): The training output folder.
        repo_id (`str`, *optional*): The Hub repository the card is for; its loading snippets load from it. Without
            one they load from `folder`.
        license (`str`, *optional*, defaults to `"apache-2.0"`): The license of the weights, a Hub license id.

    Returns:
        `huggingface_hub.ModelCard`: The card; `card.data.eval_results` holds one `EvalResult` per measured metric
        (skipped metrics appear only in the body).

    Raises:
        FileNotFoundError: when the folder lacks a required file.
        ValueError: when a JSON file lacks a key or holds a wrong value, or `repo_id` is not a valid repo id.
    """
    output = read_training_output(folder)
    if repo_id is not None and not _is_repo_id(repo_id):
        raise ValueError(f"repo_id got {repo_id!r}; expected a Hub repository id such as 'user/vq-tokenizer'")
    model_name = repo_id or output.path.name
    dataset_name = output.training_config["dataset_name"]
    # a namespaced id ("owner/name"): a bare name may be the embedded sample set or a local dataset script
    dataset_on_hub = (
        output.training_config["train_data_dir"] is None and _is_repo_id(dataset_name) and "/" in dataset_name
    )
    card_data = ModelCardData(
        license=license,
        library_name="diffusers",
        tags=["hf_nsvq", "vector-quantization", "vq-vae", output.model_config["quantizer_type"], "image-tokenizer"],
        datasets=[dataset_name] if dataset_on_hub else None,
        eval_results=_eval_results(output) or None,
        model_name=model_name,
    )
    with resources.as_file(resources.files("hf_nsvq").joinpath(TEMPLATE_NAME)) as template_path:
        return ModelCard.from_template(
            card_data, template_path=str(template_path), **_template_values(output, model_name, repo_id)
        )


def write_model_card(folder: str | Path, repo_id: str | None = None, *, license: str = DEFAULT_LICENSE) -> Path:
    """Render the card of `folder` (see [`render_model_card`]) and write it as `folder/README.md`; returns that path.

    The training script calls this at the end of a run, `hf-nsvq card` and `push_to_hub` call it again once
    `metrics.json` or the repository id is known. An existing README.md is replaced: the card is derived output.
    """
    card = render_model_card(folder, repo_id, license=license)
    path = Path(folder) / CARD_NAME
    card.save(path)
    return path


def _resolution_text(resolution: int | str | None) -> str:
    """metrics.json's resolution: an int for square images, else a string such as '64x48'."""
    return f"{resolution} × {resolution}" if isinstance(resolution, int) else str(resolution)


def _is_repo_id(name: str | None) -> bool:
    if name is None:
        return False
    try:
        validate_repo_id(name)
    except HFValidationError:
        return False
    return True


def _eval_results(output: TrainingOutput) -> list[EvalResult]:
    """One model-index entry per measured metric, with the evaluation's dataset, revision and split."""
    if output.evaluation is None:
        return []
    evaluation = output.evaluation
    return [
        EvalResult(
            task_type=TASK_TYPE,
            task_name=TASK_NAME,
            dataset_type=evaluation["dataset_name"],
            dataset_name=evaluation["dataset_name"],
            dataset_split=evaluation["split"],
            dataset_revision=evaluation["dataset_revision"],
            metric_type=key,
            metric_name=METRICS.get(key, (key, ""))[0],
            metric_value=value,
        )
        for key, value in output.metrics.items()
        if not isinstance(value, SkippedMetric)
    ]


def _metric_rows(metrics: dict[str, float | int | SkippedMetric]) -> list[dict[str, str]]:
    """The body's metrics table: measured values to four significant digits (model-index keeps the full value)."""
    rows = []
    for key, value in metrics.items():
        name, better = METRICS.get(key, (key, ""))  # a skipped entry of an unknown key shows under its key
        if isinstance(value, SkippedMetric):
            shown = f"skipped ({value.reason})"
        else:
            shown = str(value) if isinstance(value, int) else f"{value:.4g}"
        rows.append({"name": name, "value": shown, "better": better})
    return rows


def _template_values(output: TrainingOutput, model_name: str, repo_id: str | None) -> dict[str, Any]:
    model, training = output.model_config, output.training_config
    quantizer_class = get_quantizer_class(model["quantizer_type"])
    num_downsamplings = len(model["block_out_channels"]) - 1  # every encoder block but the last halves H and W
    downsampling_factor = 2**num_downsamplings
    evaluation = output.evaluation or {}
    return {
        "model_name": model_name,
        "model_id": repo_id or str(output.path),
        "quantizer_type": model["quantizer_type"],
        "quantizer_summary": (quantizer_class.__doc__ or "").strip().splitlines()[0],
        "quantizer_kwargs": json.dumps(model["quantizer_kwargs"], sort_keys=True) if model["quantizer_kwargs"] else "",
        "num_vq_embeddings": model["num_vq_embeddings"],
        "vq_embed_dim": model["vq_embed_dim"] or model["latent_channels"],
        "latent_channels": model["latent_channels"],
        "num_downsamplings": num_downsamplings,
        "downsampling_factor": downsampling_factor,
        "resolution": training["resolution"],
        "token_grid": training["resolution"] // downsampling_factor,
        "metric_rows": _metric_rows(output.metrics),
        "evaluation": evaluation,
        "evaluation_resolution": _resolution_text(evaluation.get("resolution")),
        "evaluation_details": [
            (key, value if isinstance(value, str) else json.dumps(value))
            for key, value in evaluation.items()
            if key not in METRICS_CONTEXT_KEYS
        ],
        "dataset_name": training["dataset_name"],
        "dataset_revision": training["dataset_revision"],
        "train_data_dir": training["train_data_dir"],
        "max_train_steps": training["max_train_steps"],
        "seed": training["seed"],
        "command": training["command"],
        "versions": list(training["versions"].items()),
    }

"""Model cards and Hub uploads for the pipeline folders of `train_ldm.py` and `train_ar_prior.py`.

(`hf_nsvq.hub` renders and uploads tokenizer folders; a pipeline folder has another layout and another card.)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from huggingface_hub import HfApi, ModelCard, ModelCardData

from ..hub.push import IGNORE_PATTERNS as TOKENIZER_IGNORE_PATTERNS
from ..hub.push import upload_folder_to_hub

# Resumable state, logs and the token cache are not part of a published pipeline.
IGNORE_PATTERNS = [*TOKENIZER_IGNORE_PATTERNS, "token_cache/*"]
CARD_NAME = "README.md"


def write_pipeline_card(
    folder: str | Path,
    title: str,
    summary: str,
    usage: str,
    training_config: dict[str, Any],
    metrics: dict[str, Any] | None = None,
    tags: tuple[str, ...] = (),
) -> Path:
    r"""Write `folder/README.md`: Hub metadata, what the pipeline is, how to load it, how it was trained.

    Args:
        folder (`str` or `Path`): The pipeline folder.
        title (`str`): The card's heading.
        summary (`str`): One paragraph on what the pipeline is.
        usage (`str`): Python code that loads and runs it.
        training_config (`dict`): The run's `training_config.json`; its `command`, data source, steps and first-stage
            source are shown.
        metrics (`dict`, *optional*): Shown as a table when given (e.g. the prior's validation loss).
        tags (`tuple[str, ...]`, *optional*): Hub tags besides `hf_nsvq`.
    """
    data = ModelCardData(
        library_name="diffusers", pipeline_tag="unconditional-image-generation", tags=["hf_nsvq", *tags]
    )
    lines = [f"# {title}", "", summary, "", "## Use", "", "```python", usage.strip(), "```", "", "## Training", ""]
    for key, label in (
        ("vqvae_source", "first stage"),
        ("dataset_source", "data"),
        ("global_step", "optimizer steps"),
        ("scaling_factor", "latent scaling factor"),
    ):
        if training_config.get(key) is not None:
            lines.append(f"- {label}: `{training_config[key]}`")
    lines += ["", "```bash", str(training_config.get("command", "")), "```", ""]
    if metrics:
        lines += ["## Validation", "", "| metric | value |", "|---|---|"]
        lines += [f"| {key} | {value:.6g} |" for key, value in metrics.items() if isinstance(value, int | float)]
        lines.append("")
    card = ModelCard(f"---\n{data.to_yaml()}\n---\n\n" + "\n".join(lines))
    path = Path(folder) / CARD_NAME
    card.save(path)
    return path


def push_pipeline_folder(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = "Upload pipeline trained with hf_nsvq",
    api: HfApi | None = None,
) -> str:
    r"""Create the Hub model repository `repo_id` (if needed) and upload the pipeline folder; returns the commit URL.

    Checkpoints, logs and the token cache stay local (`IGNORE_PATTERNS`). `api` defaults to `HfApi()`; anything with
    `create_repo` and `upload_folder` works (the tests pass a recording fake).

    Raises:
        FileNotFoundError: when `folder` has no `model_index.json`.
        OfflineModeIsEnabled: when `HF_HUB_OFFLINE` is set and `api` is a real `HfApi`.
    """
    if not (Path(folder) / "model_index.json").is_file():
        raise FileNotFoundError(
            f"{str(folder)!r} has no model_index.json; expected a pipeline saved by save_pretrained"
        )
    return upload_folder_to_hub(folder, repo_id, token, private, commit_message, api, IGNORE_PATTERNS)

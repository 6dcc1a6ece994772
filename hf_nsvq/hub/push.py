"""Upload a training output folder to the Hub, with its model card rendered as README.md first."""

from __future__ import annotations

from pathlib import Path

from huggingface_hub import HfApi
from huggingface_hub.utils import OfflineModeIsEnabled

from ..offline import hub_offline
from .card import DEFAULT_LICENSE, write_model_card

# Resumable training state, logs and partial writes are not part of the published model.
IGNORE_PATTERNS = ["checkpoint-*", "logs/*", "*.tmp"]
DEFAULT_COMMIT_MESSAGE = "Upload VQ tokenizer trained with hf_nsvq"


def push_to_hub(
    folder: str | Path,
    repo_id: str,
    token: str | None = None,
    private: bool = False,
    commit_message: str = DEFAULT_COMMIT_MESSAGE,
    api: HfApi | None = None,
    *,
    license: str = DEFAULT_LICENSE,
) -> str:
    r"""Write the model card of a training output folder, create the Hub repository and upload the folder.

    Args:
        folder (`str` or `Path`): A training output folder (the schema of `hf_nsvq.hub.folder`).
        repo_id (`str`): The model repository to create or update, e.g. `"user/celebahq-nsvq-f4"`.
        token (`str`, *optional*): A Hub token; defaults to the one `huggingface_hub` finds (login, `HF_TOKEN`).
        private (`bool`, *optional*, defaults to `False`): Create the repository private (an existing one keeps its
            visibility).
        commit_message (`str`, *optional*): The message of the upload commit.
        api (`huggingface_hub.HfApi`, *optional*): The client to call; defaults to `HfApi()`. Anything with
            `create_repo` and `upload_folder` works (the tests pass a recording fake).
        license (`str`, *optional*, defaults to `"apache-2.0"`): The license the card declares for the weights.

    Returns:
        `str`: The URL of the upload commit.

    Raises:
        FileNotFoundError, ValueError: when the folder does not match the schema (checked before anything is sent).
        OfflineModeIsEnabled: when `HF_HUB_OFFLINE` is set and `api` is a real `HfApi`.
    """
    # Validate and render before any network call, so a bad folder fails the same way online and offline.
    card_path = write_model_card(folder, repo_id, license=license)
    return upload_folder_to_hub(
        folder,
        repo_id,
        token,
        private,
        commit_message,
        api,
        IGNORE_PATTERNS,
        offline_hint=f"; unset it to upload (the model card was written to {card_path})",
    )


def upload_folder_to_hub(
    folder: str | Path,
    repo_id: str,
    token: str | None,
    private: bool,
    commit_message: str,
    api: HfApi | None,
    ignore_patterns: list[str],
    offline_hint: str = "",
) -> str:
    """Create the model repository if needed and upload `folder`; returns the commit URL.

    Fails fast with `OfflineModeIsEnabled` (before any network call) when the Hub is offline and `api` is a real
    `HfApi`; `api=None` means `HfApi()`. Shared by the tokenizer push and the pipeline push.
    """
    api = HfApi() if api is None else api
    if isinstance(api, HfApi) and hub_offline():
        raise OfflineModeIsEnabled(f"cannot push {str(folder)!r} to {repo_id!r}: HF_HUB_OFFLINE is set{offline_hint}")
    api.create_repo(repo_id, exist_ok=True, private=private, repo_type="model", token=token)
    commit = api.upload_folder(
        folder_path=str(folder),
        repo_id=repo_id,
        commit_message=commit_message,
        ignore_patterns=ignore_patterns,
        token=token,
    )
    return commit.commit_url

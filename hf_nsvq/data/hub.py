"""Hub datasets: fail fast when the Hub cannot be reached, and pin the exact commit when it can."""

from __future__ import annotations

import re

import datasets
from huggingface_hub import HfApi
from huggingface_hub.errors import GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import validate_repo_id

from ..offline import hub_offline as _hub_offline
from .splits import load_split

DEFAULT_DATASET = "korexyz/celeba-hq-256x256"
DEFAULT_REVISION = "main"
# One metadata request; a slow or filtered network fails here within seconds instead of mid-download.
HUB_TIMEOUT_S = 10.0

_COMMIT_SHA = re.compile(r"[0-9a-f]{40}")


class HubUnreachableError(ConnectionError):
    """The Hub cannot be reached (offline mode or a network error) and the dataset is not in the local cache."""


def hub_offline() -> bool:
    """Whether the Hub is off for datasets (see `hf_nsvq.offline.hub_offline`)."""
    return _hub_offline(for_datasets=True)


def unreachable_message(dataset_name: str, reason: str) -> str:
    """The error every Hub failure ends in: why, and the two offline ways to train."""
    return (
        f"cannot load the Hub dataset {dataset_name!r}: {reason}. To train without the Hub, pass "
        "`--train_data_dir PATH` (a local image folder) or `--dataset_name embedded` (the offline sample set: crops "
        "of the photographs inside scikit-image); `load_image_dataset(..., fallback_to_embedded=True)` switches to "
        "the latter automatically"
    )


def resolve_revision(dataset_name: str, revision: str = DEFAULT_REVISION) -> str:
    """The commit sha that `revision` (branch, tag or sha) of a Hub dataset points to now (one API call).

    Raises `HubUnreachableError` when the Hub cannot be reached and `ValueError` when the repository or revision
    does not exist (or is gated and no token grants access).
    """
    try:
        return HfApi().dataset_info(dataset_name, revision=revision, timeout=HUB_TIMEOUT_S).sha
    except GatedRepoError as error:
        raise ValueError(
            f"Hub dataset {dataset_name!r} is gated: accept its terms and log in (`hf auth login`)"
        ) from error
    except RepositoryNotFoundError as error:
        raise ValueError(
            f"Hub dataset {dataset_name!r} not found (or private: log in with `hf auth login`); "
            "for a local folder pass --train_data_dir"
        ) from error
    except RevisionNotFoundError as error:
        raise ValueError(f"revision {revision!r} not found in Hub dataset {dataset_name!r}") from error
    except Exception as error:  # DNS, refused connection, timeout, 5xx: the Hub is not usable right now
        reason = f"the Hub could not be reached ({type(error).__name__}: {error})"
        raise HubUnreachableError(unreachable_message(dataset_name, reason)) from error


def load_hub_split(
    dataset_name: str, split: str, revision: str | None = None, cache_dir: str | None = None
) -> tuple[datasets.Dataset, str | None]:
    r"""Load one split of a Hub dataset at an exact commit; returns `(dataset, commit_sha)`.

    Online, `revision` (default `"main"`) is first resolved to its commit sha, and that sha is what is loaded, so
    the recorded sha is exactly the data trained on. In offline mode (`HF_HUB_OFFLINE=1`) nothing touches the
    network: the dataset loads from the local cache if it is there (the sha is then known only if `revision`
    was one), else `HubUnreachableError` is raised at once.
    """
    try:
        validate_repo_id(dataset_name)
    except ValueError as error:
        raise ValueError(
            f"dataset_name {dataset_name!r} is not 'embedded', an existing directory, or a Hub dataset id "
            "('name' or 'namespace/name')"
        ) from error
    revision = revision or DEFAULT_REVISION
    if hub_offline():
        if not datasets.config.HF_HUB_OFFLINE:
            # The variable was set after `datasets` was imported: it would still try the network (and wait).
            raise HubUnreachableError(unreachable_message(dataset_name, "offline mode is on (HF_HUB_OFFLINE)"))
        try:
            dataset = load_split(dataset_name, split, repr(dataset_name), revision=revision, cache_dir=cache_dir)
        except (ConnectionError, FileNotFoundError) as error:
            reason = "offline mode is on (HF_HUB_OFFLINE) and it is not in the local cache"
            raise HubUnreachableError(unreachable_message(dataset_name, reason)) from error
        return dataset, revision if _COMMIT_SHA.fullmatch(revision) else None
    sha = resolve_revision(dataset_name, revision)
    try:
        dataset = load_split(dataset_name, split, repr(dataset_name), revision=sha, cache_dir=cache_dir)
    except ConnectionError as error:  # the connection dropped between the metadata call and the download
        reason = f"the download failed ({type(error).__name__}: {error})"
        raise HubUnreachableError(unreachable_message(dataset_name, reason)) from error
    return dataset, sha

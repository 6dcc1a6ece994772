"""Is the Hub switched off? One answer for data loading, model loading and publishing.

Checked before any Hub call so that an offline machine fails at once with a useful message instead of waiting for
network timeouts. Light on purpose: it imports neither `datasets` nor `diffusers`.
"""

from __future__ import annotations

import os
import sys

from huggingface_hub import constants as hub_constants

_TRUE_VALUES = {"1", "ON", "YES", "TRUE"}


def hub_offline(for_datasets: bool = False) -> bool:
    """Offline mode of huggingface_hub (and of datasets when `for_datasets`): the libraries' flags, or the
    environment if it was set after they were imported."""
    names = ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE") if for_datasets else ("HF_HUB_OFFLINE",)
    if any(os.environ.get(name, "").upper() in _TRUE_VALUES for name in names) or hub_constants.HF_HUB_OFFLINE:
        return True
    datasets = sys.modules.get("datasets") if for_datasets else None
    return bool(datasets is not None and datasets.config.HF_HUB_OFFLINE)

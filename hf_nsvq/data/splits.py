"""`datasets.load_dataset` for one split, with an unknown split reported as the list of the ones that exist."""

from __future__ import annotations

import ast
import re

import datasets

# datasets' own wording: 'Unknown split "validation". Should be one of [\'train\'].'
_UNKNOWN_SPLIT = re.compile(r"Unknown split \"[^\"]*\"\. Should be one of (\[.*?\])")


def load_split(path: str, split: str, description: str, **kwargs) -> datasets.Dataset:
    """`datasets.load_dataset(path, split=split, **kwargs)`; `description` names the source in errors."""
    try:
        return datasets.load_dataset(path, split=split, **kwargs)
    except ValueError as error:
        match = _UNKNOWN_SPLIT.search(str(error))
        if match is None:
            raise
        try:
            available = ", ".join(str(name) for name in ast.literal_eval(match.group(1)))
        except (ValueError, SyntaxError):
            available = match.group(1)
        raise ValueError(f"split {split!r} not found in {description}; available splits: {available}") from error

"""training_config.json: what a training run was given and ran with, written next to its outputs."""

from __future__ import annotations

import argparse
import shlex
import sys

import torch


def training_config(script: str, args: argparse.Namespace, train_data, **extra) -> dict:
    """Every flag (the Hub token left out), the command line, the training data's source and revision, the library
    versions, and the script's own `extra` entries."""
    import accelerate
    import diffusers
    import transformers

    from .. import __version__

    config = dict(vars(args))
    config.pop("hub_token", None)
    config.update(
        command=f"accelerate launch training_scripts/{script} " + shlex.join(sys.argv[1:]),
        dataset_revision=train_data.revision,
        dataset_source=train_data.source,
        num_train_images=len(train_data.dataset),
        skipped_images=train_data.num_skipped,
        versions={
            "torch": torch.__version__,
            "diffusers": diffusers.__version__,
            "transformers": transformers.__version__,
            "accelerate": accelerate.__version__,
            "hf_nsvq": __version__,
        },
        **extra,
    )
    return config

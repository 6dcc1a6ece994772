"""What the training scripts share about their data: the dataset flags they all take, and the epoch arithmetic."""

from __future__ import annotations

import argparse
import math


def dataset_kwargs(args: argparse.Namespace) -> dict:
    """The `load_image_dataset` keywords every training script takes from its data flags (split and sample cap
    are per call)."""
    return dict(
        dataset_name=args.dataset_name,
        train_data_dir=args.train_data_dir,
        revision=args.dataset_revision,
        image_column=args.image_column,
        cache_dir=args.cache_dir,
        resolution=args.resolution,
        on_bad_image=args.on_bad_image,
    )


def plan_epochs(
    num_batches: int, num_examples: int, num_processes: int, args: argparse.Namespace
) -> tuple[int, int, int]:
    """`(updates_per_epoch, max_train_steps, num_epochs)` for a `drop_last` dataloader of `num_batches` batches, from
    the flags `--train_batch_size`, `--gradient_accumulation_steps`, `--max_train_steps` and `--num_train_epochs`.

    accelerate deals the batches out to the processes in turns and, with drop_last, drops an incomplete last turn:
    each process gets `num_batches // num_processes` batches an epoch. (Rounding up counted steps that never come,
    so a multi-process run stopped short of --max_train_steps and resumed at the wrong batch.) `max_train_steps`
    defaults to `num_train_epochs` epochs.
    """
    batches_per_process = num_batches // num_processes
    if batches_per_process == 0:
        raise ValueError(
            f"{num_examples} training images are fewer than one batch of --train_batch_size {args.train_batch_size} "
            f"per process ({num_processes} processes); lower the batch size or add images"
        )
    updates_per_epoch = math.ceil(batches_per_process / args.gradient_accumulation_steps)
    max_train_steps = args.max_train_steps
    if max_train_steps is None:
        max_train_steps = args.num_train_epochs * updates_per_epoch
    return updates_per_epoch, max_train_steps, math.ceil(max_train_steps / updates_per_epoch)


def image_dataloader(train_data, args: argparse.Namespace):
    """`(transform, dataset, dataloader)` of a loaded image split: the `--resolution`/`--center_crop`/`--random_flip`
    transform seeded by `--seed`, shuffled `drop_last` batches of `--train_batch_size`."""
    import torch

    from ..data import ImageTransform

    transform = ImageTransform(args.resolution, center_crop=args.center_crop, random_flip=args.random_flip)
    dataset = train_data.to_torch(transform, seed=args.seed)
    dataloader = torch.utils.data.DataLoader(
        dataset,
        batch_size=args.train_batch_size,
        shuffle=True,
        drop_last=True,
        num_workers=args.dataloader_num_workers,
    )
    return transform, dataset, dataloader

"""The start of every training script: the Accelerator, logging, the seed, and which checkpoint to resume from."""

from __future__ import annotations

import argparse
import logging
from pathlib import Path

from accelerate import Accelerator
from accelerate.logging import get_logger
from accelerate.utils import DataLoaderConfiguration, ProjectConfiguration, set_seed

from .checkpoints import checkpoint_step, resolve_resume_path

logger = get_logger(__name__)


def start_run(args: argparse.Namespace, output_dir: Path) -> tuple[Accelerator, Path | None]:
    """`(accelerator, resume_path)` from the flags every training script takes; `resume_path` is None when the run
    starts fresh (no `--resume_from_checkpoint`, or `latest` with no complete checkpoint yet)."""
    accelerator = Accelerator(
        gradient_accumulation_steps=args.gradient_accumulation_steps,
        mixed_precision=args.mixed_precision,
        log_with=None if args.report_to == "none" else args.report_to,
        project_config=ProjectConfiguration(project_dir=str(output_dir), logging_dir=str(output_dir / "logs")),
        # a seeded sampler reshuffles per epoch from (seed, epoch), so a resumed run sees the same order
        dataloader_config=DataLoaderConfiguration(use_seedable_sampler=True, data_seed=args.seed),
    )
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    set_seed(args.seed)
    resume_path = None
    if args.resume_from_checkpoint:
        resume_path = resolve_resume_path(output_dir, args.resume_from_checkpoint)
        if resume_path is None:
            logger.info("no complete checkpoint in %s yet: starting a new run", output_dir)
    return accelerator, resume_path


def resume_position(
    accelerator: Accelerator, resume_path: Path | None, updates_per_epoch: int, gradient_accumulation_steps: int
) -> tuple[int, int, int]:
    """Load the checkpoint at `resume_path` (if any) and return `(global_step, first_epoch, skip_batches)`: where the
    interrupted run stood, in optimizer steps, epochs and dataloader batches of the current epoch."""
    global_step = 0
    if resume_path is not None:
        accelerator.print(f"resuming from {resume_path}")
        accelerator.load_state(str(resume_path))
        global_step = checkpoint_step(resume_path)
    first_epoch = global_step // updates_per_epoch
    skip_batches = (global_step % updates_per_epoch) * gradient_accumulation_steps
    return global_step, first_epoch, skip_batches

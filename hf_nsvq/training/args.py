"""The command-line flags every training script shares, with each script's own defaults, and their shared checks."""

from __future__ import annotations

import argparse

from ..data import DEFAULT_DATASET
from ..offline import hub_offline


def add_optimisation_arguments(
    parser: argparse.ArgumentParser,
    train_batch_size: int,
    learning_rate: float,
    adam_betas: tuple[float, float],
    adam_weight_decay: float,
    lr_scheduler: str,
    lr_warmup_steps: int,
    num_train_epochs: int,
):
    """The "optimisation" group (AdamW, LR schedule, steps, seed, precision); returns it for script-specific flags."""
    optim = parser.add_argument_group("optimisation")
    optim.add_argument("--train_batch_size", type=int, default=train_batch_size, help="per process")
    optim.add_argument("--gradient_accumulation_steps", type=int, default=1)
    optim.add_argument("--learning_rate", type=float, default=learning_rate)
    optim.add_argument("--adam_beta1", type=float, default=adam_betas[0])
    optim.add_argument("--adam_beta2", type=float, default=adam_betas[1])
    optim.add_argument("--adam_weight_decay", type=float, default=adam_weight_decay)
    optim.add_argument("--lr_scheduler", default=lr_scheduler)
    optim.add_argument("--lr_warmup_steps", type=int, default=lr_warmup_steps)
    optim.add_argument("--max_train_steps", type=int, default=None)
    optim.add_argument("--num_train_epochs", type=int, default=num_train_epochs)
    optim.add_argument("--max_grad_norm", type=float, default=1.0)
    optim.add_argument("--seed", type=int, default=0)
    optim.add_argument("--mixed_precision", choices=["no", "fp16", "bf16"], default=None)
    return optim


def add_run_arguments(parser: argparse.ArgumentParser):
    """The "run" group's output, checkpoint and resume flags; returns it for script-specific flags."""
    run = parser.add_argument_group("run")
    run.add_argument("--output_dir", required=True)
    run.add_argument("--checkpointing_steps", type=int, default=500)
    run.add_argument("--checkpoints_total_limit", type=int, default=None)
    run.add_argument("--resume_from_checkpoint", default=None, help="'latest' or a checkpoint-<step> folder")
    return run


def add_logging_and_hub_arguments(run) -> None:
    """Logging cadence, trackers and `--push_to_hub` with its repository flags (checked by `check_shared_args`)."""
    run.add_argument("--logging_steps", type=int, default=10)
    run.add_argument("--report_to", default="tensorboard", help="tensorboard, wandb, all or none")
    run.add_argument("--push_to_hub", action="store_true")
    run.add_argument("--hub_model_id", default=None)
    run.add_argument("--hub_token", default=None)
    run.add_argument("--hub_private", action="store_true")


def check_shared_args(
    parser: argparse.ArgumentParser,
    args: argparse.Namespace,
    offline_advice: str = "unset it or train without --push_to_hub",
) -> None:
    """Default dataset, and `--push_to_hub` needs a repository id and a reachable Hub (`parser.error` otherwise)."""
    if args.dataset_name is None and args.train_data_dir is None:
        args.dataset_name = DEFAULT_DATASET
    if args.push_to_hub and not args.hub_model_id:
        parser.error("--push_to_hub needs --hub_model_id")
    if args.push_to_hub and hub_offline():
        parser.error(f"--push_to_hub needs the Hub but HF_HUB_OFFLINE is set; {offline_advice}")

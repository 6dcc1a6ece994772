"""`hf-nsvq demo`: train a small VQ-VAE with every quantizer on the offline sample set and compare them."""

from __future__ import annotations

import argparse
import time

from ..quantizers import list_quantizers


def register(subparsers) -> None:
    from ..demo import DemoConfig

    defaults = DemoConfig()
    demo = subparsers.add_parser(
        "demo", help="train a small VQ-VAE per quantizer on bundled photographs; compare utilisation and quality"
    )
    demo.add_argument("--output_dir", default="hf_nsvq_demo", help="results.{json,md} and PNG figures go here")
    demo.add_argument("--quantizers", nargs="+", choices=list_quantizers(), default=defaults.quantizers)
    demo.add_argument("--steps", type=int, default=defaults.steps)
    demo.add_argument("--batch_size", type=int, default=defaults.batch_size)
    demo.add_argument("--learning_rate", type=float, default=defaults.learning_rate)
    demo.add_argument("--resolution", type=int, default=defaults.resolution)
    demo.add_argument("--codebook_size", type=int, default=defaults.codebook_size)
    demo.add_argument("--latent_channels", type=int, default=defaults.latent_channels)
    demo.add_argument("--base_channels", type=int, default=defaults.base_channels)
    demo.add_argument("--downsample_factor", type=int, default=defaults.downsample_factor)
    demo.add_argument("--seed", type=int, default=defaults.seed)
    demo.add_argument("--max_train_samples", type=int, default=None)
    demo.add_argument("--max_eval_samples", type=int, default=None)
    demo.add_argument(
        "--downstream",
        action="store_true",
        help="also train a tiny AR prior on the vanilla and NSVQ tokens; report its bits per token and samples",
    )
    demo.add_argument("--downstream_steps", type=int, default=300, help="prior updates per tokenizer")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..demo import DemoConfig, run_demo
    from ..demo.run import format_table

    config = DemoConfig(
        quantizers=args.quantizers,
        steps=args.steps,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        resolution=args.resolution,
        codebook_size=args.codebook_size,
        latent_channels=args.latent_channels,
        base_channels=args.base_channels,
        downsample_factor=args.downsample_factor,
        seed=args.seed,
        max_train_samples=args.max_train_samples,
        max_eval_samples=args.max_eval_samples,
    )
    start = time.perf_counter()
    rows, trained = run_demo(config, args.output_dir, keep_models=True)
    print(f"\nHeld-out metrics after {config.steps} steps per quantizer (K = {config.codebook_size}):\n")
    print(format_table(rows))
    print(
        f"\nwrote {args.output_dir}/results.json, results.md, utilisation.png, code_usage.png, reconstructions.png "
        f"in {time.perf_counter() - start:.0f} s"
    )
    if args.downstream:
        _run_downstream(args, config, trained)


def _run_downstream(args: argparse.Namespace, config, trained) -> None:
    from ..demo.downstream import format_downstream_table, run_downstream, tokenizers_for_downstream
    from ..demo.train import train_vqvae

    def train_one(name: str):
        # a tokenizer the demo did not train (not in --quantizers) gets the demo's budget, so the two compare fairly
        record = train_vqvae(
            name, trained.train_images, config.steps, config.batch_size, config.learning_rate,
            config.codebook_size, config.latent_channels, config.base_channels, config.downsample_factor,
            config.seed, config.log_every, config.window,
        )  # fmt: skip
        return record.model

    start = time.perf_counter()
    tokenizers = tokenizers_for_downstream(trained.models, train_one)
    rows = run_downstream(
        tokenizers, trained.train_images, trained.eval_images, args.output_dir, args.downstream_steps, seed=args.seed
    )
    print("\nAR prior on each tokenizer's tokens (held-out crops):\n")
    print(format_downstream_table(rows))
    print(
        f"\nwrote {args.output_dir}/downstream.json, downstream.md, "
        f"{', '.join(row['samples'] for row in rows)} in {time.perf_counter() - start:.0f} s"
    )

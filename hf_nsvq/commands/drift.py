"""`hf-nsvq drift`: the drift toy, a 2-D codebook trained online on data whose distribution moves."""

from __future__ import annotations

import argparse


def register(subparsers) -> None:
    drift = subparsers.add_parser(
        "drift", help="train 2-D codebooks online on drifting data and report how many codes stay alive"
    )
    drift.add_argument(
        "--output_dir", default=None, help="write drift_toy.json and drift_toy/*.png here (default: print only)"
    )
    drift.add_argument("--steps", type=int, default=None, help="training steps per run (default 2000; quick: 100)")
    drift.add_argument("--seeds", type=int, default=None, help="number of seeds, 0..n-1 (default 3; quick: 1)")
    drift.add_argument("--quick", action="store_true", help="a smoke run of a few seconds (drifts are 20x faster)")
    drift.add_argument(
        "--workers", type=int, default=None, help="processes to run the runs in (default: one per core; quick: 1)"
    )
    drift.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from dataclasses import replace
    from pathlib import Path

    from ..drift_toy import DriftConfig, default_workers, format_table, run_drift_toy, write_results

    config = DriftConfig.quick() if args.quick else DriftConfig()
    if args.steps is not None:
        config = replace(config, steps=args.steps)
    num_seeds = args.seeds if args.seeds is not None else (1 if args.quick else 3)
    if num_seeds < 1:
        raise ValueError(f"--seeds must be >= 1; got {num_seeds}")
    # Spawned workers each pay the package import (seconds), which only pays off for the full run.
    workers = args.workers if args.workers is not None else (1 if args.quick else default_workers())
    results = run_drift_toy(config, seeds=list(range(num_seeds)), workers=workers)
    print(
        f"\nDrift toy: K={config.num_codes} codes in 2-D, {config.steps} steps of batch {config.batch_size}, "
        f"Adam lr {config.lr}, {num_seeds} seed(s), mean ± std; wall time {results['wall_seconds']:.1f} s\n"
    )
    print(format_table(results))
    if args.output_dir:
        output_dir = Path(args.output_dir)
        write_results(results, output_dir / "drift_toy.json", output_dir / "drift_toy")
        print(f"\nwrote {output_dir / 'drift_toy.json'} and two PNGs per scenario under {output_dir / 'drift_toy'}")

"""`hf-nsvq` command line: each sub-command lives in its own module under `hf_nsvq.commands`."""

from __future__ import annotations

import argparse
import importlib

# One line per sub-command module; each exposes `register(subparsers)` and sets `func` on its parser.
COMMAND_MODULES = [
    "hf_nsvq.commands.demo",
    "hf_nsvq.commands.drift",
    "hf_nsvq.commands.evaluate",
    "hf_nsvq.commands.push",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-nsvq", description="Collapse-free vector quantizers for diffusers.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    """Run a sub-command; errors propagate (for callers and tests)."""
    args = build_parser().parse_args(argv)
    args.func(args)


def run() -> None:
    """Console entry point: a bad input ends with its one-line message and exit status 2, not a traceback."""
    import sys

    try:
        main()
    except (ValueError, FileNotFoundError, OSError) as error:
        print(f"hf-nsvq: error: {error}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    run()

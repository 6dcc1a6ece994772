"""`hf-nsvq` command line: each sub-command lives in its own module under `hf_nsvq.commands`."""

from __future__ import annotations

import argparse
import importlib

# One line per sub-command module; each exposes `register(subparsers)` and sets `func` on its parser.
COMMAND_MODULES = [
    "hf_nsvq.commands.demo",
    "hf_nsvq.commands.push",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-nsvq", description="Collapse-free vector quantizers for diffusers.")
    subparsers = parser.add_subparsers(dest="command", required=True)
    for module in COMMAND_MODULES:
        importlib.import_module(module).register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

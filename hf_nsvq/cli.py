"""`hf-nsvq` command line."""

from __future__ import annotations

import argparse

from .quantizers import list_quantizers


def _demo(args: argparse.Namespace) -> None:
    from .codebook_demo import format_table, run_demo

    rows = run_demo(
        image=args.image,
        patch_size=args.patch_size,
        codebook_size=args.codebook_size,
        steps=args.steps,
        batch_size=args.batch_size,
        seed=args.seed,
        quantizers=args.quantizers,
        output_dir=args.output_dir,
    )
    print(
        f"\nCodebook fit on {args.patch_size}x{args.patch_size} patches of scikit-image's '{args.image}' "
        f"(K={args.codebook_size}, {args.steps} steps); utilisation over all patches:\n"
    )
    print(format_table(rows))
    if args.output_dir:
        print(f"\nwrote {args.output_dir}/codebook_demo.json and one reconstruction PNG per quantizer")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hf-nsvq", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    demo = commands.add_parser("demo", help="fit every quantizer to a real photograph and compare code usage")
    demo.add_argument("--image", default="astronaut", help="a photograph bundled with scikit-image")
    demo.add_argument("--patch_size", type=int, default=4)
    demo.add_argument("--codebook_size", type=int, default=256)
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--batch_size", type=int, default=1024)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quantizers", nargs="+", choices=list_quantizers(), default=None)
    demo.add_argument("--output_dir", default=None, help="write JSON results and reconstructions here")
    demo.set_defaults(func=_demo)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    args.func(args)


if __name__ == "__main__":
    main()

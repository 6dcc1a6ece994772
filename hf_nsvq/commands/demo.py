"""`hf-nsvq demo`: fit every quantizer to a real photograph and compare code usage."""

from __future__ import annotations

import argparse

from ..quantizers import list_quantizers


def register(subparsers) -> None:
    demo = subparsers.add_parser("demo", help="fit every quantizer to a real photograph and compare code usage")
    demo.add_argument("--image", default="astronaut", help="a photograph bundled with scikit-image")
    demo.add_argument("--patch_size", type=int, default=4)
    demo.add_argument("--codebook_size", type=int, default=256)
    demo.add_argument("--steps", type=int, default=300)
    demo.add_argument("--batch_size", type=int, default=1024)
    demo.add_argument("--seed", type=int, default=0)
    demo.add_argument("--quantizers", nargs="+", choices=list_quantizers(), default=None)
    demo.add_argument("--output_dir", default=None, help="write JSON results and reconstructions here")
    demo.set_defaults(func=run)


def run(args: argparse.Namespace) -> None:
    from ..codebook_demo import format_table, run_demo

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

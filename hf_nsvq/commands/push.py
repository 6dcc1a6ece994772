"""`hf-nsvq card` and `hf-nsvq push`: render a training output folder's model card, and publish the folder."""

from __future__ import annotations

import argparse

from ..hub.card import DEFAULT_LICENSE, write_model_card
from ..hub.push import DEFAULT_COMMIT_MESSAGE, push_to_hub


def register(subparsers) -> None:
    card = subparsers.add_parser("card", help="render a training output folder's model card as its README.md")
    card.add_argument("folder", help="a training output folder (config.json, vqvae/, training_config.json)")
    card.add_argument("--hub_model_id", default=None, help="the repo id the loading snippets load from")
    card.add_argument("--license", default=DEFAULT_LICENSE, help="the license of the weights (a Hub license id)")
    card.set_defaults(func=run_card)

    push = subparsers.add_parser("push", help="render the model card and upload a training output folder")
    push.add_argument("folder", help="a training output folder (config.json, vqvae/, training_config.json)")
    push.add_argument("--hub_model_id", required=True, help="the model repository to create or update")
    push.add_argument("--private", action="store_true", help="create the repository private")
    push.add_argument("--token", default=None, help="a Hub token (defaults to your login or HF_TOKEN)")
    push.add_argument("--commit_message", default=DEFAULT_COMMIT_MESSAGE)
    push.add_argument("--license", default=DEFAULT_LICENSE, help="the license of the weights (a Hub license id)")
    push.set_defaults(func=run_push)


def run_card(args: argparse.Namespace) -> None:
    print(f"wrote {write_model_card(args.folder, args.hub_model_id, license=args.license)}")


def run_push(args: argparse.Namespace) -> None:
    url = push_to_hub(
        args.folder,
        args.hub_model_id,
        token=args.token,
        private=args.private,
        commit_message=args.commit_message,
        license=args.license,
    )
    print(f"pushed {args.folder} to {args.hub_model_id}: {url}")

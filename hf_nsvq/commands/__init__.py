"""Sub-commands of `hf-nsvq`: one module each, exposing `register(subparsers)`; listed in `hf_nsvq.cli`."""

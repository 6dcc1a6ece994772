"""hf_nsvq: collapse-free vector quantizers (non-stationary NSVQ, TransVQ and baselines) for diffusers' VQModel.

`NSVQModel`, `replace_quantizer` and `VQTokenARPipeline` are imported on first use: they pull in diffusers, which takes seconds, and
code that only needs the quantizers (or spawns worker processes) should not pay for it.
"""

from .quantizers import build_quantizer, list_quantizers

__version__ = "0.1.0"

_LAZY = {
    "NSVQModel": "hf_nsvq.modeling",
    "replace_quantizer": "hf_nsvq.modeling",
    "VQTokenARPipeline": "hf_nsvq.pipelines",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'hf_nsvq' has no attribute {name!r}")


__all__ = ["NSVQModel", "VQTokenARPipeline", "__version__", "build_quantizer", "list_quantizers", "replace_quantizer"]

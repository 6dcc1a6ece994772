"""The quantizer registry: adding a method is one new file and one line in `QUANTIZERS`.

Everything else (the contract tests, the CLI and training-script choices, model cards) reads this registry.
"""

from __future__ import annotations

import importlib
import inspect

from .base import BaseVectorQuantizer, QuantizerInfo, QuantizerOutput

# name -> "module:Class" (imported lazily, so importing the registry stays cheap)
QUANTIZERS: dict[str, str] = {
    "vanilla": "hf_nsvq.quantizers.vanilla:VanillaVectorQuantizer",
    "ema": "hf_nsvq.quantizers.ema:EMAVectorQuantizer",
    "vqgan_fc": "hf_nsvq.quantizers.vqgan_fc:VQGANFCVectorQuantizer",
    "simvq": "hf_nsvq.quantizers.simvq:SimVQVectorQuantizer",
    "nsvq": "hf_nsvq.quantizers.nsvq:NSVQVectorQuantizer",
    "transvq": "hf_nsvq.quantizers.transvq:TransVQVectorQuantizer",
}


def list_quantizers() -> list[str]:
    """Names accepted by `build_quantizer`, in registry order."""
    return list(QUANTIZERS)


def get_quantizer_class(name: str) -> type[BaseVectorQuantizer]:
    """The class registered under `name`; raises `ValueError` listing the known names otherwise."""
    if name not in QUANTIZERS:
        raise ValueError(f"unknown quantizer {name!r}; available: {', '.join(list_quantizers())}")
    module_name, class_name = QUANTIZERS[name].split(":")
    return getattr(importlib.import_module(module_name), class_name)


def accepted_kwargs(name: str) -> list[str]:
    """Keyword arguments `build_quantizer(name, ...)` accepts beyond K and D (the class's and its bases')."""
    accepted: list[str] = []
    for klass in get_quantizer_class(name).__mro__:
        if klass is BaseVectorQuantizer.__mro__[1]:  # stop at nn.Module
            break
        for param in inspect.signature(klass.__init__).parameters.values():
            if param.kind is param.KEYWORD_ONLY or param.kind is param.POSITIONAL_OR_KEYWORD:
                if param.name not in ("self", "num_vq_embeddings", "vq_embed_dim") and param.name not in accepted:
                    accepted.append(param.name)
    return accepted


def build_quantizer(name: str, num_vq_embeddings: int, vq_embed_dim: int, **kwargs) -> BaseVectorQuantizer:
    """Build the quantizer `name` for K = `num_vq_embeddings` codes of dimension D = `vq_embed_dim`.

    Raises:
        ValueError: for an unknown name or keyword (the message lists what is accepted), or an invalid value.
    """
    klass = get_quantizer_class(name)
    unknown = sorted(set(kwargs) - set(accepted_kwargs(name)))
    if unknown:
        raise ValueError(
            f"unknown keyword argument(s) {unknown} for quantizer {name!r}; accepted: {', '.join(accepted_kwargs(name))}"
        )
    return klass(num_vq_embeddings, vq_embed_dim, **kwargs)


__all__ = [
    "QUANTIZERS",
    "BaseVectorQuantizer",
    "QuantizerInfo",
    "QuantizerOutput",
    "accepted_kwargs",
    "build_quantizer",
    "get_quantizer_class",
    "list_quantizers",
]

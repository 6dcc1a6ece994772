"""hf_nsvq: collapse-free vector quantizers (non-stationary NSVQ, TransVQ and baselines) for diffusers' VQModel."""

from .modeling import NSVQModel, replace_quantizer
from .quantizers import build_quantizer, list_quantizers

__version__ = "0.1.0"

__all__ = ["NSVQModel", "__version__", "build_quantizer", "list_quantizers", "replace_quantizer"]

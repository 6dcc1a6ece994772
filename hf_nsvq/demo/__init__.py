"""`hf-nsvq demo`: train a small VQ-VAE with every quantizer on the offline sample set and compare them."""

from .run import DemoConfig, run_demo

__all__ = ["DemoConfig", "run_demo"]

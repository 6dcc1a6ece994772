"""Downstream of a trained tokenizer: the autoregressive prior pipeline and the first-stage helpers of
`training_scripts/train_ldm.py` and `training_scripts/train_ar_prior.py`.

```python
from hf_nsvq.pipelines import VQTokenARPipeline

pipeline = VQTokenARPipeline.from_pretrained("out/ar-prior")
images = pipeline(batch_size=4, top_k=100, generator=torch.Generator().manual_seed(0)).images
```
"""

from .ar_pipeline import VQTokenARPipeline, VQTokenARPipelineOutput
from .first_stage import FirstStage, decode_tokens, downsample_factor, encode_tokens, load_first_stage
from .latents import estimate_scaling_factor, scaling_factor_indices
from .sampling import filter_logits, sample_tokens
from .token_cache import cached_tokens, tokenizer_fingerprint

__all__ = [
    "FirstStage",
    "VQTokenARPipeline",
    "VQTokenARPipelineOutput",
    "cached_tokens",
    "decode_tokens",
    "downsample_factor",
    "encode_tokens",
    "estimate_scaling_factor",
    "filter_logits",
    "load_first_stage",
    "sample_tokens",
    "scaling_factor_indices",
    "tokenizer_fingerprint",
]

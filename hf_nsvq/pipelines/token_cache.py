"""Tokenize an image dataset once and cache the code indices on disk, keyed by the tokenizer and the data settings.

A cache entry is `tokens-<key>.npy` (N, h, w) plus `tokens-<key>.json` (the key and what it was computed from). The
key is a SHA-256 of the tokenizer's class, config and every weight and buffer, and of the data settings, so an
unchanged run reuses the tokens and a changed tokenizer (or data, or crop) tokenizes again into a new entry.
Entries are written atomically by the main process; the `.json` is written last and marks an entry complete.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import torch
from accelerate.utils import broadcast_object_list
from diffusers import VQModel

from ..data import ImageTransform, LoadedDataset
from .first_stage import encode_tokens

logger = logging.getLogger(__name__)

KEY_LENGTH = 20  # hex digits of the key in file names (80 bits)


def tokenizer_fingerprint(model: VQModel) -> str:
    """SHA-256 of a model's class, config (keys without a leading underscore) and every state-dict tensor's bytes."""
    digest = hashlib.sha256(type(model).__name__.encode())
    config = {key: value for key, value in dict(model.config).items() if not key.startswith("_")}
    digest.update(json.dumps(config, sort_keys=True, default=str).encode())
    for name, tensor in sorted(model.state_dict().items()):
        tensor = tensor.detach().cpu().contiguous()
        digest.update(f"{name}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
        digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def data_settings(data: LoadedDataset, transform: ImageTransform) -> dict[str, Any]:
    """What the token array depends on besides the tokenizer: the images (source, split, revision, datasets'
    fingerprint of the files) and how they are cropped."""
    return {
        "source": data.source,
        "kind": data.kind,
        "name": data.name,
        "split": data.split,
        "revision": data.revision,
        "image_column": data.image_column,
        "num_images": len(data),
        "num_skipped": data.num_skipped,
        "fingerprint": getattr(data.dataset, "_fingerprint", None),
        "resolution": transform.resolution,
        "center_crop": transform.center_crop,
    }


def cache_key(tokenizer_hash: str, settings: dict[str, Any]) -> str:
    payload = json.dumps({"tokenizer": tokenizer_hash, "data": settings}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()


def cached_tokens(
    accelerator,
    tokenizer: VQModel,
    data: LoadedDataset,
    transform: ImageTransform,
    cache_dir: str | os.PathLike,
    batch_size: int = 32,
    num_workers: int = 0,
    tokenizer_hash: str | None = None,
) -> tuple[np.ndarray, Path]:
    r"""The code indices (N, h, w) of every image of `data`, from the cache or computed now (and cached).

    Every process calls this. On a miss the images are split into one contiguous shard per process, tokenized, and
    gathered; the main process writes the entry, and every process returns the same array.

    Args:
        accelerator (`accelerate.Accelerator`): Provides the processes, the device and `gather`.
        tokenizer (`diffusers.VQModel`): An `NSVQModel` or a stock `VQModel`, frozen and in eval mode.
        data (`LoadedDataset`): The images, from `hf_nsvq.data.load_image_dataset`.
        transform (`ImageTransform`): How images become tensors; random crops and flips are rejected (the tokens of
            one fixed view are cached).
        cache_dir (`str` or `os.PathLike`): Where entries live; several runs may share it.
        batch_size (`int`, *optional*, defaults to 32): Images per tokenizer forward.
        num_workers (`int`, *optional*, defaults to 0): Dataloader workers for decoding images.
        tokenizer_hash (`str`, *optional*): `tokenizer_fingerprint(tokenizer)`, when already computed.

    Returns:
        `(tokens, path)`: a uint16 (K <= 65536) or int32 array (N, h, w), and the `.npy` of the entry.
    """
    if not transform.center_crop or transform.random_flip:
        raise ValueError(f"tokens are cached for one fixed view of each image; got {transform!r}")
    settings = data_settings(data, transform)
    key = cache_key(tokenizer_hash or tokenizer_fingerprint(tokenizer), settings)
    path = Path(cache_dir) / f"tokens-{key[:KEY_LENGTH]}.npy"
    meta_path = path.with_suffix(".json")
    hit = [_complete(meta_path, key)]
    if accelerator.num_processes > 1:
        broadcast_object_list(hit)  # one decision: a process that tokenized alone would wait for the others forever
    if hit[0]:
        logger.info("reusing cached tokens %s (%d images of %s)", path, len(data), data.source)
        return np.load(path), path

    logger.info("tokenizing %d images of %s (no cache entry %s yet)", len(data), data.source, path.name)
    tokens = _tokenize(accelerator, tokenizer, data.to_torch(transform), batch_size, num_workers)
    num_codes = tokenizer.config.num_vq_embeddings
    tokens = tokens.astype(np.uint16 if num_codes <= 2**16 else np.int32)
    if accelerator.is_main_process:
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomically(path, lambda handle: np.save(handle, tokens))
        metadata = {"key": key, "shape": list(tokens.shape), "num_vq_embeddings": num_codes, "data": settings}
        _write_atomically(meta_path, lambda handle: handle.write(json.dumps(metadata, indent=2).encode()))
        logger.info("cached tokens %s of shape %s", path, tokens.shape)
    accelerator.wait_for_everyone()
    return tokens, path


def _complete(meta_path: Path, key: str) -> bool:
    if not (meta_path.is_file() and meta_path.with_suffix(".npy").is_file()):
        return False
    try:
        return json.loads(meta_path.read_text()).get("key") == key
    except (json.JSONDecodeError, OSError):
        return False


def _write_atomically(path: Path, write) -> None:
    staging = path.with_name(f".{path.name}.tmp")
    with open(staging, "wb") as handle:
        write(handle)
    os.replace(staging, path)


@torch.no_grad()
def _tokenize(accelerator, tokenizer: VQModel, dataset, batch_size: int, num_workers: int) -> np.ndarray:
    """Contiguous shards padded to one length (gather needs equal shapes), gathered in rank order, then trimmed."""
    total = len(dataset)
    per_process = math.ceil(total / accelerator.num_processes)
    start = min(accelerator.process_index * per_process, total)
    indices = list(range(start, min(start + per_process, total)))
    indices += [total - 1] * (per_process - len(indices))
    loader = torch.utils.data.DataLoader(
        torch.utils.data.Subset(dataset, indices), batch_size=batch_size, num_workers=num_workers
    )
    tokens = torch.cat([encode_tokens(tokenizer, batch["pixel_values"]) for batch in loader])
    if accelerator.num_processes > 1:
        tokens = accelerator.gather(tokens)
    return tokens[:total].cpu().numpy()

"""Load the model to evaluate: an `NSVQModel` when its config says so, else a stock `diffusers.VQModel`."""

from __future__ import annotations

from pathlib import Path

from diffusers import VQModel
from huggingface_hub import try_to_load_from_cache

from ..modeling import NSVQModel
from ..offline import hub_offline

CONFIG_NAME = "config.json"
MODEL_CLASSES = {"NSVQModel": NSVQModel, "VQModel": VQModel}


def load_vq_model(
    model_name_or_path: str,
    subfolder: str | None = None,
    revision: str | None = None,
    cache_dir: str | None = None,
) -> VQModel:
    """Load a VQ-VAE for evaluation from a local folder or a Hub repository.

    The class comes from the config's `_class_name`: `NSVQModel` (rebuilds its hf_nsvq quantizer) or `VQModel`
    (stock diffusers, e.g. the `vqvae/` of a pipeline). With `HF_HUB_OFFLINE=1` a Hub id that is not in the local
    cache fails at once with a `ValueError` instead of waiting on the network.

    Args:
        model_name_or_path (`str`): A local folder holding `config.json` (or `subfolder/config.json`), or a Hub id.
        subfolder (`str`, *optional*): E.g. `"vqvae"` for the baked stock model of a training output folder.
        revision (`str`, *optional*): Hub revision (branch, tag or commit).
        cache_dir (`str`, *optional*): Hub cache folder.
    """
    config_file = CONFIG_NAME if subfolder is None else f"{subfolder}/{CONFIG_NAME}"
    local = Path(model_name_or_path).expanduser()
    if local.is_dir():
        if not (local / config_file).is_file():
            raise ValueError(f"{str(local)!r} has no {config_file}; expected a folder written by save_pretrained")
        # Load a local subfolder by its own path: diffusers' `subfolder=` would pick up a weights file in the parent
        # folder first (an NSVQModel output folder has one), loading the wrong model's weights.
        model_name_or_path = str(local / subfolder) if subfolder else str(local)
        subfolder = None
    elif local.exists() or model_name_or_path.startswith((".", "/", "~")) or model_name_or_path.count("/") > 1:
        raise ValueError(
            f"model got {model_name_or_path!r}; expected an existing model folder or a Hub id 'user/name'"
        )
    elif hub_offline():
        cached = try_to_load_from_cache(model_name_or_path, config_file, cache_dir=cache_dir, revision=revision)
        if not isinstance(cached, str):
            raise ValueError(
                f"model got {model_name_or_path!r}, which is not a local folder, and HF_HUB_OFFLINE is set with no "
                f"cached copy of {config_file}: download it where the Hub is reachable (`hf download "
                f"{model_name_or_path} --local-dir DIR`) and pass --model DIR, or unset HF_HUB_OFFLINE"
            )
    kwargs = {"subfolder": subfolder, "revision": revision, "cache_dir": cache_dir}
    config = VQModel.load_config(model_name_or_path, **kwargs)
    class_name = config.get("_class_name")
    if class_name not in MODEL_CLASSES:
        raise ValueError(
            f"{model_name_or_path!r} holds a {class_name!r} config; expected one of {sorted(MODEL_CLASSES)!r}"
        )
    return MODEL_CLASSES[class_name].from_pretrained(model_name_or_path, **kwargs)

"""Image data for training and evaluation: one loader for the Hub, a local folder, or the embedded sample set.

```python
from hf_nsvq.data import ImageTransform, load_image_dataset

data = load_image_dataset(dataset_name="embedded", split="train", resolution=64)  # or a Hub id, or train_data_dir=
train_dataset = data.to_torch(ImageTransform(64, center_crop=False, random_flip=True), seed=0)
train_dataset[0]["pixel_values"]  # (3, 64, 64) float32 in [-1, 1]
```
"""

from .embedded import EMBEDDED_DATASET, embedded_crops, load_embedded_dataset
from .folder import load_image_folder
from .hub import DEFAULT_DATASET, DEFAULT_REVISION, HubUnreachableError, hub_offline, resolve_revision
from .modes import to_rgb
from .sources import LoadedDataset, find_image_column, load_image_dataset
from .transforms import ImageTransform, TransformedImageDataset, check_resolution, collate_fn, sample_seed

__all__ = [
    "DEFAULT_DATASET",
    "DEFAULT_REVISION",
    "EMBEDDED_DATASET",
    "HubUnreachableError",
    "ImageTransform",
    "LoadedDataset",
    "TransformedImageDataset",
    "check_resolution",
    "collate_fn",
    "embedded_crops",
    "find_image_column",
    "hub_offline",
    "load_embedded_dataset",
    "load_image_dataset",
    "load_image_folder",
    "resolve_revision",
    "sample_seed",
    "to_rgb",
]

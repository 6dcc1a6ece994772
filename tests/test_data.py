"""The image-data layer: sources, up-front validation, mode conversion, transforms, the embedded set, offline Hub.

Real files written with PIL into tmp_path, real `datasets` loaders, no mocks. The Hub is offline (conftest).
"""

import io
import logging
import time

import datasets
import numpy as np
import pytest
import torch
from PIL import Image

from hf_nsvq.data import (
    DEFAULT_DATASET,
    EMBEDDED_DATASET,
    HubUnreachableError,
    ImageTransform,
    check_resolution,
    collate_fn,
    embedded_crops,
    hub_offline,
    load_image_dataset,
    to_rgb,
)
from hf_nsvq.data.embedded import BICUBIC_RADIUS
from hf_nsvq.sample_images import SAMPLE_IMAGES


def pattern(height: int, width: int) -> np.ndarray:
    """A smooth colour pattern (compresses like a photograph, so JPEG round trips stay close)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // max(1, width - 1), y * 255 // max(1, height - 1), (x + y) % 256], -1).astype(np.uint8)


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


GOOD_FILES = (
    "rgb.png",
    "rgb.jpg",
    "grey.png",
    "cmyk.jpg",
    "rgba.png",
    "palette.png",
    "palette_alpha.png",
    "grey16.png",
)
BAD_FILES = ("truncated.png", "truncated.jpg", "garbage.png")


@pytest.fixture
def image_folder(tmp_path):
    folder = tmp_path / "images"
    folder.mkdir()
    rgb = Image.fromarray(pattern(48, 80))
    rgb.save(folder / "rgb.png")
    rgb.save(folder / "rgb.jpg", quality=95)
    rgb.convert("L").save(folder / "grey.png")
    rgb.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(np.where(np.arange(80) < 40, 0, 255).astype(np.uint8)[None].repeat(48, 0)))
    rgba.save(folder / "rgba.png")  # left half fully transparent
    rgb.convert("P").save(folder / "palette.png")
    palette = Image.new("P", (40, 40), 0)
    palette.putpalette([0, 0, 0, 200, 30, 30] + [0] * 762)
    palette.paste(1, (20, 0, 40, 40))
    palette.save(folder / "palette_alpha.png", transparency=0)  # colour 0 (black, left half) is transparent
    Image.fromarray(np.full((40, 60), 32896, dtype=np.uint16)).save(folder / "grey16.png")
    encoded = png_bytes(rgb)
    (folder / "truncated.png").write_bytes(encoded[: len(encoded) // 2])
    jpeg = io.BytesIO()
    Image.fromarray(pattern(256, 256)).save(jpeg, format="JPEG")
    (folder / "truncated.jpg").write_bytes(jpeg.getvalue()[: len(jpeg.getvalue()) * 3 // 4])
    (folder / "garbage.png").write_bytes(b"this is not a PNG")
    (folder / "notes.txt").write_text("not an image; imagefolder must ignore it")
    return folder


def load_folder(folder, tmp_path, **kwargs):
    return load_image_dataset(train_data_dir=str(folder), cache_dir=str(tmp_path / "cache"), **kwargs)


def file_names(loaded) -> list[str]:
    raw = loaded.dataset.cast_column(loaded.image_column, datasets.Image(decode=False))
    return [row[loaded.image_column]["path"].rsplit("/", 1)[-1] for row in raw]


# ---- local folders ------------------------------------------------------------------------------------------------


def test_folder_skips_unreadable_images_and_ignores_other_files(image_folder, tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_nsvq.data"):
        loaded = load_folder(image_folder, tmp_path)
    assert sorted(file_names(loaded)) == sorted(GOOD_FILES)  # no notes.txt, no bad file
    assert loaded.num_skipped == len(BAD_FILES) == len(loaded.skipped)
    assert sorted(entry.split(":")[0].rsplit("/", 1)[-1] for entry in loaded.skipped) == sorted(BAD_FILES)
    assert f"skipped {len(BAD_FILES)} unreadable image(s)" in caplog.text
    assert (loaded.kind, loaded.image_column, loaded.revision, loaded.split) == ("folder", "image", None, "train")
    assert loaded.metadata()["num_images"] == len(GOOD_FILES)


def test_folder_on_bad_image_fail_names_the_first_bad_file(image_folder, tmp_path):
    first_bad = sorted(BAD_FILES)[0]  # imagefolder lists files in sorted order
    with pytest.raises(ValueError, match=rf"unreadable image .*{first_bad}.*on_bad_image='skip'"):
        load_folder(image_folder, tmp_path, on_bad_image="fail")


def test_every_mode_converts_to_rgb(image_folder, tmp_path):
    loaded = load_folder(image_folder, tmp_path)
    images = dict(zip(file_names(loaded), loaded.dataset[loaded.image_column], strict=True))
    assert {images[name].mode for name in GOOD_FILES} == {"RGB", "L", "CMYK", "RGBA", "P", "I;16"}
    rgb = {name: np.asarray(to_rgb(image)) for name, image in images.items()}
    assert all(array.dtype == np.uint8 and array.shape[2] == 3 for array in rgb.values())
    reference = pattern(48, 80).astype(int)
    assert np.abs(rgb["cmyk.jpg"].astype(int) - reference).mean() < 4  # CMYK JPEG back to the same colours
    assert np.array_equal(rgb["grey.png"][..., 0], rgb["grey.png"][..., 2])
    # alpha is composited on white: the transparent half is white, the opaque half keeps its colours
    assert (rgb["rgba.png"][:, :40] == 255).all()
    assert np.array_equal(rgb["rgba.png"][:, 40:], pattern(48, 80)[:, 40:])
    assert (rgb["palette_alpha.png"][:, :20] == 255).all() and (
        rgb["palette_alpha.png"][:, 20:] == [200, 30, 30]
    ).all()
    # 16-bit samples are rescaled (32896 / 257 = 128), not clipped to white
    assert (rgb["grey16.png"] == 128).all()


def test_empty_folder_and_folder_without_images(tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match=r"no images found in train_data_dir .*empty.*; it is empty"):
        load_folder(empty, tmp_path)
    (empty / "readme.txt").write_text("no images here")
    with pytest.raises(ValueError, match=r"no images found .*it holds only readme\.txt"):
        load_folder(empty, tmp_path)
    with pytest.raises(ValueError, match=r"train_data_dir .*missing.* is not a directory"):
        load_folder(tmp_path / "missing", tmp_path)


def test_unknown_split_lists_the_available_ones(image_folder, tmp_path):
    with pytest.raises(ValueError, match=r"split 'validation' not found in image folder .*; available splits: train$"):
        load_folder(image_folder, tmp_path, split="validation")


def test_image_column_errors_list_the_columns(image_folder, tmp_path):
    with pytest.raises(
        ValueError, match=r"image_column 'picture' is not a column .*available columns: image \(Image\)"
    ):
        load_folder(image_folder, tmp_path, image_column="picture")
    table = tmp_path / "table"
    table.mkdir()
    (table / "data.csv").write_text("caption,score\na cat,1\na dog,2\n")
    with pytest.raises(
        ValueError, match=r"has no image column; pass image_column .*caption \(Value\), score \(Value\)"
    ):
        load_image_dataset(dataset_name=str(table), cache_dir=str(tmp_path / "cache"))


def test_max_samples_keeps_the_first_readable_images(image_folder, tmp_path):
    full = load_folder(image_folder, tmp_path)
    subset = load_folder(image_folder, tmp_path, max_samples=3)
    assert len(subset) == 3
    assert file_names(subset) == file_names(full)[:3]


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({}, "pass exactly one of dataset_name and train_data_dir"),
        ({"dataset_name": "embedded", "train_data_dir": "x"}, "pass exactly one of dataset_name and train_data_dir"),
        (
            {"dataset_name": "embedded", "on_bad_image": "ignore"},
            "on_bad_image must be one of skip, fail; got 'ignore'",
        ),
        ({"dataset_name": "embedded", "max_samples": 0}, "max_samples must be a positive int or None; got 0"),
        ({"dataset_name": "embedded", "revision": "main"}, "revision applies only to Hub datasets"),
        ({"dataset_name": "embedded", "split": "test"}, "split 'test' .*available splits: train, validation"),
        ({"dataset_name": "not/a/hub/id"}, "is not 'embedded', an existing directory, or a Hub dataset id"),
    ],
)
def test_argument_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        load_image_dataset(**kwargs)


# ---- the embedded sample set ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def embedded():
    return {split: load_image_dataset(dataset_name=EMBEDDED_DATASET, split=split) for split in ("train", "validation")}


def test_embedded_sizes_and_content(embedded):
    train, validation = embedded["train"], embedded["validation"]
    assert 2500 <= len(train) <= 5000 and 200 <= len(validation) <= 600  # 3,430 and 350 with the pinned stack
    for loaded in (train, validation):
        assert (loaded.kind, loaded.image_column, loaded.num_skipped) == ("embedded", "image", 0)
        assert set(loaded.dataset["photo"]) == set(SAMPLE_IMAGES)
        image = loaded.dataset[0]["image"]
        assert (image.mode, image.size) == ("RGB", (64, 64))
    assert len(embedded_crops(32, "validation")) > len(validation)


def test_embedded_set_is_deterministic_and_lossless(embedded):
    fresh = embedded_crops(64, "train")
    stored = embedded["train"].dataset
    assert len(fresh) == len(stored)
    for index in (0, 1, len(fresh) // 2, len(fresh) - 1):
        assert np.array_equal(np.asarray(stored[index]["image"]), fresh[index].pixels)
        assert stored[index]["box"] == list(fresh[index].box)
    first, second = embedded_crops(64, "validation"), embedded_crops(64, "validation")
    assert all(np.array_equal(a.pixels, b.pixels) and a.box == b.box for a, b in zip(first, second, strict=True))


def test_embedded_validation_never_overlaps_training(embedded):
    def rows(split):
        table = embedded[split].dataset.select_columns(["photo", "scale", "box"])
        return list(zip(table["photo"], table["scale"], table["box"], strict=True))

    held_out = {}
    for photo, _, box in rows("validation"):
        held_out.setdefault(photo, []).append(box)
    for photo, scale, (left, top, right, bottom) in rows("train"):
        # a downscaled crop also reads the pixels within the bicubic kernel's reach of its footprint
        reach = 0 if scale == 1.0 else BICUBIC_RADIUS / scale
        for v_left, v_top, v_right, v_bottom in held_out[photo]:
            disjoint = (
                right + reach <= v_left
                or v_right <= left - reach
                or bottom + reach <= v_top
                or v_bottom <= top - reach
            )
            assert disjoint, (photo, scale, (left, top, right, bottom), (v_left, v_top, v_right, v_bottom))
    train_hashes = {hash(np.asarray(image).tobytes()) for image in embedded["train"].dataset["image"]}
    assert not train_hashes & {hash(np.asarray(image).tobytes()) for image in embedded["validation"].dataset["image"]}


# ---- the Hub, offline -------------------------------------------------------------------------------------------------


def test_offline_hub_dataset_fails_fast_naming_the_alternatives(tmp_path):
    assert hub_offline()  # conftest sets HF_HUB_OFFLINE=1
    start = time.perf_counter()
    with pytest.raises(HubUnreachableError) as error:
        load_image_dataset(dataset_name=DEFAULT_DATASET, cache_dir=str(tmp_path / "cache"))
    assert time.perf_counter() - start < 5.0
    assert "--train_data_dir PATH" in str(error.value)
    assert "--dataset_name embedded" in str(error.value)
    assert isinstance(error.value, ConnectionError)


def test_fallback_to_embedded_logs_one_line(tmp_path, caplog):
    with caplog.at_level(logging.WARNING, logger="hf_nsvq.data"):
        loaded = load_image_dataset(
            dataset_name=DEFAULT_DATASET,
            split="validation",
            image_column="img",
            cache_dir=str(tmp_path / "cache"),
            fallback_to_embedded=True,
        )
    assert loaded.fell_back and (loaded.kind, loaded.name, loaded.image_column) == ("embedded", "embedded", "image")
    assert len(loaded) > 0 and loaded.metadata()["fell_back_to_embedded"]
    notices = [record.getMessage() for record in caplog.records if "embedded" in record.getMessage()]
    assert len(notices) == 1 and "\n" not in notices[0] and DEFAULT_DATASET in notices[0]


# ---- transforms -----------------------------------------------------------------------------------------------------


def test_transform_shape_range_and_center_crop():
    image = Image.fromarray(np.concatenate([np.zeros((40, 60, 3)), np.full((40, 60, 3), 255)], 1).astype(np.uint8))
    output = ImageTransform(32, center_crop=True)(image)  # 40 x 120 -> 32 x 96 -> the middle 32 x 32
    assert output.shape == (3, 32, 32) and output.dtype == torch.float32 and output.is_contiguous()
    assert output.min() >= -1 and output.max() <= 1
    assert (output[:, :, :14] == -1).all() and (output[:, :, 18:] == 1).all()
    assert ImageTransform(32)(Image.fromarray(pattern(10, 12))).shape == (3, 32, 32)  # small images are upscaled


def test_random_transform_is_a_function_of_the_generator():
    image = Image.fromarray(pattern(50, 90))
    transform = ImageTransform(32, center_crop=False, random_flip=True)
    outputs = [transform(image, torch.Generator().manual_seed(seed)) for seed in (0, 0, 1, 2, 3)]
    assert torch.equal(outputs[0], outputs[1])
    assert len({tuple(output.flatten()[:64].tolist()) for output in outputs}) > 2
    unflipped = ImageTransform(32, center_crop=True, random_flip=False)(image)
    flipping = ImageTransform(32, center_crop=True, random_flip=True)
    flips = [flipping(image, torch.Generator().manual_seed(seed)) for seed in range(8)]
    assert any(torch.equal(f, unflipped) for f in flips) and any(torch.equal(f, unflipped.flip(2)) for f in flips)


def test_torch_dataset_is_seeded_per_sample_and_epoch(embedded):
    transform = ImageTransform(48, center_crop=False, random_flip=True)
    first, second = (
        embedded["validation"].to_torch(transform, seed=7),
        embedded["validation"].to_torch(transform, seed=7),
    )
    assert torch.equal(first[5]["pixel_values"], second[5]["pixel_values"])
    epoch_zero = [first[i]["pixel_values"] for i in range(8)]
    first.set_epoch(1)
    assert any(not torch.equal(first[i]["pixel_values"], epoch_zero[i]) for i in range(8))
    loader = torch.utils.data.DataLoader(second, batch_size=4, collate_fn=collate_fn)
    batch = next(iter(loader))["pixel_values"]
    assert batch.shape == (4, 3, 48, 48) and batch.dtype == torch.float32
    assert torch.equal(batch[0], epoch_zero[0])
    with pytest.raises(IndexError):
        first[len(first)]


def test_check_resolution():
    check_resolution(64, 8)
    with pytest.raises(ValueError, match=r"resolution 100 is not divisible by the model's downsample factor 8"):
        check_resolution(100, 8)
    with pytest.raises(ValueError, match=r"downsample_factor must be a positive int; got 0"):
        check_resolution(64, 0)

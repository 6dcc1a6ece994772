"""Faults and hostile inputs: a kill mid-run, NaN mid-training, broken files, a resume with other flags.

Each ends in a clear error or a documented safe behaviour, and loses nothing complete. Tested elsewhere, not repeated
here: a config.json with an unknown `quantizer_type` or unknown kwargs
(test_modeling.py::test_config_with_unknown_quantizer_or_kwarg_fails_clearly); indices of another codebook size fed to
`decode_indices` (test_modeling.py::test_decode_indices_rejects_bad_indices); unreadable files and every image mode
in the data layer (test_data.py); an uncached Hub id in `load_vq_model` with HF_HUB_OFFLINE
(test_evaluation.py::test_offline_hub_id_fails_fast_with_what_to_do); NaN on one of two processes
(test_distributed_training.py::test_nan_on_one_rank_stops_both_at_the_same_step_and_keeps_the_last_checkpoint).
"""

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file, save_file
from training_helpers import SCRIPT, SUBPROCESS_ENV, TINY, import_train_vqvae, one_thread, run_in_process

from hf_nsvq import NSVQModel
from hf_nsvq.training.checkpoints import COMPLETE_MARKER, list_checkpoints, resolve_resume_path

MAX_STEPS, EVERY = 30, 3  # long enough that a kill after the first checkpoint lands mid-run
WEIGHTS = "diffusion_pytorch_model.safetensors"


def hostile_folder(folder):
    """12 RGB PNGs, CMYK / greyscale / RGBA / palette images, a text file and an unreadable PNG."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    for index in range(12):
        Image.fromarray(rng.integers(0, 256, (20, 20, 3), dtype=np.uint8)).save(folder / f"rgb_{index:02d}.png")
    photo = Image.fromarray(rng.integers(0, 256, (24, 22, 3), dtype=np.uint8))
    photo.convert("CMYK").save(folder / "cmyk.jpg", quality=95)
    photo.convert("L").save(folder / "grey.png")
    photo.convert("RGBA").save(folder / "rgba.png")
    photo.convert("P").save(folder / "palette.png")
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 40)
    return folder


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    with one_thread():
        yield


@pytest.fixture(scope="module")
def straight(tmp_path_factory):
    """An uninterrupted run on the hostile folder: the reference every interrupted run must reproduce bit for bit."""
    tmp = tmp_path_factory.mktemp("faults")
    data = hostile_folder(tmp / "images")
    args = [*TINY, "--train_data_dir", str(data), "--cache_dir", str(tmp / "cache"), "--quantizer", "nsvq"]
    args += ["--random_flip", "--random_crop", "--max_train_steps", str(MAX_STEPS)]
    args += ["--checkpointing_steps", str(EVERY), "--bandwidth_period_steps", "2"]
    run_in_process([*args, "--output_dir", str(tmp / "straight")])
    return {"args": args, "out": tmp / "straight"}


def assert_same_model(folder, reference):
    ours = NSVQModel.from_pretrained(folder).state_dict()
    theirs = NSVQModel.from_pretrained(reference).state_dict()
    assert ours.keys() == theirs.keys()
    for key, value in theirs.items():
        assert torch.equal(ours[key], value), key  # bitwise on CPU: parameters, codebook, NSVQ step


def test_a_hostile_image_folder_trains_end_to_end(straight):
    config = json.loads((straight["out"] / "training_config.json").read_text())
    # notes.txt is not an image (ignored), broken.png is unreadable (skipped and counted), the other modes convert
    assert config["num_train_images"] == 16 and config["skipped_images"] == 1
    assert config["global_step"] == MAX_STEPS
    assert list_checkpoints(straight["out"])[-1].name == f"checkpoint-{MAX_STEPS}"


# ------------------------------------------------------------------------------------------------ kill and resume


def test_resolve_resume_path_never_picks_a_half_written_checkpoint(tmp_path):
    def checkpoint(name, complete):
        (tmp_path / name / "model").mkdir(parents=True)
        (tmp_path / name / "model" / WEIGHTS).write_bytes(b"half")
        if complete:
            (tmp_path / name / COMPLETE_MARKER).write_text("done")

    checkpoint("checkpoint-2", complete=True)
    checkpoint("checkpoint-10", complete=True)  # steps sort as numbers, not strings
    checkpoint("checkpoint-12", complete=False)  # written by a writer that was killed (no marker)
    checkpoint(".checkpoint-14.tmp", complete=True)  # killed between the marker and the rename: never renamed
    checkpoint("checkpoint-latest", complete=True)  # not a step
    (tmp_path / "checkpoint-16").write_text("a file, not a folder")
    assert list_checkpoints(tmp_path) == [tmp_path / "checkpoint-2", tmp_path / "checkpoint-10"]
    assert resolve_resume_path(tmp_path, "latest") == tmp_path / "checkpoint-10"
    assert resolve_resume_path(tmp_path / "empty", "latest") is None
    with pytest.raises(ValueError, match=r"checkpoint-12' is incomplete \(no checkpoint_complete file"):
        resolve_resume_path(tmp_path, str(tmp_path / "checkpoint-12"))
    with pytest.raises(ValueError, match=r"not a checkpoint folder name"):
        resolve_resume_path(tmp_path, str(tmp_path / ".checkpoint-14.tmp"))


def test_sigkill_mid_run_then_resume_latest_equals_an_uninterrupted_run(straight, tmp_path):
    out = tmp_path / "killed"
    env = {**os.environ, **SUBPROCESS_ENV}
    with open(tmp_path / "log.txt", "w") as log:
        process = subprocess.Popen(
            [sys.executable, str(SCRIPT), *straight["args"], "--output_dir", str(out)], stdout=log, stderr=log, env=env
        )
        deadline = time.monotonic() + 180
        while not (out / f"checkpoint-{EVERY}" / COMPLETE_MARKER).exists():
            assert process.poll() is None, (tmp_path / "log.txt").read_text()[-3000:]
            assert time.monotonic() < deadline, "no checkpoint after 180 s"
            time.sleep(0.01)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL
    assert not (out / "config.json").exists()  # the kill landed mid-run, before the final outputs

    latest = resolve_resume_path(out, "latest")
    step = int(latest.name.split("-")[1])
    assert step % EVERY == 0 and step < MAX_STEPS and (latest / COMPLETE_MARKER).exists()
    # What a kill at other moments leaves behind, at steps the resumed run passes through again: a folder without
    # the marker (a writer killed before it) and a staging folder with it (killed before the rename). Neither may be
    # taken as latest, and the resumed run replaces both.
    shutil.copytree(latest, out / f"checkpoint-{step + EVERY}", dirs_exist_ok=True)
    (out / f"checkpoint-{step + EVERY}" / COMPLETE_MARKER).unlink()
    shutil.copytree(latest, out / f".checkpoint-{step + 2 * EVERY}.tmp", dirs_exist_ok=True)
    assert resolve_resume_path(out, "latest") == latest

    run_in_process([*straight["args"], "--output_dir", str(out), "--resume_from_checkpoint", "latest"])
    assert_same_model(out, straight["out"])
    assert list_checkpoints(out) == [out / f"checkpoint-{s}" for s in range(EVERY, MAX_STEPS + 1, EVERY)]
    assert not list(out.glob(".checkpoint-*"))


# ------------------------------------------------------------------------------------------------ NaN mid-training


def test_nan_mid_training_names_the_step_and_the_last_checkpoint_resumes_exactly(straight, tmp_path, monkeypatch):
    train_vqvae = import_train_vqvae()
    original = train_vqvae.build_model

    def poisoned_build_model(*args, **kwargs):
        model = original(*args, **kwargs)
        forwards = [0]

        def hook(module, inputs, output):
            if module.training:
                forwards[0] += 1
                if forwards[0] == 2 * EVERY + 1:  # the step after checkpoint-6
                    return output * float("nan")
            return None

        model.quant_conv.register_forward_hook(hook)
        return model

    out = tmp_path / "diverged"
    monkeypatch.setattr(train_vqvae, "build_model", poisoned_build_model)
    with pytest.raises(RuntimeError, match=r"training diverged at step 6: z holds NaN or Inf .* is intact"):
        run_in_process([*straight["args"], "--output_dir", str(out)])
    monkeypatch.setattr(train_vqvae, "build_model", original)
    assert list_checkpoints(out) == [out / f"checkpoint-{EVERY}", out / f"checkpoint-{2 * EVERY}"]
    assert not (out / "config.json").exists() and not list(out.glob(".checkpoint-*"))
    saved = NSVQModel.from_pretrained(out / f"checkpoint-{2 * EVERY}", subfolder="model").state_dict()
    assert all(torch.isfinite(v).all() for v in saved.values() if v.is_floating_point())  # NaN never reached it

    run_in_process([*straight["args"], "--output_dir", str(out), "--resume_from_checkpoint", "latest"])
    assert_same_model(out, straight["out"])


# ------------------------------------------------------------------------------------------------ resume with other flags


def digest(folder):
    return {
        p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()
    }


@pytest.mark.parametrize(
    "flags, damage, message",
    [
        (["--num_vq_embeddings", "32"], None, r"has num_vq_embeddings=16 but this run builds num_vq_embeddings=32"),
        (["--layers_per_block", "2"], None, r"holds tensors of other shapes than this run builds"),
        ([], "drop quantize.step", r"model/ does not match its own config.json \(missing tensors \['quantize.step'\]"),
    ],
)
def test_resume_with_another_architecture_or_a_damaged_checkpoint_fails_and_changes_nothing(
    straight, tmp_path, flags, damage, message
):
    out = tmp_path / "out"
    checkpoint = out / f"checkpoint-{EVERY}"
    shutil.copytree(straight["out"] / f"checkpoint-{EVERY}", checkpoint)
    if damage:
        # diffusers would only warn and leave the step at 0: the bandwidth schedule would restart, silently
        weights = load_file(checkpoint / "model" / WEIGHTS)
        del weights["quantize.step"]
        save_file(weights, checkpoint / "model" / WEIGHTS)
    before = digest(out)
    with pytest.raises(ValueError, match=message):
        run_in_process([*straight["args"], *flags, "--output_dir", str(out), "--resume_from_checkpoint", "latest"])
    assert digest(out) == before  # nothing trained, nothing written, the checkpoint untouched


# ------------------------------------------------------------------------------------------------ broken model files


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: data[: len(data) // 2],  # truncated (a copy cut short)
        lambda data: b"\xff" * 8 + data[8:],  # header length corrupted
        lambda data: b"",  # empty file
    ],
    ids=["truncated", "corrupted-header", "empty"],
)
def test_broken_safetensors_fail_naming_the_file(tmp_path, damage):
    from conftest import tiny_model

    tiny_model("nsvq").save_pretrained(tmp_path)
    weights = tmp_path / WEIGHTS
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(OSError, match=rf"Unable to load weights from checkpoint file .*{WEIGHTS}"):
        NSVQModel.from_pretrained(tmp_path)
    # Documented limit: safetensors stores no checksum, so flipped bits inside tensor data load as other values; a
    # NaN or Inf they produce in the latents is then caught by the quantizer's finiteness check.


def test_from_pretrained_of_an_unreachable_hub_id_says_so(tmp_path, monkeypatch):
    start = time.monotonic()
    with pytest.raises((OSError, ValueError)) as error:
        NSVQModel.from_pretrained("someone/tiny-vq", cache_dir=str(tmp_path))
    assert time.monotonic() - start < 5  # offline (conftest): no network wait
    assert "someone/tiny-vq" in str(error.value)
    assert "offline" in str(error.value).lower() or "reach" in str(error.value).lower()

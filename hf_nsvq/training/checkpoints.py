"""Checkpoint folders that are either complete or invisible: a kill mid-write never yields a "latest" half-file."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

CHECKPOINT_PATTERN = re.compile(r"^checkpoint-(\d+)$")
COMPLETE_MARKER = "checkpoint_complete"


def list_checkpoints(output_dir: str | os.PathLike) -> list[Path]:
    """Complete checkpoints `checkpoint-<step>` under `output_dir`, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = []
    for path in root.iterdir():
        match = CHECKPOINT_PATTERN.match(path.name)
        if match and path.is_dir() and (path / COMPLETE_MARKER).exists():
            found.append((int(match.group(1)), path))
    return [path for _, path in sorted(found)]


def checkpoint_step(path: str | os.PathLike) -> int:
    match = CHECKPOINT_PATTERN.match(Path(path).name)
    if not match:
        raise ValueError(f"not a checkpoint folder name (expected checkpoint-<step>): {str(path)!r}")
    return int(match.group(1))


def resolve_resume_path(output_dir: str | os.PathLike, resume_from_checkpoint: str) -> Path | None:
    """`latest` -> newest complete checkpoint (None when there is none); a path must exist and be complete."""
    if resume_from_checkpoint == "latest":
        checkpoints = list_checkpoints(output_dir)
        return checkpoints[-1] if checkpoints else None
    path = Path(resume_from_checkpoint)
    if not path.is_dir():
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r} does not exist; pass an existing "
            "checkpoint-<step> folder or 'latest'"
        )
    if not (path / COMPLETE_MARKER).exists():
        raise ValueError(
            f"--resume_from_checkpoint {resume_from_checkpoint!r} is incomplete (no {COMPLETE_MARKER} "
            "file: the run was killed while writing it); pass an older checkpoint or 'latest'"
        )
    checkpoint_step(path)
    return path


def save_checkpoint(accelerator, output_dir: str | os.PathLike, step: int, total_limit: int | None) -> Path:
    """`accelerator.save_state` into a temporary folder, marked complete, then renamed into place (atomic)."""
    final = Path(output_dir) / f"checkpoint-{step}"
    staging = Path(output_dir) / f".checkpoint-{step}.tmp"
    if accelerator.is_main_process and staging.exists():
        shutil.rmtree(staging)
    accelerator.wait_for_everyone()
    accelerator.save_state(str(staging))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        (staging / COMPLETE_MARKER).write_text(str(step))
        if final.exists():
            shutil.rmtree(final)
        os.replace(staging, final)
        if total_limit is not None:
            for old in list_checkpoints(output_dir)[:-total_limit]:
                shutil.rmtree(old)
    accelerator.wait_for_everyone()
    return final

"""Checkpoints: atomic files, ``latest`` pointers, and loading with ``weights_only=True``.

Layout::

    runs/latest                     -> "<name>/step-00000300.pt"  (the last checkpoint of any run)
    runs/<name>/latest              -> "step-00000300.pt"
    runs/<name>/step-00000300.pt
    runs/<name>/metrics.jsonl
    runs/<name>/tokenizer.json      (copied from the shard directory, for ``generate``)

A pointer is a one-line text file rather than a symlink: written atomically, portable, and easy to
read. Checkpoints hold only tensors and plain Python values so they load with
``torch.load(weights_only=True)``, which cannot run code from a tampered file.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
from pathlib import Path
from typing import Any

import torch

CHECKPOINT_FORMAT = "tweetmill.gpu_train.checkpoint"
CHECKPOINT_VERSION = 1
POINTER = "latest"
_NAME = re.compile(r"^step-(\d{8})\.pt$")


class CheckpointError(ValueError):
    """A checkpoint that cannot be found, read, or resumed from; the message says why."""


def checkpoint_name(step: int) -> str:
    return f"step-{step:08d}.pt"


def atomic_write(path: Path, write) -> None:
    """Call ``write(file)`` on a temp file beside ``path``, fsync, then ``os.replace`` it into place.

    A crash leaves the old file or the new one, never a torn one.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def save_checkpoint(run_dir: Path, step: int, payload: dict[str, Any], *, keep: int = 2) -> Path:
    """Write ``step-NNNNNNNN.pt`` atomically, point both ``latest`` files at it, prune old ones."""
    payload = {"format": CHECKPOINT_FORMAT, "version": CHECKPOINT_VERSION, **payload}
    path = run_dir / checkpoint_name(step)
    atomic_write(path, lambda f: torch.save(payload, f))
    atomic_write(run_dir / POINTER, lambda f: f.write(f"{path.name}\n".encode()))
    atomic_write(run_dir.parent / POINTER, lambda f: f.write(f"{run_dir.name}/{path.name}\n".encode()))
    if keep > 0:
        for old in sorted(p for p in run_dir.iterdir() if _NAME.match(p.name))[:-keep]:
            if old != path:
                old.unlink(missing_ok=True)
    return path


def resolve_checkpoint(path: str | Path) -> Path:
    """A checkpoint file from a file, a run directory, or a ``latest`` pointer (followed as needed)."""
    p = Path(path)
    for _ in range(4):  # runs/latest -> name/step.pt; runs/name -> runs/name/latest -> step.pt
        if p.is_dir():
            p = p / POINTER
        if p.is_file() and p.name == POINTER:
            target = p.read_text(encoding="utf-8").strip()
            if not target:
                raise CheckpointError(f"{p}: empty pointer")
            p = p.parent / target
            continue
        break
    if not p.is_file():
        raise CheckpointError(f"no checkpoint at {path} (resolved to {p})")
    return p


def load_checkpoint(
    path: str | Path, map_location: str | torch.device = "cpu"
) -> tuple[Path, dict[str, Any]]:
    """(resolved file, payload). Refuses files that are not this trainer's checkpoints."""
    file = resolve_checkpoint(path)
    try:
        payload = torch.load(file, map_location=map_location, weights_only=True)
    except Exception as exc:  # truncated zip, pickle refused by weights_only, ...
        raise CheckpointError(f"{file}: not a readable checkpoint: {exc}") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        raise CheckpointError(f"{file}: not a tweetmill gpu_train checkpoint")
    if payload.get("version") != CHECKPOINT_VERSION:
        raise CheckpointError(f"{file}: checkpoint version {payload.get('version')} is not supported")
    return file, payload


def rng_state() -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    cuda = state.get("cuda")
    if cuda and torch.cuda.is_available() and len(cuda) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all(cuda)

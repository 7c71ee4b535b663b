"""Lookup tables built once per machine instead of once per process.

The language detector's tables (character classes of every code point, the profiles' n-gram
index, the word hash table) take ~2.3 s of CPU to build from langdetect's profiles and the word
asset. Every process that detects languages built them again: each worker of a local run, each
Dataflow worker process, each CLI run. They are saved as ``.npy`` files in a folder named by a
hash of everything they are built from (the building module's source, the input files, the library
versions), so a change to any of those builds anew. Loading maps the files read-only: ~10 ms, and
the worker processes of one machine share the pages.

Where: ``$TWEETMILL_TABLE_CACHE``, else ``~/.cache/tweetmill/tables``; ``TWEETMILL_TABLE_CACHE=``
(empty) turns the cache off. A cache that cannot be written is skipped (the tables are built).
"""

from __future__ import annotations

import dataclasses
import hashlib
import logging
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

log = logging.getLogger("tweetmill.table_cache")

T = TypeVar("T")

CACHE_ENV = "TWEETMILL_TABLE_CACHE"
DEFAULT_ROOT = "~/.cache/tweetmill/tables"
_COMPLETE = "complete"  # written last: a folder without it is a build that did not finish


def cache_root() -> Path | None:
    """The cache's folder, or None when ``$TWEETMILL_TABLE_CACHE`` is set empty."""
    value = os.environ.get(CACHE_ENV)
    if value == "":
        return None
    return Path(value or DEFAULT_ROOT).expanduser()


def fingerprint(*parts: bytes | str) -> str:
    """A hex digest of ``parts`` (each length-prefixed, so no two lists of parts collide)."""
    digest = hashlib.sha256()
    for part in parts:
        data = part.encode() if isinstance(part, str) else part
        digest.update(len(data).to_bytes(8, "little"))
        digest.update(data)
    return digest.hexdigest()


def source_of(module_file: str) -> bytes:
    """A module's source, for a fingerprint: editing the code that builds a table rebuilds it."""
    return Path(module_file).read_bytes()


def cached_arrays(name: str, key: str, build: Callable[[], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """The arrays ``build`` returns, from ``<root>/<name>-<key>`` when an earlier process saved
    them there (read-only memory maps), else built now and saved for the next. Arrays must not
    hold Python objects (a tuple of strings goes as a ``str`` array)."""
    root = cache_root()
    if root is None:
        return build()
    folder = root / f"{name}-{key[:24]}"
    damaged = False
    if (folder / _COMPLETE).exists():
        try:
            # Plain arrays over the maps: ``np.memmap``'s Python-level indexing cost ~1.2 µs a call
            # more, on the language detector's hot path.
            return {p.stem: np.load(p, mmap_mode="r").view(np.ndarray) for p in folder.glob("*.npy")}
        except (OSError, ValueError) as exc:
            log.debug("table cache %s unreadable (%s); building", folder, exc)
            damaged = True
    arrays = build()
    _save(folder, arrays, replace=damaged)
    return arrays


def to_arrays(tables: Any, skip: tuple[str, ...] = ()) -> dict[str, np.ndarray]:
    """A dataclass of arrays as arrays to save: its ints as 0-d arrays, its tuples of strings as
    ``str`` arrays; the fields in ``skip`` are left out."""
    return {
        f.name: np.array(value, dtype=str) if isinstance(value, tuple) else np.asarray(value)
        for f in dataclasses.fields(tables)
        if f.name not in skip
        for value in (getattr(tables, f.name),)
    }


def from_arrays(cls: type[T], arrays: dict[str, np.ndarray], **fixed: Any) -> T:
    """The dataclass ``to_arrays`` saved, with ``fixed`` for the fields it left out."""

    def field(a: np.ndarray) -> Any:
        if a.dtype.kind == "U":
            return tuple(str(x) for x in a)
        return a.item() if a.ndim == 0 else a

    return cls(**{name: field(a) for name, a in arrays.items()}, **fixed)


def cached_tables(cls: type[T], name: str, key: str, build: Callable[[], T], **fixed: Any) -> T:
    """``build()``, a dataclass of arrays, through ``cached_arrays``; ``fixed`` are fields that are
    not saved (a per-process memo, say), given to every copy. The key takes in this module's
    source too, since ``to_arrays`` decides what the files hold."""
    key = fingerprint(key, source_of(__file__))
    arrays = cached_arrays(name, key, lambda: to_arrays(build(), skip=tuple(fixed)))
    return from_arrays(cls, arrays, **fixed)


def _save(folder: Path, arrays: dict[str, np.ndarray], replace: bool) -> None:
    """Writes into a new folder beside ``folder`` and renames it into place, so a reader sees the
    whole set or nothing. A folder already there is replaced only if ``replace`` (it was damaged):
    when processes build the same tables at once, the first to finish keeps its copy."""
    try:
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}-", dir=folder.parent))
    except OSError as exc:
        log.debug("table cache %s not writable (%s)", folder.parent, exc)
        return
    try:
        for stem, array in arrays.items():
            np.save(staging / f"{stem}.npy", np.asarray(array), allow_pickle=False)
        (staging / _COMPLETE).touch()
        if replace:
            shutil.rmtree(folder, ignore_errors=True)
        os.rename(staging, folder)
    except OSError as exc:  # full disk, or another process renamed its copy first
        log.debug("table cache %s not saved (%s)", folder, exc)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

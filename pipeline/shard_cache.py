"""A local copy of a shard directory on any Beam filesystem, for the trainer (which reads local files only).

``tweetmill train gs://bucket/shards`` and ``tweetmill fetch gs://bucket/shards`` call ``sync``: it
copies the shards the manifest lists, ``tokenizer.json`` and ``tokenizer_config.json`` into a cache
directory and returns its path, which ``gpu_train`` then memory-maps (it never imports Beam).

* **Where**: ``--cache-dir DIR``, else ``$TWEETMILL_CACHE/<key>``, else
  ``~/.cache/tweetmill/shards/<key>``; ``<key>`` is the first 16 hex digits of the sha256 of the
  source's ``manifest.json``, so another run (or a rewritten one) gets its own directory.
* **Verified**: each file is downloaded to a temporary name (``.<name>.part``), its sha256 compared
  with the manifest's (the tokenizer's with ``manifest.tokenizer.sha256``), then renamed into place.
  A mismatch is downloaded once more, then refused with one line.
* **Resumable**: a file already in place is kept when its size and mtime are those recorded when
  it was verified (``.tweetmill-cache.json``), else it is hashed again (``full_check``: always);
  temporary files of an interrupted sync are removed. ``manifest.json`` is written last: a cache
  directory is a complete shard directory exactly when it has one.
* **Bounded**: ``max_bytes`` bounds the cache root (the parent of the cache directory) — every
  cached shard set in it together. Older cached sets (least recently used, marked by
  ``.tweetmill-cache.json``) are evicted first; a shard set larger than the bound on its own is
  refused with one line. Nothing without that marker is ever deleted.
* **Concurrent**: an exclusive lock (``.lock``, ``fcntl``) serializes syncs of one directory, so
  several processes on one node (or nodes sharing the directory) download once; the others wait and
  then find every file verified.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

from tweetmill.schemas import shard_dir as sd
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest

log = logging.getLogger("tweetmill.shard_cache")

CACHE_ENV = "TWEETMILL_CACHE"
DEFAULT_ROOT = Path("~/.cache/tweetmill/shards")
STATE_NAME = ".tweetmill-cache.json"  # marks a directory as a cache (evictable) and records what was verified
LOCK_NAME = ".lock"
PART_SUFFIX = ".part"
CHUNK = 8 << 20
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


class CacheError(ValueError):
    """The shards cannot be cached (too large, corrupt at the source, not a cache directory); one line."""


@dataclass
class SyncResult:
    path: Path
    fetched: list[str] = field(default_factory=list)  # files downloaded by this call
    kept: list[str] = field(default_factory=list)  # files already in place and verified
    fetched_bytes: int = 0
    evicted: list[Path] = field(default_factory=list)


def parse_size(text: str) -> int:
    """Bytes from ``123``, ``500M``, ``20G``, ``1.5T`` or ``20GiB`` (binary units); ``ValueError``."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)(?:i?B)?\s*", text, flags=re.I)
    if not m:
        raise ValueError(f"expected a size such as 500M or 20G, got {text!r}")
    return int(float(m.group(1)) * _UNITS[m.group(2).upper()])


def is_remote(path: str | None) -> bool:
    """Whether ``path`` names a file on a non-local Beam filesystem (``gs://``, ``s3://``...)."""
    return bool(path) and "://" in path and not path.startswith("file://")


def default_cache_dir(manifest_bytes: bytes) -> Path:
    root = Path(os.environ.get(CACHE_ENV) or DEFAULT_ROOT).expanduser()
    return root / hashlib.sha256(manifest_bytes).hexdigest()[:16]


# --- reading the source (Beam); tests count calls of ``open_source`` ------------------------------


def open_source(path: str) -> BinaryIO:
    from tweetmill.pipeline.shard_io import open_file

    return open_file(path)


def _source_exists(path: str) -> bool:
    from apache_beam.io.filesystems import FileSystems

    return FileSystems.exists(path)


# --- the cache ---------------------------------------------------------------------------------------


@contextmanager
def _locked(directory: Path) -> Iterator[None]:
    with open(directory / LOCK_NAME, "a+b") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_state(directory: Path) -> dict:
    try:
        return json.loads((directory / STATE_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def _write_state(directory: Path, state: dict) -> None:
    tmp = directory / (STATE_NAME + PART_SUFFIX)
    tmp.write_text(json.dumps(state, indent=1, sort_keys=True), encoding="utf-8")
    os.replace(tmp, directory / STATE_NAME)


def _stamp(path: Path) -> list[int]:
    st = path.stat()
    return [st.st_size, st.st_mtime_ns]


def _sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _tree_bytes(directory: Path) -> int:
    return sum(p.stat().st_size for p in directory.rglob("*") if p.is_file())


def _part_name(path: Path) -> Path:
    return path.with_name(f".{path.name}{PART_SUFFIX}")


def _clean_parts(directory: Path) -> None:
    """Temporary files an interrupted sync left (only ever ours: ``.<name>.part``)."""
    for part in directory.rglob(f".*{PART_SUFFIX}"):
        part.unlink(missing_ok=True)


def _download(source: str, dest: Path, sha256: str | None) -> int:
    """``source`` → ``dest`` through a temporary name, checked against ``sha256`` (retried once)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part_name(dest)
    digest = ""
    for _ in range(2):
        h = hashlib.sha256()
        size = 0
        with open_source(source) as src, open(part, "wb") as out:
            while chunk := src.read(CHUNK):
                h.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        digest = h.hexdigest()
        if sha256 is None or digest == sha256:
            os.replace(part, dest)
            return size
        log.warning(
            "%s: sha256 %s, the manifest says %s; downloading it again", source, digest[:16], sha256[:16]
        )
    part.unlink(missing_ok=True)
    raise CacheError(
        f"{source}: sha256 {digest} differs from the manifest's {sha256} after 2 downloads: "
        "the shard at the source is corrupt or was rewritten after the manifest"
    )


def _evict(cache_dir: Path, needed: int, max_bytes: int) -> list[Path]:
    """Remove the least recently used other cached sets beside ``cache_dir`` until ``needed`` more
    bytes fit under ``max_bytes``; other files in the cache root count but are never removed."""
    root = cache_dir.parent
    others = [p for p in root.iterdir() if p != cache_dir and p.is_dir() and (p / STATE_NAME).is_file()]
    sizes = {p: _tree_bytes(p) for p in others}
    used = sum(sizes.values()) + sum(
        _tree_bytes(p) for p in root.iterdir() if p.is_dir() and p != cache_dir and p not in sizes
    ) + sum(p.stat().st_size for p in root.iterdir() if p.is_file())
    evicted: list[Path] = []
    for p in sorted(others, key=lambda p: (p / STATE_NAME).stat().st_mtime):
        if used + needed <= max_bytes:
            break
        log.info("cache: evicting %s (%d bytes, least recently used)", p, sizes[p])
        shutil.rmtree(p, ignore_errors=True)
        used -= sizes[p]
        evicted.append(p)
    return evicted


def sync(
    source: str,
    cache_dir: str | Path | None = None,
    *,
    max_bytes: int | None = None,
    full_check: bool = False,
) -> SyncResult:
    """Copy the shard directory ``source`` (any Beam path) into a local cache directory; its path
    and what was fetched. ``CacheError`` (one line) for what the user can fix; ``ShardDirError`` /
    ``ManifestMissing`` when ``source`` is not a finished shard directory."""
    from tweetmill.pipeline.shard_io import read_bytes

    source = source.rstrip("/")
    manifest_path = sd.join(source, MANIFEST_NAME)
    try:
        manifest_bytes = read_bytes(manifest_path)
    except FileNotFoundError:
        raise sd.ManifestMissing(
            f"{source}: no {MANIFEST_NAME}; not a finished tweetmill shard directory"
        ) from None
    manifest = sd.parse_manifest(manifest_bytes, manifest_path)
    sd.check_shard_format(manifest, manifest_path)
    if not manifest.shards:
        raise CacheError(f"{manifest_path}: the manifest lists no shards")
    directory = Path(cache_dir).expanduser() if cache_dir else default_cache_dir(manifest_bytes)
    if (
        directory.exists()
        and any(p.name != LOCK_NAME for p in directory.iterdir())
        and not (directory / STATE_NAME).is_file()
    ):
        raise CacheError(
            f"{directory}: not empty and not a tweetmill shard cache; give an empty or new --cache-dir"
        )
    wanted = _wanted_files(source, manifest)
    total = sum(size for _, _, size in wanted) + len(manifest_bytes)
    if max_bytes is not None and total > max_bytes:
        raise CacheError(
            f"{source}: the shard set is {total} bytes, more than --cache-max-bytes {max_bytes}"
        )
    directory.mkdir(parents=True, exist_ok=True)
    result = SyncResult(path=directory)
    with _locked(directory):
        state = _read_state(directory)
        if state.get("manifest_sha256") != hashlib.sha256(manifest_bytes).hexdigest():
            (directory / MANIFEST_NAME).unlink(missing_ok=True)  # incomplete until written again
        _clean_parts(directory)
        state.update(source=source, manifest_sha256=hashlib.sha256(manifest_bytes).hexdigest())
        verified: dict[str, list[int]] = state.setdefault("verified", {})
        listed = {name for name, _, _ in wanted}
        _remove_unlisted(directory, manifest, listed, verified)
        _write_state(directory, state)  # the marker exists before any download: evictable, resumable
        if max_bytes is not None:
            result.evicted = _evict(directory, total, max_bytes)
        for name, sha256, _ in wanted:
            dest = directory / name
            if _in_place(dest, sha256, verified.get(name), full_check):
                result.kept.append(name)
            else:
                remote = sd.join(source, name)
                if sha256 is None and not _source_exists(remote):
                    continue  # an optional file the source does not have
                log.info("cache: fetching %s", remote)
                result.fetched_bytes += _download(remote, dest, sha256)
                result.fetched.append(name)
            verified[name] = _stamp(dest)
            _write_state(directory, state)
        (directory / (MANIFEST_NAME + PART_SUFFIX)).write_bytes(manifest_bytes)
        os.replace(directory / (MANIFEST_NAME + PART_SUFFIX), directory / MANIFEST_NAME)
        state["used_at"] = time.time()
        _write_state(directory, state)  # its mtime orders eviction
    log.info(
        "cache: %s → %s: %d file(s) fetched (%d bytes), %d already verified",
        source, directory, len(result.fetched), result.fetched_bytes, len(result.kept),
    )  # fmt: skip
    return result


def _wanted_files(source: str, manifest: Manifest) -> list[tuple[str, str | None, int]]:
    """(relative name, sha256 or None, bytes) of what a training copy needs; shards are checked
    against the manifest, ``tokenizer.json`` against its tokenizer sha256 when the source has one."""
    files: list[tuple[str, str | None, int]] = [(s.file, s.sha256, s.bytes) for s in manifest.shards]
    if _source_exists(sd.join(source, sd.TOKENIZER_NAME)):
        files.append((sd.TOKENIZER_NAME, manifest.tokenizer.sha256, 0))
    files.append((sd.TOKENIZER_CONFIG_NAME, None, 0))
    return files


def _in_place(dest: Path, sha256: str | None, stamp: list[int] | None, full_check: bool) -> bool:
    if not dest.is_file():
        return False
    if sha256 is None:  # tokenizer_config.json: nothing to check it against
        return True
    if stamp == _stamp(dest) and not full_check:
        return True
    if _sha256_file(dest) == sha256:
        return True
    log.warning("cache: %s is not the manifest's (sha256 differs); fetching it again", dest)
    return False


def _remove_unlisted(directory: Path, manifest: Manifest, listed: set[str], verified: dict) -> None:
    """Shard files of an earlier source in this directory would make the trainer refuse it."""
    found = [
        p.relative_to(directory).as_posix()
        for pattern in sd.SHARD_LISTING_GLOBS
        for p in directory.glob(pattern)
        if p.is_file()
    ]
    for name in sd.unlisted_shard_files(manifest, found):
        (directory / name).unlink(missing_ok=True)
    for name in list(verified):
        if name not in listed:
            del verified[name]

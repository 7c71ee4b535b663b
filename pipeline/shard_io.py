"""Shard directories on any Beam filesystem: the Beam half of ``schemas/shard_dir.py``.

``stats``, ``sample``, ``verify`` and the end of ``run`` read through here: local files are
memory-mapped, shards on other Beam filesystems (``gs://``...) are read through ``FileSystems`` with
random access, batch by batch. What to read and how to check it is ``schemas/shard_dir.py``'s.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, BinaryIO

import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tweetmill.schemas import shard_dir as sd
from tweetmill.schemas.manifest import Manifest


def is_local(path: str) -> bool:
    """Paths without a scheme are local files, the only ones that can be memory-mapped."""
    return FileSystems.get_scheme(path) is None


def open_file(path: str) -> BinaryIO:
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def read_bytes(path: str) -> bytes:
    """The bytes of ``path`` on any Beam filesystem; ``FileNotFoundError`` when there is no such file."""
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{path}: no such file")
    with open_file(path) as f:
        return f.read()


def read_manifest(shard_dir: str) -> Manifest:
    """``schemas.shard_dir.read_manifest`` on any Beam filesystem."""
    return sd.read_manifest(shard_dir, read_bytes)


@contextmanager
def open_shard(path: str) -> Iterator[pa.ipc.RecordBatchFileReader]:
    """``schemas.shard_dir.open_shard`` on any Beam filesystem (memory-mapped when local)."""
    with sd.open_shard(path, None if is_local(path) else open_file) as reader:
        yield reader


def load_shard_tokenizer(shard_dir: str, manifest: Manifest) -> tuple[Any, str]:
    """The run's tokenizer (the ``tokenizer.json`` copy beside the shards, else the bundled one it
    names) and where it came from, or ``(None, why)`` when none with the manifest's sha256 is
    available: decoding with another tokenizer would show wrong text."""
    from tokenizers import Tokenizer

    candidates = [FileSystems.join(shard_dir, sd.TOKENIZER_NAME)]
    if manifest.tokenizer.source.startswith("bundled:"):
        candidates.append(manifest.tokenizer.source)
    why = f"no {sd.TOKENIZER_NAME} in {shard_dir}"
    for source in candidates:
        bundled = source.startswith("bundled:")
        try:
            if bundled:
                from tweetmill.transforms.tokenize import read_tokenizer_bytes

                raw = read_tokenizer_bytes(source)
            else:
                raw = read_bytes(source)
        except OSError as exc:
            if bundled or not isinstance(exc, FileNotFoundError):  # no copy: ``why`` says so already
                why = f"{source}: {exc}"
            continue
        if not sd.tokenizer_matches(raw, manifest):
            why = f"{source} is not the run's tokenizer (sha256 differs from the manifest's)"
            continue
        return Tokenizer.from_str(raw.decode("utf-8")), source
    return None, why

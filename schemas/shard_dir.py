"""A shard directory, as every reader sees it: its file names, its manifest, its shards and their checks.

The one reader of what ``tweetmill run`` leaves behind, for the pipeline's ``stats``, ``sample`` and
``verify`` and for the trainer alike. pyarrow and the standard library only (no Beam, no torch), so
a GPU machine can use it. Local paths are read directly; for other filesystems (``gs://``...) the
caller passes the function that reads or opens a path (the pipeline's go through Beam).

A finished directory holds::

    manifest.json                         written last: the run is complete when it exists
    data/shard-00000-of-00004.arrow ...   the training shards (schemas/shard.py), and nothing else
    tokenizer.json                        the run's tokenizer, so the shards decode on their own
    tokenizer_config.json                 its special tokens, for ``transformers.AutoTokenizer``
    errors/errors-00000-of-00016.jsonl    dead letters, when there were any
    near_duplicates.sample.jsonl ...      samples for inspection (``Manifest.side_files``)
    dropped/dropped-00000-of-....jsonl    every dropped tweet, with ``--write-dropped``

and, while a run writes (or after one crashed), ``_tmp-<fingerprint>/``.

``data/`` holds the shards alone so that other tools read it as one dataset with no glob
(docs/reading-shards.md): ``pyarrow.dataset.dataset("out/data", format="ipc")``,
``polars.scan_ipc("out/data")`` (which refuses a folder of mixed file extensions, even hidden ones),
``datasets.load_dataset("arrow", data_dir="out/data")`` (``data_dir="out"`` also finds them, by the
Hub's ``data/<split>-NNNNN-of-NNNNN`` naming, as split "shard"). Runs before manifest format 3 have
the shards at the top level (``shard-00000-of-00004.arrow``); the manifest lists every shard's path,
so readers join what it lists and read both layouts.
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, BinaryIO

import numpy as np
import pyarrow as pa
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest
from tweetmill.schemas.shard import (
    META_EOS_ID,
    META_NUM_SHARDS,
    META_RUN_FINGERPRINT,
    META_SHARD_INDEX,
    META_TOKENIZER_SHA256,
    META_VOCAB_SIZE,
    READABLE_SHARD_VERSIONS,
    SHARD_PREFIX,
    SHARD_SUFFIX,
    schema_metadata,
    shard_file_name,
    shard_index_of,
)

__all__ = [
    "DROPPED_DIR",
    "DROPPED_GLOB",
    "DROPPED_SAMPLE_NAME",
    "ERRORS_DIR",
    "ERRORS_GLOB",
    "ID_CONFLICT_SAMPLE_NAME",
    "LEGACY_SHARD_GLOB",
    "MANIFEST_NAME",
    "NEAR_DUP_SAMPLE_NAME",
    "SHARD_DIR",
    "SHARD_GLOB",
    "SHARD_LISTING_GLOBS",
    "TEMP_PREFIX",
    "TOKENIZER_CONFIG_NAME",
    "TOKENIZER_NAME",
    "ManifestMissing",
    "MetadataMismatch",
    "ShardDirError",
    "check_shard_format",
    "expected_metadata",
    "join",
    "list_layout",
    "metadata_mismatches",
    "open_shard",
    "parse_manifest",
    "read_local",
    "read_manifest",
    "shard_path",
    "shard_paths_problem",
    "tokenizer_config",
    "tokenizer_matches",
    "unlisted_shard_files",
]

# --- the file names ---------------------------------------------------------------------------------

TOKENIZER_NAME = "tokenizer.json"  # a copy of the run's tokenizer, so the shards decode on their own
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"  # its special tokens, for transformers' AutoTokenizer
ERRORS_DIR = "errors"  # dead letters: errors/errors-00000-of-00016.jsonl ...
ERRORS_GLOB = f"{ERRORS_DIR}/errors-*"
NEAR_DUP_SAMPLE_NAME = "near_duplicates.sample.jsonl"  # removed near-duplicate pairs, for inspection
ID_CONFLICT_SAMPLE_NAME = "id_conflicts.sample.jsonl"  # copies of one id whose texts differ, for inspection
DROPPED_DIR = "dropped"  # --write-dropped: every dropped tweet, with its stage and reason
DROPPED_SAMPLE_NAME = "dropped.sample.jsonl"  # a few dropped tweets per (stage, reason), for inspection
DROPPED_GLOB = f"{DROPPED_DIR}/dropped-*"
TEMP_PREFIX = "_tmp-"  # a run's files before publication: ``_tmp-<fingerprint[:16]>/`` inside the output
SHARD_DIR = "data"  # the shards and nothing else: data/shard-00000-of-00004.arrow ... (manifest format 3)
SHARD_GLOB = f"{SHARD_DIR}/{SHARD_PREFIX}*{SHARD_SUFFIX}"
LEGACY_SHARD_GLOB = f"{SHARD_PREFIX}*{SHARD_SUFFIX}"  # manifest formats 1 and 2: the shards at the top
# Where a shard file may lie, as patterns relative to the directory: every file matching one must be
# a shard the manifest lists. All of data/ (any other file there breaks the tools reading the folder
# as a dataset), and the top-level shards of the earlier layout (a stale one is another run's).
SHARD_LISTING_GLOBS = (f"{SHARD_DIR}/*", LEGACY_SHARD_GLOB)

Reader = Callable[[str], bytes]  # path -> the file's bytes; FileNotFoundError when there is none
Opener = Callable[[str], BinaryIO]  # path -> a seekable binary file


class ShardDirError(ValueError):
    """A shard directory (or one of its files) that cannot be read as a tweetmill shard set; the
    message names the file and says why."""


class ManifestMissing(ShardDirError, FileNotFoundError):
    """No ``manifest.json``: not a finished run (the pipeline writes it last)."""


def join(shard_dir: str, name: str) -> str:
    """``name`` inside ``shard_dir``: ``os.path.join`` for local paths, '/' for URLs (as Beam joins)."""
    if "://" in shard_dir:
        return shard_dir.rstrip("/") + "/" + name
    return os.path.join(shard_dir, name)


def read_local(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


# --- the manifest -----------------------------------------------------------------------------------


def parse_manifest(raw: bytes | str, where: str) -> Manifest:
    """The manifest in ``raw``; ``ShardDirError`` naming ``where`` when it is not one (bad UTF-8 or
    JSON, a field missing or of the wrong type, an unknown format version)."""
    try:
        return Manifest.from_json(raw.decode("utf-8") if isinstance(raw, bytes) else raw)
    except (ValueError, KeyError, TypeError) as exc:
        raise ShardDirError(f"{where}: unreadable manifest: {exc}") from exc


def read_manifest(shard_dir: str | os.PathLike, read: Reader = read_local) -> Manifest:
    """The manifest of ``shard_dir``: ``ManifestMissing`` when there is none (also an ``OSError``),
    ``ShardDirError`` when it does not parse. ``read`` reads a path (default: a local file)."""
    shard_dir = os.fspath(shard_dir)
    path = join(shard_dir, MANIFEST_NAME)
    try:
        raw = read(path)
    except FileNotFoundError:
        raise ManifestMissing(
            f"{shard_dir}: no {MANIFEST_NAME}; not a finished tweetmill shard directory "
            "(the pipeline writes the manifest last)"
        ) from None
    return parse_manifest(raw, path)


def check_shard_format(manifest: Manifest, where: str) -> None:
    """``ShardDirError`` unless the manifest's shards are in the format this tweetmill reads."""
    if manifest.shard_format_version not in READABLE_SHARD_VERSIONS:
        readable = ", ".join(map(str, READABLE_SHARD_VERSIONS))
        raise ShardDirError(
            f"{where}: shard format version {manifest.shard_format_version} is not supported "
            f"(this tweetmill reads {readable})"
        )


def tokenizer_matches(raw: bytes, manifest: Manifest) -> bool:
    """Whether the ``tokenizer.json`` bytes ``raw`` are the run's tokenizer (its sha256)."""
    return hashlib.sha256(raw).hexdigest() == manifest.tokenizer.sha256


# Pad tokens a tokenizer.json may declare (the bundled one has ``<|pad|>``); without one, EOS pads.
PAD_CANDIDATES = ("<|pad|>", "<pad>", "[PAD]", "<|padding|>", "<|finetune_right_pad_id|>")
NO_LENGTH_LIMIT = int(1e30)  # transformers' "no limit" (VERY_LARGE_INTEGER): the limit is the model's


def tokenizer_config(
    tokenizer_json: bytes, eos_token: str, *, model_max_length: int = NO_LENGTH_LIMIT
) -> dict[str, Any]:
    """``tokenizer_config.json`` for ``tokenizer_json``: ``AutoTokenizer`` then knows EOS and pad.

    The pad token is the first of ``PAD_CANDIDATES`` among the tokenizer's added tokens, else EOS
    (then mask padding with ``attention_mask``, never by token id: EOS is a real token). BOS is
    EOS, as in GPT-2: documents are separated by EOS only, and nothing adds either token on encode
    (the tokenizer has no post-processor), so ``tokenizer(text)`` gives the ids the shards hold.
    """
    doc = json.loads(tokenizer_json)
    added = [t.get("content") for t in doc.get("added_tokens") or []]
    pad = next((t for t in PAD_CANDIDATES if t in added), None)
    return {
        "tokenizer_class": "PreTrainedTokenizerFast",
        "bos_token": eos_token,
        "eos_token": eos_token,
        "pad_token": pad or eos_token,
        "model_max_length": model_max_length,
        "clean_up_tokenization_spaces": False,
    }


# --- the layout -------------------------------------------------------------------------------------


def shard_path(index: int, num_shards: int) -> str:
    """Where a run writes shard ``index`` of ``num_shards``, relative to the directory (the manifest's
    ``file``): ``data/shard-00000-of-00004.arrow``."""
    return f"{SHARD_DIR}/{shard_file_name(index, num_shards)}"


def shard_paths_problem(listed: list[str]) -> str | None:
    """Why the shard paths a manifest lists are not a complete set in one layout (None: they are):
    exactly ``data/shard-00000-of-N`` ... for N shards, or the top-level names of manifest formats 1
    and 2."""
    n = len(listed)
    names = sorted(listed)
    if names in ([shard_path(i, n) for i in range(n)], [shard_file_name(i, n) for i in range(n)]):
        return None
    return f"the manifest's shard files are not exactly {shard_path(0, n)} … of {n}"


def unlisted_shard_files(manifest: Manifest, found: list[str]) -> list[str]:
    """Of ``found`` (paths relative to the directory, '/'-separated, matching ``SHARD_LISTING_GLOBS``),
    those that are not a shard the manifest lists, sorted: another run's files, or strays in data/."""
    listed = {posixpath.normpath(s.file) for s in manifest.shards}
    return sorted({f for f in found if posixpath.normpath(f) not in listed})


# --- the shards -------------------------------------------------------------------------------------


@contextmanager
def open_shard(path: str, open_file: Opener | None = None) -> Iterator[pa.ipc.RecordBatchFileReader]:
    """A reader over one shard, closed (and unmapped) on exit so memory does not grow with shards.

    Without ``open_file`` the path is a local file and is memory-mapped (zero-copy); with it, the
    file it opens is wrapped as a seekable Arrow file, so only the footer and the batches actually
    read are fetched.
    """
    if open_file is None:
        source: pa.NativeFile = pa.memory_map(path, "r")
    else:
        source = pa.PythonFile(open_file(path), mode="r")
    try:
        yield pa.ipc.open_file(source)
    finally:
        source.close()


def list_layout(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, values)`` of a list<int32> array such as ``tokens``, zero-copy, honouring slices.

    Row ``i`` is ``values[offsets[i]:offsets[i + 1]]``; ``offsets`` start at 0 and ``values`` holds
    just the rows' values. (``array.values`` is the whole child array even when ``array`` is a
    slice, while ``array.offsets`` is sliced: this pairs them up once, for every reader.)
    """
    if isinstance(array, pa.ChunkedArray):
        raise TypeError("list_layout takes one array, not a ChunkedArray")
    offsets = array.offsets.to_numpy(zero_copy_only=True)
    values = array.values.to_numpy(zero_copy_only=True)
    start, end = int(offsets[0]), int(offsets[-1])
    return offsets - start, values[start:end]


# --- the shards' metadata against the manifest -----------------------------------------------------


@dataclass(frozen=True)
class MetadataMismatch:
    key: str  # the schema metadata key (schemas/shard.py, META_*)
    label: str  # what it is, for messages: "run fingerprint", "tokenizer sha256", ...
    got: str | None  # the shard's value (None: the key is missing)
    want: str  # the manifest's


def expected_metadata(manifest: Manifest, file: str) -> dict[str, tuple[str, str]]:
    """What the schema metadata of the shard ``file`` listed in ``manifest`` must say: key ->
    (label, value). The shard index comes from the file name (left out when it has none)."""
    expected = {
        META_RUN_FINGERPRINT: ("run fingerprint", manifest.run_fingerprint),
        META_TOKENIZER_SHA256: ("tokenizer sha256", manifest.tokenizer.sha256),
        META_VOCAB_SIZE: ("vocabulary size", str(manifest.tokenizer.vocab_size)),
        META_EOS_ID: ("EOS id", str(manifest.tokenizer.eos_id)),
        META_NUM_SHARDS: ("shard count", str(len(manifest.shards))),
    }
    index = shard_index_of(file)
    if index is not None:
        expected[META_SHARD_INDEX] = ("shard index (from the file name)", str(index))
    return expected


def metadata_mismatches(schema: pa.Schema, manifest: Manifest, file: str) -> list[MetadataMismatch]:
    """Where the schema metadata of the shard ``file`` disagrees with ``manifest`` (empty: nowhere).

    A shard of another run, or one tokenized with another tokenizer, shows up here even when its
    schema (``check_shard_schema``) is fine."""
    meta = schema_metadata(schema)
    return [
        MetadataMismatch(key, label, meta.get(key), want)
        for key, (label, want) in expected_metadata(manifest, file).items()
        if meta.get(key) != want
    ]

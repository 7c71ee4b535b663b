"""The Arrow schema of a training shard, and the metadata a trainer needs to trust it.

A shard is an Arrow IPC *file* (``shard-00000-of-00004.arrow``, in the directory's ``data/`` folder:
``schemas/shard_dir.py``), uncompressed, readable zero-copy with ``pyarrow.memory_map``. Rows are
tweets sorted by ``id``; ``tokens`` holds the token ids with the EOS id appended. Schema-level
metadata carries the format version and the tokenizer's identity so a reader can refuse shards that
disagree with each other or with the manifest.
"""

from __future__ import annotations

import re

import pyarrow as pa

SHARD_FORMAT_VERSION = 2
# Versions this tweetmill reads: version 1 lacks the link and document columns (``LINK_FIELDS``);
# readers treat a missing column as nulls (``tweet_ids``: the row's own id).
READABLE_SHARD_VERSIONS = (1, 2)

SHARD_PREFIX = "shard-"
SHARD_SUFFIX = ".arrow"

# Schema metadata keys (values are UTF-8 strings).
META_FORMAT_VERSION = "tweetmill.format_version"
META_TOKENIZER_SHA256 = "tweetmill.tokenizer_sha256"
META_VOCAB_SIZE = "tweetmill.vocab_size"
META_EOS_ID = "tweetmill.eos_id"
META_RUN_FINGERPRINT = "tweetmill.run_fingerprint"
META_SHARD_INDEX = "tweetmill.shard_index"
META_NUM_SHARDS = "tweetmill.num_shards"

TOKEN_TYPE = pa.int32()

_MASK64 = (1 << 64) - 1


def splitmix64(x):
    """splitmix64's mix of ``x``: an ``int`` in [0, 2**64) or a numpy ``uint64`` array (which wraps).

    The one hash of tweet ids across tweetmill: which shard a tweet goes to (``% num_shards``), the
    trainer's validation split (of ``id ^ salt``), the near-dedup sample. Time-ordered ids spread
    evenly, and the pipeline (Python ints) and the trainer (numpy) agree bit for bit.
    """
    z = (x + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


SHARD_FIELDS: list[pa.Field] = [
    pa.field("id", pa.int64(), nullable=False),
    pa.field("id_derived", pa.bool_(), nullable=False),
    pa.field("created_at", pa.timestamp("ms", tz="UTC")),
    pa.field("author_id", pa.int64()),
    pa.field("lang", pa.string(), nullable=False),
    pa.field("lang_score", pa.float32(), nullable=False),
    pa.field("twitter_lang", pa.string()),
    pa.field("source_format", pa.string(), nullable=False),
    pa.field("source_file", pa.string(), nullable=False),
    pa.field("is_retweet", pa.bool_(), nullable=False),
    pa.field("is_reply", pa.bool_(), nullable=False),
    pa.field("is_quote", pa.bool_(), nullable=False),
    pa.field("text", pa.string(), nullable=False),
    pa.field("num_tokens", pa.int32(), nullable=False),
    pa.field("tokens", pa.list_(pa.field("item", TOKEN_TYPE, nullable=False)), nullable=False),
]
# Version 2's columns, after version 1's so a version-1 reader's column positions still hold: the
# links between tweets (null where the source has none), and what a row holds: ``tweet_ids`` the
# tweets of the row in reply order (``[id]`` for a single tweet; the member tweets of a thread or
# a conversation branch), ``context_id`` the tweet a conversation branch answers, given as its first
# turn (null otherwise).
LINK_FIELDS: list[pa.Field] = [
    pa.field("reply_to_id", pa.int64()),
    pa.field("reply_to_author_id", pa.int64()),
    pa.field("conversation_id", pa.int64()),
    pa.field("quoted_id", pa.int64()),
    pa.field("tweet_ids", pa.list_(pa.field("item", pa.int64(), nullable=False)), nullable=False),
    pa.field("context_id", pa.int64()),
]
SHARD_FIELDS_V1: list[pa.Field] = SHARD_FIELDS
SHARD_FIELDS = [*SHARD_FIELDS_V1, *LINK_FIELDS]


def shard_schema(
    *,
    tokenizer_sha256: str,
    vocab_size: int,
    eos_id: int,
    run_fingerprint: str,
    shard_index: int,
    num_shards: int,
) -> pa.Schema:
    """The schema of one shard, with the metadata that identifies its run and tokenizer."""
    return pa.schema(
        SHARD_FIELDS,
        metadata={
            META_FORMAT_VERSION: str(SHARD_FORMAT_VERSION),
            META_TOKENIZER_SHA256: tokenizer_sha256,
            META_VOCAB_SIZE: str(vocab_size),
            META_EOS_ID: str(eos_id),
            META_RUN_FINGERPRINT: run_fingerprint,
            META_SHARD_INDEX: str(shard_index),
            META_NUM_SHARDS: str(num_shards),
        },
    )


def shard_file_name(index: int, num_shards: int) -> str:
    """The shard's file name; its path in a shard directory is ``shard_dir.shard_path``."""
    return f"{SHARD_PREFIX}{index:05d}-of-{num_shards:05d}{SHARD_SUFFIX}"


_SHARD_NAME = re.compile(re.escape(SHARD_PREFIX) + r"(\d+)-of-(\d+)" + re.escape(SHARD_SUFFIX) + "$")


def shard_index_of(file: str) -> int | None:
    """The index in a ``shard_file_name`` (also at the end of a path); None for any other name."""
    m = _SHARD_NAME.search(file)
    return int(m.group(1)) if m else None


def schema_metadata(schema: pa.Schema) -> dict[str, str]:
    """Schema metadata decoded to ``str`` (pyarrow stores bytes)."""
    return {k.decode(): v.decode() for k, v in (schema.metadata or {}).items()}


def check_shard_schema(schema: pa.Schema) -> None:
    """Raise ``ValueError`` naming the problem if ``schema`` is not a readable tweetmill shard."""
    meta = schema_metadata(schema)
    version = meta.get(META_FORMAT_VERSION)
    if version is None:
        raise ValueError("not a tweetmill shard: schema has no tweetmill.format_version metadata")
    if int(version) not in READABLE_SHARD_VERSIONS:
        readable = ", ".join(map(str, READABLE_SHARD_VERSIONS))
        raise ValueError(f"shard format version {version} is not supported (this tweetmill reads {readable})")
    expected = pa.schema(SHARD_FIELDS if int(version) >= 2 else SHARD_FIELDS_V1)
    for want in expected:
        idx = schema.get_field_index(want.name)
        if idx < 0:
            raise ValueError(f"shard schema lacks column {want.name!r}")
        got = schema.field(idx)
        if not got.type.equals(want.type):
            raise ValueError(f"shard column {want.name!r} has type {got.type}, expected {want.type}")

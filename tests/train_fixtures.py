"""Shard directories for the trainer's tests, benchmark and device check, written exactly per schemas/.

Until the pipeline lands these stand in for its output: shards built with ``shard_schema()``, rows
sorted by id, ``tokens`` with EOS appended, ``num_tokens`` = len(tokens), and a ``Manifest`` with
every shard's rows, tokens, bytes and sha256. Needs numpy and pyarrow; ``tokenizers`` only for the
BPE (without it a byte-level stand-in is used, so a bare GPU machine can still run the tests).
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from tweetmill.schemas import (
    MANIFEST_NAME,
    SHARD_FORMAT_VERSION,
    Counts,
    Manifest,
    ShardEntry,
    TokenizerInfo,
    shard_file_name,
    shard_schema,
)
from tweetmill.schemas.shard import splitmix64
from tweetmill.schemas.shard_dir import TOKENIZER_NAME

EOS_TOKEN = "<|endoftext|>"


@dataclass
class FixtureTokenizer:
    """A tokenizer as the pipeline sees it: identity (sha256 of the JSON bytes), EOS, and an encoder."""

    info: TokenizerInfo
    json_bytes: bytes | None  # tokenizer.json, None for the byte-level stand-in
    encode: Callable[[list[str]], list[list[int]]]


def tweet_corpus(limit: int = 3000) -> list[str]:
    """Real tweets: the first ``limit`` lines of ../shared/data/bench (the test is skipped without it).

    With TWEETMILL_SYNTHETIC_TEXT set (device machines that only carry the repository), falls back
    to ``synthetic_texts`` instead of skipping.
    """
    import pytest
    from conftest import shared_data

    try:
        return read_tweet_lines(shared_data("bench"), limit)
    except pytest.skip.Exception:
        if os.environ.get("TWEETMILL_SYNTHETIC_TEXT"):
            return synthetic_texts(limit)
        raise


def read_tweet_lines(directory: Path, limit: int) -> list[str]:
    """Non-empty lines of the ``*.txt`` files in ``directory`` (sorted by name), at most ``limit``."""
    lines: list[str] = []
    for path in sorted(directory.glob("*.txt")):
        with open(path, encoding="utf-8") as f:
            for line in f:
                line = line.strip()
                if line:
                    lines.append(line)
                    if len(lines) >= limit:
                        return lines
    return lines


_WORD_TEXT = (
    "the a to and of in is it you that for on my this with be at so me just have are your not "
    "but what all like get love day good new time now one can do we was no up out today lol go "
    "happy know see night great back people @user #blessed #tbt coffee sunday game music"
)
_WORDS = _WORD_TEXT.split()


def synthetic_texts(n: int, seed: int = 0) -> list[str]:
    """Tweet-like word salad, for machines without the shared corpus."""
    rng = np.random.default_rng(seed)
    words = np.array(_WORDS)
    return [" ".join(words[rng.integers(0, len(words), rng.integers(3, 25))]) for _ in range(n)]


def train_bpe(texts: Sequence[str], vocab_size: int = 512) -> FixtureTokenizer:
    """A byte-level BPE trained on ``texts`` (fast: well under a second for a few thousand lines)."""
    try:
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    except ImportError:
        return byte_tokenizer()
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=[EOS_TOKEN],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(texts, trainer=trainer)
    raw = tok.to_str().encode("utf-8")
    eos = tok.token_to_id(EOS_TOKEN)

    def encode(batch: list[str]) -> list[list[int]]:
        return [e.ids for e in tok.encode_batch(batch, add_special_tokens=False)]

    info = TokenizerInfo(
        sha256=hashlib.sha256(raw).hexdigest(),
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        eos_id=eos,
        eos_token=EOS_TOKEN,
        source="tokenizer.json",
    )
    return FixtureTokenizer(info=info, json_bytes=raw, encode=encode)


def byte_tokenizer() -> FixtureTokenizer:
    """UTF-8 bytes as ids, EOS = 256."""
    info = TokenizerInfo(
        sha256=hashlib.sha256(b"tweetmill-test-bytes").hexdigest(),
        vocab_size=257,
        eos_id=256,
        eos_token=EOS_TOKEN,
        source="bytes",
    )
    return FixtureTokenizer(info=info, json_bytes=None, encode=lambda b: [list(t.encode()) for t in b])


def shard_of(ids: np.ndarray, num_shards: int) -> np.ndarray:
    """splitmix64(id) % num_shards, as the pipeline spreads ids."""
    return (splitmix64(ids.astype(np.int64).view(np.uint64)) % np.uint64(num_shards)).astype(np.int64)


def write_shards(
    out_dir: str | Path,
    *,
    ids: np.ndarray,
    offsets: np.ndarray,
    values: np.ndarray,
    tokenizer: TokenizerInfo,
    num_shards: int,
    texts: Sequence[str] | None = None,
    tokenizer_json: bytes | None = None,
    record_batch_rows: int = 65_536,
    run_fingerprint: str | None = None,
) -> Manifest:
    """Write ``num_shards`` shard files and ``manifest.json``.

    Document ``i`` has id ``ids[i]`` and tokens ``values[offsets[i]:offsets[i+1]]``.

    Token lists must already end with EOS. Returns the manifest written.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ids = np.asarray(ids, dtype=np.int64)
    offsets = np.asarray(offsets, dtype=np.int64)
    values = np.asarray(values, dtype=np.int32)
    lengths = np.diff(offsets)
    n = len(ids)
    if run_fingerprint is None:
        run_fingerprint = hashlib.sha256(
            ids.tobytes() + values.tobytes() + tokenizer.sha256.encode() + bytes([num_shards])
        ).hexdigest()[:32]
    assignment = shard_of(ids, num_shards)
    entries: list[ShardEntry] = []
    for k in range(num_shards):
        rows = np.flatnonzero(assignment == k)
        rows = rows[np.argsort(ids[rows], kind="stable")]
        schema = shard_schema(
            tokenizer_sha256=tokenizer.sha256,
            vocab_size=tokenizer.vocab_size,
            eos_id=tokenizer.eos_id,
            run_fingerprint=run_fingerprint,
            shard_index=k,
            num_shards=num_shards,
        )
        table = _table(schema, ids, offsets, lengths, values, rows, texts)
        name = shard_file_name(k, num_shards)
        entries.append(_write_table(out / name, table, record_batch_rows))
    manifest = Manifest(
        run_fingerprint=run_fingerprint,
        shard_format_version=SHARD_FORMAT_VERSION,
        tokenizer=tokenizer,
        counts=Counts(read=n, kept=n),
        shards=entries,
        config={"fixture": True},
        created_by="tests/train_fixtures.py",
    )
    if tokenizer_json is not None:
        (out / TOKENIZER_NAME).write_bytes(tokenizer_json)
    (out / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")
    return manifest


def write_text_shards(
    out_dir: str | Path,
    texts: Sequence[str],
    tokenizer: FixtureTokenizer,
    *,
    num_shards: int = 2,
    ids: np.ndarray | None = None,
    record_batch_rows: int = 65_536,
) -> Manifest:
    """Tokenize ``texts`` (EOS appended) and write them as shards; ids default to 1000 + 7·i."""
    encoded = tokenizer.encode(list(texts))
    lengths = np.array([len(e) + 1 for e in encoded], dtype=np.int64)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    eos = tokenizer.info.eos_id
    values = np.fromiter((t for e in encoded for t in (*e, eos)), dtype=np.int32, count=int(offsets[-1]))
    if ids is None:
        ids = 1000 + 7 * np.arange(len(texts), dtype=np.int64)
    return write_shards(
        out_dir,
        ids=ids,
        offsets=offsets,
        values=values,
        texts=texts,
        tokenizer=tokenizer.info,
        tokenizer_json=tokenizer.json_bytes,
        num_shards=num_shards,
        record_batch_rows=record_batch_rows,
    )


def write_synthetic_shards(
    out_dir: str | Path,
    num_rows: int,
    *,
    mean_tokens: float = 30.0,
    vocab_size: int = 50_257,
    num_shards: int = 4,
    seed: int = 0,
) -> Manifest:
    """Random-token tweets (lengths ~ lognormal around ``mean_tokens``, 2..280) for benchmarks."""
    rng = np.random.default_rng(seed)
    sigma = 0.6
    mu = np.log(mean_tokens) - sigma**2 / 2
    lengths = np.clip(np.rint(rng.lognormal(mu, sigma, num_rows)), 2, 280).astype(np.int64)
    offsets = np.zeros(num_rows + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    eos = vocab_size - 1
    values = rng.integers(0, eos, int(offsets[-1]), dtype=np.int32)
    values[offsets[1:] - 1] = eos
    ids = 1_000_000_000_000_000_000 + rng.permutation(num_rows).astype(np.int64) * 7919
    info = TokenizerInfo(
        sha256=hashlib.sha256(f"synthetic-{vocab_size}".encode()).hexdigest(),
        vocab_size=vocab_size,
        eos_id=eos,
        eos_token=EOS_TOKEN,
        source="synthetic",
    )
    return write_shards(
        out_dir, ids=ids, offsets=offsets, values=values, tokenizer=info, num_shards=num_shards
    )


def rewrite_shard(out_dir: str | Path, index: int, mutate: Callable[[pa.Table], pa.Table]) -> None:
    """Replace shard ``index`` by ``mutate(table)`` and update its manifest entry to match the new file.

    Models a shard produced by another run or tool whose manifest was (re)written consistently, so
    only the content problem, not a checksum mismatch, is what the reader has to catch.
    """
    out = Path(out_dir)
    manifest = Manifest.from_json((out / MANIFEST_NAME).read_text(encoding="utf-8"))
    entry = manifest.shards[index]
    with pa.memory_map(str(out / entry.file), "r") as source:
        table = pa.ipc.open_file(source).read_all()
    table = mutate(table)
    manifest.shards[index] = _write_table(out / entry.file, table, 65_536)
    (out / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")


def with_metadata(table: pa.Table, changes: dict[str, str]) -> pa.Table:
    """``table`` with some schema metadata values replaced."""
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    meta.update(changes)
    return table.replace_schema_metadata(meta)


def flip_byte(path: str | Path, position: int | None = None) -> None:
    """Flip one byte (default: in the middle of the file)."""
    data = bytearray(Path(path).read_bytes())
    at = len(data) // 2 if position is None else position
    data[at] ^= 0xFF
    Path(path).write_bytes(bytes(data))


def load_manifest_json(out_dir: str | Path) -> dict:
    return json.loads((Path(out_dir) / MANIFEST_NAME).read_text(encoding="utf-8"))


def _write_table(path: Path, table: pa.Table, record_batch_rows: int) -> ShardEntry:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=record_batch_rows)
    data = sink.getvalue().to_pybytes()
    path.write_bytes(data)
    tokens = int(pc.sum(table.column("num_tokens")).as_py() or 0)
    return ShardEntry(
        file=path.name,
        rows=table.num_rows,
        tokens=tokens,
        bytes=len(data),
        sha256=hashlib.sha256(data).hexdigest(),
    )


def _strings(value: str, n: int) -> pa.Array:
    """``n`` copies of ``value`` as a string array, built from buffers (fast for millions of rows)."""
    raw = value.encode("utf-8")
    offsets = (np.arange(n + 1, dtype=np.int64) * len(raw)).astype(np.int32)
    return pa.StringArray.from_buffers(n, pa.py_buffer(offsets.tobytes()), pa.py_buffer(raw * n))


def _table(
    schema: pa.Schema,
    ids: np.ndarray,
    offsets: np.ndarray,
    lengths: np.ndarray,
    values: np.ndarray,
    rows: np.ndarray,
    texts: Sequence[str] | None,
) -> pa.Table:
    n = len(rows)
    row_lengths = lengths[rows]
    row_offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(row_lengths, out=row_offsets[1:])
    total = int(row_offsets[-1])
    shift = offsets[:-1][rows] - row_offsets[:-1]
    row_values = values[np.repeat(shift, row_lengths) + np.arange(total)]
    tokens = pa.ListArray.from_arrays(
        pa.array(row_offsets.astype(np.int32)),
        pa.array(row_values, pa.int32()),
        type=schema.field("tokens").type,
    )
    row_ids = ids[rows]
    text = pa.array([texts[i] for i in rows], pa.string()) if texts is not None else _strings("", n)
    false = pa.array(np.zeros(n, dtype=bool))
    columns = {
        "id": pa.array(row_ids, pa.int64()),
        "id_derived": false,
        "created_at": pa.array(1_500_000_000_000 + (row_ids % 1_000_000_000), pa.timestamp("ms", tz="UTC")),
        "author_id": pa.array(row_ids % 1000, pa.int64()),
        "lang": _strings("en", n),
        "lang_score": pa.array(np.ones(n, dtype=np.float32)),
        "twitter_lang": _strings("en", n),
        "source_format": _strings("text", n),
        "source_file": _strings("fixture.txt", n),
        "is_retweet": false,
        "is_reply": false,
        "is_quote": false,
        "text": text,
        "num_tokens": pa.array(row_lengths.astype(np.int32)),
        "tokens": tokens,
        # shard format 2's links and documents (one tweet per row here)
        "reply_to_id": pa.nulls(n, pa.int64()),
        "reply_to_author_id": pa.nulls(n, pa.int64()),
        "conversation_id": pa.nulls(n, pa.int64()),
        "quoted_id": pa.nulls(n, pa.int64()),
        "tweet_ids": pa.ListArray.from_arrays(
            pa.array(np.arange(n + 1, dtype=np.int32)), pa.array(row_ids, pa.int64()),
            type=schema.field("tweet_ids").type,
        ) if "tweet_ids" in schema.names else None,
        "context_id": pa.nulls(n, pa.int64()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)

"""Write stage: deterministic Arrow IPC shards, dead-letter files, and the manifest written last.

Shards are a pure function of the kept tweets: a tweet's shard is a hash of its id, rows in a
shard are sorted by id, so re-runs give byte-identical files whatever the runner or worker count.
Everything is first written under a temporary directory inside the output; one final step checks
the accounting, renames the files into place and writes ``manifest.json`` last, so a failed or
unbalanced run never leaves a shard set that looks complete. All I/O goes through Beam's
FileSystems, so the same code writes to local disk, ``gs://`` or any Beam filesystem.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from tweetmill.schemas.manifest import MANIFEST_NAME, Counts, Manifest, ShardEntry, StageRecord, TokenizerInfo
from tweetmill.schemas.records import DeadLetter, Tweet
from tweetmill.schemas.shard import SHARD_FORMAT_VERSION, shard_schema, splitmix64
from tweetmill.schemas.shard_dir import (  # the shard directory's file names, in one place
    DROPPED_GLOB,
    DROPPED_SAMPLE_NAME,
    ERRORS_DIR,
    ERRORS_GLOB,
    ID_CONFLICT_SAMPLE_NAME,
    NEAR_DUP_SAMPLE_NAME,
    SHARD_DIR,
    SHARD_LISTING_GLOBS,
    TEMP_PREFIX,
    TOKENIZER_CONFIG_NAME,
    TOKENIZER_NAME,
    shard_path,
    tokenizer_config,
)
from tweetmill.transforms.tokenize import read_tokenizer_bytes

log = logging.getLogger(__name__)

NUM_ERROR_FILES = 16
RECORD_BATCH_ROWS = 65_536


class AccountingError(RuntimeError):
    """The run's counts do not balance: some record went missing or was counted twice."""


@dataclass(frozen=True)
class OutputSpec:
    output: str  # the shard directory: local path or any Beam filesystem URL
    run_fingerprint: str
    tokenizer: TokenizerInfo
    num_shards: int | None = None  # fixed shard count; None: from rows_per_shard
    rows_per_shard: int = 500_000
    config: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)
    created_by: str = ""
    # The stages of the run in order, each with every reason it declares (counts filled at the end).
    stages: tuple[StageRecord, ...] = field(default=(), hash=False, compare=False)
    write_dropped: bool = False  # every dropped tweet is written under dropped/ (transforms/audit.py)

    @property
    def temp_dir(self) -> str:
        return FileSystems.join(self.output, f"{TEMP_PREFIX}{self.run_fingerprint[:16]}")

    def shards_for(self, rows: int) -> int:
        if self.num_shards:
            return self.num_shards
        return max(1, math.ceil(rows / self.rows_per_shard))


def shard_of(tweet_id: int, num_shards: int) -> int:
    """The shard a tweet id belongs to: splitmix64 of the id, so time-ordered ids spread evenly."""
    return splitmix64(tweet_id) % num_shards


def tweets_to_table(tweets: list[Tweet], schema: pa.Schema) -> pa.Table:
    """The shard table of ``tweets`` (already in shard order), tokens as one flat int32 buffer."""
    lengths = np.fromiter((len(t.token_bytes) for t in tweets), dtype=np.int32, count=len(tweets)) // 4
    values = np.frombuffer(b"".join([t.token_bytes for t in tweets]), dtype="<i4")
    tokens = _list_array(lengths, values, schema.field("tokens").type)
    ids = np.fromiter((t.id for t in tweets), dtype=np.int64, count=len(tweets))
    columns = {
        "id": pa.array(ids, pa.int64()),
        "id_derived": pa.array([t.id_derived for t in tweets], pa.bool_()),
        "created_at": pa.array([t.created_at_ms for t in tweets], pa.timestamp("ms", tz="UTC")),
        "author_id": pa.array([t.author_id for t in tweets], pa.int64()),
        "lang": pa.array([t.lang for t in tweets], pa.string()),
        "lang_score": pa.array([t.lang_score for t in tweets], pa.float32()),
        "twitter_lang": pa.array([t.twitter_lang for t in tweets], pa.string()),
        "source_format": pa.array([t.source_format for t in tweets], pa.string()),
        "source_file": pa.array([t.source_file for t in tweets], pa.string()),
        "is_retweet": pa.array([t.is_retweet for t in tweets], pa.bool_()),
        "is_reply": pa.array([t.is_reply for t in tweets], pa.bool_()),
        "is_quote": pa.array([t.is_quote for t in tweets], pa.bool_()),
        "text": pa.array([t.text for t in tweets], pa.string()),
        "num_tokens": pa.array(lengths, pa.int32()),
        "tokens": tokens,
        "reply_to_id": pa.array([t.reply_to_id for t in tweets], pa.int64()),
        "reply_to_author_id": pa.array([t.reply_to_author_id for t in tweets], pa.int64()),
        "conversation_id": pa.array([t.conversation_id for t in tweets], pa.int64()),
        "quoted_id": pa.array([t.quoted_id for t in tweets], pa.int64()),
        "tweet_ids": _tweet_ids(tweets, ids, schema.field("tweet_ids").type),
        "context_id": pa.array([t.context_id for t in tweets], pa.int64()),
    }
    return pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)


def _list_array(lengths: np.ndarray, values: np.ndarray, list_type: pa.DataType) -> pa.Array:
    """A list array of ``values`` cut into ``lengths``, built from its offsets (no Python list per row)."""
    offsets = np.zeros(len(lengths) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(values), type=list_type)


def _tweet_ids(tweets: list[Tweet], ids: np.ndarray, list_type: pa.DataType) -> pa.Array:
    """Each row's ``tweet_ids``: its document's tweets, or (most rows) its own id alone."""
    if not any(t.tweet_ids for t in tweets):
        return _list_array(np.ones(len(tweets), dtype=np.int32), ids, list_type)
    lengths = np.fromiter((len(t.tweet_ids) or 1 for t in tweets), dtype=np.int32, count=len(tweets))
    rows = itertools.chain.from_iterable(t.tweet_ids or (t.id,) for t in tweets)
    values = np.fromiter(rows, dtype=np.int64, count=int(lengths.sum()))
    return _list_array(lengths, values, list_type)


def serialize_table(table: pa.Table) -> bytes:
    """An uncompressed Arrow IPC file (memory-mappable, zero-copy readable)."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table, max_chunksize=RECORD_BATCH_ROWS)
    return sink.getvalue().to_pybytes()


@contextlib.contextmanager
def errors_named(path: str) -> Iterator[None]:
    """A full disk raises OSError without a file name; it gets ``path``, so the run's one-line
    failure can say which file it was writing."""
    try:
        yield
    except OSError as exc:
        if exc.errno is not None and exc.filename is None:
            raise OSError(exc.errno, exc.strerror, path) from exc
        raise


@contextlib.contextmanager
def created(path: str) -> Iterator[BinaryIO]:
    """A new file through FileSystems (errors name ``path``)."""
    with errors_named(path), FileSystems.create(path, compression_type="uncompressed") as f:
        yield f


def write_bytes(path: str, data: bytes) -> None:
    """Write one whole file."""
    with created(path) as f:
        f.write(data)


class _HashingSink:
    """The file pyarrow writes a shard into: bytes go on to ``f``, counted and hashed on the way."""

    closed = False

    def __init__(self, f: BinaryIO):
        self._f, self.size, self.sha256 = f, 0, hashlib.sha256()

    def write(self, data) -> int:
        self._f.write(data)
        self.sha256.update(data)
        self.size += len(data)
        return len(data)

    def flush(self) -> None:
        pass

    def close(self) -> None:  # the FileSystems handle is closed by its own context
        pass


@dataclass(frozen=True)
class WrittenFile:
    entry: ShardEntry
    temp_path: str


def shard_schema_for(spec: OutputSpec, index: int, num_shards: int) -> pa.Schema:
    """Shard ``index`` of ``num_shards``'s schema, with the run's metadata."""
    return shard_schema(
        tokenizer_sha256=spec.tokenizer.sha256,
        vocab_size=spec.tokenizer.vocab_size,
        eos_id=spec.tokenizer.eos_id,
        run_fingerprint=spec.run_fingerprint,
        shard_index=index,
        num_shards=num_shards,
    )


def write_shard(spec: OutputSpec, index: int, num_shards: int, batches: Iterable[pa.Table]) -> WrittenFile:
    """Shard ``index`` of ``num_shards`` from its rows in id order, as tables of
    ``RECORD_BATCH_ROWS`` rows (the last may be shorter; ``shard_parts.merge_parts`` makes them),
    each written as one record batch: memory holds one, not the shard. Ids must strictly increase."""
    schema = shard_schema_for(spec, index, num_shards)
    name = shard_path(index, num_shards)
    temp_path = FileSystems.join(spec.temp_dir, name)
    rows = tokens = members = 0
    last = None
    with created(temp_path) as f:
        sink = _HashingSink(f)
        with pa.ipc.new_file(pa.PythonFile(sink, mode="w"), schema) as writer:
            for table in batches:
                ids = table.column("id").to_numpy()
                if len(ids) and ((last is not None and ids[0] <= last) or np.any(ids[1:] <= ids[:-1])):
                    raise ValueError(f"shard {index}: rows out of id order or an id twice")
                if len(ids):
                    last = ids[-1]
                writer.write_table(table)
                rows += table.num_rows
                tokens += int(pc.sum(table.column("num_tokens")).as_py() or 0)
                members += int(pc.sum(pc.list_value_length(table.column("tweet_ids"))).as_py() or 0)
            if rows == 0:
                writer.write_table(tweets_to_table([], schema))
    # Rows that are documents of several tweets (--documents threads|conversations): the shard's
    # tweets are counted too, for the accounting; None (left out of the manifest) when rows = tweets.
    entry = ShardEntry(
        file=name,
        rows=rows,
        tweets=members if members != rows else None,
        tokens=tokens,
        bytes=sink.size,
        sha256=sink.sha256.hexdigest(),
    )
    return WrittenFile(entry, temp_path)


def dead_letter_file_of(letter: DeadLetter) -> int:
    digest = hashlib.blake2b(letter.source_file.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "big") % NUM_ERROR_FILES


def write_json_lines(spec: OutputSpec, name: str, records: list[dict[str, Any]]) -> tuple[str, str, int]:
    """One JSON-lines file of the run (``name`` relative to the output), in the temporary directory;
    returns ``(name, temp_path, lines)`` for the finalizer, which moves it into place and counts it."""
    data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records).encode("utf-8")
    temp_path = FileSystems.join(spec.temp_dir, name)
    write_bytes(temp_path, data)
    return name, temp_path, len(records)


def write_dead_letters(spec: OutputSpec, index: int, letters: Iterable[DeadLetter]) -> tuple[str, str, int]:
    ordered = sorted(
        letters, key=lambda d: (d.source_file, d.position, d.line or 0, d.byte_offset or 0, d.reason)
    )
    name = f"{ERRORS_DIR}/errors-{index:05d}-of-{NUM_ERROR_FILES:05d}.jsonl"
    return write_json_lines(spec, name, [d.to_json_dict() for d in ordered])


class WriteDeadLetters(beam.PTransform):
    """Dead letters → JSON-lines files under ``errors/``; outputs ``(name, temp_path, count)``."""

    def __init__(self, spec: OutputSpec):
        super().__init__()
        self._spec = spec

    def expand(self, letters):
        spec = self._spec
        return (
            letters
            | "AssignFile" >> beam.Map(lambda d: (dead_letter_file_of(d), d))
            | "GroupByFile" >> beam.GroupByKey()
            | "WriteFile" >> beam.MapTuple(lambda index, group: write_dead_letters(spec, index, group))
        )


# --- finalize -----------------------------------------------------------------------------------


def build_manifest(
    spec: OutputSpec,
    shards: list[ShardEntry],
    read: int,
    dropped: dict[tuple[str, str], int],
    errors: int,
    error_files: list[str],
    stages: dict[str, Any],
    inputs: list[dict[str, Any]],
) -> Manifest:
    by_reason: dict[str, int] = {}
    for (_, reason), n in dropped.items():
        by_reason[reason] = by_reason.get(reason, 0) + n
    counts = Counts(
        read=read,
        kept=sum(s.kept for s in shards),
        dropped={k: v for k, v in sorted(by_reason.items()) if v},
        errors=errors,
    )
    return Manifest(
        run_fingerprint=spec.run_fingerprint,
        shard_format_version=SHARD_FORMAT_VERSION,
        tokenizer=spec.tokenizer,
        counts=counts,
        shards=sorted(shards, key=lambda s: s.file),
        config=spec.config,
        error_files=sorted(error_files),
        stages=stages,
        pipeline=stage_records(spec.stages, dropped),
        inputs=sorted(inputs, key=lambda f: (f["file"], f["records"])),
        created_by=spec.created_by,
    )


def stage_records(declared: Iterable[StageRecord], dropped: dict[tuple[str, str], int]) -> list[StageRecord]:
    """The declared stages with their drop counts; a count no stage declared is a broken contract."""
    records = []
    for stage in declared:
        counts = {reason: dropped.get((stage.name, reason), 0) for reason in stage.dropped}
        records.append(StageRecord(stage.name, stage.kind, counts, stage.description))
    known = {(r.name, reason) for r in records for reason in r.dropped}
    unknown = sorted("/".join(key) for key, n in dropped.items() if n and key not in known)
    if unknown:
        raise AccountingError(f"drops counted for reasons no stage of this run declared: {unknown}")
    return records


def check_dropped_written(manifest: Manifest, written: int) -> None:
    expected = manifest.dropped_after_source
    if written != expected:
        raise AccountingError(
            f"the stages dropped {expected} tweets after parsing but {written} were written to dropped/"
        )


def check_balance(counts: Counts) -> None:
    if not counts.balanced:
        raise AccountingError(
            f"accounting does not balance: read={counts.read} but kept={counts.kept} + "
            f"dropped={sum(counts.dropped.values())} {dict(counts.dropped)} + errors={counts.errors} "
            f"= {counts.accounted}; the shards were NOT published"
        )


def _has_dirs(path: str) -> bool:
    """Whether ``path``'s filesystem has directories (local disk, HDFS) or only object names (GCS, S3)."""
    return FileSystems.get_filesystem(path).has_dirs()


def _ensure_dir(path: str) -> None:
    """Local filesystems need the directory before a rename into it; object stores have no directories."""
    if _has_dirs(path) and not FileSystems.exists(path):
        FileSystems.mkdirs(path)


def _existing(pattern: str) -> list[str]:
    """Files matching ``pattern`` (``**`` crosses ``/``); none when its directory or prefix is absent."""
    result = FileSystems.match([pattern])[0]
    return [m.path for m in result.metadata_list]


def delete_tree(path: str) -> None:
    """Delete a directory and everything in it: on an object store, every object under the prefix.

    ``FileSystems.delete`` of a "directory" on GCS deletes only an object of exactly that name, so
    the objects are listed and deleted by name there.
    """
    if _has_dirs(path):
        if FileSystems.exists(path):
            FileSystems.delete([path])
        return
    objects = _existing(FileSystems.join(path, "**"))
    if objects:
        FileSystems.delete(objects)


@dataclass(frozen=True)
class TempDir:
    """A ``_tmp-*`` directory (or object prefix) under an output: a run in progress, or a crashed one."""

    path: str
    files: int
    last_modified: float | None  # newest file's time (seconds since the epoch), when the filesystem says


def local_path(path: str) -> str | None:
    """The path on this machine's disk that ``path`` names (no scheme, or ``file://``); None for URLs."""
    scheme = FileSystems.get_scheme(path)
    if scheme is None:
        return path
    return path[len("file://") :] if scheme == "file" else None


def temp_dirs(output: str) -> list[TempDir]:
    """The ``_tmp-*`` directories under ``output`` (none when it does not exist)."""
    local = local_path(output)
    if local is not None:
        found = []
        with contextlib.suppress(FileNotFoundError, NotADirectoryError), os.scandir(local) as entries:
            for entry in entries:
                if entry.name.startswith(TEMP_PREFIX) and entry.is_dir(follow_symlinks=False):
                    paths = [os.path.join(root, n) for root, _, names in os.walk(entry.path) for n in names]
                    times = [entry.stat().st_mtime]
                    for path in paths:
                        with contextlib.suppress(FileNotFoundError):  # removed while we look
                            times.append(os.stat(path).st_mtime)
                    found.append(TempDir(entry.path, len(paths), max(times)))
        return sorted(found, key=lambda t: t.path)
    # Object stores: "directories" are name prefixes, so every object under ``_tmp-`` is listed.
    prefix = FileSystems.join(output, "")
    groups: dict[str, list[float]] = {}
    for m in FileSystems.match([FileSystems.join(output, f"{TEMP_PREFIX}**")])[0].metadata_list:
        name = m.path[len(prefix) :].split("/", 1)[0]
        groups.setdefault(FileSystems.join(output, name), []).append(m.last_updated_in_seconds or 0.0)
    return [TempDir(path, len(times), max(times) or None) for path, times in sorted(groups.items())]


def tokenizer_config_bytes(tokenizer_json: bytes, eos_token: str) -> bytes:
    """``tokenizer_config.json`` beside the shards: ``AutoTokenizer.from_pretrained(out)`` then knows
    EOS and pad (EOS pads when the tokenizer has no pad token; the log says so)."""
    config = tokenizer_config(tokenizer_json, eos_token)
    if config["pad_token"] == eos_token:
        log.info(
            "the tokenizer has no pad token: %s declares EOS (%s) as pad", TOKENIZER_CONFIG_NAME, eos_token
        )
    return (json.dumps(config, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def publish(
    spec: OutputSpec,
    written: list[WrittenFile],
    listed_files: list[tuple[str, str, int]],
    manifest: Manifest,
    extras: dict[str, bytes] | None = None,
) -> None:
    """Move the run's files into place; the manifest goes last and only after the rest is there.

    Works the same on local disk and object stores (renames there are copy + delete, per object).
    Safe to retry after a failure part-way (runners retry a failed bundle): a file whose temporary
    copy is gone but whose target exists was moved by the failed attempt, and is kept.
    """
    out = spec.output
    manifest_path = FileSystems.join(out, MANIFEST_NAME)
    if FileSystems.exists(manifest_path):
        FileSystems.delete([manifest_path])  # the directory stops looking complete first
    tokenizer = read_tokenizer_bytes(spec.tokenizer.source)
    side_files = {
        TOKENIZER_NAME: tokenizer,
        TOKENIZER_CONFIG_NAME: tokenizer_config_bytes(tokenizer, spec.tokenizer.eos_token),
        **(extras or {}),
    }
    for name, data in side_files.items():
        write_bytes(FileSystems.join(spec.temp_dir, name), data)
    sources = (
        [w.temp_path for w in written]
        + [temp for _, temp, _ in listed_files]
        + [FileSystems.join(spec.temp_dir, name) for name in side_files]
    )
    targets = (
        [FileSystems.join(out, w.entry.file) for w in written]
        + [FileSystems.join(out, name) for name, _, _ in listed_files]
        + [FileSystems.join(out, name) for name in side_files]
    )
    # Paths compare normalised on filesystems with directories ("out//x" is "out/x" there).
    key = os.path.normpath if _has_dirs(out) else str
    pending = {key(p) for p in _existing(FileSystems.join(spec.temp_dir, "**"))}
    existing = {
        key(p): p
        for pattern in (
            *SHARD_LISTING_GLOBS,  # data/*, and the top-level shards of a run of the earlier layout
            ERRORS_GLOB,
            TOKENIZER_NAME,
            TOKENIZER_CONFIG_NAME,
            DROPPED_GLOB,
            NEAR_DUP_SAMPLE_NAME,
            ID_CONFLICT_SAMPLE_NAME,
            DROPPED_SAMPLE_NAME,
        )
        for p in _existing(FileSystems.join(out, *pattern.split("/")))
    }
    pairs = list(zip(sources, targets, strict=True))
    moves = [(s, t) for s, t in pairs if key(s) in pending]
    already_moved = {key(t) for s, t in pairs if key(s) not in pending}
    missing = sorted(t for t in already_moved if t not in existing)
    if missing:
        raise FileNotFoundError(
            f"files of this run are in neither the temporary nor the output directory: {missing[:5]}"
        )
    stale = sorted(p for k, p in existing.items() if k not in already_moved)
    if stale:
        FileSystems.delete(stale)
    folders = {SHARD_DIR, *(name.split("/", 1)[0] for name, _, _ in listed_files if "/" in name)}
    for folder in sorted(folders):
        _ensure_dir(FileSystems.join(out, folder))
    if moves:
        FileSystems.rename([s for s, _ in moves], [t for _, t in moves])
    temp_manifest = FileSystems.join(spec.temp_dir, MANIFEST_NAME)
    write_bytes(temp_manifest, manifest.to_json().encode("utf-8"))
    FileSystems.rename([temp_manifest], [manifest_path])
    try:  # published: a leftover temporary directory no longer changes the result (the next run cleans it)
        delete_tree(spec.temp_dir)
    except OSError as exc:
        log.warning("published, but could not remove %s: %s", spec.temp_dir, exc)


def fill_missing_shards(spec: OutputSpec, written: list[WrittenFile], num_shards: int) -> list[WrittenFile]:
    """Empty shards for indices no tweet hashed to, so the set is always ``-of-N`` complete."""
    present = {w.entry.file for w in written}
    missing = [i for i in range(num_shards) if shard_path(i, num_shards) not in present]
    return written + [write_shard(spec, i, num_shards, []) for i in missing]


class _FinalizeFn(beam.DoFn):
    def __init__(self, spec: OutputSpec):
        self._spec = spec

    def process(
        self, _, num_shards, written, error_files, dropped_files, read, dropped, stages, inputs, samples
    ) -> Iterator[str]:
        spec = self._spec
        written = fill_missing_shards(spec, list(written), num_shards)
        # The stages' extras in pipeline order: the side input's order depends on the workers.
        order = {record.name: i for i, record in enumerate(spec.stages)}
        stages = dict(sorted(stages, key=lambda item: (order.get(item[0], len(order)), item[0])))
        # ``samples``: near dedup's removed-pair dicts, and ``(side file name, [records])`` pairs of
        # other stages (one per file, already in order, so the file does not depend on side-input order).
        near = [s for s in samples if isinstance(s, dict)]
        named = sorted((s for s in samples if not isinstance(s, dict)), key=lambda s: s[0])
        extras = {}
        for name, records in [(NEAR_DUP_SAMPLE_NAME, near), *named]:
            if records:
                lines = (json.dumps(record, ensure_ascii=False) + "\n" for record in records)
                extras[name] = "".join(lines).encode("utf-8")
        manifest = build_manifest(
            spec,
            [w.entry for w in written],
            read=read,
            dropped=dict(dropped),
            errors=sum(n for _, _, n in error_files),
            error_files=[name for name, _, _ in error_files],
            stages=stages,
            inputs=list(inputs),
        )
        manifest.side_files = [TOKENIZER_NAME, TOKENIZER_CONFIG_NAME, *extras]
        manifest.dropped_files = sorted(name for name, _, _ in dropped_files)
        check_balance(manifest.counts)
        per_file = sum(f["records"] for f in manifest.inputs)
        if per_file != read:
            raise AccountingError(f"input files report {per_file} records but the parse stage emitted {read}")
        if spec.write_dropped:
            check_dropped_written(manifest, sum(n for _, _, n in dropped_files))
        publish(spec, written, [*error_files, *dropped_files], manifest, extras)
        log.info("published %d shards to %s", len(written), spec.output)
        yield manifest.to_json()


class Finalize(beam.PTransform):
    """Check the accounting, publish shards and dead letters, write ``manifest.json`` last."""

    def __init__(
        self,
        spec: OutputSpec,
        *,
        num_shards,
        written,
        error_files,
        dropped_files,
        read,
        dropped,
        stages,
        inputs,
        samples,
    ):
        super().__init__()
        self._spec = spec
        self._inputs = (
            num_shards, written, error_files, dropped_files, read, dropped, stages, inputs, samples
        )

    def expand(self, pbegin):
        num_shards, written, error_files, dropped_files, read, dropped, stages, inputs, samples = self._inputs
        return (
            pbegin
            | "Once" >> beam.Create([None])
            | "CheckAndPublish"
            >> beam.ParDo(
                _FinalizeFn(self._spec),
                num_shards=beam.pvalue.AsSingleton(num_shards),
                written=beam.pvalue.AsList(written),
                error_files=beam.pvalue.AsList(error_files),
                dropped_files=beam.pvalue.AsList(dropped_files),
                read=beam.pvalue.AsSingleton(read),
                dropped=beam.pvalue.AsList(dropped),
                stages=beam.pvalue.AsList(stages),
                inputs=beam.pvalue.AsList(inputs),
                samples=beam.pvalue.AsList(samples),
            )
        )

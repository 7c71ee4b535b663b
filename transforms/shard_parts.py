"""The shard write: kept tweets → sorted parts per shard → each shard merged and streamed to its file.

A shard's rows are sorted by id (``write.py``), so a shard needs all of its tweets before its first
row is written. Grouping them with a ``GroupByKey`` makes the local runner hold every kept tweet in
memory, and the writer a whole shard. So on a local run each bundle turns its batches into shard
columns as they come, sorts them by id and writes them into *row files*: Arrow IPC files of the
shard columns, in record batches of ``PART_BATCH_ROWS``. Once the shard count is known (it needs
every kept tweet counted), each row file is cut by shard into *parts* with Arrow ``take`` (with one
shard, the row file is the part). Only ``(shard, part path)`` pairs are grouped, and the writer
merges a shard's parts in id order (``merge_parts``) into ``write_shard``, one record batch at a
time. So what waits for the count is Arrow files, which the workers write side by side, and no step
after the wait turns tweets into columns; the merge is numpy and Arrow work, so a shard's own write,
which one worker does alone, is short. Memory: a bundle's ``PART_FLUSH_TWEETS`` rows, as columns,
while row files are written; one row file while it is cut; one part batch of each part and one
record batch while a shard is written. The shard files are the same whatever the parts (tested).
On a remote runner, whose many small bundles would make many small parts, the runner's shuffle
groups each shard's tweets instead, and they are one part.
"""

from __future__ import annotations

import operator
import uuid
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.dedup_batches import windowed
from tweetmill.transforms.near_dedup_encoding import ids_array, split_by_partition
from tweetmill.transforms.progress import reporter
from tweetmill.transforms.write import (
    RECORD_BATCH_ROWS,
    OutputSpec,
    WrittenFile,
    created,
    errors_named,
    shard_of,
    shard_schema_for,
    tweets_to_table,
    write_shard,
)

__all__ = ["WriteShards", "merge_parts", "shard_indices"]

PART_FLUSH_TWEETS = 131_072  # tweets a bundle holds before it writes them out as parts
PART_BATCH_ROWS = 2_048  # rows per record batch of a part: what the merge holds of each part
PARTS_DIR = "parts"

_by_id = operator.attrgetter("id")


def _shards_of(ids: np.ndarray, num_shards: int) -> np.ndarray:
    """The shard of each id (``shard_of`` over all of them at once)."""
    return shard_of(ids.astype(np.uint64), np.uint64(num_shards)).astype(np.int64)


def shard_indices(batch: list[Tweet], num_shards: int) -> list[int]:
    """The shard of each tweet of ``batch``."""
    return _shards_of(ids_array(batch), num_shards).tolist()


def _part_batches(path: str) -> Iterator[pa.RecordBatch]:
    """A part's record batches, read one at a time (parts live in a local run's spill folder)."""
    with errors_named(path), pa.OSFile(path) as f:
        reader = pa.ipc.open_file(f)
        for i in range(reader.num_record_batches):
            yield reader.get_batch(i)


class _Cursor:
    """The unmerged rows of one part: the rest of its current record batch, and what follows."""

    def __init__(self, batches: Iterable[pa.RecordBatch]):
        self._batches = iter(batches)
        self.rows: pa.Table | None = None
        self.ids = np.zeros(0, dtype=np.int64)
        self.advance()

    def advance(self) -> None:
        """Load batches until some rows are held or the part is done (``ids`` empty)."""
        if len(self.ids):
            return
        for batch in self._batches:
            if batch.num_rows:
                self.rows, self.ids = pa.Table.from_batches([batch]), batch.column("id").to_numpy()
                return

    def take_through(self, bound: int) -> tuple[pa.Table, np.ndarray] | None:
        """The held rows with ids up to ``bound`` (they are sorted), removed from the cursor."""
        n = int(np.searchsorted(self.ids, bound, side="right"))
        if not n:
            return None
        taken, ids = self.rows.slice(0, n), self.ids[:n]
        self.rows, self.ids = self.rows.slice(n), self.ids[n:]
        self.advance()
        return taken, ids


def _one_chunk(table: pa.Table, order: np.ndarray | None = None) -> pa.Table:
    """``table``'s rows (in ``order``) as fresh single-chunk columns: a record batch's buffers then
    depend on its rows only, not on the parts they came from."""
    table = table.combine_chunks()
    return table.take(order if order is not None else np.arange(table.num_rows))


def merge_parts(parts: Iterable[Iterable[pa.RecordBatch]]) -> Iterator[pa.Table]:
    """The rows of ``parts`` (each sorted by id) in id order, as tables of ``RECORD_BATCH_ROWS``
    rows (the last may be shorter). Each step takes from every part the rows up to the smallest
    last id any part holds (all that follows in the parts is larger), sorts them (numpy) and
    gathers them (Arrow): no Python call per row, and one record batch of each part in memory."""
    cursors = [c for c in map(_Cursor, parts) if len(c.ids)]
    ready: list[pa.Table] = []
    held = 0
    while cursors:
        bound = min(c.ids[-1] for c in cursors)
        pieces = [p for p in (c.take_through(bound) for c in cursors) if p is not None]
        cursors = [c for c in cursors if len(c.ids)]
        order = np.argsort(np.concatenate([ids for _, ids in pieces]), kind="stable")
        ready.append(_one_chunk(pa.concat_tables([t for t, _ in pieces]), order))
        held += len(order)
        while held >= RECORD_BATCH_ROWS or (held and not cursors):
            rows = pa.concat_tables(ready)
            n = min(held, RECORD_BATCH_ROWS)
            yield _one_chunk(rows.slice(0, n))
            ready, held = [rows.slice(n)], held - n


def _write_part(path: str, table: pa.Table) -> None:
    with created(path) as f, pa.ipc.new_file(pa.PythonFile(f, mode="w"), table.schema) as writer:
        writer.write_table(table, max_chunksize=PART_BATCH_ROWS)


def _new_part_path(parts_dir: str, index: int) -> str:
    return FileSystems.join(parts_dir, f"{index:05d}-{uuid.uuid4().hex}.part")


class _WriteRowsFn(beam.DoFn):
    """Batches → paths of *row files*: the bundle's tweets, sorted by id, as an Arrow IPC file of the
    shard columns, every ``PART_FLUSH_TWEETS`` tweets and at the end of the bundle. They are written
    before the shard count is known, so what waits for it is Arrow files, not tweets to unpickle.
    Each batch becomes columns as it arrives, while its tweets are still in the CPU's caches, and
    Arrow sorts the rows: reading every field of 100k tweets scattered in memory, one column after
    another, cost ~9 µs a tweet (~1 µs batch by batch)."""

    def __init__(self, spec: OutputSpec, parts_dir: str):
        self._spec, self._parts_dir = spec, parts_dir

    def setup(self) -> None:
        self._schema = shard_schema_for(self._spec, 0, 1)

    def start_bundle(self) -> None:
        self._tables: list[pa.Table] = []
        self._rows = 0

    def process(self, batch: list[Tweet]) -> Iterator[str]:
        self._tables.append(tweets_to_table(batch, self._schema))
        self._rows += len(batch)
        if self._rows >= PART_FLUSH_TWEETS:
            yield self._flush()

    def finish_bundle(self) -> Iterator:
        if self._rows:
            yield windowed(self._flush())

    def _flush(self) -> str:
        table = pa.concat_tables(self._tables)
        self._tables, self._rows = [], 0
        table = table.take(pc.sort_indices(table["id"])).combine_chunks()
        path = _new_part_path(self._parts_dir, 0)
        _write_part(path, table)
        return path


class _SplitRowsFn(beam.DoFn):
    """A row file → ``(shard, part path)``: its rows of each shard, still in id order, as a part of
    that shard (Arrow ``take``, no Python call per row). With one shard the row file is the part."""

    def __init__(self, spec: OutputSpec, parts_dir: str):
        self._spec, self._parts_dir = spec, parts_dir

    def process(self, path: str, num_shards: int) -> Iterator[tuple[int, str]]:
        if num_shards == 1:
            yield 0, path
            return
        with errors_named(path), pa.memory_map(path) as source:
            table = pa.ipc.open_file(source).read_all()
        shards = _shards_of(table.column("id").to_numpy(), num_shards)
        for index, rows in split_by_partition(shards, num_shards):
            metadata = shard_schema_for(self._spec, index, num_shards).metadata
            part = _new_part_path(self._parts_dir, index)
            _write_part(part, table.take(rows).replace_schema_metadata(metadata))
            yield index, part
        FileSystems.delete([path])


class _WriteShardFn(beam.DoFn):
    """``(shard, part paths)`` → the shard's ``WrittenFile``: its parts merged in id order, each
    part deleted once its shard is written (local runs, which never retry a bundle); or, from a
    remote runner's shuffle, ``(shard, tweets)`` → the file of those tweets, sorted."""

    def __init__(self, spec: OutputSpec, from_parts: bool):
        self._spec, self._from_parts = spec, from_parts

    def setup(self) -> None:
        self._progress = reporter()  # None unless a local run is watched (transforms/progress.py)

    def process(self, keyed, num_shards: int) -> Iterator[WrittenFile]:
        index, values = keyed
        if self._from_parts:
            paths = sorted(values)
            written = write_shard(self._spec, index, num_shards, merge_parts(map(_part_batches, paths)))
            FileSystems.delete(paths)
        else:
            schema = shard_schema_for(self._spec, index, num_shards)
            table = tweets_to_table(sorted(values, key=_by_id), schema)
            merged = merge_parts([table.to_batches(max_chunksize=PART_BATCH_ROWS)])
            written = write_shard(self._spec, index, num_shards, merged)
        if self._progress is not None:
            self._progress.report("write", k=written.entry.rows)
        yield written


def _keyed_by_shard(batch: list[Tweet], num_shards: int) -> Iterator[tuple[int, Tweet]]:
    return zip(shard_indices(batch, num_shards), batch, strict=True)


class WriteShards(beam.PTransform):
    """Batches of tokenized tweets → ``written``: one ``WrittenFile`` per non-empty shard (in the
    temp directory), and ``num_shards``: the shard count, decided from the number of kept tweets.

    ``spill_dir`` (local runs): the batches wait for the shard count in spill files, and each
    shard is merged from sorted parts written there. Elsewhere the runner's shuffle groups each
    shard's tweets on one worker (``docs/runners.md``, worker sizing)."""

    def __init__(self, spec: OutputSpec, spill_dir: str | None = None):
        super().__init__()
        self._spec, self._spill_dir = spec, spill_dir

    def expand(self, batches):
        spec, spill_dir = self._spec, self._spill_dir
        num_shards = (
            batches
            | "CountKept" >> beam.Map(len).with_output_types(int)
            | "SumKept" >> beam.CombineGlobally(sum)
            | "NumShards" >> beam.Map(spec.shards_for)
        )
        shards = beam.pvalue.AsSingleton(num_shards)
        if spill_dir is None:
            keyed = batches | "AssignShard" >> beam.FlatMap(_keyed_by_shard, shards).with_output_types(
                tuple[int, Tweet]
            )
        else:
            parts_dir = FileSystems.join(spill_dir, PARTS_DIR)
            keyed = (
                batches
                | "WriteRows" >> beam.ParDo(_WriteRowsFn(spec, parts_dir)).with_output_types(str)
                | "SplitByShard"
                >> beam.ParDo(_SplitRowsFn(spec, parts_dir), shards).with_output_types(tuple[int, str])
            )
        written = (
            keyed
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(spec, from_parts=spill_dir is not None), shards)
        )
        return {"written": written, "num_shards": num_shards}

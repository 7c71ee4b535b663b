"""The shard write: kept tweets → sorted parts per shard → each shard merged and streamed to its file.

A shard's rows are sorted by id (``write.py``), so a shard needs all of its tweets before its first
row is written. Grouping them with a ``GroupByKey`` makes the local runner hold every kept tweet in
memory, and the writer a whole shard. So on a local run each bundle sorts what it holds of each
shard and writes that as a *part* (frames of ``PART_FRAME_TWEETS`` tweets, ``spill.py``'s format); only
``(shard, part path)`` pairs are grouped; and the writer merges a shard's parts in id order
(``heapq.merge``, one frame of each part in memory) into ``write_shard``, which writes one record
batch at a time. Memory: a bundle's ``PART_FLUSH_TWEETS`` tweets while parts are written, one frame
per part and one record batch while a shard is. The shard files are the same whatever the parts.
On a remote runner, whose many small bundles would make many small parts, the runner's shuffle
groups each shard's tweets instead.
"""

from __future__ import annotations

import heapq
import operator
import uuid
from collections import defaultdict
from collections.abc import Iterator

import apache_beam as beam
import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.dedup_batches import windowed
from tweetmill.transforms.near_dedup_encoding import ids_array
from tweetmill.transforms.progress import reporter
from tweetmill.transforms.spill import parked, read_frames, write_frame
from tweetmill.transforms.write import OutputSpec, WrittenFile, created, shard_of, write_shard

__all__ = ["WriteShards", "shard_indices"]

PART_FLUSH_TWEETS = 131_072  # tweets a bundle holds before it writes them out as parts
PART_FRAME_TWEETS = 512  # tweets per frame of a part: what the merge holds of each part
PARTS_DIR = "parts"

_by_id = operator.attrgetter("id")


def shard_indices(batch: list[Tweet], num_shards: int) -> list[int]:
    """The shard of each tweet of ``batch`` (``shard_of`` over all their ids at once)."""
    return shard_of(ids_array(batch).astype(np.uint64), np.uint64(num_shards)).tolist()


def _part_tweets(path: str) -> Iterator[Tweet]:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        for frame in read_frames(f, path):
            yield from frame


class _WritePartsFn(beam.DoFn):
    """Batches → ``(shard, part path)``: each shard's tweets of the bundle, sorted by id, in a part
    file under ``parts_dir``, every ``PART_FLUSH_TWEETS`` tweets and at the end of the bundle."""

    def __init__(self, parts_dir: str):
        self._parts_dir = parts_dir

    def start_bundle(self) -> None:
        self._shards: dict[int, list[Tweet]] = defaultdict(list)
        self._buffered = 0

    def process(self, batch: list[Tweet], num_shards: int) -> Iterator[tuple[int, str]]:
        for tweet, index in zip(batch, shard_indices(batch, num_shards), strict=True):
            self._shards[index].append(tweet)
        self._buffered += len(batch)
        if self._buffered >= PART_FLUSH_TWEETS:
            yield from self._flush()

    def finish_bundle(self) -> Iterator:
        for out in self._flush():
            yield windowed(out)

    def _flush(self) -> Iterator[tuple[int, str]]:
        shards, self._shards, self._buffered = self._shards, defaultdict(list), 0
        for index in sorted(shards):
            tweets = sorted(shards[index], key=_by_id)
            path = FileSystems.join(self._parts_dir, f"{index:05d}-{uuid.uuid4().hex}.part")
            with created(path) as f:
                for start in range(0, len(tweets), PART_FRAME_TWEETS):
                    write_frame(f, tweets[start : start + PART_FRAME_TWEETS])
            yield index, path


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
            written = write_shard(
                self._spec, index, num_shards, heapq.merge(*map(_part_tweets, paths), key=_by_id)
            )
            FileSystems.delete(paths)
        else:
            written = write_shard(self._spec, index, num_shards, sorted(values, key=_by_id))
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
            keyed = parked(batches, "Park", spill_dir, after=num_shards) | "WriteParts" >> beam.ParDo(
                _WritePartsFn(parts_dir), shards
            ).with_output_types(tuple[int, str])
        written = (
            keyed
            | "GroupByShard" >> beam.GroupByKey()
            | "WriteShard" >> beam.ParDo(_WriteShardFn(spec, from_parts=spill_dir is not None), shards)
        )
        return {"written": written, "num_shards": num_shards}

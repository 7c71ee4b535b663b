"""Audit of what the stages removed: every dropped tweet (``--write-dropped``) or a sample per reason.

With ``--write-dropped`` each tweet a stage drops is written, with the stage and the reason, to
JSON-lines files under ``dropped/`` beside the shards (datatrove's exclusion writer, for tweets);
the manifest lists them and their line count must equal the drops of the stages that ran after
parsing, checked before anything is published. Without it, a small deterministic sample per
``(stage, reason)`` goes to ``dropped.sample.jsonl`` for the report: the same tweets on any runner.
Parse-level drops (delete notices, API errors) are not tweets and are counted per input file instead.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any

import apache_beam as beam
from tweetmill.schemas.records import Tweet
from tweetmill.schemas.shard import splitmix64
from tweetmill.schemas.shard_dir import DROPPED_DIR, DROPPED_SAMPLE_NAME
from tweetmill.transforms.dedup_batches import windowed
from tweetmill.transforms.stage import sample_key
from tweetmill.transforms.write import OutputSpec, write_json_lines

NUM_DROPPED_FILES = 16
SAMPLES_PER_REASON = 20
_PRUNE_FACTOR = 8  # a bundle's ranked drops of one reason are cut to the smallest at this many samples


def dropped_record(stage: str, reason: str, tweet: Tweet) -> dict[str, Any]:
    """One dropped tweet as the audit files hold it: what was removed, by whom, why, from where."""
    return {
        "stage": stage,
        "reason": reason,
        "id": tweet.id,
        "text": tweet.text,
        "author_id": tweet.author_id,
        "created_at_ms": tweet.created_at_ms,
        "lang": tweet.lang,
        "source_file": tweet.source_file,
        "position": tweet.position,
    }


def _order(record: dict[str, Any]) -> tuple:
    return (record["stage"], record["reason"], record["id"], record["source_file"], record["position"])


def dropped_file_name(index: int) -> str:
    return f"{DROPPED_DIR}/dropped-{index:05d}-of-{NUM_DROPPED_FILES:05d}.jsonl"


def write_dropped_file(
    spec: OutputSpec, index: int, records: Iterable[dict[str, Any]]
) -> tuple[str, str, int]:
    return write_json_lines(spec, dropped_file_name(index), sorted(records, key=_order))


class WriteDropped(beam.PTransform):
    """``(stage, reason, Tweet)`` → JSON-lines files under ``dropped/``; outputs ``(name, temp, count)``."""

    def __init__(self, spec: OutputSpec):
        super().__init__()
        self._spec = spec

    def expand(self, dropped):
        spec = self._spec
        return (
            dropped
            | "ToRecord" >> beam.MapTuple(dropped_record)
            | "AssignFile" >> beam.Map(lambda r: (splitmix64(r["id"]) % NUM_DROPPED_FILES, r))
            | "GroupByFile" >> beam.GroupByKey()
            | "WriteFile" >> beam.MapTuple(lambda index, group: write_dropped_file(spec, index, group))
        )


class SampleDropped(beam.PTransform):
    """``(stage, reason, Tweet)`` (one PCollection, or a tuple of them) → one
    ``(DROPPED_SAMPLE_NAME, [records])``: per (stage, reason) the ``per_reason`` tweets with the
    smallest ``sample_key``, in (stage, reason, id) order.

    Each input is cut to its own smallest first, in the stage that drops its tweets: a Flatten of
    the dropped tweets themselves would hold them all in the local runner's memory."""

    def __init__(self, per_reason: int = SAMPLES_PER_REASON):
        super().__init__()
        self._per_reason = per_reason

    def _smallest(self) -> beam.PTransform:
        return beam.combiners.Top.PerKey(self._per_reason, key=_rank_of, reverse=True)

    def expand(self, dropped):
        inputs = [dropped] if isinstance(dropped, beam.PCollection) else list(dropped)
        per_input = [
            tweets | f"SmallestInBundle{i}" >> beam.ParDo(_SmallestInBundle(self._per_reason))
            for i, tweets in enumerate(inputs)
        ]
        return (
            per_input
            | "AllSmallest" >> beam.Flatten()
            | "Smallest" >> self._smallest()
            | "ToRecords" >> beam.MapTuple(lambda key, picked: [dropped_record(*key, t) for _, t in picked])
            | "AllReasons" >> beam.combiners.ToList()
            | "Name" >> beam.Map(_sample_file)
        )


class _SmallestInBundle(beam.DoFn):
    """``(stage, reason, Tweet)`` → per (stage, reason), the bundle's ``per_reason`` smallest by
    rank, as ``((stage, reason), (rank, tweet))`` at the bundle's end. Fused into the step that
    drops the tweets, so no more than that crosses to the sample, with no grouping step per input;
    at most ``_PRUNE_FACTOR * per_reason`` wait per reason."""

    def __init__(self, per_reason: int):
        self._per_reason = per_reason

    def start_bundle(self) -> None:
        self._ranked: dict[tuple[str, str], list[tuple]] = defaultdict(list)

    def process(self, dropped: tuple[str, str, Tweet]) -> Iterator[tuple[tuple[str, str], tuple]]:
        stage, reason, tweet = dropped
        ranked = self._ranked[(stage, reason)]
        ranked.append((_rank(tweet), tweet))
        if len(ranked) >= _PRUNE_FACTOR * self._per_reason:
            self._ranked[(stage, reason)] = heapq.nsmallest(self._per_reason, ranked, key=_rank_of)

    def finish_bundle(self) -> Iterator:
        for key, ranked in self._ranked.items():
            for smallest in heapq.nsmallest(self._per_reason, ranked, key=_rank_of):
                yield windowed((key, smallest))


def _rank_of(ranked: tuple) -> tuple:
    return ranked[0]


def _rank(tweet: Tweet) -> tuple:
    return (sample_key(tweet), tweet.source_file, tweet.position)


def _sample_file(groups: list[list[dict[str, Any]]]) -> tuple[str, list[dict[str, Any]]]:
    return DROPPED_SAMPLE_NAME, sorted((r for group in groups for r in group), key=_order)

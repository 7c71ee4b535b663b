"""Batches in, batches out: what lets the dedup stages decide tweets where they are (issue #15).

Moving every tweet through a shuffle (a ``CombinePerKey`` per tweet, a packed ``CoGroupByKey``)
costs Beam's per-element overhead and a coder round trip per tweet, though most tweets need no
decision there. Here the tweets stay in the batches they arrive in; only compact keys (8-byte ids,
16-byte text hashes, band keys) are shuffled, in packed arrays routed to a few partitions, and each
batch is then filtered against a small side input (the ids that need a decision). Numpy and a few
DoFns, no stage logic: ``dedup.py`` and ``near_dedup.py`` build on them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindow
from apache_beam.typehints import typehints
from apache_beam.utils.windowed_value import WindowedValue
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.common import estimated_size
from tweetmill.transforms.near_dedup_encoding import (
    decode_arrays,
    encode_arrays,
    ids_array,
    pack_tweets,
    partition_of,
    split_by_partition,
    unpack_tweets,
)

__all__ = [
    "BatchTweets",
    "CachedSideInput",
    "IdSet",
    "SplitDuplicates",
    "TweetBatch",
    "TweetBatchCoder",
    "UnbatchTweets",
    "encode_ids",
    "id_set",
    "repeated",
    "windowed",
]

_WINDOW = GlobalWindow()


def windowed(out: Any) -> Any:
    """An output of ``finish_bundle``, in the global window (these stages run on batch input)."""
    if isinstance(out, beam.pvalue.TaggedOutput):
        return beam.pvalue.TaggedOutput(out.tag, windowed(out.value))
    return WindowedValue(out, _WINDOW.max_timestamp(), (_WINDOW,))


class _TweetBatchHint(typehints.ListConstraint):
    """``List[Tweet]`` to Beam's type checks (a step that takes the pipeline's lists of tweets takes
    these), but encoded with ``TweetBatchCoder``."""

    def __init__(self) -> None:
        super().__init__(Tweet)

    def __repr__(self) -> str:
        return "TweetBatch"


# The type hint of a batch of tweets between the dedup steps. Where a step waits for a side input
# the runner stores its input batches: one pickle of the batch's field tuples costs about half of
# Beam's ``ListCoder(TweetCoder)`` there and back (2.9 against 5.2 µs per tweet, 1,000-tweet batches).
TweetBatch = _TweetBatchHint()


class TweetBatchCoder(beam.coders.Coder):
    """A batch of tweets as one pickle of their field tuples (``pack_tweets``)."""

    def encode(self, batch: list[Tweet]) -> bytes:
        return pack_tweets(batch)

    def decode(self, encoded: bytes) -> list[Tweet]:
        return unpack_tweets(encoded)

    def estimate_size(self, batch: list[Tweet]) -> int:
        return sum(map(estimated_size, batch))

    def is_deterministic(self) -> bool:
        return False  # never a key

    def to_type_hint(self):
        return TweetBatch

    def __eq__(self, other) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


beam.coders.registry.register_coder(_TweetBatchHint, TweetBatchCoder)


class _BatchFn(beam.DoFn):
    """Tweets (or small batches) → lists of about ``size`` tweets, per bundle. Not
    ``BatchElements``: it sizes lists by pickling every tweet in them (10% of a stage, measured)."""

    def __init__(self, size: int, flatten: bool):
        self._size, self._flatten = size, flatten

    def start_bundle(self) -> None:
        self._buffer: list[Tweet] = []

    def process(self, element) -> Iterator[list[Tweet]]:
        if self._flatten:
            self._buffer.extend(element)
        else:
            self._buffer.append(element)
        if len(self._buffer) >= self._size:
            batch, self._buffer = self._buffer, []
            yield batch

    def finish_bundle(self) -> Iterator:
        if self._buffer:
            batch, self._buffer = self._buffer, []
            yield windowed(batch)


class BatchTweets(beam.PTransform):
    """``Tweet`` elements (or, with ``rebatch``, lists of them) → lists of about ``size`` tweets
    (``TweetBatch``)."""

    def __init__(self, size: int = 1024, *, rebatch: bool = False):
        super().__init__()
        if size < 1:
            raise ValueError("size must be positive")
        self._size, self._rebatch = size, rebatch

    def expand(self, tweets):
        if not tweets.windowing.is_default():
            raise ValueError("BatchTweets runs on globally windowed (batch) input")
        return tweets | "Batch" >> beam.ParDo(_BatchFn(self._size, self._rebatch)).with_output_types(
            TweetBatch
        )


class UnbatchTweets(beam.PTransform):
    """Lists of tweets → ``Tweet`` elements."""

    def expand(self, batches):
        return batches | "Unbatch" >> beam.FlatMap(_identity).with_output_types(Tweet)


def _identity(batch: list[Tweet]) -> list[Tweet]:
    return batch


class IdSet:
    """A sorted set of int64 ids: ``contains`` is one vectorised ``searchsorted`` per batch."""

    __slots__ = ("ids",)

    def __init__(self, ids: np.ndarray):
        self.ids = np.unique(ids.astype(np.int64, copy=False))

    def __len__(self) -> int:
        return len(self.ids)

    def contains(self, ids: np.ndarray) -> np.ndarray:
        if len(self.ids) == 0:
            return np.zeros(len(ids), dtype=bool)
        pos = np.searchsorted(self.ids, ids).clip(max=len(self.ids) - 1)
        return self.ids[pos] == ids

    def of_batch(self, batch: list[Tweet]) -> np.ndarray:
        return self.contains(ids_array(batch))


def id_set(payloads: Iterable[bytes]) -> IdSet:
    """The ids of ``encode_arrays(ids)`` payloads (a side input) as one ``IdSet``."""
    arrays = [decode_arrays(p)[0] for p in payloads]
    return IdSet(np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64))


def encode_ids(ids: np.ndarray) -> bytes:
    return encode_arrays(ids.astype(np.int64, copy=False))


class CachedSideInput:
    """A value derived from a side input once per DoFn instance, not once per batch or bundle.

    Beam's SDK harness forgets side inputs at the end of every bundle: with ``AsList`` a worker
    would fetch and decode all the ids again in each bundle, and sort them again here (seconds per
    bundle at 100M ids on Dataflow). These side inputs are read in the global window of a batch
    pipeline, complete before the consumer runs and never changed, so the value is built from
    the first bundle's ``AsIter`` (a lazy iterable) and later bundles fetch nothing."""

    __slots__ = ("_built", "_value")

    def __init__(self) -> None:
        self._built = False
        self._value: Any = None

    def get(self, side: Iterable[Any], build: Callable[[Iterable[Any]], Any]) -> Any:
        if not self._built:
            self._value, self._built = build(side), True
        return self._value


# --- exact dedup: which tweets share a key with another, from their keys alone ----------------------

_FLUSH_ROWS = 1 << 16  # keys buffered in a bundle before they are packed and emitted
_DUPS = "duplicates"


def _partition_of_keys(keys: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of 16-byte hashes: their first 8 bytes (already uniform)."""
    return (keys.view("<u8")[::2] % np.uint64(partitions)).astype(np.int64)


def repeated(keys: np.ndarray) -> np.ndarray:
    """Which rows hold a key that another row holds too (int64 ids or ``S16`` hashes): one sort."""
    if len(keys) < 2:
        return np.zeros(len(keys), dtype=bool)
    if keys.dtype.kind == "S":  # two uint64 columns: lexsort is ~3x faster than sorting bytes
        cols = keys.view("<u8").reshape(-1, 2)
        order = np.lexsort((cols[:, 1], cols[:, 0]))
        s = cols[order]
        same = (s[1:] == s[:-1]).all(axis=1)
    else:
        order = np.argsort(keys, kind="stable")
        s = keys[order]
        same = s[1:] == s[:-1]
    hit = np.zeros(len(keys), dtype=bool)
    hit[order[1:][same]] = True
    hit[order[:-1][same]] = True
    return hit


class _KeysFn(beam.DoFn):
    """Batches → ``((kind, partition), packed keys)``: a bundle's ids (kind ``"id"``) and/or text
    keys with their ids (kind ``"text"``), ``_FLUSH_ROWS`` at a time (Beam's cost is per element)."""

    def __init__(self, text_key: Callable[[Tweet], bytes] | None, ids: bool, partitions: int):
        self._text_key, self._ids, self._partitions = text_key, ids, partitions

    def start_bundle(self) -> None:
        self._parts: list[tuple[np.ndarray, np.ndarray | None]] = []
        self._rows = 0

    def process(self, batch: list[Tweet]) -> Iterator:
        ids = ids_array(batch)
        keys = None
        if self._text_key is not None:
            keys = np.frombuffer(b"".join(map(self._text_key, batch)), dtype="S16")
        self._parts.append((ids, keys))
        self._rows += len(ids)
        if self._rows >= _FLUSH_ROWS:
            yield from self._flush()

    def finish_bundle(self) -> Iterator:
        for out in self._flush():
            yield windowed(out)

    def _flush(self) -> Iterator[tuple[tuple[str, int], bytes]]:
        parts, self._parts, self._rows = self._parts, [], 0
        if not parts:
            return
        ids = np.concatenate([i for i, _ in parts])
        p = self._partitions
        if self._ids:
            for q, sel in split_by_partition(partition_of(ids, p), p):
                yield ("id", q), encode_arrays(ids[sel])
        if self._text_key is not None:
            keys = np.concatenate([k for _, k in parts])
            for q, sel in split_by_partition(_partition_of_keys(keys, p), p):
                yield ("text", q), encode_arrays(keys[sel], ids[sel])


def _keyed(element: tuple[Any, Tweet]) -> tuple[Any, Tweet]:
    return element


def _duplicated_ids(element: tuple[tuple[str, int], Iterable[bytes]]) -> Iterator[bytes]:
    """One key partition → the ids of its tweets whose key another tweet shares."""
    _, chunks = element
    arrays = [decode_arrays(c) for c in chunks]
    ids = np.concatenate([a[-1] for a in arrays])
    keys = ids if len(arrays[0]) == 1 else np.concatenate([a[0] for a in arrays])
    dup = repeated(keys)
    if dup.any():
        yield encode_ids(np.unique(ids[dup]))


class _SplitFn(beam.DoFn):
    """A batch → the tweets whose id holds no repeated key (main output, a batch, decided: kept),
    and ``(key, tweet)`` of the others, for the stage's combine."""

    def __init__(self, key: Callable[[Tweet], Any]):
        self._key = key

    def setup(self) -> None:
        self._dups = CachedSideInput()

    def process(self, batch: list[Tweet], dups: Iterable[bytes]) -> Iterator:
        hit = self._dups.get(dups, id_set).of_batch(batch)
        if not hit.any():
            yield batch
            return
        kept = [t for t, h in zip(batch, hit.tolist(), strict=True) if not h]
        if kept:
            yield kept
        for t in (t for t, h in zip(batch, hit.tolist(), strict=True) if h):
            yield beam.pvalue.TaggedOutput(_DUPS, (self._key(t), t))


class SplitDuplicates(beam.PTransform):
    """Batches → ``(unique, duplicates)``: batches (``TweetBatch``) of the tweets no other tweet
    shares a key with (they survive the stage as they are), and ``(key(tweet), tweet)`` of those
    that share one, for the stage's combine to choose among. The keys: the id (with ``text_key``,
    only when ``ids_too``) and ``text_key(tweet)``, 16 bytes. Only the keys are shuffled
    (``partitions`` packed arrays per bundle) and the ids of the repeated ones go back as a side
    input, so a tweet crosses no shuffle unless it has a duplicate. Every tweet of such an id goes
    to the combine: a group's result does not change with more whole groups beside it.
    ``spill_dir`` (local runs): the keys are grouped through files, and the batches wait for that
    side input in spill files (``spill.py``)."""

    def __init__(
        self,
        key: Callable[[Tweet], Any],
        key_type: type,
        text_key: Callable[[Tweet], bytes] | None = None,
        ids_too: bool = False,
        partitions: int = 16,
        spill_dir: str | None = None,
    ):
        super().__init__()
        self._key, self._key_type, self._text_key = key, key_type, text_key
        self._ids, self._partitions = text_key is None or ids_too, partitions
        self._spill_dir = spill_dir

    def expand(self, batches):
        if not batches.windowing.is_default():  # finish_bundle outputs and the cached side input
            raise ValueError("SplitDuplicates runs on globally windowed (batch) input")
        from tweetmill.transforms.spill import group_by_key, parked  # spill.py builds on this module

        keys = batches | "Keys" >> beam.ParDo(
            _KeysFn(self._text_key, self._ids, self._partitions)
        ).with_output_types(tuple[tuple[str, int], bytes])
        dup_ids = group_by_key(keys, "GroupKeys", self._spill_dir) | "Repeated" >> beam.FlatMap(
            _duplicated_ids
        ).with_output_types(bytes)
        waiting = parked(batches, "Park", self._spill_dir, after=dup_ids)
        split = waiting | "Split" >> beam.ParDo(
            _SplitFn(self._key), dups=beam.pvalue.AsIter(dup_ids)
        ).with_output_types(TweetBatch).with_outputs(_DUPS, main="unique")
        dups = split[_DUPS] | "TypeDuplicates" >> beam.Map(_keyed).with_output_types(
            tuple[self._key_type, Tweet]
        )
        return split.unique, dups

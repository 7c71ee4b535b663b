"""Per-author cap: at most N tweets, or a share of the corpus, per author (bot and spam floods).

Rule (``cap_authors`` is the whole of it, in one process; ``CapAuthors`` the same in Beam):

* ``T`` is the number of tweets reaching the stage (with or without an author), ``A`` the number of
  distinct author ids among them.
* Every author may keep ``limit`` tweets (``cap_limit``): the smaller of ``max_tweets_per_author``
  (when > 0) and ``max(1, floor(max_author_share * T))`` (when > 0 *and* ``A >=
  min_authors_for_share``). No limit applies when neither does.
* An author with more than ``limit`` tweets keeps those whose ``cap_key(id)`` is at most the
  ``limit``-th smallest key among its tweets; the others are dropped as ``author_cap``.
* Tweets without an author id (plain text, most CSV exports) are never capped: there is no author to
  count them against (they still count in ``T``).

Which tweets survive. ``cap_key`` is splitmix64 of the tweet id (``schemas/shard.py``, the hash
tweetmill already uses for shards and samples): a bijection on 64-bit ids, so two different ids
never tie, and well spread, so the survivors are a uniform sample of the author's tweets across
time. "The earliest N" would keep a bot's first burst and a prolific person's oldest years only; a
hash of the id depends on neither. The rule is a function of the *set* of tweets alone: the same
survivors on any runner, worker count, bundle split or input order. Copies of one id (which
``DeduplicateIds`` removes earlier) share a key and so a fate: only they can make an author keep
more than ``limit``.

Why the share cap needs authors. On one account's archive (one author) a share cap of 2% would keep
2% of it; on ten accounts of equal size it would keep 20%. The share of the heaviest author only
means "flood" in a collection of many authors (a stream, a search), so it applies only when ``A >=
min_authors_for_share``. The count cap is the user's explicit choice and applies whatever ``A``.
Defaults and their measurement: ``docs/author-cap.md``.

How it scales (no tweet crosses a shuffle; no worker holds an author's tweets):

1. ``AuthorIds``: in the step that produces the tweets (fused with it), each bundle's authors,
   their counts and their tweet ids (8 bytes per tweet) are packed into arrays, one element per
   author partition (a hash of the author id) and bundle, plus the bundle's tweet count.
   ``CountPerAuthor`` groups the partitions' ``(authors, counts)`` and sums them with numpy: Beam
   moves a few elements per bundle, not one per author (at 200k tweets that was ~460k elements).
   ``T`` and ``A`` are global sums; the ``plan`` ``(T, A, limit)`` is a singleton side input.
2. ``OverCap``: the authors with more than ``limit`` tweets, as a side-input dict. Its size is
   bounded by the cap itself: each such author has more than ``limit`` tweets, so there are fewer
   than ``T / (max_tweets_per_author + 1)`` under a count cap, and fewer than ``1 /
   max_author_share`` (50 by default) under a share cap.
3. ``Thresholds``: the id arrays of over-cap authors only (read from step 1's arrays, not from the
   tweets) become cap keys, vectorised, and go to a ``CombinePerKey`` that keeps the ``limit``
   smallest (``_SmallestKeys``: ``np.partition``, at most ``2 * limit + 64Ki`` keys at once, 8
   bytes each) and outputs the ``limit``-th smallest. Memory per author is O(limit), not O(its
   tweets); the shuffle moves at most ``limit`` keys per author and bundle.
4. ``Decide``: every tweet is kept or dropped where it is, against the thresholds as a side-input
   dict (one entry per over-cap author, the same bound as step 2). The tweets are read once more
   here (the runner materialises them while the thresholds are computed: deciding needs every
   author counted first) but never grouped; drop counts go out once per bundle.

Cost (``bench/bench_author_cap.py scale``, 200k tweets, FnApiRunner, 1 worker): ~14-17 µs per
tweet, ~2.3x the CPU of a bare read-and-parse pass-through (exact dedup: 2.0x); see
``docs/author-cap.md``.
"""

from __future__ import annotations

import dataclasses
import math
import struct
from collections import Counter, defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from typing import ClassVar

import apache_beam as beam
import numpy as np
from tweetmill.schemas.records import Tweet
from tweetmill.schemas.shard import splitmix64
from tweetmill.transforms.common import TAG_DROPPED, TAG_STATS, DropCounter
from tweetmill.transforms.dedup_batches import TweetBatch, windowed
from tweetmill.transforms.near_dedup_encoding import (
    concat,
    decode_arrays,
    encode_arrays,
    partition_of,
    split_by_partition,
)
from tweetmill.transforms.spill import group_by_key, parked
from tweetmill.transforms.stage import KIND_SHUFFLE, TAG_DROPPED_TWEETS, option

DROP_AUTHOR_CAP = "author_cap"  # over its author's cap (bot and spam floods): transforms/author_cap.py

__all__ = [
    "STAGE",
    "AuthorCapConfig",
    "AuthorCapOutputs",
    "CapAuthors",
    "cap_authors",
    "cap_key",
    "cap_limit",
    "stats_dict",
]

STAGE = "author_cap"
MAX_LISTED_AUTHORS = 20  # the most-capped authors named in the stats
_FLUSH_KEYS = 1 << 16  # ids buffered in a bundle (and keys pending in a combine) before they are packed
_TOTAL = "total"
_MASK64 = (1 << 64) - 1


@dataclass(frozen=True)
class AuthorCapConfig:
    """How many tweets one author may keep. Defaults measured in ``docs/author-cap.md``."""

    max_tweets_per_author: int = option(
        0, "keep at most this many tweets per author id; 0: no limit", low=0
    )
    max_author_share: float = option(
        0.02,
        "keep at most this share of the tweets per author id (0.02: one in 50); 0: no limit; "
        "applies only to corpora of --min-authors-for-share authors or more",
        low=0,
        high=1,
    )
    min_authors_for_share: int = option(
        1000,
        "apply --max-author-share only when the corpus has at least this many authors "
        "(so one account's archive is never share-capped)",
        low=0,
    )

    def __post_init__(self) -> None:
        if self.max_tweets_per_author < 0:
            raise ValueError(f"max_tweets_per_author must be >= 0, got {self.max_tweets_per_author}")
        if not 0.0 <= self.max_author_share <= 1.0:
            raise ValueError(f"max_author_share must be in [0, 1], got {self.max_author_share}")
        if self.min_authors_for_share < 0:
            raise ValueError(f"min_authors_for_share must be >= 0, got {self.min_authors_for_share}")

    @property
    def enabled(self) -> bool:
        """False when no cap can apply: the stage is then left out of the pipeline."""
        return self.max_tweets_per_author > 0 or self.max_author_share > 0


def cap_limit(config: AuthorCapConfig, tweets: int, authors: int) -> int:
    """The most tweets one author keeps in a corpus of ``tweets`` tweets by ``authors`` author ids;
    0 when no cap applies. The share is exact (``0.29 * 100`` is 29, not 28.999...)."""
    limits = []
    if config.max_tweets_per_author > 0:
        limits.append(config.max_tweets_per_author)
    if config.max_author_share > 0 and authors >= config.min_authors_for_share:
        limits.append(max(1, math.floor(Fraction(repr(config.max_author_share)) * tweets)))
    return min(limits, default=0)


def cap_key(tweet_id: int) -> int:
    """The order in which an author's tweets survive the cap: smallest key first."""
    return splitmix64(tweet_id & _MASK64)


def cap_authors(tweets: Iterable[Tweet], config: AuthorCapConfig) -> tuple[list[Tweet], list[Tweet]]:
    """The pure core, in one process (tests, small inputs): ``(kept, dropped)``, each in input order.

    ``CapAuthors`` keeps exactly the same tweets, on any runner and worker count.
    """
    tweets = list(tweets)
    counts = Counter(t.author_id for t in tweets if t.author_id is not None)
    limit = cap_limit(config, len(tweets), len(counts))
    thresholds: dict[int, int] = {}
    if limit:
        keys: dict[int, list[int]] = defaultdict(list)
        for t in tweets:
            if t.author_id is not None and counts[t.author_id] > limit:
                keys[t.author_id].append(cap_key(t.id))
        thresholds = {author: sorted(k)[limit - 1] for author, k in keys.items()}
    kept: list[Tweet] = []
    dropped: list[Tweet] = []
    for t in tweets:
        threshold = thresholds.get(t.author_id)  # type: ignore[arg-type]
        (kept if threshold is None or cap_key(t.id) <= threshold else dropped).append(t)
    return kept, dropped


def stats_dict(
    config: AuthorCapConfig,
    plan: tuple[int, int, int],
    largest: Iterable[tuple[int, int]],
    capped: int,
    removed: int,
) -> tuple[str, dict]:
    """The ``("author_cap", {...})`` element of the manifest's ``stages``.

    ``plan``: ``(tweets, authors, limit)``; ``largest``: ``(author_id, tweets)`` of capped authors
    (the ``MAX_LISTED_AUTHORS`` with the most tweets are listed); ``capped``: how many authors were
    capped; ``removed``: tweets dropped.
    """
    tweets, authors, limit = plan
    largest = sorted(largest, key=lambda c: (-c[1], c[0]))[:MAX_LISTED_AUTHORS]
    return (
        STAGE,
        {
            "tweets": tweets,  # reaching the stage, with or without an author
            "authors": authors,  # distinct author ids among them
            "limit": limit or None,  # tweets one author keeps; None: no cap applied
            "share_cap_applied": config.max_author_share > 0 and authors >= config.min_authors_for_share,
            "capped_authors": capped,
            "tweets_removed": removed,  # == counts.dropped["author_cap"]
            "largest_capped": [{"author_id": a, "tweets": n} for a, n in largest],
            **dataclasses.asdict(config),
            "rule": "per author, keep the `limit` tweets with the smallest splitmix64(id)",
        },
    )


# --- Beam ----------------------------------------------------------------------------------------


class _AuthorIdsFn(beam.DoFn):
    """Tweets (or batches of them) → ``(partition, payload)``: per bundle and author partition, the
    partition's authors, their tweet counts and their tweet ids grouped by author (``encode_arrays``;
    the later steps need only these 8 bytes of a tweet), and under ``_TOTAL`` the bundle's count of
    tweets, with or without an author. Beam's cost is per element, so a bundle makes at most
    ``partitions`` elements however many authors it has."""

    def __init__(self, partitions: int):
        self._partitions = partitions

    def start_bundle(self) -> None:
        self._authors: list[int] = []
        self._ids: list[int] = []
        self._tweets = 0

    def process(self, element: Tweet | list[Tweet]) -> Iterator:
        for tweet in element if isinstance(element, list) else (element,):
            self._tweets += 1
            if tweet.author_id is not None:
                self._authors.append(tweet.author_id)
                self._ids.append(tweet.id & _MASK64)
        if len(self._authors) >= _FLUSH_KEYS:
            yield from self._flush()

    def finish_bundle(self) -> Iterator:
        for out in self._flush():
            yield windowed(out)
        if self._tweets:
            yield windowed(beam.pvalue.TaggedOutput(_TOTAL, self._tweets))

    def _flush(self) -> Iterator[tuple[int, bytes]]:
        if not self._authors:
            return
        authors = np.array(self._authors, dtype=np.int64)  # parse_id: author ids are in (0, 2**63)
        ids = np.array(self._ids, dtype=np.uint64)
        self._authors, self._ids = [], []
        order = np.argsort(authors, kind="stable")
        authors, ids = authors[order], ids[order]
        first = _run_starts(authors)
        unique, counts = authors[first], np.diff(np.r_[first, len(authors)])
        parts = partition_of(unique, self._partitions)
        part_of_id = np.repeat(parts, counts)
        for q, rows in split_by_partition(parts, self._partitions):
            yield q, encode_arrays(unique[rows], counts[rows], ids[part_of_id == q])


def _author_counts(packed: tuple[int, bytes]) -> tuple[int, bytes]:
    """``(partition, payload)`` → ``(partition, authors and counts)``: the ids stay behind."""
    q, payload = packed
    authors, counts, _ = decode_arrays(payload)
    return q, encode_arrays(authors, counts)


def _count_per_author(grouped: tuple[int, Iterable[bytes]]) -> tuple[int, bytes]:
    """One partition's ``(authors, counts)`` of every bundle → each author once, counts summed."""
    q, payloads = grouped
    arrays = [decode_arrays(payload) for payload in payloads]
    authors = concat([a for a, _ in arrays], np.int64)
    counts = concat([c for _, c in arrays], np.int64)
    order = np.argsort(authors, kind="stable")
    authors, counts = authors[order], counts[order]
    first = _run_starts(authors)
    totals = np.add.reduceat(counts, first) if len(first) else counts
    return q, encode_arrays(authors[first], totals)


def _run_starts(sorted_values: np.ndarray) -> np.ndarray:
    """Where each run of equal values of a sorted array starts."""
    if not len(sorted_values):
        return np.zeros(0, dtype=np.int64)
    return np.flatnonzero(np.r_[True, sorted_values[1:] != sorted_values[:-1]])


def _number_of_authors(counts: tuple[int, bytes]) -> int:
    return len(decode_arrays(counts[1])[0])


def _plan(tweets: int, authors: int, config: AuthorCapConfig) -> tuple[int, int, int]:
    return (tweets, authors, cap_limit(config, tweets, authors))


def _over_cap(counts: tuple[int, bytes], plan: tuple[int, int, int]) -> Iterator[tuple[int, int]]:
    """``(author, count)`` of each author of a partition with more than ``limit`` tweets."""
    limit = plan[2]
    if limit:
        authors, totals = decode_arrays(counts[1])
        over = totals > limit
        yield from zip(authors[over].tolist(), totals[over].tolist(), strict=True)


def _keys_of_over_cap(
    packed: tuple[int, bytes], over_cap: dict, plan: tuple[int, int, int]
) -> Iterator[tuple[int, tuple[int, bytes]]]:
    """``(partition, payload)`` → ``(author, (limit, packed cap keys))`` of its over-cap authors."""
    if not over_cap:
        return
    authors, counts, ids = decode_arrays(packed[1])
    ends = np.cumsum(counts)
    capped = np.fromiter(over_cap, dtype=np.int64, count=len(over_cap))
    for k in np.flatnonzero(np.isin(authors, capped)).tolist():
        keys = splitmix64(ids[ends[k] - counts[k] : ends[k]].astype(np.uint64))
        yield int(authors[k]), (plan[2], keys.astype("<u8").tobytes())


class _Smallest:
    """The ``limit`` smallest of the keys added so far (more may wait in ``parts``, up to
    ``2 * limit + _FLUSH_KEYS`` in all): O(limit) memory, amortised O(1) work per key."""

    __slots__ = ("limit", "parts", "size")

    def __init__(self, limit: int = 0, parts: list[np.ndarray] | None = None):
        self.limit = limit
        self.parts = parts or []
        self.size = sum(len(p) for p in self.parts)

    def add(self, limit: int, keys: np.ndarray) -> None:
        self.limit = max(self.limit, limit)
        self.parts.append(keys)
        self.size += len(keys)
        if self.size >= 2 * self.limit + _FLUSH_KEYS:
            self.compact()

    def compact(self) -> np.ndarray:
        keys = np.concatenate(self.parts) if len(self.parts) != 1 else self.parts[0]
        if len(keys) > self.limit > 0:
            keys = np.partition(keys, self.limit - 1)[: self.limit]
        self.parts, self.size = [keys], len(keys)
        return keys


class _SmallestCoder(beam.coders.Coder):
    """A ``_Smallest`` as its limit and its (compacted) keys: 8 bytes per key."""

    def encode(self, acc: _Smallest) -> bytes:
        return struct.pack("<Q", acc.limit) + acc.compact().astype("<u8").tobytes()

    def decode(self, encoded: bytes) -> _Smallest:
        (limit,) = struct.unpack_from("<Q", encoded)
        return _Smallest(limit, [np.frombuffer(encoded, dtype="<u8", offset=8).astype(np.uint64)])

    def is_deterministic(self) -> bool:
        return True


class _SmallestKeys(beam.CombineFn):
    """``(limit, packed keys)`` of one author → the ``limit``-th smallest key (its threshold)."""

    def create_accumulator(self) -> _Smallest:
        return _Smallest()

    def add_input(self, acc: _Smallest, value: tuple[int, bytes]) -> _Smallest:
        limit, packed = value
        acc.add(limit, np.frombuffer(packed, dtype="<u8").astype(np.uint64))
        return acc

    def merge_accumulators(self, accumulators: Iterable[_Smallest]) -> _Smallest:
        merged = _Smallest()
        for acc in accumulators:
            for part in acc.parts:
                merged.add(acc.limit, part)
        return merged

    def extract_output(self, acc: _Smallest) -> int:
        return int(acc.compact().max())  # an over-cap author has more than ``limit`` keys

    def get_accumulator_coder(self) -> beam.coders.Coder:
        return _SmallestCoder()


class _DecideFn(beam.DoFn):
    """Each tweet kept or dropped where it is: dropped iff its author has a threshold and its key
    is above it. Drop counts go out once per bundle."""

    def setup(self) -> None:
        self._drops = DropCounter(STAGE)

    def start_bundle(self) -> None:
        self._dropped = 0

    def process(self, element: Tweet | list[Tweet], thresholds: dict) -> Iterator:
        if not thresholds:  # no author over the cap: kept as it is
            yield element
            return
        batched = isinstance(element, list)
        kept = []
        for tweet in element if batched else (element,):
            threshold = thresholds.get(tweet.author_id) if tweet.author_id is not None else None
            if threshold is not None and cap_key(tweet.id) > threshold:
                self._dropped += 1
                yield beam.pvalue.TaggedOutput(TAG_DROPPED_TWEETS, (STAGE, DROP_AUTHOR_CAP, tweet))
            else:
                kept.append(tweet)
        if batched and kept:
            yield kept
        elif not batched:
            yield from kept

    def finish_bundle(self) -> Iterator:
        for out in self._drops.emit(Counter({DROP_AUTHOR_CAP: self._dropped})):
            yield windowed(out)


def _largest_capped(count: tuple[int, int]) -> tuple[int, int]:
    return (count[1], -count[0])


def _drop_count(drop: tuple[tuple[str, str], int]) -> int:
    return drop[1]


def _stats_element(
    plan: tuple[int, int, int], config: AuthorCapConfig, largest: list, capped: int, removed: int
) -> tuple[str, dict]:
    return stats_dict(config, plan, largest, capped, removed)


class AuthorCapOutputs(dict):
    """``CapAuthors``' outputs: a dict of PCollections that reads like a ``DoOutputsTuple``."""

    @property
    def tweets(self) -> beam.PCollection:
        return self["tweets"]


class CapAuthors(beam.PTransform):
    """Tweets → the tweets within their author's cap (see the module docstring for the rule).

    Returns ``AuthorCapOutputs``: ``.tweets`` (kept ``Tweet`` elements), ``[TAG_DROPPED]``
    (``(("author_cap", "author_cap"), count)``), ``[TAG_DROPPED_TWEETS]`` (``("author_cap",
    "author_cap", Tweet)`` for each dropped tweet, for the audit) and ``["stats"]`` (one
    ``("author_cap", dict)``, see ``stats_dict``). ``cap_authors`` is the same in one process.
    Input: globally windowed (batch) tweets; ids should be unique (``DeduplicateIds`` runs before).
    ``batched``: the input is lists of tweets (the pipeline's batches), and so is ``.tweets``;
    ``spill_dir`` (batched, local runs): they wait for the thresholds in spill files (``spill.py``).
    """

    name: ClassVar[str] = STAGE
    kind: ClassVar[str] = KIND_SHUFFLE
    reasons: ClassVar[tuple[str, ...]] = (DROP_AUTHOR_CAP,)
    description: ClassVar[str] = "more tweets from one author than its cap (bot and spam floods)"
    Config: ClassVar[type] = AuthorCapConfig

    def __init__(
        self,
        config: AuthorCapConfig | None = None,
        *,
        batched: bool = False,
        spill_dir: str | None = None,
        partitions: int = 16,
    ):
        super().__init__()
        if spill_dir is not None and not batched:
            raise ValueError("spill_dir needs batched input")
        if partitions < 1:
            raise ValueError("partitions must be positive")
        self.config = config or AuthorCapConfig()
        self._batched, self._spill_dir, self._partitions = batched, spill_dir, partitions

    def enabled(self) -> bool:
        return self.config.enabled

    def expand(self, tweets: beam.PCollection):  # -> AuthorCapOutputs
        if not tweets.windowing.is_default():
            raise ValueError("CapAuthors runs on globally windowed (batch) input")
        config = self.config
        ids = tweets | "AuthorIds" >> beam.ParDo(_AuthorIdsFn(self._partitions)).with_output_types(
            tuple[int, bytes]
        ).with_outputs(_TOTAL, main="ids")
        author_counts = ids.ids | "AuthorCounts" >> beam.Map(_author_counts).with_output_types(
            tuple[int, bytes]
        )
        counts = group_by_key(author_counts, "GroupCounts", self._spill_dir) | "CountPerAuthor" >> beam.Map(
            _count_per_author
        ).with_output_types(tuple[int, bytes])
        total = ids[_TOTAL] | "CountTweets" >> beam.CombineGlobally(sum)
        authors = (
            counts
            | "AuthorsPerPartition" >> beam.Map(_number_of_authors).with_output_types(int)
            | "CountAuthors" >> beam.CombineGlobally(sum)
        )
        plan = total | "Plan" >> beam.Map(_plan, authors=beam.pvalue.AsSingleton(authors), config=config)
        over_cap = counts | "OverCap" >> beam.FlatMap(_over_cap, plan=beam.pvalue.AsSingleton(plan))
        thresholds = (
            ids.ids
            | "KeysOfOverCap"
            >> beam.FlatMap(
                _keys_of_over_cap, over_cap=beam.pvalue.AsDict(over_cap), plan=beam.pvalue.AsSingleton(plan)
            ).with_output_types(tuple[int, tuple[int, bytes]])
            | "Thresholds" >> beam.CombinePerKey(_SmallestKeys()).with_output_types(tuple[int, int])
        )
        waiting = parked(tweets, "Park", self._spill_dir, after=thresholds)
        decided = waiting | "Decide" >> beam.ParDo(
            _DecideFn(), thresholds=beam.pvalue.AsDict(thresholds)
        ).with_output_types(TweetBatch if self._batched else Tweet).with_outputs(
            TAG_DROPPED, TAG_DROPPED_TWEETS, main="tweets"
        )
        removed = (
            decided[TAG_DROPPED]
            | "RemovedCounts" >> beam.Map(_drop_count).with_output_types(int)
            | "SumRemoved" >> beam.CombineGlobally(sum)
        )
        largest = over_cap | "LargestCapped" >> beam.combiners.Top.Of(MAX_LISTED_AUTHORS, key=_largest_capped)
        capped = over_cap | "CountCapped" >> beam.combiners.Count.Globally()
        stats = plan | "StatsDict" >> beam.Map(
            _stats_element,
            config=config,
            largest=beam.pvalue.AsSingleton(largest),
            capped=beam.pvalue.AsSingleton(capped),
            removed=beam.pvalue.AsSingleton(removed),
        )
        return AuthorCapOutputs(
            {
                "tweets": decided.tweets,
                TAG_DROPPED: decided[TAG_DROPPED],
                TAG_DROPPED_TWEETS: decided[TAG_DROPPED_TWEETS],
                TAG_STATS: stats,
            }
        )


"""Exact deduplication: the same tweet id seen twice, and the same normalised text.

Each is a ``CombinePerKey`` that keeps one deterministic survivor per key and counts the rest, so
the result is the same whatever the runner, worker count or input order, and the runner can
pre-combine before the shuffle (far less data moves than with a GroupByKey).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterator

import apache_beam as beam
from tweetmill.schemas.records import DROP_DUPLICATE_ID, DROP_EXACT_DUPLICATE, Tweet
from tweetmill.transforms.common import TAG_DROPPED, DropCounter, TweetCoder

_WHITESPACE = re.compile(r"\s+")


def normalized_text_key(text: str) -> bytes:
    """Key under which texts count as exact duplicates: NFKC, case-folded, whitespace collapsed.

    Hashed to 16 bytes so the shuffle moves keys of fixed, small size.
    """
    norm = _WHITESPACE.sub(" ", unicodedata.normalize("NFKC", text).casefold()).strip()
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()


def id_survivor_order(tweet: Tweet) -> tuple:
    """Among copies of one tweet id: the first file, then the first position."""
    return (tweet.source_file, tweet.position)


def text_survivor_order(tweet: Tweet) -> tuple:
    """Among tweets with one text: the smallest id (the earliest tweet), ties by origin."""
    return (tweet.id, tweet.source_file, tweet.position)


class KeepFirst(beam.CombineFn):
    """Keeps the smallest element by ``order`` and counts how many were seen."""

    def __init__(self, order: Callable[[Tweet], tuple]):
        self._order = order

    def create_accumulator(self):
        return (None, 0)

    def add_input(self, acc, tweet: Tweet):
        best, n = acc
        if best is None or self._order(tweet) < self._order(best):
            best = tweet
        return (best, n + 1)

    def merge_accumulators(self, accumulators):
        best, total = None, 0
        for candidate, n in accumulators:
            total += n
            if candidate is not None and (best is None or self._order(candidate) < self._order(best)):
                best = candidate
        return (best, total)

    def extract_output(self, acc):
        return acc

    def get_accumulator_coder(self):
        return beam.coders.TupleCoder([beam.coders.NullableCoder(TweetCoder()), beam.coders.VarIntCoder()])


def dedup_batch(tweets: list[Tweet], key: Callable[[Tweet], object], order: Callable[[Tweet], tuple]):
    """The pure core, for tests and single-process use: survivors and the number removed."""
    best: dict[object, Tweet] = {}
    for tweet in tweets:
        k = key(tweet)
        if k not in best or order(tweet) < order(best[k]):
            best[k] = tweet
    return list(best.values()), len(tweets) - len(best)


class _EmitSurvivor(beam.DoFn):
    def __init__(self, reason: str):
        self._reason = reason

    def setup(self) -> None:
        self._drops = DropCounter("dedup")

    def process(self, keyed) -> Iterator:
        _, (survivor, count) = keyed
        yield survivor
        if count > 1:
            yield from self._drops.emit({self._reason: count - 1})


class _Deduplicate(beam.PTransform):
    def __init__(
        self, key: Callable[[Tweet], object], key_type: type, order: Callable[[Tweet], tuple], reason: str
    ):
        super().__init__()
        self._key, self._key_type, self._order, self._reason = key, key_type, order, reason

    def expand(self, tweets):
        return (
            tweets
            | "Key"
            >> beam.Map(lambda t, key=self._key: (key(t), t)).with_output_types(tuple[self._key_type, Tweet])
            | "KeepFirst"
            >> beam.CombinePerKey(KeepFirst(self._order)).with_output_types(
                tuple[self._key_type, tuple[Tweet, int]]
            )
            | "EmitSurvivors"
            >> beam.ParDo(_EmitSurvivor(self._reason))
            .with_output_types(Tweet)
            .with_outputs(TAG_DROPPED, main="tweets")
        )


def _tweet_id(tweet: Tweet) -> int:
    return tweet.id


def _text_key(tweet: Tweet) -> bytes:
    return normalized_text_key(tweet.text)


class DeduplicateIds(_Deduplicate):
    """One tweet per id (overlapping archives hold the same tweets)."""

    def __init__(self):
        super().__init__(_tweet_id, int, id_survivor_order, DROP_DUPLICATE_ID)


class DeduplicateTexts(_Deduplicate):
    """One tweet per normalised text; the survivor is the tweet with the smallest id."""

    def __init__(self):
        super().__init__(_text_key, bytes, text_survivor_order, DROP_EXACT_DUPLICATE)

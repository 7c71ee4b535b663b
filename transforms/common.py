"""Conventions every stage's PTransform follows: output tags and drop accounting."""

from __future__ import annotations

import dataclasses
import gc
import operator
from collections import Counter
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.metrics import Metrics
from tweetmill.schemas.records import Tweet

# Tagged outputs. A stage's main output holds what it keeps; records it drops are counted under
# TAG_DROPPED as ``((stage, reason), count)`` pairs; input it cannot understand goes to
# TAG_DEAD_LETTERS as ``DeadLetter`` records. The pipeline sums these into the manifest's accounting.
TAG_DROPPED = "dropped"
TAG_DEAD_LETTERS = "dead_letters"
# Shuffle stages' extras: ``(stage name, dict)`` for the manifest's ``stages``, and samples of what
# they decided (written beside the shards for inspection).
TAG_STATS = "stats"
TAG_SAMPLES = "samples"

METRICS_NAMESPACE = "tweetmill"

# Python's collector defaults (700, 10, 10) run a young collection every 700 container
# allocations and a full one, which traverses every live object (Beam's graph, the language
# tables), every ~70k. Parsing one tweet allocates dozens of containers, so at the defaults the
# collector took ~10 % of a run's CPU (measured with gc.callbacks at 200k tweets), and ~1.5 % at
# these thresholds. The stages' objects are freed by reference counting; the collector only finds
# reference cycles, which now wait a little longer.
COLLECTOR_THRESHOLDS = (10_000, 10, 10)


def relax_collector() -> None:
    """Raise this process's gc thresholds to ``COLLECTOR_THRESHOLDS`` (never lower them). Called
    in the setup of the DoFns that allocate per tweet, so that it holds in every runner's workers."""
    if gc.get_threshold()[0] < COLLECTOR_THRESHOLDS[0]:
        gc.set_threshold(*COLLECTOR_THRESHOLDS)


class DropCounter:
    """Counts drops by reason as Beam metrics (for the runner's UI) and yields tagged counts.

    Create one in ``DoFn.setup``; after each batch, ``emit(counter)`` yields the
    ``TaggedOutput(TAG_DROPPED, ((stage, reason), n))`` values the DoFn must emit.
    """

    def __init__(self, stage: str):
        self._stage = stage
        self._metrics: dict[str, beam.metrics.metricbase.Counter] = {}

    def emit(self, drops: Counter) -> Iterator[beam.pvalue.TaggedOutput]:
        for reason, count in drops.items():
            if not count:
                continue
            metric = self._metrics.get(reason)
            if metric is None:
                name = f"dropped_{self._stage}_{reason}"
                metric = self._metrics[reason] = Metrics.counter(METRICS_NAMESPACE, name)
            metric.inc(count)
            yield beam.pvalue.TaggedOutput(TAG_DROPPED, ((self._stage, reason), count))


# A tweet's field values as one tuple, in declaration order: ``Tweet(*tweet_values(t))`` rebuilds it.
tweet_values = operator.attrgetter(*(f.name for f in dataclasses.fields(Tweet)))


def estimated_size(tweet: Tweet) -> int:
    """About the encoded bytes of a tweet, without encoding it. Beam estimates the size of a sample
    of the elements each step outputs (for its byte counters); encoding them cost ~4 % of a run's
    CPU when the elements are batches of 1,000 tweets."""
    return 64 + len(tweet.text) + len(tweet.source_file) + len(tweet.token_bytes)


class TweetCoder(beam.coders.Coder):
    """Encodes a ``Tweet`` as the tuple of its field values with Beam's fast primitive coder.

    About 3x cheaper than pickling the dataclass, and half the bytes, at every shuffle. Used where
    a PCollection is typed ``Tweet`` (see ``with_output_types`` in the stages).
    """

    def __init__(self) -> None:
        self._values = beam.coders.FastPrimitivesCoder()

    def encode(self, tweet: Tweet) -> bytes:
        return self._values.encode(tweet_values(tweet))

    def decode(self, encoded: bytes) -> Tweet:
        return Tweet(*self._values.decode(encoded))

    def estimate_size(self, tweet: Tweet) -> int:
        return estimated_size(tweet)

    def is_deterministic(self) -> bool:
        return True

    def to_type_hint(self):
        return Tweet

    def __eq__(self, other) -> bool:
        return type(self) is type(other)

    def __hash__(self) -> int:
        return hash(type(self))


beam.coders.registry.register_coder(Tweet, TweetCoder)

"""The stage contract: what every tweet-by-tweet stage declares, and the one transform that runs it.

A stage is a small class (datatrove's one-class-per-step): a ``name``, a frozen ``Config`` dataclass
whose fields carry their command-line option in ``option(...)`` metadata, the drop ``reasons`` it may
give, and a pure ``process_batch``. ``ApplyStage`` does the rest for all of them alike: batching,
Beam metrics, drop counts keyed by ``(stage, reason)``, and the dropped tweets themselves for the
audit. ``pipeline/build.py`` lists the stages; the manifest records each one
that ran with its reasons; ``stats`` and the report read them from there.

A filter that decides tweet by tweet subclasses ``TweetFilter`` and writes ``reject``; a stage that
works better on a whole batch (a model, a vectorised rule) overrides ``process_batch``. Shuffle
stages (deduplication, per-author caps) are composites of their own but emit the same outputs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import apache_beam as beam
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.common import TAG_DROPPED, DropCounter, relax_collector
from tweetmill.transforms.progress import reporter

# Tagged output of dropped tweets, ``(stage, reason, Tweet)``: batch stages always emit them (the
# audit samples them), shuffle stages only when the run writes every dropped tweet.
TAG_DROPPED_TWEETS = "dropped_tweets"

# What a stage is, as the manifest records it.
KIND_SOURCE = "source"  # reads the inputs
KIND_MAP = "map"  # changes tweets, drops none
KIND_FILTER = "filter"  # keeps or drops tweet by tweet
KIND_SHUFFLE = "shuffle"  # decides across tweets (dedup, caps): its own composite
KIND_USER = "user"  # a filter from the user's own module (``--filter``)


def option(
    default: Any,
    help: str,
    *,
    flag: str | None = None,
    low: float | None = None,
    high: float | None = None,
    low_open: bool = False,
    choices: tuple[str, ...] | None = None,
) -> Any:
    """A config field with its command-line option.

    ``flag``: the option's name (default ``--field-name``; a boolean's flag sets the field to the
    opposite of its default, like ``--keep-retweets`` for ``drop_retweets``); ``low``/``high``: the
    accepted range of a number, checked before the run starts (``low_open``: ``low`` itself
    excluded); ``choices``: the accepted strings.
    """
    metadata = {
        "help": help,
        "flag": flag,
        "low": low,
        "high": high,
        "low_open": low_open,
        "choices": choices,
    }
    return dataclasses.field(default=default, metadata=metadata)


@dataclass(frozen=True)
class NoConfig:
    """The config of a stage with no options."""


class Stage:
    """A stage that transforms batches of tweets: keeps some, drops others with a declared reason.

    Subclasses set ``name`` (snake case; the manifest's and the metrics' key), ``reasons``,
    ``description`` (one line for ``--help`` and the report), ``Config``, and implement
    ``process_batch`` (or ``reject``, via ``TweetFilter``). Heavy objects (models, tables) are
    created in ``setup``, once per worker, never in ``__init__`` (stages are pickled to the workers).
    """

    name: ClassVar[str]
    kind: ClassVar[str] = KIND_FILTER
    reasons: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    Config: ClassVar[type] = NoConfig

    def __init__(self, config: Any = None):
        self.config = self.Config() if config is None else config

    def enabled(self) -> bool:
        """False when the config turns the stage off: it is then left out of the pipeline."""
        return True

    def setup(self) -> None:
        """Load what the stage needs (once per worker)."""

    def process_batch(self, tweets: list[Tweet]) -> tuple[list[Tweet], list[tuple[Tweet, str]]]:
        """The tweets kept (possibly changed), and each dropped tweet with its reason."""
        raise NotImplementedError


class TweetFilter(Stage):
    """A filter deciding each tweet on its own: ``reject`` returns a drop reason, or None to keep it."""

    def reject(self, tweet: Tweet) -> str | None:
        raise NotImplementedError

    def process_batch(self, tweets: list[Tweet]) -> tuple[list[Tweet], list[tuple[Tweet, str]]]:
        kept: list[Tweet] = []
        dropped: list[tuple[Tweet, str]] = []
        for tweet in tweets:
            reason = self.reject(tweet)
            if reason is None:
                kept.append(tweet)
            else:
                dropped.append((tweet, reason))
        return kept, dropped


class StageContractError(RuntimeError):
    """A stage lost or invented tweets, or dropped one for a reason it did not declare."""


def run_stage(stage: Stage, tweets: list[Tweet]) -> tuple[list[Tweet], list[tuple[Tweet, str]]]:
    """``stage.process_batch`` with the contract checked: every tweet kept or dropped, reasons declared."""
    kept, dropped = stage.process_batch(tweets)
    if len(kept) + len(dropped) != len(tweets):
        raise StageContractError(
            f"stage {stage.name!r} returned {len(kept)} kept + {len(dropped)} dropped "
            f"for {len(tweets)} tweets"
        )
    declared = stage.reasons
    for _, reason in dropped:
        if reason not in declared:
            raise StageContractError(
                f"stage {stage.name!r} dropped a tweet for {reason!r}, "
                f"not one of its reasons {list(declared)}"
            )
    return kept, dropped


def drop_counts(dropped: list[tuple[Tweet, str]]) -> Counter:
    return Counter(reason for _, reason in dropped)


class _StageFn(beam.DoFn):
    def __init__(self, stage: Stage):
        self._stage = stage

    def setup(self) -> None:
        relax_collector()
        self._stage.setup()
        self._drops = DropCounter(self._stage.name)
        self._progress = reporter()  # None unless a local run is watched (transforms/progress.py)

    def process(self, batch: list[Tweet]) -> Iterator:
        kept, dropped = run_stage(self._stage, batch)
        if self._progress is not None:
            self._progress.report(self._stage.name, i=len(batch), d=len(dropped))
        if kept:
            yield kept
        yield from self._drops.emit(drop_counts(dropped))
        name = self._stage.name
        for tweet, reason in dropped:
            yield beam.pvalue.TaggedOutput(TAG_DROPPED_TWEETS, (name, reason, tweet))


class ApplyStage(beam.PTransform):
    """Batches of tweets → the batches ``stage`` keeps, ``TAG_DROPPED`` counts, and the dropped tweets
    under ``TAG_DROPPED_TWEETS`` (written whole or sampled by the audit, ``transforms/audit.py``)."""

    def __init__(self, stage: Stage):
        super().__init__()
        self._stage = stage

    def expand(self, batches):
        return batches | "Apply" >> beam.ParDo(_StageFn(self._stage)).with_output_types(
            list[Tweet]
        ).with_outputs(TAG_DROPPED, TAG_DROPPED_TWEETS, main="tweets")


def sample_key(tweet: Tweet) -> int:
    """A deterministic, well-spread order for sampling dropped tweets (the same sample on any runner)."""
    return int.from_bytes(
        hashlib.blake2b(tweet.id.to_bytes(8, "big", signed=True), digest_size=8).digest(), "big"
    )

"""Filter stage: retweets, texts too short to teach anything, and languages the user did not ask for.

The cheap rules (``filter_batch``) run before deduplication; language detection
(``detect_languages``) runs after it, on fewer texts, because it is the expensive step. Every
tweet that survives carries its detected language, whether or not a language filter is set.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import apache_beam as beam
from tweetmill.schemas.records import DROP_EMPTY, DROP_LANGUAGE, DROP_RETWEET, DROP_TOO_SHORT, Tweet
from tweetmill.transforms.common import TAG_DROPPED, DropCounter

# What carries no language content: mentions, URLs, the clean stage's <PLACEHOLDER>s, RT markers.
_NON_CONTENT = re.compile(r"(?:^|(?<=\s))RT\b|@\w+|https?://\S+|<[A-Z]+>", re.UNICODE)
_LETTER_OR_DIGIT = re.compile(r"[^\W_]", re.UNICODE)
_MANUAL_RETWEET = re.compile(r"^\s*RT\s*@\w+", re.UNICODE)


@dataclass(frozen=True)
class FilterConfig:
    drop_retweets: bool = True  # retweets duplicate their original
    min_chars: int = 8  # letters/digits left once mentions, URLs, placeholders are removed
    languages: tuple[str, ...] = ()  # keep only these detected languages; empty: keep all
    lang_engine: str = "profiles"
    min_lang_confidence: float = 0.5


def content_length(text: str) -> int:
    """Letters and digits outside mentions, URLs, placeholders and RT markers."""
    return len(_LETTER_OR_DIGIT.findall(_NON_CONTENT.sub(" ", text)))


def is_retweet(tweet: Tweet) -> bool:
    return tweet.is_retweet or bool(_MANUAL_RETWEET.match(tweet.text))


def filter_batch(tweets: list[Tweet], config: FilterConfig) -> tuple[list[Tweet], Counter]:
    """Keep tweets that pass the cheap rules; count the others by reason."""
    kept: list[Tweet] = []
    drops: Counter = Counter()
    for tweet in tweets:
        if not tweet.text.strip():
            drops[DROP_EMPTY] += 1
        elif config.drop_retweets and is_retweet(tweet):
            drops[DROP_RETWEET] += 1
        elif content_length(tweet.text) < config.min_chars:
            drops[DROP_TOO_SHORT] += 1
        else:
            kept.append(tweet)
    return kept, drops


def detect_languages(tweets: list[Tweet], detector, config: FilterConfig) -> tuple[list[Tweet], Counter]:
    """Record each tweet's language; drop those outside ``config.languages`` (if set)."""
    from tweetmill.transforms.langid import resolve_language

    detections = detector.detect_batch([t.text for t in tweets])
    kept: list[Tweet] = []
    drops: Counter = Counter()
    wanted = set(config.languages)
    for tweet, (lang, score) in zip(tweets, detections, strict=True):
        tweet = tweet.replace(lang=lang, lang_score=float(score))
        if wanted and resolve_language(lang, score, tweet.twitter_lang) not in wanted:
            drops[DROP_LANGUAGE] += 1
        else:
            kept.append(tweet)
    return kept, drops


class _FilterFn(beam.DoFn):
    def __init__(self, config: FilterConfig):
        self._config = config

    def setup(self) -> None:
        self._drops = DropCounter("filter")

    def process(self, batch: list[Tweet]) -> Iterator:
        kept, drops = filter_batch(batch, self._config)
        if kept:
            yield kept
        yield from self._drops.emit(drops)


class FilterTweets(beam.PTransform):
    """Batches of tweets → batches that pass the cheap rules (+ TAG_DROPPED counts)."""

    def __init__(self, config: FilterConfig):
        super().__init__()
        self._config = config

    def expand(self, batches):
        return batches | "ApplyRules" >> beam.ParDo(_FilterFn(self._config)).with_output_types(
            list[Tweet]
        ).with_outputs(TAG_DROPPED, main="tweets")


class _LanguageFn(beam.DoFn):
    def __init__(self, config: FilterConfig):
        self._config = config

    def setup(self) -> None:
        from tweetmill.transforms.langid import make_detector

        self._detector = make_detector(
            self._config.lang_engine, min_confidence=self._config.min_lang_confidence
        )
        self._detector.setup()  # load the model once per worker, not on the first batch
        self._drops = DropCounter("language")

    def process(self, batch: list[Tweet]) -> Iterator:
        kept, drops = detect_languages(batch, self._detector, self._config)
        yield from kept
        yield from self._drops.emit(drops)


class DetectLanguage(beam.PTransform):
    """Tweets → tweets with ``lang`` recorded, outside ``languages`` dropped (+ TAG_DROPPED)."""

    def __init__(self, config: FilterConfig, batch_size: int = 1024):
        super().__init__()
        self._config = config
        self._batch_size = batch_size

    def expand(self, tweets):
        return (
            tweets
            | "Batch" >> beam.BatchElements(min_batch_size=64, max_batch_size=self._batch_size)
            | "DetectAndFilter"
            >> beam.ParDo(_LanguageFn(self._config))
            .with_output_types(Tweet)
            .with_outputs(TAG_DROPPED, main="tweets")
        )

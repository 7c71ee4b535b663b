"""Language stage: records every tweet's language, and keeps only the languages asked for.

It runs after deduplication, on fewer texts, because detection is the most expensive rule. The
detectors live in ``transforms/langid*.py``. The default ``tweet`` engine takes Twitter's own tag
as evidence itself; for the langdetect engines ``resolve_language`` combines their answer with the
tag. Either way the shard keeps the decision (``lang``, ``lang_score``) beside Twitter's tag
(``twitter_lang``), and ``--ignore-twitter-lang`` decides from the text alone.
"""

from __future__ import annotations

from dataclasses import dataclass

from tweetmill.schemas.records import DROP_LANGUAGE, Tweet
from tweetmill.transforms.langid import DEFAULT_ENGINE, ENGINES, make_detector, resolve_language
from tweetmill.transforms.stage import Stage, option


@dataclass(frozen=True)
class LanguageConfig:
    # Parsed and checked by pipeline/options.py (codes, suggestions), not by the generic option code.
    languages: tuple[str, ...] = ()  # keep only these languages; empty: keep all (always detected)
    lang_engine: str = option(DEFAULT_ENGINE, "language detector", choices=ENGINES)
    min_lang_confidence: float = option(0.5, "below this the language is 'und'", low=0, high=1)
    use_twitter_lang: bool = option(
        True,
        "take Twitter's own lang tag as evidence (the flag decides from the text alone)",
        flag="--ignore-twitter-lang",
    )


class DetectLanguage(Stage):
    name = "language"
    reasons = (DROP_LANGUAGE,)
    description = "detects each tweet's language; drops those outside --languages"
    Config = LanguageConfig

    def setup(self) -> None:
        self._detector = make_detector(
            self.config.lang_engine,
            min_confidence=self.config.min_lang_confidence,
            use_twitter_lang=self.config.use_twitter_lang,
        )
        self._detector.setup()  # load the model once per worker, not on the first batch
        self._wanted = frozenset(self.config.languages)

    def process_batch(self, tweets: list[Tweet]) -> tuple[list[Tweet], list[tuple[Tweet, str]]]:
        texts = [t.text for t in tweets]
        use_tag = self.config.use_twitter_lang
        detect_tweets = getattr(self._detector, "detect_tweets", None)
        if detect_tweets is not None:  # the tweet engine weighs the tag itself
            detections = detect_tweets(texts, [t.twitter_lang for t in tweets])
            decided = [lang for lang, _ in detections]
        else:
            detections = self._detector.detect_batch(texts)
            decided = [
                resolve_language(lang, score, t.twitter_lang if use_tag else None)
                for t, (lang, score) in zip(tweets, detections, strict=True)
            ]
        kept: list[Tweet] = []
        dropped: list[tuple[Tweet, str]] = []
        wanted = self._wanted
        for tweet, (lang, score), final in zip(tweets, detections, decided, strict=True):
            tweet = tweet.replace(lang=lang, lang_score=float(score))
            if wanted and final not in wanted:
                dropped.append((tweet, DROP_LANGUAGE))
            else:
                kept.append(tweet)
        return kept, dropped

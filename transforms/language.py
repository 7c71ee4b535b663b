"""Language stage: records every tweet's detected language, and keeps only the languages asked for.

It runs after deduplication, on fewer texts, because detection is the most expensive rule. The
detectors themselves live in ``transforms/langid.py``; the decision that keeps a tweet
(``resolve_language``: the detector's answer, or Twitter's tag where the detector has none) too.
"""

from __future__ import annotations

from dataclasses import dataclass

from tweetmill.schemas.records import DROP_LANGUAGE, Tweet
from tweetmill.transforms.langid import ENGINES, make_detector, resolve_language
from tweetmill.transforms.stage import Stage, option


@dataclass(frozen=True)
class LanguageConfig:
    # Parsed and checked by pipeline/options.py (codes, suggestions), not by the generic option code.
    languages: tuple[str, ...] = ()  # keep only these languages; empty: keep all (always detected)
    lang_engine: str = option("profiles", "language detector", choices=ENGINES)
    min_lang_confidence: float = option(0.5, "below this the language is 'und'", low=0, high=1)


class DetectLanguage(Stage):
    name = "language"
    reasons = (DROP_LANGUAGE,)
    description = "detects each tweet's language; drops those outside --languages"
    Config = LanguageConfig

    def setup(self) -> None:
        self._detector = make_detector(
            self.config.lang_engine, min_confidence=self.config.min_lang_confidence
        )
        self._detector.setup()  # load the model once per worker, not on the first batch
        self._wanted = frozenset(self.config.languages)

    def process_batch(self, tweets: list[Tweet]) -> tuple[list[Tweet], list[tuple[Tweet, str]]]:
        detections = self._detector.detect_batch([t.text for t in tweets])
        kept: list[Tweet] = []
        dropped: list[tuple[Tweet, str]] = []
        wanted = self._wanted
        for tweet, (lang, score) in zip(tweets, detections, strict=True):
            tweet = tweet.replace(lang=lang, lang_score=float(score))
            if wanted and resolve_language(lang, score, tweet.twitter_lang) not in wanted:
                dropped.append((tweet, DROP_LANGUAGE))
            else:
                kept.append(tweet)
        return kept, dropped

"""Drops tweets with too little text to teach anything, or more than a tweet can hold.

Length counts what carries language: letters and digits outside mentions, URLs, the clean stage's
``<PLACEHOLDER>``s and RT markers ("@a @b <URL>" has none). The upper bound counts every character
of the cleaned text: far above what a post may hold means a parser or export accident (CSV rows run
into one cell), not a post. Not 280: Twitter's count leaves out the reply prefix (up to 50 mentions)
and counts an emoji as 2 whatever its code points, so real tweets in the shared corpus reach 334
characters; long posts (note tweets, which archives merge into their tweet) reach 25,000. The
default, 30,000, is that limit with room for the reply prefix and multi-code-point emoji; no text of
the shared corpus comes near it (the longest, 1,055, is a comment in a sentiment dataset). Measured:
``docs/quality-filters.md``.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from tweetmill.schemas.records import DROP_TOO_SHORT, Tweet
from tweetmill.transforms.stage import TweetFilter, option
from tweetmill.transforms.twitter_text import MENTION, PLACEHOLDER, RT_MARKER, URL_SIMPLE

DROP_TOO_LONG = "too_long"

_NON_CONTENT = re.compile("|".join(p.pattern for p in (RT_MARKER, MENTION, URL_SIMPLE, PLACEHOLDER)))
_LETTER_OR_DIGIT = re.compile(r"[^\W_]")


def content_length(text: str) -> int:
    """Letters and digits outside mentions, URLs, placeholders and RT markers."""
    return len(_LETTER_OR_DIGIT.findall(_NON_CONTENT.sub(" ", text)))


@functools.cache
def _at_least(n: int) -> re.Pattern:
    """Matches text with ``n`` letters or digits or more, and stops at the n-th: listing every one
    (``content_length``) cost more than the rest of the filter. Possessive, so a miss never
    backtracks."""
    return re.compile(rf"(?:[\W_]*+[^\W_]){{{n}}}")


def has_content(text: str, n: int) -> bool:
    """``content_length(text) >= n``, without counting past ``n``."""
    return _at_least(n).match(_NON_CONTENT.sub(" ", text)) is not None


@dataclass(frozen=True)
class LengthConfig:
    min_chars: int = option(
        8, "minimum letters and digits outside mentions, URLs and placeholders", low=0
    )
    max_chars: int = option(
        30_000, "maximum characters of the cleaned text (long posts reach 25,000); 0: no maximum", low=0
    )


class Length(TweetFilter):
    name = "length"
    reasons = (DROP_TOO_SHORT, DROP_TOO_LONG)
    description = "too little language content, or longer than any tweet"
    Config = LengthConfig

    def enabled(self) -> bool:
        return self.config.min_chars > 0 or self.config.max_chars > 0

    def reject(self, tweet: Tweet) -> str | None:
        config = self.config
        if config.min_chars and not has_content(tweet.text, config.min_chars):
            return DROP_TOO_SHORT
        if config.max_chars and len(tweet.text) > config.max_chars:
            return DROP_TOO_LONG
        return None

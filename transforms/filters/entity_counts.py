"""Drops tweets with more hashtags or @mentions than a person writes: tag dumps and mention spam.

Hashtags: ``HASHTAG`` and ``CASHTAG`` matches (``$AAPL $TSLA ...`` pump spam is the same dump). A
tweet with 5-9 tags is common (an Instagram cross-post: a caption and its tags) and still has its
caption; from 10 on the real tweets in the shared corpus are nearly all tag lists.

Mentions: ``MENTION`` matches (the clean stage's ``@user`` placeholder included) *after* the leading
run of mentions. That run is the reply prefix Twitter adds to every reply of a conversation (up to
50 names); the clean stage strips it from replies, but where a payload showed it (archives) or could
not say the tweet was a reply (text, CSV), a reply in a busy thread starts with 9 or 10 ``@user``
and is a real tweet. Mentions written into the text ("thanks @a @b @c @d ...") are counted.
Measured defaults: ``docs/quality-filters.md``.
"""

from __future__ import annotations

from dataclasses import dataclass

from tweetmill.schemas.records import Tweet
from tweetmill.transforms.stage import TweetFilter, option
from tweetmill.transforms.twitter_text import CASHTAG, HASHTAG, MENTION, REPLY_PREFIX

DROP_TOO_MANY_HASHTAGS = "too_many_hashtags"  # more hashtags and cashtags than --max-hashtags
DROP_TOO_MANY_MENTIONS = "too_many_mentions"  # more @mentions than --max-mentions (reply prefix not counted)


def count_tags(text: str) -> int:
    """Hashtags and cashtags."""
    tags = len(HASHTAG.findall(text)) if "#" in text else 0
    if "$" in text:
        tags += len(CASHTAG.findall(text))
    return tags


def count_mentions(text: str) -> int:
    """@mentions after the leading run of mentions (a reply's prefix)."""
    if "@" not in text:
        return 0
    prefix = REPLY_PREFIX.match(text)
    return len(MENTION.findall(text, prefix.end() if prefix else 0))


@dataclass(frozen=True)
class EntityCountsConfig:
    max_hashtags: int = option(9, "most hashtags and cashtags a tweet may have; 0: no limit", low=0)
    max_mentions: int = option(
        7, "most @mentions a tweet may have, besides the run a reply starts with; 0: no limit", low=0
    )


class EntityCounts(TweetFilter):
    name = "entity_counts"
    reasons = (DROP_TOO_MANY_HASHTAGS, DROP_TOO_MANY_MENTIONS)
    description = "more hashtags or @mentions than a person writes (tag dumps, mention spam)"
    Config = EntityCountsConfig

    def enabled(self) -> bool:
        return self.config.max_hashtags > 0 or self.config.max_mentions > 0

    def reject(self, tweet: Tweet) -> str | None:
        config = self.config
        text = tweet.text
        if config.max_hashtags and count_tags(text) > config.max_hashtags:
            return DROP_TOO_MANY_HASHTAGS
        if config.max_mentions and count_mentions(text) > config.max_mentions:
            return DROP_TOO_MANY_MENTIONS
        return None

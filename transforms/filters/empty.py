"""Drops tweets that cleaning left empty: nothing to learn from, and an empty document in a shard."""

from __future__ import annotations

from tweetmill.schemas.records import DROP_EMPTY, Tweet
from tweetmill.transforms.stage import TweetFilter


class EmptyText(TweetFilter):
    name = "empty"
    reasons = (DROP_EMPTY,)
    description = "tweets with no text left after cleaning"

    def reject(self, tweet: Tweet) -> str | None:
        return None if tweet.text.strip() else DROP_EMPTY

"""Drops retweets: each repeats an original that the corpus has (or had) already.

Both kinds: native retweets (``retweeted_status``, flagged by the parser) and the manual ``RT @user``
convention of older clients and exports.
"""

from __future__ import annotations

from dataclasses import dataclass

from tweetmill.schemas.records import DROP_RETWEET, Tweet
from tweetmill.transforms.stage import TweetFilter, option
from tweetmill.transforms.twitter_text import MANUAL_RETWEET


@dataclass(frozen=True)
class RetweetConfig:
    drop_retweets: bool = option(
        True, "keep retweets (they duplicate their original)", flag="--keep-retweets"
    )


def is_retweet(tweet: Tweet) -> bool:
    return tweet.is_retweet or bool(MANUAL_RETWEET.match(tweet.text))


class Retweets(TweetFilter):
    name = "retweets"
    reasons = (DROP_RETWEET,)
    description = "native and manual (RT @user) retweets"
    Config = RetweetConfig

    def enabled(self) -> bool:
        return self.config.drop_retweets

    def reject(self, tweet: Tweet) -> str | None:
        return DROP_RETWEET if is_retweet(tweet) else None

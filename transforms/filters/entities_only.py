"""Drops tweets that are nothing but hashtags, mentions, links or emoji: no sentence to learn from.

After cleaning, "#McGregor 💪🏻", "😂😂😂 #MayweathervMcgregor <URL>", "@user @user <URL>" or "🔥🔥🔥" have
no text of their own. ``length`` already drops most of them (it wants 8 letters or digits outside
mentions, URLs and placeholders), but it counts the letters of hashtags, so a tweet made of tags
("#TeamMayweather #MoneyTeam💰 #MayweatherMcGregor") passes it: this filter is what drops those.

The rule: a text that has entities (hashtags, cashtags, @mentions, URLs, the clean stage's
``<PLACEHOLDER>``s) and fewer than ``min_plain_chars`` letters and digits outside them is dropped, for
the kind of entity it has most of (ties: hashtags, then mentions, then links); a text with no entity
and no letter or digit at all is ``only_emoji`` (emoji, symbols or punctuation). A short text without
entities is ``length``'s business, not this filter's. Measured defaults: ``docs/quality-filters.md``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import islice

from tweetmill.schemas.records import Tweet
from tweetmill.transforms.stage import TweetFilter, option
from tweetmill.transforms.twitter_text import CASHTAG, HASHTAG, MENTION, PLACEHOLDER, RT_MARKER, URL_SIMPLE

DROP_ONLY_HASHTAGS = "only_hashtags"  # no text outside entities, hashtags/cashtags the most numerous
DROP_ONLY_MENTIONS = "only_mentions"  # no text outside entities, @mentions the most numerous
DROP_ONLY_LINKS = "only_links"  # no text outside entities, URLs (and <EMAIL>/<PHONE>) the most numerous
DROP_ONLY_EMOJI = "only_emoji"  # no entity and no letter or digit: emoji, symbols, punctuation only

#: The patterns of what is not the author's own words: RT markers, mentions, URLs, placeholders,
#: hashtags, cashtags.
ENTITY_PATTERNS = (RT_MARKER, MENTION, URL_SIMPLE, PLACEHOLDER, HASHTAG, CASHTAG)
#: Any of them (each starts with a literal character, so the regex skips the other positions fast).
ENTITY = re.compile("|".join(p.pattern for p in ENTITY_PATTERNS))
# An entity (2 characters or more), else one letter or digit: scanning with it meets the letters and
# digits outside entities, left to right, without building the blanked-out text.
_ENTITY_OR_LETTER = re.compile(ENTITY.pattern + r"|[^\W_]")


def plain_text(text: str) -> str:
    """``text`` with its entities (mentions, URLs, placeholders, hashtags, cashtags, RT) blanked out."""
    return ENTITY.sub(" ", text)


def count_plain_chars(text: str, limit: int) -> int:
    """Letters and digits outside entities, counted up to ``limit`` (all of them are rarely needed)."""
    letters = (m for m in _ENTITY_OR_LETTER.finditer(text) if m.end() - m.start() == 1)
    return sum(1 for _ in islice(letters, limit))


def main_entity_reason(text: str) -> str:
    """The ``only_*`` reason for a text without words of its own: its most numerous kind of entity."""
    tags = len(HASHTAG.findall(text)) + len(CASHTAG.findall(text))
    mentions = len(MENTION.findall(text))
    links = len(URL_SIMPLE.findall(text)) + len(PLACEHOLDER.findall(text))
    if not (tags or mentions or links):
        return DROP_ONLY_EMOJI
    most = max(tags, mentions, links)
    if tags == most:
        return DROP_ONLY_HASHTAGS
    return DROP_ONLY_MENTIONS if mentions == most else DROP_ONLY_LINKS


@dataclass(frozen=True)
class EntitiesOnlyConfig:
    min_plain_chars: int = option(
        3,
        "minimum letters and digits outside hashtags, mentions, links and placeholders (a text with no"
        " entity needs one); 0: keep entity-only texts",
        low=0,
    )


class EntitiesOnly(TweetFilter):
    name = "entities_only"
    reasons = (DROP_ONLY_HASHTAGS, DROP_ONLY_MENTIONS, DROP_ONLY_LINKS, DROP_ONLY_EMOJI)
    description = "nothing but hashtags, mentions, links or emoji"
    Config = EntitiesOnlyConfig

    def enabled(self) -> bool:
        return self.config.min_plain_chars > 0

    def reject(self, tweet: Tweet) -> str | None:
        text = tweet.text
        wanted = self.config.min_plain_chars
        found = count_plain_chars(text, wanted)
        if found >= wanted:
            return None
        reason = main_entity_reason(text)
        if reason == DROP_ONLY_EMOJI and (found or text.isspace() or not text):
            return None  # a short or empty text without entities: ``length``'s or ``empty``'s business
        return reason

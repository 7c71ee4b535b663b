"""Drops tweets made mostly of repetition: "woooooooohooooooo!", "🔥🔥🔥…" walls, "preach preach preach …".

Gopher's and datatrove's repetition rules (duplicate lines and paragraphs, top n-gram and duplicate
n-gram character fractions) are made for pages of hundreds of words; on a tweet of 11 words a
check-in ("Fan Tan Alley @ Fan Tan Alley") or a quote already repeats a 3-gram. Two rules adapted to
tweets instead, each with its own reason:

* ``repeated_chars``: runs of one unit of 1-4 non-space characters repeated 4 or more times
  ("aaaa", "hahaha…", "😂😂😂😂", "👍🏽👍🏽👍🏽👍🏽", "-----") count by what they add beyond one unit;
  the text is dropped when that is at least ``char_repetition`` of its non-space characters. A long
  run in a sentence ("Kkkkkkkkkkkkkkkkkkkk mano a vergonha alheia …") stays; a text that is little
  but the run goes. Text without spaces (Chinese, Japanese, Thai) is no run unless one unit comes 4
  times in a row ("哈哈哈哈").
* ``repeated_words``: Gopher's "top n-gram character fraction" on the text's own words (mentions,
  hashtags, URLs and placeholders left out: ``entity_counts`` and ``entities_only`` judge those),
  case-folded: the most frequent word, 2-gram or 3-gram occurs at least ``word_repeats`` times
  (not overlapping) and its occurrences hold at least ``word_repetition`` of the words' characters
  ("Che palle che palle …" 14 times, "PENIS PENIS …"). Weighing by characters keeps "U U U only for
  U U U my love is for U" and "nein! Nein! NEin! …" at the end of a sentence.

The character rule is the costly one (a regex tried at every position), so ``process_batch`` first
rules out, for the whole batch at once with numpy, every text that cannot reach the threshold.
Measured defaults: ``docs/quality-filters.md``.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

import numpy as np
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.filters.entities_only import plain_text
from tweetmill.transforms.stage import TweetFilter, option

DROP_REPEATED_CHARS = "repeated_chars"  # mostly runs of one character or short unit (aaaa, hahaha, 😂😂😂)
DROP_REPEATED_WORDS = "repeated_words"  # one word or phrase repeated over and over

#: A unit of 1-4 non-space characters (the shortest that fits) and 3 or more copies right after it.
_RUN = re.compile(r"(\S{1,4}?)\1{3,}")
_LONGEST_UNIT = 4
_WORD = re.compile(r"\w+")  # (not [^\W_]+: 1.5x slower, and "foo_bar" is one word anyway)
_LONGEST_PHRASE = 3  # words
_SPACE, _NEWLINE = ord(" "), ord("\n")


def repeated_char_share(text: str) -> float:
    """What runs of a repeated unit add beyond their first unit, as a share of the non-space characters.

    Expects cleaned text, where the only whitespace is " " and "\\n".
    """
    extra = 0
    for run in _RUN.finditer(text):
        extra += run.end() - run.start() - len(run.group(1))
    if not extra:
        return 0.0
    return extra / (len(text) - text.count(" ") - text.count("\n"))


def may_repeat_chars(texts: list[str], share: float) -> np.ndarray:
    """For each text, False where ``repeated_char_share(text) >= share`` is impossible (vectorised).

    Inside a run of a unit of length L, each character but the last unit's equals the one L further
    on, so a text's extra characters are at most its non-space positions ``i`` with
    ``text[i] == text[i + L]`` for some L <= 4. English text has about a fifth of those; a text whose
    runs make up ``share`` of it has at least that share.
    """
    joined = "\n".join(texts)
    codes = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    solid = (codes != _SPACE) & (codes != _NEWLINE)
    same = np.zeros(len(codes), dtype=bool)
    for unit in range(1, _LONGEST_UNIT + 1):
        same[:-unit] |= codes[:-unit] == codes[unit:]
    same &= solid  # (comparisons past a text's end only add candidates: still a sound bound)
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    ends = np.cumsum(lengths + 1) - 1  # each text is followed by the "\n" joining it to the next
    starts = ends - lengths
    same_sum = np.concatenate(([0], np.cumsum(same)))
    solid_sum = np.concatenate(([0], np.cumsum(solid)))
    solid_count = solid_sum[ends] - solid_sum[starts]
    return (same_sum[ends] - same_sum[starts] >= share * solid_count) & (solid_count > 0)


def text_words(text: str) -> list[str]:
    """The author's own words, case-folded: ``\\w+`` runs outside mentions, URLs, placeholders and
    hashtags (text without spaces is one word per run)."""
    return _WORD.findall(plain_text(text).casefold())


def top_phrase_share(words: list[str], min_repeats: int) -> float:
    """The largest share of the words' characters held by the non-overlapping occurrences of one word,
    2-gram or 3-gram that occurs at least ``min_repeats`` times; 0.0 if none does."""
    n = len(words)
    # A phrase occurs at most as often as its first word: without a word repeated ``min_repeats``
    # times (at most n - min_repeats + 1 distinct words), no phrase is.
    if n < min_repeats or len(set(words)) > n - min_repeats + 1:
        return 0.0
    total = sum(map(len, words))
    best = 0.0
    for size in range(1, _LONGEST_PHRASE + 1):
        if n < size * min_repeats:
            break
        grams = Counter(zip(*(words[i:] for i in range(size)), strict=False))
        gram, count = grams.most_common(1)[0]
        if count < min_repeats:
            break  # a longer phrase occurs at most as often as its first shorter one
        occurrences = i = 0
        while i <= n - size:
            if tuple(words[i : i + size]) == gram:
                occurrences += 1
                i += size
            else:
                i += 1
        if occurrences >= min_repeats:
            best = max(best, occurrences * sum(map(len, gram)) / total)
    return best


@dataclass(frozen=True)
class RepetitionConfig:
    char_repetition: float = option(
        0.6,
        "drop a text when runs of one character or short unit (aaaa, hahaha, 😂😂😂😂) make up this share"
        " of its non-space characters; 0: off",
        low=0.0,
        high=1.0,
    )
    word_repeats: int = option(
        6,
        "drop a text when one word or phrase (up to 3 words) occurs this many times and holds"
        " --word-repetition of its words' characters; 0: off",
        low=0,
    )
    word_repetition: float = option(
        0.6, "the share of the words' characters for --word-repeats", low=0.0, high=1.0
    )


class Repetition(TweetFilter):
    name = "repetition"
    reasons = (DROP_REPEATED_CHARS, DROP_REPEATED_WORDS)
    description = "mostly repeated characters (aaaa, 😂😂😂😂) or one word or phrase over and over"
    Config = RepetitionConfig

    def enabled(self) -> bool:
        return self.config.char_repetition > 0 or self.config.word_repeats > 0

    def reject(self, tweet: Tweet) -> str | None:
        return self._reason(tweet.text, bool(self.config.char_repetition))

    def process_batch(self, tweets: list[Tweet]) -> tuple[list[Tweet], list[tuple[Tweet, str]]]:
        share = self.config.char_repetition
        if share and tweets:
            may_repeat = may_repeat_chars([t.text for t in tweets], share).tolist()
        else:
            may_repeat = [False] * len(tweets)
        reasons = [self._reason(t.text, check) for t, check in zip(tweets, may_repeat, strict=True)]
        kept = [t for t, reason in zip(tweets, reasons, strict=True) if reason is None]
        return kept, [(t, reason) for t, reason in zip(tweets, reasons, strict=True) if reason is not None]

    def _reason(self, text: str, check_chars: bool) -> str | None:
        config = self.config
        if check_chars and text and repeated_char_share(text) >= config.char_repetition:
            return DROP_REPEATED_CHARS
        if config.word_repeats:
            share = top_phrase_share(text_words(text), config.word_repeats)
            if share and share >= config.word_repetition:
                return DROP_REPEATED_WORDS
        return None

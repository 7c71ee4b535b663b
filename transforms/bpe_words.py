"""Byte-level BPE word by word, with a cache: HF ``tokenizers``' ids, ~2.5x faster on tweets.

On short texts most of HF's encode time goes to its pre-tokenizer (Oniguruma over a string that
tracks offsets through every step). A byte-level BPE tokenizer (GPT-2's kind) encodes each
pre-token on its own, so a text's ids are its words' ids in a row: here the text is split with the
same pattern by the ``regex`` module, each word is looked up in a cache, and only a word not seen
yet is handed to the tokenizer's own BPE model. On tweets a batch has few new words.

Used only where that gives exactly HF's ids (``WordCachedBPE.for_tokenizer``):
- the tokenizer is of that kind: no normalizer, the ByteLevel pre-tokenizer with its pattern and
  no prefix space, BPE without dropout, no truncation or padding, added tokens matched plainly
  (none strips spaces or wants a whole word; all normalized or none) and at most
  ``MAX_ADDED_TOKENS`` of them (cutting out more costs more than the cache saves); else None;
- the two regex engines classify characters (letter, digit, space) by their own Unicode tables,
  which differ for characters recent Unicode versions added. A text with a character that Unicode
  3.2 had not assigned, outside the symbol and emoji blocks (which hold no letters, digits or
  spaces), is encoded by HF (~0.02 % of tweets). ``tests/test_bpe_words.py`` checks the two
  engines on every other code point;
- texts that exercise every rule must come out as HF encodes them when the tokenizer loads.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import unicodedata
from collections.abc import Sequence

import regex
from tokenizers import Tokenizer

log = logging.getLogger(__name__)

# tokenizers' ByteLevel pre-tokenizer splits with GPT-2's pattern (pre_tokenizers/byte_level.rs),
# ``'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+|...``: the same alternatives in the same order, the
# contractions factored (~15 % faster).
BYTE_LEVEL_PATTERN = r"""'(?:s|t|re|ve|m|ll|d)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
# Blocks of symbols and emoji, many assigned after Unicode 3.2, that hold no letter, digit or space:
# Miscellaneous Technical, Miscellaneous Symbols and Dingbats, Miscellaneous Symbols and Arrows,
# and U+1F000-1FAFF (Mahjong Tiles to Symbols and Pictographs Extended-A).
SYMBOL_BLOCKS = ((0x2300, 0x23FF), (0x2600, 0x27BF), (0x2B00, 0x2BFF), (0x1F000, 0x1FAFF))
MAX_ADDED_TOKENS = 64  # cutting out 50 tokens unlike each other: ~5 µs a tweet; 300: ~34 µs
CACHE_WORDS = 1 << 17  # up to ~25 MB of words and their ids; emptied when full
PROBES = (
    "", " ", "  ", "a", "don't you'll I'd we've they're she's I'M", "x  y   z \t\n\n w\r\n",
    "trailing spaces   ", "   leading", "2024-12-07 12:30:00 +0100 1,000.5 ½ ²", "ünïcödé Straße ÆØÅ",
    "日本語のテキスト 中文 한국어", "مرحبا بالعالم", "שלום", "हिन्दी", "ไทย", "emoji 👋🏽👨‍👩‍👧 ❤️ ⭐✅",
    "#hashtag @mention $TAG https://t.co/AbC123 !!! ???", "a'b 'tis 'S 'll'll", "\u00a0nbsp\u2003em\u3000",
    "tab\tsep\u000bvt\u000cff\u0085nel\u2028ls", "!@#$%^&*()_+-=[]{}|;:\",./<>?`~",
)


@functools.cache
def _byte_chars() -> tuple[str, ...]:
    """GPT-2's map of bytes to printable characters, which the ByteLevel vocabulary is written in."""
    printable = {*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)}  # "!".."~", "¡".."¬", "®".."ÿ"
    chars, unprintable = [], 0
    for b in range(256):
        if b in printable:
            chars.append(chr(b))
        else:  # the other bytes take the characters from U+0100 on, in order
            chars.append(chr(256 + unprintable))
            unprintable += 1
    return tuple(chars)


@functools.cache
def unsettled_characters() -> re.Pattern:
    """A character whose class the two engines may disagree on: not assigned in Unicode 3.2 (nor a
    surrogate), outside ``SYMBOL_BLOCKS``. The standard ``re`` searches this class ~6x faster."""
    category = unicodedata.ucd_3_2_0.category
    # Unicode 3.2 assigned nothing in planes 3 to 13: the loop leaves them out (a third of the time).
    code_points = [*range(0x30000), *range(0xE0000, 0x110000)]
    settled = [c for c in code_points if category(chr(c)) not in ("Cn", "Cs")]
    settled += [c for lo, hi in SYMBOL_BLOCKS for c in range(lo, hi + 1)]
    ranges: list[list[int]] = []
    for c in sorted(set(settled)):
        if ranges and ranges[-1][1] == c - 1:
            ranges[-1][1] = c
        else:
            ranges.append([c, c])
    body = "".join(f"\\U{lo:08x}" if lo == hi else f"\\U{lo:08x}-\\U{hi:08x}" for lo, hi in ranges)
    return re.compile(f"[^{body}]")


def _is_word_wise(config: dict) -> bool:
    """The tokenizer's JSON describes a byte-level BPE whose ids are its pre-tokens' ids in a row."""
    pre, model = config.get("pre_tokenizer") or {}, config.get("model") or {}
    added = config.get("added_tokens") or []
    return (
        config.get("normalizer") is None
        and config.get("truncation") is None
        and config.get("padding") is None
        and pre.get("type") == "ByteLevel"
        and pre.get("use_regex", True)
        and not pre.get("add_prefix_space", True)
        and model.get("type") == "BPE"
        and model.get("dropout") in (None, 0, 0.0)
        and not any(t.get("lstrip") or t.get("rstrip") or t.get("single_word") for t in added)
        and len({bool(t.get("normalized")) for t in added}) <= 1
        and len(added) <= MAX_ADDED_TOKENS
    )


class WordCachedBPE:
    """Encodes texts word by word with a cache; HF encodes the texts this cannot settle."""

    def __init__(self, tokenizer: Tokenizer, added: dict[str, int]):
        self._hf = tokenizer
        self._model = tokenizer.model
        self._words = regex.compile(BYTE_LEVEL_PATTERN).findall
        # Added tokens are cut out before the pattern runs, the longest first at each position (the
        # standard ``re``: ~2x faster than ``regex`` at literals).
        longest_first = "|".join(map(re.escape, sorted(added, key=len, reverse=True)))
        self._split_added = re.compile(f"({longest_first})").split if added else None
        self._added = added
        self._bytes = _byte_chars()
        self._cache: dict[str, list[int]] = {}

    @classmethod
    def for_tokenizer(cls, tokenizer: Tokenizer, config: str | dict) -> WordCachedBPE | None:
        """The word-wise encoder for this tokenizer, or None where it would not give HF's ids."""
        if isinstance(config, str):
            config = json.loads(config)
        if not _is_word_wise(config) or getattr(tokenizer, "encode_special_tokens", False):
            return None
        added = {t["content"]: t["id"] for t in config.get("added_tokens") or [] if t.get("content")}
        encoder = cls(tokenizer, added)
        probes = [*PROBES, *(f"x{t}y {t} {t}{t}" for t in added)]
        expected = [e.ids for e in tokenizer.encode_batch(probes, add_special_tokens=False)]
        if [encoder._encode_settled(t) for t in probes] != expected:
            log.warning("the tokenizer's word-by-word ids differ from its own on probe texts: HF encodes all")
            return None
        return encoder

    @functools.cached_property
    def _find_unsettled(self):  # built on first use (~60 ms): a process that never encodes skips it
        return unsettled_characters().search

    def encode_batch(self, texts: Sequence[str]) -> list[list[int]]:
        """Each text's token ids (no special tokens added), as HF's ``encode_batch`` gives them."""
        out: list[list[int]] = []
        unsettled: list[int] = []
        find_unsettled = self._find_unsettled
        for i, text in enumerate(texts):
            if find_unsettled(text) is None:
                out.append(self._encode_settled(text))
            else:
                unsettled.append(i)
                out.append([])
        if unsettled:
            encodings = self._hf.encode_batch([texts[i] for i in unsettled], add_special_tokens=False)
            for i, encoding in zip(unsettled, encodings, strict=True):
                out[i] = encoding.ids
        return out

    def _encode_settled(self, text: str) -> list[int]:
        if self._split_added is None:
            return self._encode_words(text)
        ids: list[int] = []
        for i, part in enumerate(self._split_added(text)):
            if i % 2:
                ids.append(self._added[part])
            elif part:
                ids += self._encode_words(part)
        return ids

    def _encode_words(self, text: str) -> list[int]:
        cache = self._cache
        ids: list[int] = []
        for word in self._words(text):
            found = cache.get(word)
            if found is None:
                found = self._encode_new(word)
            ids += found
        return ids

    def _encode_new(self, word: str) -> list[int]:
        if len(self._cache) >= CACHE_WORDS:
            self._cache.clear()
        mapped = "".join([self._bytes[b] for b in word.encode("utf-8")])
        ids = self._cache[word] = [token.id for token in self._model.tokenize(mapped)]
        return ids

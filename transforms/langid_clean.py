"""Tweet-aware cleaning: the text every language engine sees, as numpy code points.

A batch is joined into one string (texts separated by NUL) so that each regex runs once a batch,
then turned into one int32 array of code points for the per-character steps. ``Cleaning`` says
which steps run; the exact langdetect-profile engine applies langdetect's own ``Detector.append``
steps on top, unchanged. ``prepare_tweet_codes`` also marks hashtags and Instagram check-ins,
which the default engine weighs down instead of removing.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from tweetmill.transforms.langid_profiles import _ProfileModel

_N_CODEPOINTS = 0x110000


@dataclass(frozen=True)
class Cleaning:
    """Which tweet-aware cleaning steps run before detection (the bench measures each)."""

    noise: bool = True  # URLs, @mentions, HTML entities, <PLACEHOLDER>s, RT markers -> space
    non_letters: bool = True  # '#', emoji, numbers, punctuation, symbols -> space
    lower_caps: bool = True  # words in capitals -> lower case (langdetect skips capital words)
    squeeze: bool = True  # elongations and laughter cut to two repeats: soooo -> soo, jajaja -> jaja
    nfkc: bool = True  # compatibility letters (fancy fonts, full-width, circled) -> NFKC
    checkins: bool = True  # an Instagram check-in's place at the end ("... @ Los Angeles") -> space


TWEET_CLEANING = Cleaning()
NO_CLEANING = Cleaning(
    noise=False, non_letters=False, lower_caps=False, squeeze=False, nfkc=False, checkins=False
)

# Replaced by a space. One dispatch character starts every alternative, so the regex engine
# scans for that set instead of trying eight alternatives at every position (10x faster).
_TWEET_NOISE_RE = re.compile(
    r"""
    [hwp@&<R$](?:
        (?<=h)ttps?://[^\s\x00]+                          # URLs (\x00 separates texts)
      | (?<![0-9A-Za-z_]h)(?<=h)ttps?\b                   # anonymised URLs: a bare "http"
      | (?<![0-9A-Za-z_]w)(?<=w)ww\.[^\s\x00]+            # www.example.com
      | (?<=p)ic\.twitter\.com/[^\s\x00]+                 # media links
      | (?<=@)[0-9A-Za-z_]+                               # @mentions (also the anonymised @user)
      | (?<![0-9A-Za-z_$]\$)(?<=\$)[A-Za-z][A-Za-z0-9_.]*    # $cashtags
      | (?<=&)(?:[A-Za-z]+|\#[0-9]+|\#[xX][0-9A-Fa-f]+);  # HTML entities (&amp; in API text)
      | (?<=<)[A-Z][A-Z_]*>                               # the clean stage's <PLACEHOLDER>s
      | (?<![0-9A-Za-z_]R)(?<=R)T\b                       # RT markers
    )""",
    re.VERBOSE,
)
# Letters in compatibility forms: "fancy font" math alphanumerics, full- and half-width forms,
# circled and squared letters, letterlike symbols, ligatures and Arabic presentation forms. Only
# these runs are NFKC-normalised: whole-text NFKC would cost 15% of the detector's time.
_COMPAT_RE = re.compile(
    "[\u2100-\u214f\u2460-\u24ff\ufb00-\ufdff\ufe70-\ufeff\uff00-\uffef"
    "\U0001d400-\U0001d7ff\U0001f100-\U0001f1ff]+"
)
# A check-in that Instagram appends to a cross-posted tweet: " @ Place Name, City" to the end of
# the text. Place names are proper nouns in any language ("@ Los Angeles" read as Spanish).
# It starts with a literal so the regex engine scans for "@ " (the lookbehind: at a text's start,
# after a NUL, or after white space).
_CHECKIN_RE = re.compile(r"@ (?=[A-Z0-9\u00c0-\u024f])(?<![^\s\x00]@ )[^\x00]*")
# Whether langdetect's MAIL_RE can match at all: a literal '@' first, so it is a fast scan.
_MAIL_AT_RE = re.compile(r"@(?<=[-_.0-9A-Za-z]@)[-_0-9A-Za-z]")
_VI_MARK_RE = re.compile("[\u0300\u0301\u0303\u0309\u0323]")  # what NGram.normalize_vi rewrites
_SEP = "\x00"  # joins a batch into one string; never survives inside a text (see _join)


def _join(texts: list[str]) -> str:
    """One string for the whole batch, texts separated by NUL, so each regex runs once a batch."""
    joined = _SEP.join(texts)
    if joined.count(_SEP) != len(texts) - 1:  # a text with NULs of its own: rare, so slow is fine
        joined = _SEP.join(t.replace(_SEP, " ") for t in texts)
    return joined


def _to_codes(joined: str) -> np.ndarray:
    """Code points of ``NUL + joined``: every text, the first too, starts after a NUL."""
    data = (_SEP + joined).encode("utf-32-le", "surrogatepass")
    return np.frombuffer(data, dtype="<u4").astype(np.int32)


def _from_codes(codes: np.ndarray) -> list[str]:
    """Inverse of ``_to_codes``: the texts of a batch."""
    text = codes.astype("<u4").tobytes().decode("utf-32-le", "surrogatepass")
    return text[1:].split(_SEP)


def _prepare_codes(texts: list[str], model: _ProfileModel, cleaning: Cleaning) -> np.ndarray:
    """Code points of the batch (a NUL before each text) as langdetect's ``Detector.append``
    leaves them (URLs and e-mail addresses out, Vietnamese marks composed), after the tweet-aware
    ``cleaning``. String work runs once per batch on the joined texts."""
    return _prepare(texts, model, cleaning).codes


@dataclass(frozen=True)
class TweetCodes:
    """A cleaned batch with the parts a tweet-aware detector weighs down."""

    codes: np.ndarray  # int32: as ``_prepare_codes`` returns them
    hashtag: np.ndarray  # bool per position: a letter of a hashtag's word (the run after a '#')
    checkin: np.ndarray  # bool per position: inside an Instagram check-in (kept, not removed)


_CHECKIN_MARK = "\ue001"  # private use: replaces the '@' of a check-in, a space after cleaning


def prepare_tweet_codes(
    texts: list[str], model: _ProfileModel, cleaning: Cleaning = TWEET_CLEANING
) -> TweetCodes:
    """``_prepare_codes`` with hashtags and check-ins marked instead of scored like the rest:
    a check-in is kept (its place names are weak evidence, its words often English) but marked."""
    return _prepare(texts, model, cleaning, marks=True)


def _prepare(texts: list[str], model: _ProfileModel, cleaning: Cleaning, marks: bool = False) -> TweetCodes:
    from langdetect.detector import Detector
    from langdetect.utils.ngram import NGram

    joined = _join(texts)
    if cleaning.checkins and "@ " in joined:
        mark = (lambda m: _CHECKIN_MARK + m.group()[1:]) if marks else " "  # a lambda beats "\1"
        joined = _CHECKIN_RE.sub(mark, joined)
    if cleaning.nfkc and not joined.isascii() and _compat_table()[_to_codes(joined)].any():
        joined = _COMPAT_RE.sub(lambda m: unicodedata.normalize("NFKC", m.group()), joined)
    if cleaning.noise:  # e-mail addresses first, or the mention rule would cut them in two
        joined = _remove_mail(joined, Detector.MAIL_RE)
        joined = _TWEET_NOISE_RE.sub(" ", joined)
    if "://" in joined:
        joined = Detector.URL_RE.sub(" ", joined)
    if not cleaning.noise:
        joined = _remove_mail(joined, Detector.MAIL_RE)
    if _VI_MARK_RE.search(joined):
        joined = NGram.normalize_vi(joined)
    codes = _to_codes(joined)
    empty = np.zeros(0, dtype=bool)
    hashmark = codes == 0x23 if marks else empty
    checkin = _after_mark(codes, codes == ord(_CHECKIN_MARK)) if marks else empty
    if cleaning.non_letters:
        codes = np.where(model.letter[codes] | (codes == 0), codes, 32).astype(np.int32)
    tag = _hashtag_letters(codes, hashmark, model) if marks else empty
    if cleaning.lower_caps:
        # A character in a run of two or more capitals: langdetect would skip it (its profiles
        # skipped such words too), so shouted words would leave nothing to score.
        up = model.upper[codes]
        run = up.copy()
        run[1:] &= up[:-1]
        run[:-1] |= run[1:]
        if run.any():
            codes = np.where(run, model.lower[codes], codes)
    if cleaning.squeeze:
        keep = _squeeze_keep(codes)
        if keep is not None:
            codes = codes[keep]
            tag, checkin = (tag[keep], checkin[keep]) if marks else (tag, checkin)
    return TweetCodes(codes, tag, checkin)


def _remove_mail(joined: str, mail_re: re.Pattern) -> str:
    """langdetect's ``MAIL_RE.sub(" ", text)`` on every text of the batch. Its pattern starts
    with a character class, a slow scan; it cannot match across the NULs, so it only runs on the
    texts where a fast literal scan finds an '@' it could match."""
    if not _MAIL_AT_RE.search(joined):
        return joined
    parts = joined.split(_SEP)
    return _SEP.join(mail_re.sub(" ", p) if _MAIL_AT_RE.search(p) else p for p in parts)


@functools.lru_cache(maxsize=1)
def _compat_table() -> np.ndarray:
    """bool[code point]: in ``_COMPAT_RE``'s ranges (a table lookup beats the regex's scan)."""
    table = np.zeros(_N_CODEPOINTS, dtype=bool)
    for lo, hi in (
        (0x2100, 0x214F),
        (0x2460, 0x24FF),
        (0xFB00, 0xFDFF),
        (0xFE70, 0xFEFF),
        (0xFF00, 0xFFEF),
        (0x1D400, 0x1D7FF),
        (0x1F100, 0x1F1FF),
    ):
        table[lo : hi + 1] = True
    return table


def _after_mark(codes: np.ndarray, mark: np.ndarray) -> np.ndarray:
    """Positions after a ``mark`` in the same text (texts start at their NUL)."""
    if not mark.any():
        return np.zeros(len(codes), dtype=bool)
    seen = np.cumsum(mark)
    starts = np.flatnonzero(codes == 0)
    text = np.cumsum(codes == 0) - 1
    return seen > seen[starts][text]


def _hashtag_letters(codes: np.ndarray, hashmark: np.ndarray, model: _ProfileModel) -> np.ndarray:
    """Letters in a run that starts right after a ``#`` (``codes`` as the cleaning left them)."""
    is_w = model.letter[codes] & (codes != 0)
    prev = np.zeros_like(is_w)
    prev[1:] = is_w[:-1]
    start = is_w & ~prev
    after_hash = np.zeros_like(is_w)
    after_hash[1:] = hashmark[:-1]
    run = np.cumsum(start)  # run number of each position (letters only matter)
    tagged_runs = np.zeros(int(run[-1]) + 1 if len(run) else 1, dtype=bool)
    tagged_runs[run[start & after_hash]] = True
    return is_w & tagged_runs[run]


def _squeeze(codes: np.ndarray) -> np.ndarray:
    keep = _squeeze_keep(codes)
    return codes if keep is None else codes[keep]


def _squeeze_keep(codes: np.ndarray) -> np.ndarray | None:
    """Drop the third and later repeats of a 1- or 2-character pattern (``cooool`` -> ``cool``,
    ``jajajaja`` -> ``jaja``): their n-grams would swamp the rest of a short tweet, and
    ``jajaja`` reads as Estonian or Finnish (*ja*) to the profiles. Never across a space or a
    separator."""
    c = codes
    word = (c != 0) & (c != 32)  # patterns within a word only: "a a a" stays
    drop = np.zeros(len(c), dtype=bool)
    drop[2:] = (c[2:] == c[1:-1]) & (c[2:] == c[:-2])
    drop[4:] |= (c[4:] == c[2:-2]) & (c[2:-2] == c[:-4]) & (c[3:-1] == c[1:-3]) & word[3:-1]
    drop &= word
    return ~drop if drop.any() else None


def _segments(codes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index (the NUL) of each text, and each position's text number."""
    sep = codes == 0
    return np.flatnonzero(sep), np.cumsum(sep) - 1

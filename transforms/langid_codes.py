"""Language codes and the rule that combines a detector's answer with Twitter's own tag.

Kept apart from the detectors: ``pipeline/options.py`` checks ``--languages`` with these, and the
stage applies ``resolve_language`` for the langdetect engines (the default ``tweet`` engine takes
the tag as evidence itself, ``langid_tweet``).
"""

from __future__ import annotations

import functools
import re

from tweetmill.schemas.records import UNDETERMINED_LANGUAGE as UND

# The languages the profiles (and langdetect) can answer: langdetect's 55 codes.
# fmt: off
DETECTOR_LANGUAGES: frozenset[str] = frozenset({
    "af", "ar", "bg", "bn", "ca", "cs", "cy", "da", "de", "el", "en", "es", "et", "fa", "fi",
    "fr", "gu", "he", "hi", "hr", "hu", "id", "it", "ja", "kn", "ko", "lt", "lv", "mk", "ml",
    "mr", "ne", "nl", "no", "pa", "pl", "pt", "ro", "ru", "sk", "sl", "so", "sq", "sv", "sw",
    "ta", "te", "th", "tl", "tr", "uk", "ur", "vi", "zh-cn", "zh-tw",
})
# Twitter tags that name no language: undetermined, no linguistic content, and its private-use
# codes for tweets of only media links (qme), mentions (qam), cashtags (qct), hashtags (qht) or
# very short text (qst). Every other q[a-t]x code is private use too.
NON_LANGUAGE_TAGS: frozenset[str] = frozenset(
    {"und", "zxx", "mul", "mis", "art", "qme", "qam", "qct", "qht", "qst"}
)
# Deprecated or alternative codes, mapped to the ones langdetect answers.
_CODE_ALIASES = {
    "in": "id", "iw": "he", "ji": "yi", "jw": "jv", "nb": "no", "nn": "no", "fil": "tl",
    "zh": "zh-cn", "zh-hans": "zh-cn", "zh-sg": "zh-cn", "zh-hant": "zh-tw", "zh-hk": "zh-tw",
    "zh-mo": "zh-tw",
}
# fmt: on
_PRIVATE_USE_RE = re.compile(r"q[a-t][a-z]")
_CODE_RE = re.compile(r"[a-z]{2,3}(-[a-z]{2})?")
# Below this confidence the detector yields to a disagreeing Twitter tag.
STRONG_CONFIDENCE = 0.9


@functools.lru_cache(maxsize=4096)  # a corpus has few distinct tags; this runs once per tweet
def normalize_language_code(code: str | None) -> str:
    """A comparable code: lower case, aliases resolved, region dropped (but zh-cn / zh-tw kept);
    ``und`` for anything that names no language."""
    if not code:
        return UND
    code = code.strip().lower().replace("_", "-")
    code = _CODE_ALIASES.get(code, code)
    if not code.startswith("zh-") and "-" in code:
        code = code.split("-", 1)[0]
        code = _CODE_ALIASES.get(code, code)
    if code.startswith("zh-") and code not in ("zh-cn", "zh-tw"):
        code = "zh-tw" if any(part in code for part in ("hant", "tw", "hk", "mo")) else "zh-cn"
    if code in NON_LANGUAGE_TAGS or _PRIVATE_USE_RE.fullmatch(code) or not _CODE_RE.fullmatch(code):
        return UND
    return code


def resolve_language(detected: str, score: float, twitter_lang: str | None) -> str:
    """The language the filter uses, from the detector's answer and Twitter's ``lang`` tag.

    Policy (both codes normalised first, see ``normalize_language_code``):

    1. Twitter's tag names no language (absent, ``und``, ``zxx``, ``qme``, ``qht``...): the
       detector's answer, ``und`` included.
    2. The detector said ``und`` (too little text, or below its confidence): Twitter's tag.
    3. Twitter's tag is a language the detector cannot answer (``eu``, ``gl``, ``hy``...): the
       tag, since the detector's answer is then only the nearest language it knows.
    4. Both agree (``zh-cn``/``zh-tw`` count as agreeing with each other): the detector's answer,
       which keeps the script distinction.
    5. They disagree: the detector if ``score >= STRONG_CONFIDENCE``, else Twitter's tag (its
       classifier sees the whole tweet and the user; ours only the letters).
    """
    d = normalize_language_code(detected)
    t = normalize_language_code(twitter_lang)
    if t == UND:
        return d
    if d == UND:
        return t
    if t not in DETECTOR_LANGUAGES:
        return t
    if d == t or (d.startswith("zh-") and t.startswith("zh-")):
        return d
    return d if score >= STRONG_CONFIDENCE else t

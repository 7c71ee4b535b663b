"""Script evidence for language identification: which writing system a tweet's letters are in.

The n-gram scores cannot be trusted across scripts: langdetect's Korean profile holds Han
characters, so kanji-only Japanese scored ``ko`` at 0.99, and Latin-script profiles fight over a
Latin word inside an Arabic tweet. Script is near-certain evidence, so it decides first: the
tweet's dominant script (by letters) restricts the candidate languages to those written in it,
kana decide ``ja``, Hangul is required for ``ko``, Han-only text is ``ja``, ``zh-cn`` or ``zh-tw``
(the profiles choose among the three), and a script that only one language here uses (Thai,
Greek, Georgian, Armenian...) names it outright.

Everything is a table lookup and one ``bincount`` per batch (``script_counts``).
"""

from __future__ import annotations

import functools

import numpy as np

# Script classes; 0 is "not a letter of any script we track" (digits, spaces, symbols, unknown).
SCRIPTS: tuple[str, ...] = (
    "none",
    "latin",
    "cyrillic",
    "greek",
    "armenian",
    "hebrew",
    "arabic",
    "thaana",
    "devanagari",
    "bengali",
    "gurmukhi",
    "gujarati",
    "oriya",
    "tamil",
    "telugu",
    "kannada",
    "malayalam",
    "sinhala",
    "thai",
    "lao",
    "tibetan",
    "myanmar",
    "georgian",
    "ethiopic",
    "khmer",
    "hangul",
    "kana",
    "han",
)
S = {name: i for i, name in enumerate(SCRIPTS)}

# Unicode blocks of each script (inclusive ranges). Only letters and marks count (see
# ``script_counts``), so punctuation inside a block does not matter.
_RANGES: dict[str, tuple[tuple[int, int], ...]] = {
    "latin": (
        (0x41, 0x5A),
        (0x61, 0x7A),
        (0xC0, 0x24F),
        (0x1E00, 0x1EFF),
        (0x2C60, 0x2C7F),
        (0xA720, 0xA7FF),
        (0xFF21, 0xFF3A),
        (0xFF41, 0xFF5A),
    ),
    "cyrillic": ((0x400, 0x52F), (0x1C80, 0x1C8F), (0x2DE0, 0x2DFF), (0xA640, 0xA69F)),
    "greek": ((0x370, 0x3FF), (0x1F00, 0x1FFF)),
    "armenian": ((0x530, 0x58F),),
    "hebrew": ((0x590, 0x5FF), (0xFB1D, 0xFB4F)),
    "arabic": ((0x600, 0x6FF), (0x750, 0x77F), (0x8A0, 0x8FF), (0xFB50, 0xFDFF), (0xFE70, 0xFEFF)),
    "thaana": ((0x780, 0x7BF),),
    "devanagari": ((0x900, 0x97F), (0xA8E0, 0xA8FF)),
    "bengali": ((0x980, 0x9FF),),
    "gurmukhi": ((0xA00, 0xA7F),),
    "gujarati": ((0xA80, 0xAFF),),
    "oriya": ((0xB00, 0xB7F),),
    "tamil": ((0xB80, 0xBFF),),
    "telugu": ((0xC00, 0xC7F),),
    "kannada": ((0xC80, 0xCFF),),
    "malayalam": ((0xD00, 0xD7F),),
    "sinhala": ((0xD80, 0xDFF),),
    "thai": ((0xE00, 0xE7F),),
    "lao": ((0xE80, 0xEFF),),
    "tibetan": ((0xF00, 0xFFF),),
    "myanmar": ((0x1000, 0x109F),),
    "georgian": ((0x10A0, 0x10FF), (0x1C90, 0x1CBF), (0x2D00, 0x2D2F)),
    "ethiopic": ((0x1200, 0x139F), (0x2D80, 0x2DDF)),
    "khmer": ((0x1780, 0x17FF),),
    "hangul": ((0x1100, 0x11FF), (0x3130, 0x318F), (0xA960, 0xA97F), (0xAC00, 0xD7FF), (0xFFA0, 0xFFDC)),
    "kana": ((0x3040, 0x30FF), (0x31F0, 0x31FF), (0xFF66, 0xFF9F), (0x1B000, 0x1B16F)),
    "han": (
        (0x3005, 0x3005),
        (0x3007, 0x3007),
        (0x3400, 0x4DBF),
        (0x4E00, 0x9FFF),
        (0xF900, 0xFAFF),
        (0x20000, 0x323AF),
    ),
}

# The languages each script may be written in, among those the detector answers. Scripts with
# one language answer it without scoring; Han is handled apart (``han_only``).
SCRIPT_LANGUAGES: dict[str, tuple[str, ...]] = {
    "latin": (
        "af",
        "ca",
        "cs",
        "cy",
        "da",
        "de",
        "en",
        "es",
        "et",
        "fi",
        "fr",
        "hr",
        "hu",
        "id",
        "it",
        "lt",
        "lv",
        "nl",
        "no",
        "pl",
        "pt",
        "ro",
        "sk",
        "sl",
        "so",
        "sq",
        "sv",
        "sw",
        "tl",
        "tr",
        "vi",
    ),
    "cyrillic": ("bg", "mk", "ru", "uk"),
    "greek": ("el",),
    "armenian": ("hy",),
    "hebrew": ("he",),
    "arabic": ("ar", "fa", "ur"),
    "thaana": ("dv",),
    "devanagari": ("hi", "mr", "ne"),
    "bengali": ("bn",),
    "gurmukhi": ("pa",),
    "gujarati": ("gu",),
    "oriya": ("or",),
    "tamil": ("ta",),
    "telugu": ("te",),
    "kannada": ("kn",),
    "malayalam": ("ml",),
    "sinhala": ("si",),
    "thai": ("th",),
    "lao": ("lo",),
    "tibetan": ("bo",),
    "myanmar": ("my",),
    "georgian": ("ka",),
    "ethiopic": ("am",),
    "khmer": ("km",),
    "hangul": ("ko",),
    "kana": ("ja",),
    "han": ("ja", "zh-cn", "zh-tw"),
}
# Languages answered by script alone, which langdetect's profiles do not model.
SCRIPT_ONLY_LANGUAGES: frozenset[str] = frozenset(
    {"hy", "dv", "or", "si", "lo", "bo", "my", "ka", "am", "km"}
)
N_SCRIPTS = len(SCRIPTS)
# A Han, kana or Hangul character is a syllable or a morpheme: about three Latin letters. Without
# this, "[MYSTIC LISTEN] 장재인 X EXO 수호(SUHO) '실례해도 될까요'" would be a Latin-script tweet.
CJK_LETTER_WEIGHT = 3.0
CJK = (S["hangul"], S["kana"], S["han"])


@functools.lru_cache(maxsize=1)
def script_table() -> np.ndarray:
    """uint8[code point]: the script class of every code point (0 outside the tracked blocks)."""
    table = np.zeros(0x110000, dtype=np.uint8)
    for name, ranges in _RANGES.items():
        for lo, hi in ranges:
            table[lo : hi + 1] = S[name]
    table[[0xD7, 0xF7]] = 0  # the multiplication and division signs sit in Latin-1's letters
    return table


def script_counts(
    codes: np.ndarray, seg: np.ndarray, n_texts: int, letter: np.ndarray, weights: np.ndarray | None = None
) -> np.ndarray:
    """float[n_texts, N_SCRIPTS]: letters of each script per text (``letter``: bool[code point]),
    each counting its ``weights`` (default 1)."""
    script = script_table()[codes].astype(np.int64)
    script[~letter[codes]] = 0
    flat = np.bincount(seg * N_SCRIPTS + script, weights=weights, minlength=n_texts * N_SCRIPTS)
    return flat.reshape(n_texts, N_SCRIPTS)


def dominant_script(counts: np.ndarray) -> np.ndarray:
    """int[n_texts]: the script with most letters (Han, kana and Hangul pooled as one CJK
    group that counts ``CJK_LETTER_WEIGHT`` a character, then split by ``cjk_script``); 0 where a
    text has no letters."""
    pooled = counts.astype(np.float64)
    cjk = CJK_LETTER_WEIGHT * counts[:, list(CJK)].sum(axis=1)
    pooled[:, list(CJK)] = 0
    pooled[:, S["han"]] = cjk
    pooled[:, 0] = 0
    best = pooled.argmax(axis=1)  # ties: the lower class, deterministic
    best[pooled.max(axis=1) == 0] = 0
    cjk_text = best == S["han"]
    best[cjk_text] = cjk_script(counts[cjk_text])
    return best


def cjk_script(counts: np.ndarray) -> np.ndarray:
    """Within CJK text: kana make it Japanese (even beside Hangul, if there are at least as many
    kana), Hangul Korean; Han alone stays ``han`` (Japanese or Chinese, for the profiles)."""
    kana, hangul = counts[:, S["kana"]], counts[:, S["hangul"]]
    out = np.full(len(counts), S["han"], dtype=np.int64)
    out[hangul > 0] = S["hangul"]
    out[(kana > 0) & (kana >= hangul)] = S["kana"]
    return out


def candidate_mask(langs: tuple[str, ...]) -> np.ndarray:
    """bool[N_SCRIPTS, len(langs)]: which of ``langs`` each dominant script allows. Script 0 (no
    letters of a tracked script: symbols, unknown scripts) allows every language."""
    mask = np.zeros((N_SCRIPTS, len(langs)), dtype=bool)
    mask[0] = True
    index = {lang: i for i, lang in enumerate(langs)}
    for name, allowed in SCRIPT_LANGUAGES.items():
        for lang in allowed:
            if lang in index:
                mask[S[name], index[lang]] = True
    return mask

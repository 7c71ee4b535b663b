"""Word evidence for language identification: how much likelier each word of a tweet is in one
language than an unseen word.

langdetect's profiles are character 1-3-grams from Wikipedia; on a short tweet ("if you don't
use it, you lose it") a handful of trigrams decides, and Afrikaans, Welsh or Tagalog win as often
as English. Whole frequent words settle most of those cases. The table is wordfreq's small lists
(see ``bench/build_lang_words.py``), stored as ``transforms/assets/langid-words.npz`` (1 MB):
for each language, ``log p(word) - log p(unlisted word)`` if the word is in its top 15,000, else
0 (no evidence; also for every word of a language wordfreq lacks), where an unlisted word is
``OOV_MARGIN`` zipf units rarer than the least frequent listed one.

Words are the runs of letters the detector's cleaning leaves, lower-cased; inside hashtags a
lower-to-upper change also starts a word (``#ThrowbackThursday``). Each word is hashed (64-bit
polynomial over its code points, vectorised) and looked up with ``searchsorted``; no Python loop
runs per word.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tweetmill.transforms.table_cache import cached_tables, fingerprint, source_of

ASSET = Path(__file__).resolve().parent / "assets" / "langid-words.npz"
_MULT = np.uint64(0x100000001B3)  # FNV prime: a polynomial hash, wrapping mod 2**64
_MAX_OFFSET = 64  # characters of a word that enter its hash (longer words share a prefix hash)
_POWERS = np.cumprod(np.full(_MAX_OFFSET, _MULT, dtype=np.uint64), dtype=np.uint64)
_LEN_MIX = np.uint64(0x9E3779B97F4A7C15)
_HASH_MULT = np.uint64(0xD6E8FEB86659FD93)  # spreads the word hashes over the table's slots


@dataclass(frozen=True, eq=False)
class WordModel:
    """Sorted word hashes and their evidence per language (columns in the detector's order)."""

    hashes: np.ndarray  # uint64[V], sorted
    slots: np.ndarray  # uint64[2**bits]: open-addressing table of the hashes, 0 = empty
    slot_rows: np.ndarray  # int32[2**bits]: the row of each slot's hash
    bits: int
    # Sparse rows (most words are listed by one or two languages): the evidence of word v is
    # ``vals[ptr[v]:ptr[v + 1]]`` for the columns ``cols[...]``; row V (unknown words) is empty.
    ptr: np.ndarray  # int64[V + 2]
    cols: np.ndarray  # int16[E]
    vals: np.ndarray  # float32[E], natural log
    langs: tuple[str, ...]  # languages with a word list
    n_langs: int  # columns of the detector

    def text_evidence(self, words: Words, n_texts: int, weights: np.ndarray | None = None) -> np.ndarray:
        """float32[n_texts, n_langs]: the summed (weighted) evidence of each text's words."""
        lo = self.ptr[words.row]
        n = self.ptr[words.row + 1] - lo
        total = int(n.sum())
        if not total:
            return np.zeros((n_texts, self.n_langs), dtype=np.float32)
        ends = np.cumsum(n)
        entry = np.repeat(lo - (ends - n), n) + np.arange(total)  # each word's entries in turn
        vals = self.vals[entry]
        if weights is not None:
            vals = vals * np.repeat(weights.astype(np.float32), n)
        flat = np.repeat(words.text * self.n_langs, n) + self.cols[entry]
        summed = np.bincount(flat, weights=vals, minlength=n_texts * self.n_langs)
        return summed.reshape(n_texts, self.n_langs).astype(np.float32)

    def rows(self, h: np.ndarray) -> np.ndarray:
        """Row of each hash, ``len(hashes)`` (the empty row) where unlisted: vectorised linear
        probing, a few memory reads per word (``searchsorted`` needs ~19 on 500k words)."""
        mask = np.uint64((1 << self.bits) - 1)
        out = np.full(len(h), len(self.hashes), dtype=np.int64)
        todo = np.arange(len(h))
        pending = h
        slot = (h * _HASH_MULT) >> np.uint64(64 - self.bits)
        while len(todo):
            found = self.slots[slot]
            match = found == pending
            out[todo[match]] = self.slot_rows[slot[match]]
            again = (found != 0) & ~match
            todo, pending, slot = todo[again], pending[again], (slot[again] + np.uint64(1)) & mask
        return out


def _hash_table(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray, int]:
    """Linear-probing table of distinct non-zero ``keys`` (load <= 1/3, short probes; 25 MB for
    the asset's 459k words), built with array operations: each round places, for every free slot
    wanted, the first key that wants it."""
    bits = max(10, int(np.ceil(np.log2(max(1, len(keys)) * 3))))
    mask = np.uint64((1 << bits) - 1)
    slots = np.zeros(1 << bits, dtype=np.uint64)
    rows = np.zeros(1 << bits, dtype=np.int32)
    todo = np.arange(len(keys))
    slot = (keys * _HASH_MULT) >> np.uint64(64 - bits)
    while len(todo):
        free = slots[slot] == 0
        _, first = np.unique(np.where(free, slot, np.uint64(1 << bits)), return_index=True)
        first = first[free[first]]
        slots[slot[first]] = keys[todo[first]]
        rows[slot[first]] = todo[first]
        placed = np.zeros(len(todo), dtype=bool)
        placed[first] = True
        todo, slot = todo[~placed], (slot[~placed] + np.uint64(1)) & mask
    return slots, rows, bits


@dataclass(frozen=True)
class Words:
    """The words of a batch of cleaned texts."""

    text: np.ndarray  # int[W]: the text each word is in
    row: np.ndarray  # int[W]: its row of ``WordModel.evidence`` (the unknown row if unlisted)
    start: np.ndarray  # int[W]: position of its first character in the codes


def word_hashes(codes: np.ndarray, starts: np.ndarray) -> np.ndarray:
    """uint64 hash of each word: the code points ``codes[starts[i]:starts[i + 1]]`` (the last word
    runs to the end). ``codes`` holds only the words' characters, already lower-cased."""
    n = len(codes)
    if not len(starts):
        return np.zeros(0, dtype=np.uint64)
    first = np.zeros(n, dtype=bool)
    first[starts] = True
    word = np.cumsum(first) - 1
    offset = np.arange(n) - starts[word]
    terms = (codes.astype(np.uint64) + np.uint64(1)) * _POWERS[np.minimum(offset, _MAX_OFFSET - 1)]
    h = np.add.reduceat(terms, starts)
    lengths = np.diff(np.append(starts, n)).astype(np.uint64)
    return h ^ (lengths * _LEN_MIX)


def split_words(
    codes: np.ndarray,
    seg: np.ndarray,
    letter: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    hashtag: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(positions of the word characters, index of each word's first one among them, their
    lower-cased codes)`` for the cleaned batch ``codes`` (texts separated by 0, non-letters
    already spaces)."""
    is_w = letter[codes] & (codes != 0)
    prev = np.zeros_like(is_w)
    prev[1:] = is_w[:-1]
    start = is_w & ~prev
    if hashtag is not None and hashtag.any():  # camel case inside hashtags starts a word
        up = upper[codes]
        prev_low = np.zeros_like(up)
        prev_low[1:] = is_w[:-1] & ~up[:-1]
        start |= hashtag & up & prev_low
    pos = np.flatnonzero(is_w)
    starts_in_pos = np.flatnonzero(start[pos])
    return pos, starts_in_pos, lower[codes[pos]]


# An unlisted word is taken to be this much rarer (in log10 units, "zipf") than the least
# frequent listed one: a listed word is evidence even if it is rare (fitted with the detector's
# other constants by bench/fit_lang_tweet.py).
OOV_MARGIN = 3.0

_MODEL: dict[tuple, WordModel] = {}
_LOCK = threading.Lock()


def load_word_model(langs: tuple[str, ...], oov_margin: float = OOV_MARGIN, path: Path = ASSET) -> WordModel:
    """The word table with columns in the order of ``langs`` (built once per process, or loaded
    from ``table_cache.py``)."""
    key = (langs, oov_margin, str(path))
    model = _MODEL.get(key)
    if model is None:
        with _LOCK:
            model = _MODEL.get(key)
            if model is None:
                model = _MODEL[key] = cached_tables(
                    WordModel,
                    "langid-words",
                    fingerprint(source_of(__file__), path.read_bytes(), "\n".join(langs), repr(oov_margin)),
                    lambda: _build(langs, oov_margin, path),
                )
    return model


def _build(langs: tuple[str, ...], oov_margin: float, path: Path) -> WordModel:
    with np.load(path) as z:
        asset_langs = [str(x) for x in z["langs"]]
        words = [str(x) for x in z["words"]]
        log10_freq = z["log10_freq"].astype(np.float64)
        counts = z["counts"]
    bounds = np.concatenate(([0], np.cumsum(counts)))
    all_words: list[str] = []
    cols: list[int] = []
    vals: list[np.ndarray] = []
    column = {lang: i for i, lang in enumerate(langs)}
    for k, lang in enumerate(asset_langs):
        if lang not in column:
            continue
        listed = words[k].split("\n")
        lf = log10_freq[bounds[k] : bounds[k + 1]]
        all_words += listed
        cols += [column[lang]] * len(listed)
        vals.append((lf - lf.min() + oov_margin) * np.log(10.0))
    text = "\x00" + "\x00".join(all_words)
    codes = np.frombuffer(text.encode("utf-32-le"), dtype="<u4").astype(np.int64)
    sep = np.flatnonzero(codes == 0)
    keep = codes != 0
    starts = sep - np.arange(len(sep))  # positions once the separators are removed
    hashes = word_hashes(codes[keep], starts)
    hashes[hashes == 0] = 1  # 0 marks an empty slot
    unique, inverse = np.unique(hashes, return_inverse=True)
    cols_a = np.array(cols, dtype=np.int64)
    vals_a = np.concatenate(vals).astype(np.float32)
    order = np.lexsort((cols_a, inverse))  # by word, then language
    inverse, cols_a, vals_a = inverse[order], cols_a[order], vals_a[order]
    # A word twice in one language (two wordfreq tokens normalised alike): keep the first
    first = np.ones(len(inverse), dtype=bool)
    first[1:] = (inverse[1:] != inverse[:-1]) | (cols_a[1:] != cols_a[:-1])
    inverse, cols_a, vals_a = inverse[first], cols_a[first], vals_a[first]
    ptr = np.zeros(len(unique) + 2, dtype=np.int64)
    ptr[1 : len(unique) + 1] = np.cumsum(np.bincount(inverse, minlength=len(unique)))
    ptr[-1] = ptr[-2]
    slots, slot_rows, bits = _hash_table(unique)
    return WordModel(
        hashes=unique,
        slots=slots,
        slot_rows=slot_rows,
        bits=bits,
        ptr=ptr,
        cols=cols_a.astype(np.int16),
        vals=vals_a,
        langs=tuple(a for a in asset_langs if a in column),
        n_langs=len(langs),
    )


def batch_words(
    codes: np.ndarray,
    seg: np.ndarray,
    model: WordModel,
    letter: np.ndarray,
    upper: np.ndarray,
    lower: np.ndarray,
    hashtag: np.ndarray | None = None,
) -> Words:
    """Every word of the batch with its evidence row."""
    pos, start_idx, lc = split_words(codes, seg, letter, upper, lower, hashtag)
    starts = pos[start_idx]
    h = word_hashes(lc, start_idx)
    h[h == 0] = 1
    row = model.rows(h)
    return Words(text=seg[starts], row=row, start=starts)

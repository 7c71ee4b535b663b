"""MinHash signatures of tweet texts over character shingles, compatible with datasketch 2.0.0.

Pure numpy (no Beam): near dedup (``near_dedup.py``) signs tweets with it in its DoFns and in its
in-process reference, and anything else can sign texts the same way. Why it looks like this:

* **Character shingles of a normalised text.** Most tweets have fewer than five words, so word
  n-grams would leave most of them without a signature. The text is NFKC-normalised, case-folded,
  whitespace-collapsed, its links/mentions/e-mails/phones (and the clean stage's placeholders) folded
  to one symbol each and a leading ``RT @user:`` removed, so that the spelling of an entity does not
  decide similarity. A text shorter than ``n`` is one shingle; an empty text has none.
* **datasketch-identical values.** ``datasketch.MinHash(num_perm, seed, hashfunc=shingle_hash)`` fed
  ``shingle_strings(text, n)`` holds exactly the rows of ``minhash_signatures`` (scheme
  ``affine32``, uint32), so signatures load into ``MinHashLSH``/``LeanMinHash`` and the LSH
  parameters are datasketch's own (``lsh_params``).
* **Vectorised.** Hashing and permuting run over whole batches in numpy, n steps or one
  permutation at a time, never a Python call per shingle: ~8 µs per tweet, 22x datasketch's
  ``update_batch`` (``bench/bench_near_dedup_scale.py``).

See ``docs/near-dedup.md`` for how the stage uses them.
"""

from __future__ import annotations

import functools
import re
import unicodedata
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from tweetmill.transforms.twitter_text import MENTION

__all__ = [
    "SCHEME",
    "Shingles",
    "SignatureParams",
    "band_keys",
    "is_empty",
    "lsh_params",
    "minhash_signatures",
    "normalize_text",
    "permutations",
    "shingle_hash",
    "shingle_strings",
    "shingles",
    "signatures_from_shingles",
]

SCHEME = "affine32"  # datasketch 2.0.0's default permutation scheme
_U32 = np.uint32
_MAX_HASH = _U32(0xFFFFFFFF)  # datasketch's "empty" value for affine32

# shingle_hash: FNV-1a over code points, plus an xor-shift so high bits reach the low ones.
_FNV_OFFSET = 0x811C9DC5
_FNV_PRIME = 0x01000193
_SHIFT = 15

# One symbol per kind of entity, from Unicode's private use area (NFKC leaves it alone), so a
# link, a mention or a placeholder weighs one character in a shingle whatever its spelling.
_URL, _MENTION, _EMAIL, _PHONE = "\ue000", "\ue001", "\ue002", "\ue003"
# Cheap guards (substring tests) keep the regexes off the texts that cannot match: normalising was
# the costliest step of signing before (24 µs/tweet with one combined regex, 4 µs now).
# Mentions are twitter_text.MENTION; the rest are near dedup's own, as they run on case-folded text
# with other meanings: URLs include bare "www." links (URL_SIMPLE does not), an e-mail is any
# "local@domain.part" (find_emails wants a real TLD), and the RT prefix is a run of lower-case markers
# before mentions already folded to a symbol (MANUAL_RETWEET: one case-sensitive "RT @name").
_URLS = re.compile(r"https?://\S+|www\.\S+")
_EMAIL_DOMAIN = re.compile(r"@[\w-]+(?:\.[\w-]+)+")
_EMAIL_LOCAL = re.compile(r"[\w.+-]")
_PLACEHOLDERS = (("<url>", _URL), ("<email>", _EMAIL), ("<phone>", _PHONE))  # the clean stage's, case-folded
_RT_PREFIX = re.compile(r"^(?:rt ?" + _MENTION + r" ?:? ?)+")


class SignatureParams(Protocol):
    """What ``minhash_signatures`` reads from a config (``near_dedup.NearDedupConfig`` is one)."""

    @property
    def shingle_size(self) -> int: ...

    @property
    def num_perm(self) -> int: ...

    @property
    def seed(self) -> int: ...


# --- shingles ------------------------------------------------------------------------------------


def _fold_emails(text: str) -> str:
    """``re.sub(r"[\\w.+-]+@[\\w-]+(?:\\.[\\w-]+)+", _EMAIL, text)``, scanning from the "@": a
    pattern that starts with a character class is slow to scan a whole batch with (4 µs/tweet)."""
    pieces: list[str] = []
    done = 0  # text[:done] is in pieces
    for match in _EMAIL_DOMAIN.finditer(text):
        start = match.start()
        while start > done and _EMAIL_LOCAL.match(text, start - 1):
            start -= 1
        if start < match.start():  # a local part: an e-mail address
            pieces += (text[done:start], _EMAIL)
            done = match.end()
    if not pieces:
        return text
    pieces.append(text[done:])
    return "".join(pieces)


def normalize_text(text: str) -> str:
    """The text whose shingles are compared: entity spelling, case, spacing and RT markers folded.

    Per text, behind cheap substring guards: most texts skip most steps (2.5 µs/tweet measured;
    the same steps on a whole joined batch took 5.5, full NFKC of every text dominating).
    """
    if "\x00" in text:  # the separator of texts in ``shingles``
        text = text.replace("\x00", "")
    text = unicodedata.normalize("NFKC", text).casefold()
    # Whitespace first (the substitutions below neither make nor take any); split+join costs
    # ~1 µs, the guard (only plain single spaces, none at the ends) a tenth of that.
    if not text.isprintable() or "  " in text or text[:1] == " " or text[-1:] == " ":
        text = " ".join(text.split())
    if "http" in text or "www." in text:
        text = _URLS.sub(_URL, text)
    if "<" in text:
        for placeholder, symbol in _PLACEHOLDERS:
            text = text.replace(placeholder, symbol)
    if "@" in text:
        text = MENTION.sub(_MENTION, _fold_emails(text))
    if text.startswith("rt"):
        text = _RT_PREFIX.sub("", text)
    return text


def shingle_strings(text: str, n: int) -> list[str]:
    """The shingles of one text, readable (tests, datasketch, exact Jaccard); may repeat."""
    norm = normalize_text(text)
    if len(norm) <= n:
        return [norm] if norm else []
    return [norm[i : i + n] for i in range(len(norm) - n + 1)]


def shingle_hash(shingle: str) -> int:
    """32-bit hash of one shingle: the scalar twin of the vectorised hashing in ``shingles``.

    Pass it as ``hashfunc`` to ``datasketch.MinHash`` to get the stage's signatures.
    """
    h = _FNV_OFFSET
    for ch in shingle:
        h = ((h ^ ord(ch)) * _FNV_PRIME) & 0xFFFFFFFF
        h ^= h >> _SHIFT
    return h


@dataclass(frozen=True)
class Shingles:
    """Shingle hashes of a batch of texts, flat: text ``i`` owns ``hashes[offsets[i]:offsets[i+1]]``."""

    hashes: np.ndarray  # uint32, shingle_hash of each shingle, in text order
    offsets: np.ndarray  # int64, len(texts) + 1

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, i: int) -> np.ndarray:
        return self.hashes[self.offsets[i] : self.offsets[i + 1]]


def shingles(texts: list[str], n: int) -> Shingles:
    """Hashes of every character n-gram of every (normalised) text, computed n steps at a time
    over the whole batch: no Python call per shingle (nor per text)."""
    if n < 1:
        raise ValueError(f"n must be positive, got {n}")
    if not texts:
        return Shingles(np.zeros(0, dtype=_U32), np.zeros(1, dtype=np.int64))
    # Code points of the batch (UTF-32: one unit per code point), texts separated by 0, padded
    # so the last n-gram's reads stay in bounds.
    cps = np.frombuffer("\x00".join(map(normalize_text, texts)).encode("utf-32-le"), dtype=_U32)
    seps = np.flatnonzero(cps == 0)
    starts = np.concatenate([[0], seps + 1])
    lengths = np.concatenate([seps, [len(cps)]]) - starts
    cps = np.concatenate([cps, np.zeros(n, dtype=_U32)])
    counts = np.where(lengths >= n, lengths - n + 1, np.minimum(lengths, 1))
    offsets = np.zeros(len(texts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    total = int(offsets[-1])
    if total == 0:
        return Shingles(np.zeros(0, dtype=_U32), offsets)
    owner = np.repeat(np.arange(len(texts)), counts)
    pos = np.arange(total, dtype=np.int64) - offsets[owner] + starts[owner]
    prime, shift = _U32(_FNV_PRIME), _U32(_SHIFT)
    h = np.full(total, _FNV_OFFSET, dtype=_U32)
    for k in range(n):
        h ^= cps[pos + k]
        h *= prime
        h ^= h >> shift
    # A text shorter than n is one shingle of its own length: refold those few without the
    # characters past their end.
    short = np.flatnonzero(lengths[owner] < n)
    if len(short):
        spos, slen = pos[short], lengths[owner[short]]
        hs = np.full(len(short), _FNV_OFFSET, dtype=_U32)
        for k in range(n - 1):
            nh = (hs ^ cps[spos + k]) * prime
            nh ^= nh >> shift
            hs = np.where(k < slen, nh, hs)
        h[short] = hs
    return Shingles(h, offsets)


# --- signatures ----------------------------------------------------------------------------------


@functools.lru_cache(maxsize=32)
def permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """datasketch 2.0.0's affine32 parameters ``(a, b)`` for ``seed``: built once, not per tweet.

    Same generator calls as ``MinHash._init_permutations`` (the test asserts equality).
    """
    gen = np.random.RandomState(seed)
    a = gen.randint(0, 1 << 31, num_perm, dtype=_U32) * _U32(2) + _U32(1)
    b = gen.randint(0, 1 << 32, num_perm, dtype=_U32)
    a.setflags(write=False)
    b.setflags(write=False)
    return a, b


def _fmix32(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's 32-bit finalizer, as datasketch's affine32 pre-mix applies it."""
    h = h ^ (h >> _U32(16))
    h = h * _U32(0x85EBCA6B)
    h ^= h >> _U32(13)
    h = h * _U32(0xC2B2AE35)
    return h ^ (h >> _U32(16))


def signatures_from_shingles(sh: Shingles, num_perm: int, seed: int) -> np.ndarray:
    """MinHash of each text's shingle set: ``min(a * fmix(h) + b)`` per permutation, in uint32.

    One permutation at a time over the whole batch (a multiply, an add and a ``reduceat`` on one
    contiguous row per permutation): cheaper than (permutations x shingles) blocks, measured.
    """
    a, b = permutations(num_perm, seed)
    out = np.full((num_perm, len(sh)), _MAX_HASH, dtype=_U32)  # empty texts keep datasketch's empty value
    nonempty = np.flatnonzero(np.diff(sh.offsets) > 0)
    if len(nonempty):
        mixed = _fmix32(sh.hashes)
        starts = sh.offsets[nonempty]
        row = np.empty_like(mixed)
        dense = len(nonempty) == len(sh)
        for k in range(num_perm):
            np.multiply(mixed, a[k], out=row)
            row += b[k]
            if dense:
                np.minimum.reduceat(row, starts, out=out[k])
            else:
                out[k, nonempty] = np.minimum.reduceat(row, starts)
    return np.ascontiguousarray(out.T)


def minhash_signatures(texts: list[str], config: SignatureParams) -> np.ndarray:
    """``(len(texts), num_perm)`` uint32 signatures, identical to datasketch 2.0.0's
    ``MinHash(num_perm, seed, hashfunc=shingle_hash)`` fed ``shingle_strings(text, n)``."""
    return signatures_from_shingles(shingles(texts, config.shingle_size), config.num_perm, config.seed)


def is_empty(signatures: np.ndarray) -> np.ndarray:
    """The rows that are datasketch's empty MinHash: texts without a shingle (they never match)."""
    return np.all(signatures == _MAX_HASH, axis=1)


# --- LSH -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=64)
def lsh_params(threshold: float, num_perm: int, false_negative_weight: float = 0.5) -> tuple[int, int]:
    """(bands, rows) exactly as ``datasketch.MinHashLSH(threshold, num_perm, weights=(1 - w, w))``
    chooses them: of all ``b * r <= num_perm``, in datasketch's order (``b``, then ``r``), the first
    that minimises the weighted areas of false positives (below ``threshold``) and false negatives.

    datasketch integrates each area with scipy's ``quad``, and importing scipy costs every process
    ~0.4 s. The integrands are polynomials of degree ``b * r <= num_perm``, which Gauss-Legendre
    quadrature with ``num_perm // 2 + 1`` nodes integrates exactly, so numpy alone makes the same
    choice (tested against datasketch on a grid of parameters)."""
    if not 0.0 <= threshold <= 1.0 or num_perm < 1:
        raise ValueError(f"no LSH parameters for threshold {threshold} and num_perm {num_perm}")
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    below = threshold / 2 * (nodes + 1)  # the nodes mapped onto [0, threshold]
    above = (1 - threshold) / 2 * (nodes + 1) + threshold  # and onto [threshold, 1]
    w = false_negative_weight
    best, chosen = np.inf, (0, 0)
    for b in range(1, num_perm + 1):  # one band count at a time: memory stays ~num_perm x nodes
        r = np.arange(1, num_perm // b + 1, dtype=np.float64)[:, None]
        false_pos = threshold / 2 * ((1 - (1 - below**r) ** b) @ weights)
        false_neg = (1 - threshold) / 2 * (((1 - above**r) ** b) @ weights)
        error = false_pos * (1.0 - w) + false_neg * w
        k = int(np.argmin(error))
        if error[k] < best:  # strictly: the first minimum in datasketch's order wins
            best, chosen = float(error[k]), (b, k + 1)
    return chosen


def band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``(len, bands)`` uint64 bucket keys: a 64-bit hash of each band's rows, salted with the band
    index so equal values in different bands fall in different buckets. A collision only adds a
    candidate, which verification then rejects."""
    n = signatures.shape[0]
    if n == 0:
        return np.zeros((0, bands), dtype=np.uint64)
    sig = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    prime = np.uint64(0x100000001B3)
    h = np.broadcast_to(
        np.arange(bands, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + np.uint64(0xCBF29CE484222325),
        (n, bands),
    ).copy()
    for j in range(rows):
        h ^= sig[:, :, j]
        h *= prime
        h ^= h >> np.uint64(29)
    return h


"""The scan behind ``tweetmill stats``: every record batch of every shard through running aggregates.

Every figure is an aggregate updated record batch by record batch: counters keyed by language, file,
month or hashtag, a histogram of tweet lengths, a ``np.bincount`` over the vocabulary. Memory is
bounded by the vocabulary, the longest tweet and the number of distinct keys (hashtags are capped),
never by the number of rows. Shards are opened one at a time (``shard_io.open_shard``), record
batches run on a few threads (numpy and Arrow release the GIL), each thread with its own
accumulator, merged at the end.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from numpy.lib.stride_tricks import sliding_window_view
from tweetmill.pipeline.shard_io import open_file, open_shard
from tweetmill.schemas.manifest import Manifest
from tweetmill.schemas.shard import check_shard_schema
from tweetmill.schemas.shard_dir import DROPPED_SAMPLE_NAME, NEAR_DUP_SAMPLE_NAME, list_layout
from tweetmill.transforms.stage import sample_key
from tweetmill.transforms.twitter_text import HASHTAG

log = logging.getLogger(__name__)

HASHTAG_CAP = 100_000  # distinct hashtags kept; beyond 2x this the rarest are pruned (counts approximate)
AUTHOR_CAP = 100_000  # distinct authors kept; beyond 2x this the rarest are pruned (counts lower bounds)
AUTHOR_MERGE_EVERY = 1 << 20  # pending author ids before they are merged (the merge: ~50 B each)
SCORE_BINS = 100  # lang_score histogram: bins of 0.01 over [0, 1] (1.0 falls in the last)
CHARS_CAP = 1 << 16  # characters per tweet: longer texts count in this last bin
VALUE_COLUMNS = ("lang", "twitter_lang", "source_format", "source_file")
FLAG_COLUMNS = ("is_reply", "is_quote", "is_retweet", "id_derived")


def string_layout(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, utf8 bytes)`` of a string array, zero-copy, honouring slices (offsets start at 0)."""
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(array) + 1, offset=array.offset * 4)
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets - start, data[start:end]


# --- hashtags ---------------------------------------------------------------------------------------

# A hashtag is '#' + word characters (Python's \w) with at least one non-digit, not preceded by a word
# character or '&' (``twitter_text.HASHTAG``): exactly what ``HASHTAG.findall`` finds, case-folded.
# The scan runs on the UTF-8 bytes of a whole batch, vectorised: numpy finds every '#', reads a
# window of bytes after it and cuts it at the first ASCII non-word byte (non-ASCII bytes stay in);
# Arrow counts the windows as fixed-size binary keys. A 16-byte window holds most tags, longer ones
# get a 64-byte window. Python applies the exact rule once per *distinct* key, when the figures are
# read, and handles the rare cases one by one (a tag longer than 64 bytes, a '#' near the end of the
# buffer or after a non-ASCII character).
_WORD_CHAR_RE = re.compile(r"\w")
_WINDOWS = (16, 64)  # bytes read after a '#', in tiers; longer tags are read one by one
_BLOCKS_BYTE = np.zeros(256, dtype=bool)  # ASCII bytes before '#' that make it no hashtag
for _c in b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_&":
    _BLOCKS_BYTE[_c] = True
# row L: L bytes 0xFF, then zeros; ANDed with a window it keeps a tag of L bytes
_PREFIX_MASKS = {w: np.tril(np.full((w + 1, w), 0xFF, dtype=np.uint8), -1) for w in _WINDOWS}
_MERGE_EVERY = 1 << 20  # pending keys before they are merged into the running counts


def _word_bytes(window: np.ndarray) -> np.ndarray:
    """Bytes that may continue a hashtag: ASCII letters, digits, '_', and every non-ASCII byte."""
    word = window >= 0x80
    word |= (window | 0x20) - np.uint8(ord("a")) < 26
    word |= window - np.uint8(ord("0")) < 10
    word |= window == ord("_")
    return word


def _ends_with_word_char(before: bytes) -> bool:
    char = before.decode("utf-8", errors="ignore")[-1:]
    return bool(char) and _WORD_CHAR_RE.match(char) is not None


class _KeyCounts:
    """Counts of fixed-width binary keys, merged in Arrow (group-by) every ``_MERGE_EVERY`` keys."""

    def __init__(self, width: int) -> None:
        self.width = width
        self.keys = pa.array([], pa.binary(width))
        self.counts = pa.array([], pa.int64())
        self.pending: list[pa.StructArray] = []
        self.pending_len = 0

    def add(self, windows: np.ndarray) -> None:
        keys = pa.FixedSizeBinaryArray.from_buffers(
            pa.binary(self.width), len(windows), [None, pa.py_buffer(np.ascontiguousarray(windows))]
        )
        counted = pc.value_counts(keys)
        self.pending.append(counted)
        self.pending_len += len(counted)

    def merge(self, others: list[_KeyCounts], cap: int) -> bool:
        """Fold in ``others`` and the pending counts; keep the ``cap`` largest past ``2 * cap``."""
        keys = [self.keys, *(c.field("values") for c in self.pending)]
        counts = [self.counts, *(c.field("counts") for c in self.pending)]
        for other in others:
            keys += [other.keys, *(c.field("values") for c in other.pending)]
            counts += [other.counts, *(c.field("counts") for c in other.pending)]
        table = pa.table({"k": pa.concat_arrays(keys), "n": pa.concat_arrays(counts)})
        table = table.group_by("k").aggregate([("n", "sum")])
        pruned = table.num_rows > 2 * cap
        if pruned:
            table = table.take(pc.select_k_unstable(table, cap, [("n_sum", "descending")]))
        self.keys = table.column("k").combine_chunks()
        self.counts = table.column("n_sum").combine_chunks()
        self.pending, self.pending_len = [], 0
        return pruned


class HashtagCounter:
    """Case-folded hashtag counts over batches of UTF-8 text, bounded in memory.

    Past ``2 * cap`` distinct keys the rarest are pruned: their counts (and ``pruned``) become
    approximate, lower bounds. Counters are mergeable, so threads may each keep one.
    """

    def __init__(self, cap: int = HASHTAG_CAP) -> None:
        self.cap = cap
        self.pruned = False
        self._tiers = {w: _KeyCounts(w) for w in _WINDOWS}
        self._slow: Counter = Counter()  # tag bodies (bytes) read one by one
        self._boundary = np.zeros(0, dtype=bool)  # reused between batches: no 5 MB calloc each time

    def add(self, offsets: np.ndarray, data: np.ndarray) -> None:
        """Count the hashtags of the strings ``data[offsets[i]:offsets[i+1]]``."""
        pos = np.flatnonzero(data == 0x23)
        if not len(pos):
            return
        if len(self._boundary) < len(data) + 1:
            self._boundary = np.zeros(2 * len(data) + 1, dtype=bool)
        boundary = self._boundary[: len(data) + 1]  # where a text starts (or the buffer ends)
        boundary[offsets] = True
        at_start = boundary[pos]
        prev = data[np.maximum(pos - 1, 0)]
        keep = at_start | ~_BLOCKS_BYTE[prev]
        unsure = np.flatnonzero(keep & ~at_start & (prev >= 0x80))
        if len(unsure):
            keep[unsure] = ~self._after_word_char(data, pos[unsure])
        todo = np.flatnonzero(keep)
        slow: list[np.ndarray] = []
        for width in _WINDOWS:
            if not len(todo):
                break
            fits = pos[todo] + 1 + width <= len(data)
            slow.append(todo[~fits])
            todo = todo[fits]
            start = pos[todo] + 1
            windows = sliding_window_view(data, width)[start]
            word = _word_bytes(windows)
            word &= ~sliding_window_view(boundary, width)[start]  # the text ends there
            length = np.argmin(word, axis=1)
            longer = word[np.arange(len(start)), length]  # no non-word byte in the window
            length[longer] = 0  # an all-zero key, ignored; the next tier reads these
            windows &= _PREFIX_MASKS[width][length]  # zero the bytes after the tag
            self._tiers[width].add(windows)
            if self._tiers[width].pending_len > _MERGE_EVERY:
                self.pruned |= self._tiers[width].merge([], self.cap)
            todo = todo[longer]
        slow.append(todo)
        boundary[offsets] = False  # clean for the next batch
        slow_pos = pos[np.concatenate(slow)]
        if len(slow_pos):
            ends = offsets[np.searchsorted(offsets, slow_pos, side="right")]
            for p, end in zip(slow_pos.tolist(), ends.tolist(), strict=True):
                self._slow[data[p + 1 : end].tobytes()] += 1

    @staticmethod
    def _after_word_char(data: np.ndarray, pos: np.ndarray) -> np.ndarray:
        """Whether the (non-ASCII) character before each '#' is a word character.

        Decided once per distinct 4 bytes before the '#': they may begin inside an earlier character
        or text, but UTF-8 resynchronises, so the last character decoded (ignoring broken bytes) is
        the one before the '#'."""
        padded = pos >= 4
        result = np.zeros(len(pos), dtype=bool)
        if padded.any():
            before = sliding_window_view(data, 4)[pos[padded] - 4]
            keys, inverse = np.unique(
                np.ascontiguousarray(before).view(np.uint32).ravel(), return_inverse=True
            )
            is_word = np.array(
                [_ends_with_word_char(k.tobytes()) for k in keys.view(np.uint8).reshape(-1, 4)]
            )
            result[padded] = is_word[inverse]
        for i in np.flatnonzero(~padded).tolist():
            result[i] = _ends_with_word_char(data[: pos[i]].tobytes())
        return result

    def merge(self, *others: HashtagCounter) -> None:
        """Fold other counters (e.g. of other threads) into this one."""
        for width, tier in self._tiers.items():
            self.pruned |= tier.merge([o._tiers[width] for o in others], self.cap)
        for other in others:
            self._slow.update(other._slow)
            self.pruned |= other.pruned

    def top(self, k: int) -> tuple[list[tuple[str, int]], int, int]:
        """``(the k most used hashtags with their uses, total uses, distinct hashtags)``.

        Exactly as ``HASHTAG`` and ``str.lower`` define them. Keys of ASCII bytes only are
        case-folded and checked in numpy (all their bytes are word characters by construction);
        the others, and the tags read one by one, go through the regex in Python."""
        self.merge()
        tables = []
        others: Counter = Counter()
        for tier in self._tiers.values():
            if not len(tier.keys):
                continue
            keys = np.frombuffer(tier.keys.buffers()[1], dtype=np.uint8)[: len(tier.keys) * tier.width]
            keys = keys.reshape(len(tier.keys), tier.width).copy()
            counts = tier.counts.to_numpy()
            ascii_ = (keys < 0x80).all(axis=1)
            digits_only = (((keys - np.uint8(ord("0"))) < 10) | (keys == 0)).all(axis=1)  # incl. empty
            upper = (keys - np.uint8(ord("A"))) < 26
            keys[upper] |= 0x20
            ok = ascii_ & ~digits_only
            body = keys[ok]
            tables.append(
                pa.table(
                    {
                        "k": pa.FixedSizeBinaryArray.from_buffers(
                            pa.binary(tier.width), len(body), [None, pa.py_buffer(np.ascontiguousarray(body))]
                        ).cast(pa.binary()),
                        "n": pa.array(counts[ok]),
                    }
                )
            )
            rest = np.flatnonzero(~ascii_)
            for key, n in zip(tier.keys.take(rest).to_pylist(), counts[rest].tolist(), strict=True):
                others[key] += n
        others.update(self._slow)
        python: Counter = Counter()
        for body, n in others.items():
            m = HASHTAG.match("#" + body.rstrip(b"\0").decode("utf-8", errors="replace"))
            if m:
                python[m.group(1).lower().encode()] += n
        tables.append(
            pa.table(
                {"k": pa.array(list(python), pa.binary()), "n": pa.array(list(python.values()), pa.int64())}
            )
        )
        table = pa.concat_tables(tables)
        # Padding zeros are not part of a tag: strip them so widths and Python's keys agree.
        table = table.set_column(0, "k", pc.utf8_rtrim(table.column("k").cast(pa.string()), characters="\0"))
        table = table.group_by("k").aggregate([("n", "sum")])
        total = int(pc.sum(table.column("n_sum")).as_py() or 0)
        if not table.num_rows:
            return [], 0, 0
        order = pc.sort_indices(table, [("n_sum", "descending"), ("k", "ascending")])[:k]
        best = table.take(order)
        tags = ["#" + t for t in best.column("k").to_pylist()]
        return list(zip(tags, best.column("n_sum").to_pylist(), strict=True)), total, table.num_rows

    def counts(self) -> Counter:
        """Every hashtag with its uses (tests and small sets; ``top`` is what the stats use)."""
        tags, _, _distinct = self.top(1 << 62)
        return Counter(dict(tags))


# --- authors ----------------------------------------------------------------------------------------


class AuthorCounter:
    """Tweets per ``author_id``, bounded in memory like ``HashtagCounter``.

    Each batch's ids are copied (no view keeps a memory-mapped shard alive); every
    ``AUTHOR_MERGE_EVERY`` ids they are sorted, counted and merged into the running counts, kept
    sorted by id (a sort is cheaper than hashing when nearly every author is new, as in a sample
    stream). Past ``2 * cap`` distinct authors only the ``cap`` most prolific are kept: from then
    on the counts are lower bounds (``pruned``) and ``distinct_seen`` is a lower bound of the
    distinct authors.
    """

    def __init__(self, cap: int = AUTHOR_CAP) -> None:
        self.cap = cap
        self.pruned = False
        self.distinct_seen = 0  # the most distinct authors held at once (exact while not pruned)
        self.ids = np.zeros(0, dtype=np.int64)  # sorted
        self.counts = np.zeros(0, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_len = 0

    def add(self, author_id: pa.Array) -> None:
        if author_id.null_count == len(author_id):
            return
        ids = (author_id.drop_null() if author_id.null_count else author_id).to_numpy()
        self._pending.append(ids.copy())  # a copy: no view keeps a memory-mapped shard alive
        self._pending_len += len(ids)
        if self._pending_len > AUTHOR_MERGE_EVERY:
            self.merge()

    def merge(self, *others: AuthorCounter) -> None:
        """Fold in ``others`` (other threads) and the pending ids."""
        runs = []
        if self._pending:
            ids = np.concatenate(self._pending)
            ids.sort()
            starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
            runs.append((ids[starts], np.diff(np.append(starts, len(ids)))))
            self._pending, self._pending_len = [], 0
        for other in others:
            other.merge()
            runs.append((other.ids, other.counts))
            self.pruned |= other.pruned
            self.distinct_seen = max(self.distinct_seen, other.distinct_seen)
        if not runs:
            return
        for ids, counts in runs:
            self.ids, self.counts = _merge_sorted_counts(self.ids, self.counts, ids, counts)
        self.distinct_seen = max(self.distinct_seen, len(self.ids))
        if len(self.ids) > 2 * self.cap:
            keep = np.sort(np.argpartition(-self.counts, self.cap)[: self.cap])
            self.ids, self.counts = self.ids[keep], self.counts[keep]
            self.pruned = True

    def top(self, k: int) -> list[tuple[int, int]]:
        """The ``k`` most prolific authors with their tweets (ties: smaller id first)."""
        self.merge()
        order = np.lexsort((self.ids, -self.counts))[:k]
        return list(zip(self.ids[order].tolist(), self.counts[order].tolist(), strict=True))

    def sorted_counts(self) -> np.ndarray:
        """Every author's tweets, largest first."""
        self.merge()
        return np.sort(self.counts)[::-1]


def _merge_sorted_counts(
    a_ids: np.ndarray, a_counts: np.ndarray, b_ids: np.ndarray, b_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two (sorted unique ids, counts) as one: the smaller looked up in the larger, no full sort."""
    if len(a_ids) > len(b_ids):
        a_ids, a_counts, b_ids, b_counts = b_ids, b_counts, a_ids, a_counts
    if not len(a_ids):
        return b_ids, b_counts
    at = np.searchsorted(b_ids, a_ids)
    found = at < len(b_ids)
    found[found] = b_ids[at[found]] == a_ids[found]
    counts = b_counts.copy()
    counts[at[found]] += a_counts[found]  # ``at`` is unique where found: a's ids are
    new = ~found
    return np.insert(b_ids, at[new], a_ids[new]), np.insert(counts, at[new], a_counts[new])


def _add_histogram(histogram: np.ndarray, values: np.ndarray) -> np.ndarray:
    """``histogram`` (grown when needed) plus the counts of the non-negative ints ``values``."""
    counts = np.bincount(values)
    if len(counts) > len(histogram):
        grown = np.zeros(max(len(counts), 2 * len(histogram)), dtype=np.int64)
        grown[: len(histogram)] = histogram
        histogram = grown
    histogram[: len(counts)] += counts
    return histogram


def _merge_histograms(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(b) > len(a):
        a, b = b, a
    a[: len(b)] += b
    return a


# --- the accumulator --------------------------------------------------------------------------------


class Accumulator:
    """Running aggregates over record batches; its size does not depend on the number of rows.

    One per worker thread; ``merge`` folds them together at the end.
    """

    def __init__(self, vocab_size: int, *, hashtags: bool = True, domains: bool = False) -> None:
        self.vocab_size = vocab_size
        self.count_hashtags = hashtags
        self.count_domains = domains
        self.lengths = np.zeros(256, dtype=np.int64)  # tweets by token count; grows to the longest
        self.token_counts = np.zeros(max(vocab_size, 1), dtype=np.int64)
        self.out_of_vocab = 0
        self.rows = 0
        self.tokens = 0
        self.values: dict[str, Counter] = {c: Counter() for c in VALUE_COLUMNS}
        self.months: Counter = Counter()  # months since 1970-01 -> tweets
        self.undated = 0
        self.first_ms: int | None = None
        self.last_ms: int | None = None
        self.flags: Counter = Counter()
        self.hashtags = HashtagCounter()
        self.domains: Counter = Counter()
        self.lang_tokens: Counter = Counter()  # detected language -> tokens
        self.lang_scores = np.zeros(SCORE_BINS, dtype=np.int64)
        self.chars = np.zeros(512, dtype=np.int64)  # tweets by characters of text; grows to the longest
        self.authors = AuthorCounter()

    def add(self, batch: pa.RecordBatch) -> tuple[int, int]:
        """Fold one record batch in; returns its (rows, tokens)."""
        n = batch.num_rows
        if n == 0:
            return 0, 0
        offsets, values = list_layout(batch.column("tokens"))
        n_tokens = int(offsets[-1])
        self._add_lengths(np.diff(offsets))
        self._add_tokens(values)
        self.rows += n
        self.tokens += n_tokens
        for column, counter in self.values.items():
            if column != "lang":
                _add_value_counts(counter, batch.column(column))
        self._add_months(batch.column("created_at"))
        for flag in FLAG_COLUMNS:
            self.flags[flag] += batch.column(flag).true_count
        self.flags["author_known"] += n - batch.column("author_id").null_count
        self.authors.add(batch.column("author_id"))
        self._add_lang_tokens(batch.column("lang"), np.diff(offsets))
        self._add_scores(batch.column("lang_score"))
        text = batch.column("text")
        self.chars = _add_histogram(self.chars, np.minimum(pc.utf8_length(text).to_numpy(), CHARS_CAP))
        if self.count_hashtags:
            self.hashtags.add(*string_layout(text))
        if self.count_domains:
            self._add_domains(text)
        return n, n_tokens

    def merge(self, others: list[Accumulator]) -> None:
        for other in others:
            if len(other.lengths) > len(self.lengths):
                self.lengths, other.lengths = other.lengths, self.lengths
            self.lengths[: len(other.lengths)] += other.lengths
            self.token_counts += other.token_counts
            self.out_of_vocab += other.out_of_vocab
            self.rows += other.rows
            self.tokens += other.tokens
            for column, counter in self.values.items():
                counter.update(other.values[column])
            self.months.update(other.months)
            self.undated += other.undated
            firsts = [m for m in (self.first_ms, other.first_ms) if m is not None]
            lasts = [m for m in (self.last_ms, other.last_ms) if m is not None]
            self.first_ms, self.last_ms = min(firsts, default=None), max(lasts, default=None)
            self.flags.update(other.flags)
            self.domains.update(other.domains)
            self.lang_tokens.update(other.lang_tokens)
            self.lang_scores += other.lang_scores
            self.chars = _merge_histograms(self.chars, other.chars)
        self.hashtags.merge(*(o.hashtags for o in others))
        self.authors.merge(*(o.authors for o in others))

    def _add_lengths(self, lengths: np.ndarray) -> None:
        self.lengths = _add_histogram(self.lengths, lengths)

    def _add_lang_tokens(self, lang: pa.Array, lengths: np.ndarray) -> None:
        """Tweets and tokens per detected language, from one dictionary encoding."""
        if lang.null_count:  # not in a valid shard (lang is not nullable): count, no tokens
            _add_value_counts(self.values["lang"], lang)
            return
        encoded = pc.dictionary_encode(lang)
        indices, keys = encoded.indices.to_numpy(), encoded.dictionary.to_pylist()
        tweets = np.bincount(indices, minlength=len(keys))
        tokens = np.bincount(indices, weights=lengths, minlength=len(keys))
        for key, n, t in zip(keys, tweets.tolist(), tokens.tolist(), strict=True):
            self.values["lang"][key] += n
            self.lang_tokens[key] += int(t)

    def _add_scores(self, scores: pa.Array) -> None:
        # floor(score * 100) of the float32 score taken exactly (as float64), 1.0 in the last bin;
        # a NaN (never written) casts to a huge negative: bin 0
        values = scores.to_numpy(zero_copy_only=False).astype(np.float64)
        values *= SCORE_BINS
        with np.errstate(invalid="ignore"):
            bins = values.astype(np.int64)
        np.clip(bins, 0, SCORE_BINS - 1, out=bins)
        self.lang_scores += np.bincount(bins, minlength=SCORE_BINS)

    def _add_tokens(self, values: np.ndarray) -> None:
        if not len(values):
            return
        if int(values.view(np.uint32).max()) >= self.vocab_size:  # negative ids are huge as uint32
            # A corrupt id must not make bincount allocate gigabytes: count it and leave it out.
            bad = (values < 0) | (values >= self.vocab_size)
            self.out_of_vocab += int(bad.sum())
            values = values[~bad]
        self.token_counts += np.bincount(values, minlength=len(self.token_counts))

    def _add_months(self, created: pa.Array) -> None:
        if created.null_count:
            self.undated += created.null_count
            created = created.drop_null()
        if not len(created):
            return
        ms = created.cast(pa.int64()).to_numpy()
        lo, hi = int(ms.min()), int(ms.max())
        self.first_ms = lo if self.first_ms is None else min(self.first_ms, lo)
        self.last_ms = hi if self.last_ms is None else max(self.last_ms, hi)
        # Days first (an integer division), months only for the few distinct days: cheaper than
        # converting every timestamp to a calendar month.
        days = ms // 86_400_000
        first = lo // 86_400_000
        if hi // 86_400_000 - first > 1_000_000:  # absurd dates: do not bincount millennia
            day, n = np.unique(days, return_counts=True)
        else:
            n = np.bincount(days - first)
            day = np.flatnonzero(n)
            n = n[day]
            day += first
        month = day.astype("datetime64[D]").astype("datetime64[M]").astype(np.int64)
        keys, inverse = np.unique(month, return_inverse=True)
        sums = np.bincount(inverse, weights=n).astype(np.int64)
        self.months.update(dict(zip(keys.tolist(), sums.tolist(), strict=True)))

    def _add_domains(self, text: pa.Array) -> None:
        with_links = pc.filter(text, pc.match_substring(text, "://"))
        for s in with_links.to_pylist():
            for host in _URL_HOST_RE.findall(s):
                self.domains[host.lower().removeprefix("www.")] += 1


_URL_HOST_RE = re.compile(r"https?://([^/\s?#:]+)", re.IGNORECASE)


def _add_value_counts(counter: Counter, array: pa.Array) -> None:
    counts = pc.value_counts(array)
    keys = counts.field("values").to_pylist()
    counter.update(
        dict(
            zip(["(none)" if k is None else k for k in keys], counts.field("counts").to_pylist(), strict=True)
        )
    )


def default_workers() -> int:
    """Threads for ``compute_stats``: numpy and Arrow release the GIL, so batches run in parallel."""
    return max(1, min(4, os.cpu_count() or 1))


def scan(
    shard_dir: str, manifest: Manifest, make: Any, workers: int
) -> tuple[Accumulator, list[dict[str, Any]]]:
    """Every batch of every shard through accumulators: one per thread, merged at the end.

    Shards are opened one at a time; at most ``2 * workers`` batches are in flight, so memory does
    not depend on the number or size of the shards beyond one open mapping.
    """
    accumulators: list[Accumulator] = []
    local = threading.local()
    lock = threading.Lock()

    def work(batch: pa.RecordBatch) -> tuple[int, int]:
        acc = getattr(local, "acc", None)
        if acc is None:
            acc = local.acc = make()
            with lock:
                accumulators.append(acc)
        return acc.add(batch)

    per_shard = []
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="stats") if workers > 1 else None
    try:
        for entry in manifest.shards:
            path = FileSystems.join(shard_dir, entry.file)
            rows = tokens = 0
            with open_shard(path) as reader:
                try:
                    check_shard_schema(reader.schema)
                except ValueError as exc:
                    raise ValueError(f"{path}: {exc} (run `tweetmill verify {shard_dir}`)") from exc
                if pool is None:
                    results: Iterator[tuple[int, int]] = (
                        work(reader.get_batch(i)) for i in range(reader.num_record_batches)
                    )
                else:
                    results = _bounded_map(
                        pool,
                        work,
                        (reader.get_batch(i) for i in range(reader.num_record_batches)),
                        2 * workers,
                    )
                for r, t in results:
                    rows, tokens = rows + r, tokens + t
            per_shard.append({"file": entry.file, "rows": rows, "tokens": tokens, "bytes": entry.bytes})
            log.info("%s: %d rows, %d tokens", entry.file, rows, tokens)
    finally:
        if pool is not None:
            pool.shutdown(wait=True)
    if not accumulators:
        accumulators.append(make())
    accumulators[0].merge(accumulators[1:])
    return accumulators[0], per_shard


def _bounded_map(pool: ThreadPoolExecutor, fn: Any, items: Iterator[Any], in_flight: int) -> Iterator[Any]:
    """``pool.map`` that pulls at most ``in_flight`` items ahead (results in order)."""
    pending: deque = deque()
    for item in items:
        pending.append(pool.submit(fn, item))
        if len(pending) >= in_flight:
            yield pending.popleft().result()
    while pending:
        yield pending.popleft().result()


# --- the audit files: what the stages removed --------------------------------------------------------

try:
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - orjson is a dependency; json is the fallback
    from json import loads as _json_loads


class _Id:
    """Just what ``sample_key`` reads of a tweet."""

    __slots__ = ("id",)

    def __init__(self, tweet_id: int) -> None:
        self.id = tweet_id


def _jsonl(path: str) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file on any Beam filesystem, streamed line by line."""
    with open_file(path) as f:
        for line in f:
            if line.strip():
                yield _json_loads(line)


@dataclass
class Removed:
    """What the stages after parsing removed, as the run's audit files tell it (``read_removed``)."""

    source: str | None = None  # "dropped/" (--write-dropped), DROPPED_SAMPLE_NAME, or None
    # (stage, reason) -> at most ``per_reason`` dropped tweets: those with the smallest ``sample_key``
    # (the audit sample's own order: dropped.sample.jsonl and dropped/ give the same ones), in order
    examples: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # (source_file, stage, reason) -> dropped tweets: only from dropped/ (every one), else None
    by_file: Counter | None = None
    near_pairs: list[dict[str, Any]] = field(default_factory=list)  # the first of the near-dup sample
    near_sampled: int = 0  # pairs in near_duplicates.sample.jsonl


def read_removed(shard_dir: str, manifest: Manifest, per_reason: int, pairs: int) -> Removed:
    """Examples per drop reason and per-file drop counts from ``dropped/`` (every dropped tweet,
    ``--write-dropped``) or else ``dropped.sample.jsonl``; the first ``pairs`` near-duplicate pairs."""
    ranked: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    by_file: Counter | None = None
    source = None
    if manifest.dropped_files:
        source, by_file = "dropped/", Counter()
        paths = [FileSystems.join(shard_dir, *name.split("/")) for name in manifest.dropped_files]
    elif DROPPED_SAMPLE_NAME in manifest.side_files:
        source, paths = DROPPED_SAMPLE_NAME, [FileSystems.join(shard_dir, DROPPED_SAMPLE_NAME)]
    else:
        paths = []
    try:
        for path in paths:
            for record in _jsonl(path):
                key = (record["stage"], record["reason"])
                if by_file is not None:
                    by_file[(record["source_file"], *key)] += 1
                best = ranked.setdefault(key, [])
                best.append((sample_key(_Id(record["id"])), record))
                if len(best) > 4 * per_reason:  # keep the list short: the smallest ``per_reason`` survive
                    best.sort(key=lambda kr: kr[0])
                    del best[per_reason:]
    except (OSError, ValueError, KeyError) as exc:  # a file listed but gone or broken: no partial figures
        log.warning("dropped tweets not read (%s): %s", source, exc)
        source, by_file, ranked = None, None, {}
    examples = {k: [r for _, r in sorted(v, key=lambda kr: kr[0])[:per_reason]] for k, v in ranked.items()}
    near_pairs: list[dict[str, Any]] = []
    near_sampled = 0
    if NEAR_DUP_SAMPLE_NAME in manifest.side_files:
        try:
            for record in _jsonl(FileSystems.join(shard_dir, NEAR_DUP_SAMPLE_NAME)):
                near_sampled += 1
                if len(near_pairs) < pairs:
                    near_pairs.append(record)
        except (OSError, ValueError) as exc:
            log.warning("%s not read: %s", NEAR_DUP_SAMPLE_NAME, exc)
            near_pairs, near_sampled = [], 0
    return Removed(source, examples, by_file, near_pairs, near_sampled)

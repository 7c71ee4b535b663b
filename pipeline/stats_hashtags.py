"""Case-folded hashtag counts over whole record batches of UTF-8 text, bounded in memory.

``HashtagCounter`` finds exactly what ``twitter_text.HASHTAG`` finds, vectorised over a batch's bytes
(``stats_scan.string_layout``); counters of several threads merge.
"""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from numpy.lib.stride_tricks import sliding_window_view
from tweetmill.transforms.twitter_text import HASHTAG

HASHTAG_CAP = 100_000  # distinct hashtags kept; beyond 2x this the rarest are pruned (counts approximate)

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

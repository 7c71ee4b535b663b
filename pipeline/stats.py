"""``tweetmill stats``: what is in a shard directory, computed by streaming over memory-mapped shards.

Every figure is an aggregate updated record batch by record batch: counters keyed by language, file,
month or hashtag, a histogram of tweet lengths, a ``np.bincount`` over the vocabulary. Memory is
bounded by the vocabulary, the longest tweet and the number of distinct keys (hashtags are capped),
never by the number of rows. Local shards are memory-mapped and closed one at a time; shards on other
Beam filesystems (``gs://``...) are read through ``FileSystems`` with random access, batch by batch.

The manifest supplies what the shards cannot: the run's funnel (every drop reason), the per-file
input records and the near-dedup clusters; the shards supply everything about the kept tweets.
"""

from __future__ import annotations

import hashlib
import logging
import math
import os
import re
import threading
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from numpy.lib.stride_tricks import sliding_window_view
from rich.columns import Columns
from rich.console import Console
from rich.table import Table
from tweetmill.pipeline.terminal import safe
from tweetmill.schemas import records as R
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest
from tweetmill.schemas.shard import check_shard_schema
from tweetmill.transforms.write import TOKENIZER_NAME  # the run's tokenizer, copied beside the shards

log = logging.getLogger(__name__)

TOP = 15  # rows of the "top" lists kept in the stats
HASHTAG_CAP = 100_000  # distinct hashtags kept; beyond 2x this the rarest are pruned (counts approximate)
PERCENTILES = (10, 50, 90, 99)

# The funnel in pipeline order: which stage drops for which reason (schemas/records.py).
FUNNEL_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
    (
        "parse",
        (
            R.DROP_DELETE_NOTICE,
            R.DROP_STREAM_NOTICE,
            R.DROP_COMPLIANCE_EVENT,
            R.DROP_API_ERROR,
            R.DROP_NO_TEXT,
            R.DROP_DELETED_BY_AUTHOR,
        ),
    ),
    ("filter", (R.DROP_RETWEET, R.DROP_EMPTY, R.DROP_TOO_SHORT)),
    ("exact dedup", (R.DROP_DUPLICATE_ID, R.DROP_EXACT_DUPLICATE)),
    ("near dedup", (R.DROP_NEAR_DUPLICATE,)),
    ("language", (R.DROP_LANGUAGE,)),
    ("tokenize", (R.DROP_EMPTY_TOKENS,)),
)
PLACEHOLDERS = ("<URL>", "@user", "<EMAIL>", "<PHONE>")  # the clean stage's defaults


# --- reading ----------------------------------------------------------------------------------------


def is_local(path: str) -> bool:
    """Paths without a scheme are local files, the only ones that can be memory-mapped."""
    return FileSystems.get_scheme(path) is None


def read_bytes(path: str) -> bytes:
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        return f.read()


def read_manifest(shard_dir: str) -> Manifest:
    path = FileSystems.join(shard_dir, MANIFEST_NAME)
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{shard_dir}: no {MANIFEST_NAME} (not a finished tweetmill run)")
    return Manifest.from_json(read_bytes(path).decode("utf-8"))


@contextmanager
def open_shard(path: str) -> Iterator[pa.ipc.RecordBatchFileReader]:
    """A reader over one shard, closed (and unmapped) on exit so memory does not grow with shards.

    Local files are memory-mapped (zero-copy); other Beam paths are wrapped as a seekable Arrow file,
    so only the footer and the batches actually read are fetched.
    """
    if is_local(path):
        source: pa.NativeFile = pa.memory_map(path, "r")
    else:
        source = pa.PythonFile(
            FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED), mode="r"
        )
    try:
        yield pa.ipc.open_file(source)
    finally:
        source.close()


def list_layout(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, values)`` of a list<int32> array, zero-copy, honouring slices.

    ``array.values`` is the whole child array even when ``array`` is a slice; ``array.offsets`` is
    sliced, so the values actually referenced are ``values[offsets[0]:offsets[-1]]``. The returned
    offsets index into the returned values (they start at 0).
    """
    offsets = array.offsets.to_numpy()
    values = array.values.to_numpy(zero_copy_only=True)
    start, end = int(offsets[0]), int(offsets[-1])
    return offsets - start, values[start:end]


def string_layout(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """``(offsets, utf8 bytes)`` of a string array, zero-copy, honouring slices (offsets start at 0)."""
    _, offsets_buf, data_buf = array.buffers()
    offsets = np.frombuffer(offsets_buf, dtype=np.int32, count=len(array) + 1, offset=array.offset * 4)
    start, end = int(offsets[0]), int(offsets[-1])
    data = np.frombuffer(data_buf, dtype=np.uint8) if data_buf is not None else np.zeros(0, np.uint8)
    return offsets - start, data[start:end]


def load_shard_tokenizer(shard_dir: str, manifest: Manifest) -> tuple[Any, str]:
    """The run's tokenizer (the ``tokenizer.json`` copy beside the shards, else the bundled one it
    names), or ``(None, why)`` when none with the manifest's sha256 is available: decoding with
    another tokenizer would show wrong text."""
    from tokenizers import Tokenizer

    candidates = [FileSystems.join(shard_dir, TOKENIZER_NAME)]
    if manifest.tokenizer.source.startswith("bundled:"):
        candidates.append(manifest.tokenizer.source)
    why = f"no {TOKENIZER_NAME} in {shard_dir}"
    for source in candidates:
        try:
            if source.startswith("bundled:"):
                from tweetmill.transforms.tokenize import read_tokenizer_bytes

                raw = read_tokenizer_bytes(source)
            elif FileSystems.exists(source):
                raw = read_bytes(source)
            else:
                continue
        except (OSError, FileNotFoundError) as exc:
            why = f"{source}: {exc}"
            continue
        if hashlib.sha256(raw).hexdigest() != manifest.tokenizer.sha256:
            why = f"{source} is not the run's tokenizer (sha256 differs from the manifest's)"
            continue
        return Tokenizer.from_str(raw.decode("utf-8")), source
    return None, why


# --- hashtags ---------------------------------------------------------------------------------------

# A hashtag is '#' + word characters (Python's \w) with at least one non-digit, not preceded by a word
# character or '&' (Twitter's rule, roughly): exactly what ``HASHTAG_RE.findall`` finds, case-folded.
# The scan runs on the UTF-8 bytes of a whole batch, vectorised: numpy finds every '#', reads a
# window of bytes after it and cuts it at the first ASCII non-word byte (non-ASCII bytes stay in);
# Arrow counts the windows as fixed-size binary keys. A 16-byte window holds most tags, longer ones
# get a 64-byte window. Python applies the exact rule once per *distinct* key, when the figures are
# read, and handles the rare cases one by one (a tag longer than 64 bytes, a '#' near the end of the
# buffer or after a non-ASCII character).
HASHTAG_RE = re.compile(r"(?<![\w&])#(\w*[^\W\d]\w*)")
_TAG_BODY_RE = re.compile(r"\w*[^\W\d]\w*")
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

        Exactly as ``HASHTAG_RE`` and ``str.lower`` define them. Keys of ASCII bytes only are
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
            m = _TAG_BODY_RE.match(body.rstrip(b"\0").decode("utf-8", errors="replace"))
            if m:
                python[m.group().lower().encode()] += n
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


# --- the accumulator --------------------------------------------------------------------------------


class _Accumulator:
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
            _add_value_counts(counter, batch.column(column))
        self._add_months(batch.column("created_at"))
        for flag in FLAG_COLUMNS:
            self.flags[flag] += batch.column(flag).true_count
        self.flags["author_known"] += n - batch.column("author_id").null_count
        text = batch.column("text")
        if self.count_hashtags:
            self.hashtags.add(*string_layout(text))
        if self.count_domains:
            self._add_domains(text)
        return n, n_tokens

    def merge(self, others: list[_Accumulator]) -> None:
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
        self.hashtags.merge(*(o.hashtags for o in others))

    def _add_lengths(self, lengths: np.ndarray) -> None:
        counts = np.bincount(lengths)
        if len(counts) > len(self.lengths):
            grown = np.zeros(max(len(counts), 2 * len(self.lengths)), dtype=np.int64)
            grown[: len(self.lengths)] = self.lengths
            self.lengths = grown
        self.lengths[: len(counts)] += counts

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


VALUE_COLUMNS = ("lang", "twitter_lang", "source_format", "source_file")
FLAG_COLUMNS = ("is_reply", "is_quote", "is_retweet", "id_derived")
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


def _scan(
    shard_dir: str, manifest: Manifest, make: Any, workers: int
) -> tuple[_Accumulator, list[dict[str, Any]]]:
    """Every batch of every shard through accumulators: one per thread, merged at the end.

    Shards are opened one at a time; at most ``2 * workers`` batches are in flight, so memory does
    not depend on the number or size of the shards beyond one open mapping.
    """
    accumulators: list[_Accumulator] = []
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


# --- the figures ------------------------------------------------------------------------------------


def compute_stats(
    shard_dir: str, *, top: int = TOP, hashtags: bool = True, workers: int | None = None
) -> dict[str, Any]:
    """Every figure of ``tweetmill stats`` as a JSON-ready dict (see README, "Inspecting a run")."""
    manifest = read_manifest(shard_dir)
    urls_mode = manifest.config.get("clean", {}).get("urls", "placeholder")
    vocab_size = manifest.tokenizer.vocab_size

    def make() -> _Accumulator:
        return _Accumulator(vocab_size, hashtags=hashtags, domains=urls_mode == "keep")

    acc, per_shard = _scan(shard_dir, manifest, make, workers or default_workers())
    tokenizer, tokenizer_source = load_shard_tokenizer(shard_dir, manifest)
    if tokenizer is None:
        log.warning("tokens not decoded: %s", tokenizer_source)
    rows = acc.rows
    stats: dict[str, Any] = {
        "shard_dir": shard_dir,
        "run_fingerprint": manifest.run_fingerprint,
        "created_by": manifest.created_by,
        "shards": len(manifest.shards),
        "rows": rows,
        "tokens": acc.tokens,
        "bytes": sum(s.bytes for s in manifest.shards),
        "matches_manifest": rows == manifest.total_rows and acc.tokens == manifest.total_tokens,
        "per_shard": per_shard,
        "tokens_per_tweet": length_summary(acc.lengths),
        "languages": _most_common(acc.values["lang"]),
        "twitter_languages": _most_common(acc.values["twitter_lang"]),
        "source_formats": _most_common(acc.values["source_format"]),
        "inputs": _inputs(manifest, acc.values["source_file"]),
        "tweets_per_month": {_month_name(m): n for m, n in sorted(acc.months.items())},
        "time": {
            "first": _iso(acc.first_ms),
            "last": _iso(acc.last_ms),
            "undated": acc.undated,
            "months": len(acc.months),
        },
        "flags": {k: acc.flags.get(k, 0) for k in (*FLAG_COLUMNS, "author_known")},
        "funnel": funnel(manifest),
        "dedup": dedup_summary(manifest),
        "hashtags": _hashtags(acc.hashtags, hashtags, top),
        "domains": _domains(urls_mode, acc.domains, top),
        "vocabulary": vocabulary_summary(acc, manifest, tokenizer, top),
        "tokenizer": {
            "vocab_size": manifest.tokenizer.vocab_size,
            "sha256": manifest.tokenizer.sha256,
            "eos_id": manifest.tokenizer.eos_id,
            "eos_token": manifest.tokenizer.eos_token,
            "source": manifest.tokenizer.source,
            "decoded_with": tokenizer_source if tokenizer is not None else None,
            "not_decoded_because": None if tokenizer is not None else tokenizer_source,
        },
        "counts": {
            "read": manifest.counts.read,
            "kept": manifest.counts.kept,
            "dropped": manifest.counts.dropped,
            "errors": manifest.counts.errors,
            "balanced": manifest.counts.balanced,
        },
    }
    return stats


def _most_common(counter: Counter) -> dict[str, int]:
    return dict(sorted(counter.items(), key=lambda kv: (-kv[1], str(kv[0]))))


def _month_name(month: int) -> str:
    return str(np.datetime64(month, "M"))


def _iso(ms: int | None) -> str | None:
    if ms is None:
        return None
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).isoformat().replace("+00:00", "Z")


def length_summary(histogram: np.ndarray) -> dict[str, Any]:
    """Mean, nearest-rank percentiles and the non-zero histogram of tokens per tweet.

    The p-th percentile is the smallest length ``L`` with at least ``ceil(p * n / 100)`` tweets of
    length <= ``L`` (integer arithmetic: no float rounding at the boundaries).
    """
    total = int(histogram.sum())
    keys = ["mean", "std", "min", *(f"p{p}" for p in PERCENTILES), "max"]
    if total == 0:
        return dict.fromkeys(keys, 0) | {"histogram": []}
    values = np.arange(len(histogram))
    cdf = np.cumsum(histogram)
    mean = float((values * histogram).sum() / total)
    var = float((histogram * (values - mean) ** 2).sum() / total)
    nonzero = np.flatnonzero(histogram)
    summary: dict[str, Any] = {
        "mean": round(mean, 3),
        "std": round(math.sqrt(var), 3),
        "min": int(nonzero[0]),
    }
    for p in PERCENTILES:
        rank = max(1, -(-p * total // 100))
        summary[f"p{p}"] = int(np.searchsorted(cdf, rank, side="left"))
    summary["max"] = int(nonzero[-1])
    summary["histogram"] = [[int(i), int(histogram[i])] for i in nonzero]
    return summary


def funnel(manifest: Manifest) -> dict[str, Any]:
    """read → dead letters → each drop reason in pipeline order → kept, with what remains after each."""
    counts = manifest.counts
    steps: list[dict[str, Any]] = []
    remaining = counts.read

    def step(stage: str, reason: str, n: int) -> None:
        nonlocal remaining
        remaining -= n
        steps.append({"stage": stage, "reason": reason, "count": n, "remaining": remaining})

    if counts.errors:
        step("parse", "errors (dead letters)", counts.errors)
    known = set()
    for stage, reasons in FUNNEL_STAGES:
        for reason in reasons:
            known.add(reason)
            if counts.dropped.get(reason):
                step(stage, reason, counts.dropped[reason])
    for reason, n in sorted(counts.dropped.items()):
        if reason not in known and n:
            step("other", reason, n)
    return {
        "read": counts.read,
        "steps": steps,
        "dropped": sum(counts.dropped.values()),
        "errors": counts.errors,
        "kept": counts.kept,
        "rows_in_shards": manifest.total_rows,
        "balanced": counts.balanced and remaining == counts.kept == manifest.total_rows,
    }


def dedup_summary(manifest: Manifest) -> dict[str, Any]:
    dropped = manifest.counts.dropped
    near = manifest.stages.get("near_dedup") if isinstance(manifest.stages, dict) else None
    return {
        "duplicate_id": dropped.get(R.DROP_DUPLICATE_ID, 0),
        "exact_duplicate": dropped.get(R.DROP_EXACT_DUPLICATE, 0),
        "near_duplicate": dropped.get(R.DROP_NEAR_DUPLICATE, 0),
        "near_dedup": near if isinstance(near, dict) else None,
    }


def _inputs(manifest: Manifest, kept_by_file: Counter) -> list[dict[str, Any]]:
    """The manifest's per-file records with the tweets each file still has in the shards."""
    files = []
    for item in manifest.inputs:
        files.append(
            {
                "file": item.get("file"),
                "format": item.get("format") or ("skipped" if item.get("skipped") else None),
                "records": item.get("records", 0),
                "tweets": item.get("tweets", 0),
                "dropped": sum((item.get("dropped") or {}).values()),
                "errors": item.get("errors", 0),
                "kept": kept_by_file.get(item.get("file"), 0),
            }
        )
    listed = {f["file"] for f in files}
    for name, n in sorted(kept_by_file.items()):
        if name not in listed:  # shards name a file the manifest does not list: show it anyway
            files.append(
                {
                    "file": name,
                    "format": None,
                    "records": 0,
                    "tweets": 0,
                    "dropped": 0,
                    "errors": 0,
                    "kept": n,
                }
            )
    return files


def _hashtags(counter: HashtagCounter, counted: bool, top: int) -> dict[str, Any]:
    best, total, distinct = counter.top(top) if counted else ([], 0, 0)
    return {
        "counted": counted,
        "rule": "'#' + word characters, at least one non-digit, not after a word character or '&'; "
        "case-folded",
        "total": total,
        "distinct": distinct,
        "approximate": counter.pruned,
        "top": [[t, n] for t, n in best],
    }


def _domains(urls_mode: str, counts: Counter, top: int) -> dict[str, Any]:
    if urls_mode != "keep":
        return {
            "available": False,
            "why": f"URLs were {'replaced by <URL>' if urls_mode == 'placeholder' else 'removed'} by the "
            f"clean stage (--urls {urls_mode}); run with --urls keep to count domains",
            "total": 0,
            "distinct": 0,
            "top": [],
        }
    return {
        "available": True,
        "why": "",
        "total": sum(counts.values()),
        "distinct": len(counts),
        "top": [[d, n] for d, n in counts.most_common(top)],
    }


def visible(token: str) -> str:
    """A decoded token with its whitespace made visible (a leading space matters in BPE)."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥").replace("\r", "␍")


def vocabulary_summary(acc: _Accumulator, manifest: Manifest, tokenizer: Any, top: int) -> dict[str, Any]:
    counts = acc.token_counts
    total = int(counts.sum())
    used = int(np.count_nonzero(counts))
    order = np.argsort(-counts, kind="stable")
    cumulative = np.cumsum(counts[order])

    def covering(share: float) -> int:
        return int(np.searchsorted(cumulative, share * total, side="left")) + 1 if total else 0

    def text_of(token_id: int) -> str | None:
        if tokenizer is None:
            return None
        return tokenizer.decode([token_id], skip_special_tokens=False)

    top_tokens = [
        {
            "id": int(i),
            "text": text_of(int(i)),
            "count": int(counts[i]),
            "share": round(counts[i] / total, 5) if total else 0.0,
        }
        for i in order[:top]
        if counts[i]
    ]
    placeholders = {}
    if tokenizer is not None:
        for p in PLACEHOLDERS:
            pid = tokenizer.token_to_id(p)
            if pid is not None and pid < len(counts):
                placeholders[p] = int(counts[pid])
    return {
        "size": manifest.tokenizer.vocab_size,
        "used": used,
        "share_used": round(used / max(manifest.tokenizer.vocab_size, 1), 5),
        "tokens_for_50pct": covering(0.5),
        "tokens_for_90pct": covering(0.9),
        "out_of_vocab": acc.out_of_vocab,
        "eos_count": int(counts[manifest.tokenizer.eos_id])
        if 0 <= manifest.tokenizer.eos_id < len(counts)
        else 0,
        "top_tokens": top_tokens,
        "placeholders": placeholders,
        # share of all tokens that the k most frequent make, at ~60 log-spaced k: a plot's worth
        "coverage": [
            [int(k), round(float(cumulative[k - 1]) / total, 5)]
            for k in np.unique(np.geomspace(1, max(used, 1), 60).round().astype(np.int64))
        ]
        if total
        else [],
    }


# --- the terminal -----------------------------------------------------------------------------------


def _n(value: int) -> str:
    return f"{value:,}"


def _pct(n: int, total: int) -> str:
    return f"{100 * n / total:.1f} %" if total else "-"


def _size(n_bytes: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n_bytes >= scale:
            return f"{n_bytes / scale:,.2f} {unit}"
    return f"{n_bytes} B"


def _bar(n: int, largest: int, width: int = 10) -> str:
    """A bar scaled to the largest value of its table, in eighths of a cell."""
    if not largest:
        return ""
    eighths = round(n / largest * width * 8)
    return "█" * (eighths // 8) + ("", "▏", "▎", "▍", "▌", "▋", "▊", "▉")[eighths % 8]


def _counts_table(
    title: str, counts: dict[str, int], total: int, top: int, key: str = "value", unit: str = "tweets"
) -> Table:
    table = Table(title=title, title_justify="left")
    table.add_column(key, overflow="fold")
    table.add_column(unit, justify="right")
    table.add_column("share", justify="right")
    table.add_column("", min_width=10, no_wrap=True)
    items = list(counts.items())
    largest = max((n for _, n in items[:top]), default=0)
    for value, n in items[:top]:
        table.add_row(safe(value), _n(n), _pct(n, total), _bar(n, largest))
    rest = sum(n for _, n in items[top:])
    if rest:
        table.add_row(f"({len(items) - top} more)", _n(rest), _pct(rest, total), "")
    return table


def _common_dir(paths: list[str]) -> str:
    """The directory all ``paths`` share (with its trailing slash), or ''."""
    if len(paths) < 2:
        return paths[0].rpartition("/")[0] + "/" if paths and "/" in paths[0] else ""
    parts = [p.split("/")[:-1] for p in paths]
    common: list[str] = []
    for names in zip(*parts, strict=False):
        if len(set(names)) > 1:
            break
        common.append(names[0])
    return "/".join(common) + "/" if common else ""


def print_stats(console: Console, stats: dict[str, Any], top: int = 10) -> None:
    """The figures of ``compute_stats`` as aligned rich tables, units in every cell."""
    rows, tokens = stats["rows"], stats["tokens"]
    tpt = stats["tokens_per_tweet"]
    overview = Table(title=f"Shards in {safe(stats['shard_dir'])}", title_justify="left", show_header=False)
    overview.add_column("figure")
    overview.add_column("value", justify="right")
    per_shard_rows = [s["rows"] for s in stats["per_shard"]] or [0]
    months = list(stats["tweets_per_month"])
    flags = stats["flags"]
    for label, value in (
        (
            "shards",
            f"{stats['shards']:,}"
            + (
                f" ({min(per_shard_rows):,} – {max(per_shard_rows):,} tweets each)"
                if stats["shards"] > 1
                else ""
            ),
        ),
        ("tweets", f"{rows:,}"),
        ("tokens", f"{tokens:,}"),
        (
            "size on disk",
            _size(stats["bytes"]) + (f" ({stats['bytes'] / tokens:.1f} B/token)" if tokens else ""),
        ),
        ("tokens/tweet", f"mean {tpt['mean']:.1f}, sd {tpt['std']:.1f}, min {tpt['min']}, max {tpt['max']}"),
        ("tokens/tweet p10 p50 p90 p99", f"{tpt['p10']} · {tpt['p50']} · {tpt['p90']} · {tpt['p99']}"),
        ("time span", f"{months[0]} … {months[-1]} ({len(months)} months with tweets)" if months else "-"),
        ("tweets without date", f"{stats['time']['undated']:,} ({_pct(stats['time']['undated'], rows)})"),
        ("replies / quotes", f"{_pct(flags['is_reply'], rows)} / {_pct(flags['is_quote'], rows)}"),
        ("shards agree with manifest", "yes" if stats["matches_manifest"] else "[red]NO[/red]"),
    ):
        overview.add_row(label, value)
    console.print(overview)

    console.print(funnel_table(stats["funnel"]))
    console.print(balance_line(stats["funnel"]))
    dedup = stats["dedup"]
    near = dedup["near_dedup"]
    line = (
        f"dedup: {dedup['duplicate_id']:,} repeated ids, {dedup['exact_duplicate']:,} exact duplicates, "
        f"{dedup['near_duplicate']:,} near duplicates removed"
    )
    if near:
        line += (
            f"; near-duplicate clusters: {near.get('clusters', 0):,}, the largest "
            f"{near.get('largest_cluster', 0):,} tweets (threshold {safe(near.get('threshold', '?'))})"
        )
    elif not dedup["near_duplicate"]:
        line += " (no near-dedup stage in this run)"
    console.print(line + "\n")

    console.print(
        Columns(
            [
                _counts_table("Languages (detected)", stats["languages"], rows, top, "lang"),
                _counts_table("Languages (Twitter's tag)", stats["twitter_languages"], rows, top, "lang"),
                _counts_table("Source formats", stats["source_formats"], rows, top, "format"),
            ]
        )
    )

    shown = stats["inputs"][: max(top, 20)]
    prefix = _common_dir([str(f["file"]) for f in shown])
    files = Table(title=f"Input files{f' (in {safe(prefix)})' if prefix else ''}", title_justify="left")
    for col in ("file", "format", "records", "tweets", "dropped", "errors", "kept"):
        files.add_column(col, justify="left" if col in ("file", "format") else "right")
    files.columns[0].overflow = "fold"
    for f in shown:
        files.add_row(
            safe(str(f["file"])[len(prefix) :]),
            safe(f["format"] or "?"),
            *(_n(f[k]) for k in ("records", "tweets", "dropped", "errors", "kept")),
        )
    if len(stats["inputs"]) > len(shown):
        files.add_row(f"({len(stats['inputs']) - len(shown)} more files)", "", "", "", "", "", "")
    console.print(files)

    years: Counter = Counter()
    for month, n in stats["tweets_per_month"].items():
        years[month[:4]] += n
    if stats["time"]["undated"]:
        years["(no date)"] = stats["time"]["undated"]
    side = [_counts_table("Tweets per year", dict(years), rows, 100, "year")]
    tags = stats["hashtags"]
    if tags["counted"]:
        title = f"Hashtags ({tags['total']:,} uses, {tags['distinct']:,} distinct"
        title += ", approximate)" if tags["approximate"] else ")"
        side.append(_counts_table(title, dict(tags["top"][:top]), tags["total"], top, "hashtag", "uses"))
    domains = stats["domains"]
    if domains["available"]:
        side.append(
            _counts_table(
                "Link domains", dict(domains["top"][:top]), domains["total"], top, "domain", "links"
            )
        )
    console.print(Columns(side))
    if not domains["available"]:
        console.print(f"link domains: not recoverable: {safe(domains['why'])}")

    vocab = stats["vocabulary"]
    line = (
        f"vocabulary: {vocab['used']:,} of {vocab['size']:,} tokens used "
        f"({100 * vocab['share_used']:.1f} %); the {vocab['tokens_for_50pct']:,} most frequent make 50 % "
        f"and {vocab['tokens_for_90pct']:,} make 90 % of all tokens"
    )
    if vocab["out_of_vocab"]:
        line += f"; [red]{vocab['out_of_vocab']:,} ids outside the vocabulary[/red]"
    console.print(line)
    toks = Table(title="Top tokens (␣ space, ⏎ newline)", title_justify="left")
    toks.add_column("id", justify="right")
    toks.add_column("token")
    toks.add_column("count", justify="right")
    toks.add_column("share", justify="right")
    for t in vocab["top_tokens"][:top]:
        text = "?" if t["text"] is None else visible(t["text"])
        toks.add_row(str(t["id"]), safe(text), _n(t["count"]), f"{100 * t['share']:.2f} %")
    console.print(toks)
    if stats["tokenizer"]["decoded_with"] is None:
        console.print(f"tokens not decoded: {safe(stats['tokenizer']['not_decoded_because'])}")


def funnel_table(funnel_stats: dict[str, Any]) -> Table:
    read = funnel_stats["read"]
    table = Table(title="Funnel: where every input record went", title_justify="left")
    table.add_column("stage")
    table.add_column("records")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    table.add_column("remaining", justify="right")
    table.add_row("", "read", _n(read), _pct(read, read), _n(read))
    stage = None
    for s in funnel_stats["steps"]:
        shown, stage = ("" if s["stage"] == stage else s["stage"]), s["stage"]
        table.add_row(
            safe(shown), f"− {safe(s['reason'])}", _n(s["count"]), _pct(s["count"], read), _n(s["remaining"])
        )
    kept = funnel_stats["kept"]
    table.add_row("", "[bold]kept[/bold]", f"[bold]{kept:,}[/bold]", _pct(kept, read), "")
    return table


def balance_line(funnel_stats: dict[str, Any]) -> str:
    """The accounting check, as ``tweetmill run`` prints it, plus the rows actually in the shards."""
    verdict = "[green]balanced[/green]" if funnel_stats["balanced"] else "[red]NOT balanced[/red]"
    f = funnel_stats
    return (
        f"read {f['read']:,} = kept {f['kept']:,} + dropped {f['dropped']:,} + errors {f['errors']:,}; "
        f"{f['rows_in_shards']:,} rows in the shards: {verdict}"
    )

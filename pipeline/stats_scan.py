"""The scan behind ``tweetmill stats``: every record batch of every shard through running aggregates.

Every figure is an aggregate updated record batch by record batch: counters keyed by language, file,
month or hashtag, a histogram of tweet lengths, a ``np.bincount`` over the vocabulary. Memory is
bounded by the vocabulary, the longest tweet and the number of distinct keys (hashtags are capped),
never by the number of rows. Shards are opened one at a time (``shard_io.open_shard``), record
batches run on a few threads (numpy and Arrow release the GIL), each thread with its own
accumulator, merged at the end. The bounded counters are ``stats_hashtags.HashtagCounter`` and
``stats_authors.AuthorCounter``; the run's audit files are read by ``stats_removed``.
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections import Counter, deque
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from tweetmill.pipeline.shard_io import open_shard
from tweetmill.pipeline.stats_authors import AuthorCounter
from tweetmill.pipeline.stats_hashtags import HashtagCounter
from tweetmill.schemas.manifest import Manifest
from tweetmill.schemas.shard import check_shard_schema
from tweetmill.schemas.shard_dir import list_layout

log = logging.getLogger(__name__)

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


def document_shape(batch: pa.RecordBatch) -> tuple[np.ndarray, np.ndarray]:
    """Per row: how many tweets it holds, and 1 where a conversation branch starts with a context
    turn (its depth in turns is their sum). Shards of format 1 hold one tweet a row."""
    n = batch.num_rows
    if "tweet_ids" not in batch.schema.names:
        return np.ones(n, dtype=np.int64), np.zeros(n, dtype=np.int64)
    tweets = np.diff(list_layout(batch.column("tweet_ids"))[0]).astype(np.int64)
    context = batch.column("context_id").is_valid().to_numpy(zero_copy_only=False).astype(np.int64)
    return tweets, context


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
        # Documents (shard format 2): rows by how many tweets they hold, by depth (turns: tweets and
        # a context turn), and the tokens of the rows of several tweets. Format 1 rows are tweets.
        self.doc_tweets = np.zeros(16, dtype=np.int64)
        self.doc_depth = np.zeros(16, dtype=np.int64)
        self.multi_tokens = 0

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
        self._add_documents(batch, np.diff(offsets))
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
            self.doc_tweets = _merge_histograms(self.doc_tweets, other.doc_tweets)
            self.doc_depth = _merge_histograms(self.doc_depth, other.doc_depth)
            self.multi_tokens += other.multi_tokens
        self.hashtags.merge(*(o.hashtags for o in others))
        self.authors.merge(*(o.authors for o in others))

    def _add_documents(self, batch: pa.RecordBatch, lengths: np.ndarray) -> None:
        tweets, context = document_shape(batch)
        self.doc_tweets = _add_histogram(self.doc_tweets, tweets)
        self.doc_depth = _add_histogram(self.doc_depth, tweets + context)
        self.multi_tokens += int(lengths[(tweets + context) > 1].sum())

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

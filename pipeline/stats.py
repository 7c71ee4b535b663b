"""``tweetmill stats``: what is in a shard directory, computed by streaming over memory-mapped shards.

Only per-shard aggregates are kept in memory (counters, a token-length histogram), so memory stays
flat however large the shard set grows.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from rich.console import Console
from rich.table import Table
from tweetmill.pipeline.report import balance_line, funnel_table
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest

MAX_HISTOGRAM_TOKENS = 4096


def read_manifest(shard_dir: str) -> Manifest:
    path = FileSystems.join(shard_dir, MANIFEST_NAME)
    if not FileSystems.exists(path):
        raise FileNotFoundError(f"{shard_dir}: no {MANIFEST_NAME} (not a finished tweetmill run)")
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return Manifest.from_json(f.read().decode("utf-8"))


def open_shard(path: str) -> pa.ipc.RecordBatchFileReader:
    """Memory-map local shards (zero-copy); read others (gs://...) through Beam's FileSystems."""
    if "://" not in path:
        return pa.ipc.open_file(pa.memory_map(path, "r"))
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return pa.ipc.open_file(pa.py_buffer(f.read()))


def _add_value_counts(counter: Counter, array: pa.ChunkedArray) -> None:
    for item in pc.value_counts(array).to_pylist():
        counter[item["values"]] += item["counts"]


def compute_stats(shard_dir: str) -> dict[str, Any]:
    manifest = read_manifest(shard_dir)
    lengths = np.zeros(MAX_HISTOGRAM_TOKENS + 1, dtype=np.int64)
    langs: Counter = Counter()
    twitter_langs: Counter = Counter()
    formats: Counter = Counter()
    months: Counter = Counter()
    rows = tokens = 0
    for shard in manifest.shards:
        reader = open_shard(FileSystems.join(shard_dir, shard.file))
        for i in range(reader.num_record_batches):
            batch = reader.get_batch(i)
            table = pa.Table.from_batches([batch])
            n_tok = batch.column("num_tokens").to_numpy(zero_copy_only=False)
            lengths += np.bincount(
                np.minimum(n_tok, MAX_HISTOGRAM_TOKENS), minlength=MAX_HISTOGRAM_TOKENS + 1
            )
            rows += batch.num_rows
            tokens += int(n_tok.sum())
            _add_value_counts(langs, table.column("lang"))
            _add_value_counts(twitter_langs, table.column("twitter_lang").fill_null("(none)"))
            _add_value_counts(formats, table.column("source_format"))
            month = pc.strftime(table.column("created_at"), format="%Y-%m").fill_null("(unknown)")
            _add_value_counts(months, month)
    return {
        "shard_dir": shard_dir,
        "shards": len(manifest.shards),
        "rows": rows,
        "tokens": tokens,
        "bytes": sum(s.bytes for s in manifest.shards),
        "tokens_per_tweet": _length_summary(lengths),
        "languages": dict(langs.most_common()),
        "twitter_languages": dict(twitter_langs.most_common()),
        "source_formats": dict(formats.most_common()),
        "tweets_per_month": dict(sorted(months.items())),
        "tokenizer": {"vocab_size": manifest.tokenizer.vocab_size, "sha256": manifest.tokenizer.sha256},
        "counts": {
            "read": manifest.counts.read,
            "kept": manifest.counts.kept,
            "dropped": manifest.counts.dropped,
            "errors": manifest.counts.errors,
            "balanced": manifest.counts.balanced,
        },
    }


def _length_summary(histogram: np.ndarray) -> dict[str, float]:
    total = int(histogram.sum())
    if total == 0:
        return {"mean": 0.0, "p50": 0, "p90": 0, "p99": 0, "max": 0}
    values = np.arange(len(histogram))
    cdf = np.cumsum(histogram)

    def pct(q: float) -> int:
        return int(values[np.searchsorted(cdf, q * total)])

    return {
        "mean": float((values * histogram).sum() / total),
        "p50": pct(0.5),
        "p90": pct(0.9),
        "p99": pct(0.99),
        "max": int(values[histogram > 0].max()),
    }


def print_stats(console: Console, stats: dict[str, Any], top: int = 10) -> None:
    overview = Table(title=f"Shards in {stats['shard_dir']}", show_header=False)
    overview.add_column("figure")
    overview.add_column("value", justify="right")
    tpt = stats["tokens_per_tweet"]
    for label, value in (
        ("shards", f"{stats['shards']:,}"),
        ("tweets", f"{stats['rows']:,}"),
        ("tokens", f"{stats['tokens']:,}"),
        ("size", f"{stats['bytes'] / 1e6:,.2f} MB"),
        ("tokens/tweet mean", f"{tpt['mean']:.1f}"),
        ("tokens/tweet p50 / p90 / p99 / max", f"{tpt['p50']} / {tpt['p90']} / {tpt['p99']} / {tpt['max']}"),
        ("vocabulary", f"{stats['tokenizer']['vocab_size']:,} tokens"),
    ):
        overview.add_row(label, value)
    console.print(overview)

    for title, key in (
        ("Languages (detected)", "languages"),
        ("Languages (Twitter's tag)", "twitter_languages"),
        ("Source formats", "source_formats"),
    ):
        table = Table(title=title)
        table.add_column("value")
        table.add_column("tweets", justify="right")
        table.add_column("share", justify="right")
        for value, n in list(stats[key].items())[:top]:
            table.add_row(str(value), f"{n:,}", f"{100 * n / max(stats['rows'], 1):.1f}%")
        console.print(table)
    manifest = read_manifest(stats["shard_dir"])
    console.print(funnel_table(manifest))
    console.print(balance_line(manifest))

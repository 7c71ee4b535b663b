"""``tweetmill stats``: what is in a shard directory, computed by streaming over memory-mapped shards.

``compute_stats`` is the public entry: it reads the manifest, runs the scan (``stats_scan``: every
record batch through running aggregates, memory independent of the number of rows) and turns the
aggregates into JSON-ready summaries; ``stats_print`` shows them in the terminal, ``html_report`` as
a page. Local shards are memory-mapped, shards on other Beam filesystems (``gs://``...) are read
through ``FileSystems`` (``shard_io``).

The manifest supplies what the shards cannot: the run's funnel (the stages that ran and every drop
reason), the per-file input records and the near-dedup clusters; the shards supply everything about
the kept tweets.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from datetime import datetime, timezone
from typing import Any

import numpy as np
from tweetmill.pipeline.shard_io import load_shard_tokenizer, read_manifest
from tweetmill.pipeline.stats_print import print_stats
from tweetmill.pipeline.stats_scan import FLAG_COLUMNS, Accumulator, HashtagCounter, default_workers, scan
from tweetmill.schemas import records as R
from tweetmill.schemas.manifest import Manifest

__all__ = [
    "LEGACY_FUNNEL_STAGES",
    "compute_stats",
    "dedup_summary",
    "funnel",
    "length_summary",
    "print_stats",
    "read_manifest",
    "vocabulary_summary",
]

log = logging.getLogger(__name__)

TOP = 15  # rows of the "top" lists kept in the stats
PERCENTILES = (10, 50, 90, 99)

# The funnel of a version-1 manifest, which does not record its stages: which stage dropped for
# which reason, in pipeline order (schemas/records.py). Version 2 manifests list their stages.
LEGACY_FUNNEL_STAGES: tuple[tuple[str, tuple[str, ...]], ...] = (
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
DEAD_LETTERS = "errors (dead letters)"  # the funnel's step for records that became dead letters
PLACEHOLDERS = ("<URL>", "@user", "<EMAIL>", "<PHONE>")  # the clean stage's defaults


# --- the figures ------------------------------------------------------------------------------------


def compute_stats(
    shard_dir: str, *, top: int = TOP, hashtags: bool = True, workers: int | None = None
) -> dict[str, Any]:
    """Every figure of ``tweetmill stats`` as a JSON-ready dict (see README, "Inspecting a run")."""
    manifest = read_manifest(shard_dir)
    urls_mode = manifest.config.get("clean", {}).get("urls", "placeholder")
    vocab_size = manifest.tokenizer.vocab_size

    def make() -> Accumulator:
        return Accumulator(vocab_size, hashtags=hashtags, domains=urls_mode == "keep")

    acc, per_shard = scan(shard_dir, manifest, make, workers or default_workers())
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
    """read → dead letters → each drop in pipeline order → kept, with what remains after each step.

    The stages come from the manifest (``Manifest.pipeline``, format 2): every stage that ran, in
    order, under its own name (a user's ``--filter`` included), with the reasons it declares. A
    version-1 manifest does not list them and gets ``LEGACY_FUNNEL_STAGES``. Reasons the manifest
    counts that no stage declares come last, as stage "other". Only drops of one or more are steps.
    """
    counts = manifest.counts
    steps: list[dict[str, Any]] = []
    remaining = counts.read

    def step(stage: str, reason: str, n: int) -> None:
        nonlocal remaining
        remaining -= n
        steps.append({"stage": stage, "reason": reason, "count": n, "remaining": remaining})

    if counts.errors:  # records that never became tweets: first, as the reading stage makes them
        source = next((s.name for s in manifest.pipeline if s.kind == "source"), "parse")
        step(source, DEAD_LETTERS, counts.errors)
    for stage, reason, n in stage_drops(manifest):
        if n:
            step(stage, reason, n)
    return {
        "read": counts.read,
        "steps": steps,
        "dropped": sum(counts.dropped.values()),
        "errors": counts.errors,
        "kept": counts.kept,
        "rows_in_shards": manifest.total_rows,
        "stages": "manifest" if manifest.pipeline else "legacy",  # where the stages came from
        "balanced": counts.balanced and remaining == counts.kept == manifest.total_rows,
    }


def stage_drops(manifest: Manifest) -> list[tuple[str, str, int]]:
    """``(stage, reason, count)`` of every declared drop reason in pipeline order (zeros included),
    then the manifest's other reasons under "other"."""
    dropped = manifest.counts.dropped
    if manifest.pipeline:
        drops = [(s.name, reason, n) for s in manifest.pipeline for reason, n in s.dropped.items()]
    else:
        drops = [
            (stage, reason, dropped.get(reason, 0))
            for stage, reasons in LEGACY_FUNNEL_STAGES
            for reason in reasons
        ]
    declared = {reason for _, reason, _ in drops}
    return drops + [("other", reason, n) for reason, n in sorted(dropped.items()) if reason not in declared]


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


def vocabulary_summary(acc: Accumulator, manifest: Manifest, tokenizer: Any, top: int) -> dict[str, Any]:
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

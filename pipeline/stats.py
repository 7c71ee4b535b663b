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
from tweetmill.pipeline.stats_authors import AuthorCounter
from tweetmill.pipeline.stats_hashtags import HashtagCounter
from tweetmill.pipeline.stats_print import print_stats
from tweetmill.pipeline.stats_removed import Removed, read_removed
from tweetmill.pipeline.stats_scan import (
    CHARS_CAP,
    FLAG_COLUMNS,
    SCORE_BINS,
    Accumulator,
    default_workers,
    scan,
)
from tweetmill.schemas import records as R
from tweetmill.schemas.manifest import Manifest
from tweetmill.transforms.clean import STAT_NAMES as CLEAN_STEPS

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
EXAMPLES_PER_REASON = 3  # dropped tweets shown per drop reason
NEAR_PAIRS_SHOWN = 8  # near-duplicate pairs shown (of the run's sample)
TEXT_SHOWN = 400  # characters of an example's text; longer ones are cut and end in "…"
TOP_AUTHOR_COUNTS = (1, 10, 100, 1000)  # "the k most prolific authors wrote x % of the tweets"


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
    removed = read_removed(shard_dir, manifest, EXAMPLES_PER_REASON, NEAR_PAIRS_SHOWN)
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
        "documents": documents_summary(acc),
        "languages": _most_common(acc.values["lang"]),
        "twitter_languages": _most_common(acc.values["twitter_lang"]),
        "source_formats": _most_common(acc.values["source_format"]),
        "inputs": _inputs(manifest, acc.values["source_file"], removed.by_file),
        "inputs_accounting": _inputs_accounting(manifest, acc.values["source_file"], removed),
        "tokens_per_language": _most_common(acc.lang_tokens),
        "chars_per_tweet": length_summary(acc.chars) | {"cap": CHARS_CAP},
        "language_confidence": confidence_summary(acc.lang_scores, manifest),
        "authors": author_summary(acc.authors, rows, acc.flags["author_known"], manifest, top),
        "clean": clean_summary(manifest),
        "removed": removed_summary(manifest, removed),
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


def documents_summary(acc: Accumulator) -> dict[str, Any]:
    """Rows as documents: how many tweets each holds, how deep (turns, a context turn included),
    and the tokens of those of several tweets. Rows of shards of format 1 are single tweets."""
    depth = acc.doc_depth
    multi = int(depth[2:].sum())
    return {
        "documents": acc.rows,
        "tweets": int((np.arange(len(acc.doc_tweets)) * acc.doc_tweets).sum()),
        "multi_tweet_documents": multi,
        "tweets_per_document": length_summary(acc.doc_tweets),
        "depth": length_summary(depth),
        "tokens_per_multi_tweet_document": acc.multi_tokens / multi if multi else 0.0,
    }


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
        "tweets_in_shards": manifest.total_tweets,  # rows, unless rows are documents of several tweets
        "stages": "manifest" if manifest.pipeline else "legacy",  # where the stages came from
        "balanced": counts.balanced and remaining == counts.kept == manifest.total_tweets,
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


def _inputs(
    manifest: Manifest, kept_by_file: Counter, dropped_by_file: Counter | None
) -> list[dict[str, Any]]:
    """Per input file: the manifest's records, parse drops (records that are not tweets: delete
    notices, API errors...) and dead letters; the tweets it still has in the shards (``kept``, from
    their ``source_file``); ``dropped_later``, its tweets that a stage after parsing removed
    (tweets - kept: exact); and those by stage and reason when the run wrote every dropped tweet
    (``--write-dropped``; else None: the sample per reason says nothing per file)."""
    later: dict[str, Counter] = {}
    for (name, stage, reason), n in (dropped_by_file or {}).items():
        later.setdefault(name, Counter())[f"{stage}: {reason}"] += n
    files = []
    for item in manifest.inputs:
        name = item.get("file")
        parse_dropped = {k: v for k, v in (item.get("dropped") or {}).items() if v}
        tweets, kept = item.get("tweets", 0), kept_by_file.get(name, 0)
        files.append(
            {
                "file": name,
                "format": item.get("format") or ("skipped" if item.get("skipped") else None),
                "records": item.get("records", 0),
                "errors": item.get("errors", 0),
                "parse_dropped": sum(parse_dropped.values()),
                "parse_dropped_by_reason": parse_dropped,
                "tweets": tweets,
                "dropped_later": tweets - kept if tweets >= kept else None,
                "dropped_later_by_reason": None
                if dropped_by_file is None
                else _most_common(later.get(name, Counter())),
                "kept": kept,
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
                    "errors": 0,
                    "parse_dropped": 0,
                    "parse_dropped_by_reason": {},
                    "tweets": 0,
                    "dropped_later": None,
                    "dropped_later_by_reason": None,
                    "kept": n,
                }
            )
    return files


def _inputs_accounting(manifest: Manifest, kept_by_file: Counter, removed: Removed) -> dict[str, Any]:
    """Whether the per-file figures add up to the run's: the files' tweets minus what the shards
    kept of them against the drops of the stages after parsing."""
    tweets = sum(item.get("tweets", 0) for item in manifest.inputs)
    after = manifest.dropped_after_source if manifest.pipeline else None
    return {
        "tweets": tweets,
        "kept": sum(kept_by_file.values()),
        "dropped_later": tweets - sum(kept_by_file.values()),
        "stages_dropped_later": after,
        "agree": after is None or tweets - sum(kept_by_file.values()) == after,
        "by_reason_from": removed.source if removed.by_file is not None else None,
    }


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


def confidence_summary(scores: np.ndarray, manifest: Manifest) -> dict[str, Any]:
    """The histogram of ``lang_score`` in bins of 1 / SCORE_BINS, and the run's confidence threshold."""
    config = manifest.config.get("stages", {}).get("language") or manifest.config.get("filter") or {}
    threshold = config.get("min_lang_confidence")
    below = None
    if isinstance(threshold, (int, float)):
        below = int(scores[: math.floor(round(threshold * SCORE_BINS, 6))].sum())
    return {
        "bin_width": 1 / SCORE_BINS,
        "histogram": [int(n) for n in scores],
        "threshold": threshold,
        "below_threshold": below,
    }


def author_summary(
    authors: AuthorCounter, rows: int, known: int, manifest: Manifest, top: int
) -> dict[str, Any]:
    """How concentrated the tweets are on their authors: the share the most prolific wrote."""
    cap = manifest.stages.get("author_cap") if isinstance(manifest.stages, dict) else None
    summary: dict[str, Any] = {
        "known": known,
        "unknown": rows - known,
        "distinct": None,
        "distinct_at_least": None,
        "approximate": authors.pruned,
        "top_share": {},
        "top": [],
        "author_cap": cap if isinstance(cap, dict) else None,
    }
    if not known:
        return summary
    counts = authors.sorted_counts()
    cumulative = np.cumsum(counts)
    if authors.pruned:
        summary["distinct_at_least"] = authors.distinct_seen
    else:
        summary["distinct"] = len(counts)
    shown = [k for k in TOP_AUTHOR_COUNTS if k <= len(counts)]
    summary["top_share"] = {str(k): round(float(cumulative[k - 1]) / known, 5) for k in shown}
    summary["top"] = [[a, n] for a, n in authors.top(top)]
    return summary


def clean_summary(manifest: Manifest) -> dict[str, Any] | None:
    """What the clean stage changed (the manifest's ``stages["clean"]``), each step with what it
    did under this run's options; None for runs that did not record it."""
    counts = manifest.stages.get("clean") if isinstance(manifest.stages, dict) else None
    if not isinstance(counts, dict):
        return None
    config = manifest.config.get("clean", {})
    what = {
        "html": "HTML entities unescaped (&amp; → &)",
        "ftfy": "mojibake repaired (ftfy)" if config.get("fix_mojibake", True) else None,
        "invisible": "invisible characters removed",
        "reply_prefix": "reply prefix (leading @mentions) removed"
        if config.get("strip_reply_prefix", True)
        else None,
        "whitespace": "whitespace collapsed",
        "empty": "empty after cleaning",
    }
    nouns = {"urls": "URLs", "emails": "e-mail addresses", "mentions": "@mentions", "phones": "phone numbers"}
    for kind, noun in nouns.items():
        mode = config.get(kind, "placeholder")
        if mode == "remove":
            what[kind] = f"{noun} removed"
        elif mode != "keep":
            what[kind] = f"{noun} replaced by {config.get(kind[:-1] + '_placeholder', '?')}"
    steps = [
        {"step": name, "what": what[name], "texts": int(counts.get(name, 0))}
        for name in CLEAN_STEPS
        if what.get(name)
    ]
    return {"texts": int(counts.get("texts", 0)), "changed": int(counts.get("changed", 0)), "steps": steps}


def _shown_text(text: str | None) -> str:
    text = text or ""
    return text if len(text) <= TEXT_SHOWN else text[: TEXT_SHOWN - 1] + "…"


def removed_summary(manifest: Manifest, removed: Removed) -> dict[str, Any]:
    """Every drop reason that removed something, in funnel order, with examples of what it removed;
    and the first pairs of the near-duplicate sample (removed beside the tweet kept)."""
    sources = {s.name for s in manifest.pipeline if s.kind == "source"} or {"parse"}
    reasons = []
    for stage, reason, n in stage_drops(manifest):
        if not n:
            continue
        examples = removed.examples.get((stage, reason), [])
        reasons.append(
            {
                "stage": stage,
                "reason": reason,
                "count": n,
                "tweets": stage not in sources,  # parse drops are records, not tweets: no examples
                "examples": [
                    {
                        "id": r.get("id"),
                        "text": _shown_text(r.get("text")),
                        "chars": len(r.get("text") or ""),
                        "source_file": r.get("source_file"),
                        "lang": r.get("lang"),
                    }
                    for r in examples
                ],
            }
        )
    pairs = [
        {
            "removed_id": p.get("removed_id"),
            "removed_text": _shown_text(p.get("removed_text")),
            "kept_id": p.get("kept_id"),
            "kept_text": _shown_text(p.get("kept_text")),
            "similarity": p.get("similarity"),
        }
        for p in removed.near_pairs
    ]
    return {
        "source": removed.source,
        "per_reason": EXAMPLES_PER_REASON,
        "reasons": reasons,
        "near_duplicates": {"sampled": removed.near_sampled, "shown": pairs},
    }

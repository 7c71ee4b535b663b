"""The closing report of ``tweetmill run``: where every input record went, and whether the result is
usable as is (``rejection_reasons``: the CLI exits 3 when it is not)."""

from __future__ import annotations

from collections import Counter

from rich.console import Console
from tweetmill.pipeline.stats import clean_summary, funnel
from tweetmill.pipeline.stats_print import balance_line, clean_line, funnel_table
from tweetmill.pipeline.terminal import safe
from tweetmill.schemas.manifest import Manifest


def print_run_report(console: Console, manifest: Manifest, output: str, seconds: float) -> None:
    """The run's funnel (as ``tweetmill stats`` shows it), the balance, what the clean stage
    changed, and what was written where."""
    steps = funnel(manifest)
    console.print(funnel_table(steps, title="Accounting: where every input record went"))
    console.print(balance_line(steps))
    changed = clean_line(clean_summary(manifest))
    if changed:
        console.print(changed)
    rows, tokens = manifest.total_rows, manifest.total_tokens
    rate = manifest.counts.read / seconds if seconds > 0 else 0.0
    held = f"{rows:,} tweets"
    if manifest.total_tweets != rows:  # rows are documents, some of several tweets
        held = f"{rows:,} documents of {manifest.total_tweets:,} tweets"
    console.print(
        f"{len(manifest.shards)} shard(s), {held}, {tokens:,} tokens → {safe(output)}  "
        f"({seconds:.1f} s, {rate:,.0f} records/s)"
    )
    if manifest.counts.errors:
        console.print(f"dead letters: {safe(', '.join(manifest.error_files))} (in {safe(output)})")
    skipped = Counter(f["skipped"] for f in manifest.inputs if f.get("skipped"))
    for reason, n in sorted(skipped.items()):
        console.print(f"skipped {n:,} file(s), not read: {safe(reason)}")


def rejection_reasons(manifest: Manifest, max_error_share: float, output: str) -> list[str]:
    """Why a finished run's result is not usable as is, one line each (empty: it is).

    The accounting does not balance (a record lost or counted twice), the run kept no tweet, or
    more than ``max_error_share`` of the records read became errors (dead letters): most likely the
    wrong ``--format``, or files that are not tweet archives.
    """
    counts = manifest.counts
    reasons = []
    if not counts.balanced:
        reasons.append(
            f"the accounting does not balance: read {counts.read:,} != kept {counts.kept:,} + dropped "
            f"{sum(counts.dropped.values()):,} + errors {counts.errors:,}; do not train on {output}"
        )
    if counts.kept == 0:
        why = (
            "the inputs held no record"
            if counts.read == 0
            else f"all {counts.read:,} records read were dropped or errors (see the table above)"
        )
        reasons.append(f"the run kept no tweet: {why}")
    if counts.read and counts.errors > max_error_share * counts.read:
        reasons.append(
            f"{counts.errors:,} of the {counts.read:,} records read ({counts.errors / counts.read:.1%}) are "
            f"errors, more than --max-error-share {max_error_share:g}: see the dead letters in {output} "
            "(a wrong --format, or files that are not tweet archives?)"
        )
    return reasons

"""``tweetmill stats`` in the terminal: the figures of ``compute_stats`` as aligned Rich tables.

Units in every cell; everything taken from the data (languages, file names, hashtags, tokens) is
escaped (``terminal.safe``). ``funnel_table`` and ``balance_line`` also close ``tweetmill run``.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from rich.columns import Columns
from rich.console import Console
from rich.table import Table
from tweetmill.pipeline.terminal import safe


def visible(token: str) -> str:
    """A decoded token with its whitespace made visible (a leading space matters in BPE)."""
    return token.replace(" ", "␣").replace("\n", "⏎").replace("\t", "⇥").replace("\r", "␍")


def count_text(value: int) -> str:
    return f"{value:,}"


def share_text(n: int, total: int) -> str:
    """A share with one decimal that never reads 0.0 % for something that is there."""
    if not total:
        return "-"
    share = 100 * n / total
    return "<0.1 %" if 0 < share < 0.05 else f"{share:.1f} %"


def size_text(n_bytes: int) -> str:
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
        table.add_row(safe(value), count_text(n), share_text(n, total), _bar(n, largest))
    rest = sum(n for _, n in items[top:])
    if rest:
        table.add_row(f"({len(items) - top} more)", count_text(rest), share_text(rest, total), "")
    return table


def common_dir(paths: list[str]) -> str:
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
        ("documents" if _document_rows(stats.get("documents")) else "tweets", f"{rows:,}"),
        ("tokens", f"{tokens:,}"),
        (
            "size on disk",
            size_text(stats["bytes"]) + (f" ({stats['bytes'] / tokens:.1f} B/token)" if tokens else ""),
        ),
        ("tokens/tweet", f"mean {tpt['mean']:.1f}, sd {tpt['std']:.1f}, min {tpt['min']}, max {tpt['max']}"),
        ("tokens/tweet p10 p50 p90 p99", f"{tpt['p10']} · {tpt['p50']} · {tpt['p90']} · {tpt['p99']}"),
        ("characters/tweet p10 p50 p90 p99", _percentiles(stats.get("chars_per_tweet"))),
        ("time span", f"{months[0]} … {months[-1]} ({len(months)} months with tweets)" if months else "-"),
        (
            "tweets without date",
            f"{stats['time']['undated']:,} ({share_text(stats['time']['undated'], rows)})",
        ),
        (
            "replies / quotes",
            f"{share_text(flags['is_reply'], rows)} / {share_text(flags['is_quote'], rows)}",
        ),
        ("authors", _authors_text(stats.get("authors"), rows)),
        *_document_rows(stats.get("documents")),
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
    console.print(line)
    for extra in (clean_line(stats.get("clean")), _confidence_line(stats.get("language_confidence"), rows)):
        if extra:
            console.print(extra)
    console.print()

    tables = [
        _counts_table("Languages (detected)", stats["languages"], rows, top, "lang"),
        _counts_table("Languages (Twitter's tag)", stats["twitter_languages"], rows, top, "lang"),
    ]
    if "tokens_per_language" in stats:
        per_language = stats["tokens_per_language"]
        tables.append(_counts_table("Tokens per language", per_language, tokens, top, "lang", "tokens"))
    tables.append(_counts_table("Source formats", stats["source_formats"], rows, top, "format"))
    console.print(Columns(tables))
    console.print(_files_table(stats["inputs"], top))

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
        toks.add_row(str(t["id"]), safe(text), count_text(t["count"]), f"{100 * t['share']:.2f} %")
    console.print(toks)
    if stats["tokenizer"]["decoded_with"] is None:
        console.print(f"tokens not decoded: {safe(stats['tokenizer']['not_decoded_because'])}")


def _percentiles(summary: dict[str, Any] | None) -> str:
    if not summary:
        return "-"
    return (
        f"{summary['p10']} · {summary['p50']} · {summary['p90']} · {summary['p99']} (max {summary['max']:,})"
    )


def _authors_text(authors: dict[str, Any] | None, rows: int) -> str:
    if not authors or not authors["known"]:
        return "unknown (no tweet has an author id)"
    distinct = (
        f"{authors['distinct']:,}"
        if authors["distinct"] is not None
        else f">= {authors['distinct_at_least']:,}"
    )
    shares = ", ".join(
        f"top {k} {'>= ' if authors['approximate'] else ''}{100 * v:.1f} %"
        for k, v in authors["top_share"].items()
    )
    return f"{distinct} ({share_text(authors['known'], rows)} of tweets have an author id); {shares}"


def clean_line(clean: dict[str, Any] | None) -> str:
    if not clean or not clean["texts"]:
        return ""
    steps = sorted((s for s in clean["steps"] if s["texts"]), key=lambda s: -s["texts"])
    return (
        f"clean: changed {clean['changed']:,} of {clean['texts']:,} texts "
        f"({share_text(clean['changed'], clean['texts'])})"
        + "".join(f"; {safe(s['what'])} {s['texts']:,}" for s in steps)
    )


def _confidence_line(confidence: dict[str, Any] | None, rows: int) -> str:
    if not confidence or confidence.get("below_threshold") is None:
        return ""
    below = confidence["below_threshold"]
    return (
        f"language confidence: {below:,} tweets ({share_text(below, rows)}) below "
        f"--min-lang-confidence {confidence['threshold']:g} (detected as 'und')"
    )


def _files_table(inputs: list[dict[str, Any]], top: int) -> Table:
    """Per input file: records, errors, records that are not tweets, tweets, dropped later, kept."""
    shown = inputs[: max(top, 20)]
    prefix = common_dir([str(f["file"]) for f in shown])
    files = Table(title=f"Input files{f' (in {safe(prefix)})' if prefix else ''}", title_justify="left")
    columns = ("file", "format", "records", "errors", "not tweets", "tweets", "dropped later", "kept")
    for col in columns:
        files.add_column(col, justify="left" if col in ("file", "format") else "right")
    files.columns[0].overflow = "fold"
    for f in shown:
        later = f.get("dropped_later")
        files.add_row(
            safe(str(f["file"])[len(prefix) :]),
            safe(f["format"] or "?"),
            *(count_text(f[k]) for k in ("records", "errors", "parse_dropped", "tweets")),
            "?" if later is None else count_text(later),
            count_text(f["kept"]),
        )
    if len(inputs) > len(shown):
        files.add_row(f"({len(inputs) - len(shown)} more files)", *[""] * (len(columns) - 1))
    files.caption = "not tweets: dropped while parsing (notices, API errors); dropped later = tweets - kept"
    files.caption_justify = "left"
    return files


def funnel_table(funnel_stats: dict[str, Any], title: str = "Funnel: where every input record went") -> Table:
    """``stats.funnel`` as a table: read, then each stage's drops in pipeline order, then kept."""
    read = funnel_stats["read"]
    table = Table(title=title, title_justify="left")
    table.add_column("stage")
    table.add_column("records")
    table.add_column("count", justify="right")
    table.add_column("share", justify="right")
    table.add_column("remaining", justify="right")
    table.add_row("", "read", count_text(read), share_text(read, read), count_text(read))
    stage = None
    for s in funnel_stats["steps"]:
        shown, stage = ("" if s["stage"] == stage else s["stage"]), s["stage"]
        table.add_row(
            safe(shown),
            f"− {safe(s['reason'])}",
            count_text(s["count"]),
            share_text(s["count"], read),
            count_text(s["remaining"]),
        )
    kept = funnel_stats["kept"]
    table.add_row("", "[bold]kept[/bold]", f"[bold]{kept:,}[/bold]", share_text(kept, read), "")
    return table


def _document_rows(docs: dict[str, Any] | None) -> list[tuple[str, str]]:
    """Documents of several tweets (--documents threads|conversations): none for rows of one tweet."""
    if not docs or not docs["multi_tweet_documents"]:
        return []
    tpd, depth, multi = docs["tweets_per_document"], docs["depth"], docs["multi_tweet_documents"]
    return [
        (
            "documents of several tweets",
            f"{multi:,} ({share_text(multi, docs['documents'])} of {docs['documents']:,} rows; "
            f"{docs['tweets']:,} tweets in all)",
        ),
        ("tweets/document", f"mean {tpd['mean']:.2f}, p50 {tpd['p50']}, p90 {tpd['p90']}, max {tpd['max']}"),
        ("depth (turns)", f"mean {depth['mean']:.2f}, p90 {depth['p90']}, max {depth['max']}"),
        ("tokens/document of several tweets", f"mean {docs['tokens_per_multi_tweet_document']:.1f}"),
    ]


def balance_line(funnel_stats: dict[str, Any]) -> str:
    """The accounting check (read = kept + dropped + errors) and the rows actually in the shards."""
    verdict = "[green]balanced[/green]" if funnel_stats["balanced"] else "[red]NOT balanced[/red]"
    f = funnel_stats
    return (
        f"read {f['read']:,} = kept {f['kept']:,} + dropped {f['dropped']:,} + errors {f['errors']:,}; "
        f"{held_text(f)} in the shards: {verdict}"
    )


def held_text(f: dict[str, Any]) -> str:
    """What the shards hold: "N rows", or "N documents of M tweets" when a row holds several tweets."""
    rows, tweets = f["rows_in_shards"], f.get("tweets_in_shards", f["rows_in_shards"])
    return f"{rows:,} rows" if tweets == rows else f"{rows:,} documents of {tweets:,} tweets"

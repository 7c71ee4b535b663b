"""The report's sections on what the kept tweets are: lengths, language confidence, tokens per
language, authors, source formats and flags, hashtags and link domains, top tokens, and what the
inputs lack (so a missing figure is said, not drawn empty)."""

from __future__ import annotations

from typing import Any

from tweetmill.pipeline.report_markup import esc, html_note, html_table
from tweetmill.pipeline.report_plots import (
    authors_plot,
    confidence_plot,
    histogram_plot,
    tokens_per_language_plot,
)
from tweetmill.pipeline.stats_print import count_text, share_text, visible


def percentiles_note(summary: dict[str, Any], unit: str) -> str:
    s = summary
    return html_note(
        f"p10 {s['p10']:,} · p50 {s['p50']:,} · p90 {s['p90']:,} · p99 {s['p99']:,} · min {s['min']:,} · "
        f"max {s['max']:,} {unit}; sd {s['std']:.1f}"
    )


def chars_section(stats: dict[str, Any]) -> str:
    chars = stats.get("chars_per_tweet")
    if not chars or not chars.get("histogram"):
        return ""
    plot = histogram_plot(
        chars, "characters", "Characters per tweet (text after cleaning)", "chars-per-tweet"
    )
    return f'<div class="gap">{plot}</div>' + percentiles_note(chars, "characters")


def confidence_section(stats: dict[str, Any]) -> str:
    conf = stats.get("language_confidence")
    if not conf:
        return ""
    note = "The detector's confidence in each kept tweet's language."
    if conf.get("below_threshold") is not None:
        note += (
            f" {count_text(conf['below_threshold'])} tweets "
            f"({share_text(conf['below_threshold'], stats['rows'])})"
            f" score below {conf['threshold']:g}: their detected language is 'und', the filter then goes "
            "by Twitter's tag where there is one."
        )
    return confidence_plot(conf) + html_note(esc(note))


def tokens_per_language_section(stats: dict[str, Any], top: int) -> str:
    per = stats["tokens_per_language"]
    tweets = stats["languages"]
    rows = [
        [
            esc(k),
            count_text(n),
            share_text(n, stats["tokens"]),
            f"{n / tweets[k]:.1f}" if tweets.get(k) else "-",
        ]
        for k, n in list(per.items())[: min(top, 8)]
    ]
    return (
        tokens_per_language_plot(per, min(top, 12))
        + html_table(["lang", "tokens", "share", "tokens / tweet"], rows, {1, 2, 3})
        + html_note("Mixture weights by language are computed from these token counts, not from tweets.")
    )


def authors_card(authors: dict[str, Any]) -> str:
    if not authors.get("known"):
        return "unknown"
    if authors.get("distinct") is not None:
        return count_text(authors["distinct"])
    return f"≥ {count_text(authors.get('distinct_at_least') or 0)}"


def missing_section(stats: dict[str, Any]) -> str:
    """What the inputs do not have, so a figure of it cannot be shown (instead of empty charts)."""
    rows, undated = stats["rows"], stats["time"]["undated"]
    missing = []
    if rows and not stats["tweets_per_month"]:
        missing.append(
            f"<b>dates</b>: none of the {count_text(undated)} kept tweets has a <code>created_at</code> "
            "(text-only input, or files without dates): no time chart."
        )
    if rows and not (stats.get("authors") or {}).get("known"):
        missing.append(
            "<b>author ids</b>: no kept tweet has an <code>author_id</code> (text-only input, or CSV "
            "files without an author column): how much of the corpus a few accounts wrote cannot be told."
        )
    if not missing:
        return ""
    return "<h2>Not in these inputs</h2><ul>" + "".join(f"<li>{m}</li>" for m in missing) + "</ul>"


def authors_section(stats: dict[str, Any], top: int) -> str:
    authors = stats.get("authors") or {}
    rows = stats["rows"]
    if not authors.get("known"):
        return ""  # said by ``missing_section``
    out = [authors_plot(authors)]
    table_rows = [
        [esc(a), count_text(n), share_text(n, authors["known"])] for a, n in authors["top"][: min(top, 10)]
    ]
    out.append(html_table(["author_id", "tweets", "share"], table_rows, {1, 2}))
    distinct = (
        f"{count_text(authors['distinct'])} distinct authors"
        if authors.get("distinct") is not None
        else f"at least {count_text(authors.get('distinct_at_least') or 0)} distinct authors (counts of the "
        "rarest were pruned: shares are lower bounds)"
    )
    known = authors["known"]
    note = f"{count_text(known)} tweets ({share_text(known, rows)}) have an author id, {distinct}."
    if authors["unknown"]:
        note += f" {count_text(authors['unknown'])} tweets have none and are not in these shares."
    cap = authors.get("author_cap")
    if cap:
        limit = cap.get("limit")
        note += f" The author cap stage removed {count_text(cap.get('tweets_removed', 0))} tweets" + (
            f" (at most {count_text(limit)} per author)." if limit else " (no cap applied)."
        )
    out.append(html_note(esc(note)))
    return "".join(out)


def counts_table(counts: dict[str, int], total: int, key: str, top: int) -> str:
    items = list(counts.items())
    rows = [[esc(k), count_text(n), share_text(n, total)] for k, n in items[:top]]
    if len(items) > top:
        rest = sum(n for _, n in items[top:])
        rows.append([f"({len(items) - top} more)", count_text(rest), share_text(rest, total)])
    return html_table([key, "tweets", "share"], rows, {1, 2})


def flags_note(stats: dict[str, Any]) -> str:
    f, rows = stats["flags"], stats["rows"]
    return html_note(
        f"replies {share_text(f['is_reply'], rows)} · "
        f"quotes {share_text(f['is_quote'], rows)} · "
        f"retweets {share_text(f['is_retweet'], rows)} · derived ids {share_text(f['id_derived'], rows)} · "
        f"author known {share_text(f['author_known'], rows)}"
    )


def hashtags_section(stats: dict[str, Any], top: int) -> str:
    tags = stats["hashtags"]
    out = ["<h2>Hashtags</h2>"]
    if not tags["counted"]:
        out.append(html_note("not counted (<code>--no-hashtags</code>)"))
    elif not tags["total"]:
        out.append(html_note("No kept tweet has a hashtag."))
    else:
        rows = [[esc(t), count_text(n), share_text(n, tags["total"])] for t, n in tags["top"][:top]]
        out.append(html_table(["hashtag", "uses", "share"], rows, {1, 2}))
        approx = " Counts are approximate (rare tags were pruned)." if tags["approximate"] else ""
        out.append(
            html_note(
                f"{count_text(tags['total'])} uses of {count_text(tags['distinct'])} distinct hashtags "
                f"(case-folded).{approx}"
            )
        )
    domains = stats["domains"]
    if domains["available"]:
        rows = [[esc(d), count_text(n), share_text(n, domains["total"])] for d, n in domains["top"][:top]]
        out.append("<h2>Link domains</h2>" + html_table(["domain", "links", "share"], rows, {1, 2}))
    else:
        out.append(html_note(f"Link domains: not recoverable. {esc(domains['why'])}."))
    return "".join(out)


def tokens_table(stats: dict[str, Any], top: int) -> str:
    vocab = stats["vocabulary"]
    rows = [
        [
            str(t["id"]),
            "<code>" + esc(visible(t["text"])) + "</code>" if t["text"] is not None else "?",
            count_text(t["count"]),
            f"{100 * t['share']:.2f} %",
        ]
        for t in vocab["top_tokens"][:top]
    ]
    note = (
        f"The {count_text(vocab['tokens_for_50pct'])} most frequent tokens make 50 % and "
        f"{count_text(vocab['tokens_for_90pct'])} make 90 % of all tokens. ␣ is a space, ⏎ a newline."
    )
    if vocab["out_of_vocab"]:
        note += (
            f' <span class="bad">{count_text(vocab["out_of_vocab"])} token ids outside the vocabulary.</span>'
        )
    if stats["tokenizer"].get("decoded_with") is None:
        note += f" Tokens not decoded: {esc(stats['tokenizer'].get('not_decoded_because'))}."
    return (
        "<h2>Top tokens</h2>"
        + html_table(["id", "token", "count", "share"], rows, {0, 2, 3})
        + html_note(note)
    )


def documents_section(stats: dict[str, Any]) -> str:
    """Rows as documents (``--documents threads|conversations``): tweets and depth per document;
    nothing when every row is one tweet."""
    docs = stats.get("documents")
    if not docs or not docs["multi_tweet_documents"]:
        return ""
    tpd, depth = docs["tweets_per_document"], docs["depth"]
    plot = histogram_plot(tpd, "tweets", "Tweets per document", "tweets-per-document")
    rows = [
        ["documents", count_text(docs["documents"])],
        ["of several tweets", count_text(docs["multi_tweet_documents"])],
        ["tweets in the documents", count_text(docs["tweets"])],
        ["tweets / document (mean, p90, max)", f"{tpd['mean']:.2f} · {tpd['p90']:,} · {tpd['max']:,}"],
        ["depth in turns (mean, p90, max)", f"{depth['mean']:.2f} · {depth['p90']:,} · {depth['max']:,}"],
        ["tokens / document of several tweets", f"{docs['tokens_per_multi_tweet_document']:.1f}"],
    ]
    return (
        "<h2>Documents</h2>"
        + html_table(["figure", "value"], rows, {1})
        + f'<div class="gap">{plot}</div>'
        + html_note("A document is a thread or a conversation branch: its turns end in one EOS.")
    )

"""``tweetmill stats --html``: the figures of ``compute_stats`` as one self-contained HTML page.

One file, no network, no JavaScript: plots are inline SVG drawn by matplotlib (Agg backend, text
kept as text so the page stays small and sharp), tables are plain HTML. The page is laid out for a
laptop screen (max 1200 px wide, two plot columns). Everything taken from the data (languages, file
names, hashtags, tokens) is escaped; matplotlib's math parsing is off so a '$' stays a '$'.
"""

from __future__ import annotations

import html
import io
import logging
from typing import Any

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tweetmill.pipeline.stats_print import count_text, share_text, size_text, visible

log = logging.getLogger(__name__)

BLUE, ORANGE, GREY, GREEN, RED = "#3b6fb6", "#e0803a", "#9aa3ad", "#3a9a5b", "#c0392b"
_RC = {
    "svg.fonttype": "none",  # text as <text>: smaller, selectable, rendered with the page's fonts
    "text.parse_math": False,
    "font.family": "sans-serif",
    "font.size": 9,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "axes.titlesize": 10,
    "axes.titleweight": "bold",
    "axes.titlelocation": "left",
}

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f6f8; color: #1d2630;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 0 0 8px; }
.sub { color: #5b6773; margin: 0 0 16px; font-size: 13px; word-break: break-all; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(150px, 1fr)); gap: 12px;
  margin-bottom: 16px; }
.card { background: #fff; border-radius: 8px; padding: 10px 14px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.card .v { font-size: 22px; font-weight: 600; white-space: nowrap; }
.card .k { color: #5b6773; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-bottom: 16px; }
.panel { background: #fff; border-radius: 8px; padding: 14px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.08);
  min-width: 0; }
.wide { grid-column: 1 / -1; }
.panel svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e6e9ed; text-align: left; vertical-align: top; }
th { color: #5b6773; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.f { word-break: break-all; }
.ok { color: #2e7d4f; font-weight: 600; }
.bad { color: #c0392b; font-weight: 600; }
.note { color: #5b6773; font-size: 12px; margin: 6px 0 0; }
code { background: #eef1f4; padding: 0 3px; border-radius: 3px; }
details summary { cursor: pointer; color: #3b6fb6; }
@media (max-width: 800px) { .grid { grid-template-columns: 1fr; } }
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A bare matplotlib Figure (no pyplot: no global backend or figure registry to touch)."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height))
    return fig, fig.add_subplot()


def _svg(fig: Any, name: str) -> str:
    """A figure as an inline <svg> element (no XML prolog), ids salted per figure so several
    SVGs on one page never share an id."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"tweetmill-{name}"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    start = text.find("<svg")
    return f'<div role="img" aria-label="{_e(name)}">{text[start:]}</div>'


def _styled(fn):
    """Run a plotting function under tweetmill's matplotlib style."""

    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    return wrapper


@_styled
def funnel_plot(funnel: dict[str, Any]) -> str:
    """Waterfall: what remains after each step (blue) and what that step removed (orange)."""
    from matplotlib.ticker import FuncFormatter

    steps = funnel["steps"]
    labels = ["read"] + [f"{s['stage']}: {s['reason']}" for s in steps] + ["kept"]
    remaining = [funnel["read"]] + [s["remaining"] for s in steps] + [funnel["kept"]]
    removed = [0] + [s["count"] for s in steps] + [0]
    fig, ax = _figure(4.6, 0.3 * len(labels) + 0.9)
    y = np.arange(len(labels))
    colors = [BLUE] * (len(labels) - 1) + [GREEN]
    ax.barh(y, remaining, color=colors, height=0.62)
    ax.barh(y, removed, left=remaining, color=ORANGE, height=0.62)
    read = max(funnel["read"], 1)
    for yi, (r, d) in enumerate(zip(remaining, removed, strict=True)):
        text = f"−{d:,} ({100 * d / read:.1f} %)" if d else f"{r:,}"
        ax.text(r + d + read * 0.01, yi, text, va="center", fontsize=8, color="#333")
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    ax.set_xlim(0, read * 1.28)
    ax.set_xlabel("records")
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
    ax.set_title("Funnel: remaining after each step, removed in orange")
    return _svg(fig, "funnel")


@_styled
def length_plot(tpt: dict[str, Any]) -> str:
    """Tokens per tweet: the exact histogram, with mean and percentiles marked."""

    fig, ax = _figure(6.2, 3.0)
    hist = tpt.get("histogram") or []
    if hist:
        lengths, counts = np.array(hist).T
        top = max(int(tpt["p99"] * 1.3), 10)
        shown = lengths <= top
        ax.bar(lengths[shown], counts[shown], width=1.0, color=BLUE, linewidth=0)
        for key, color in (("p50", GREEN), ("p90", ORANGE), ("p99", RED)):
            ax.axvline(tpt[key], color=color, linewidth=1.2, linestyle="--", label=f"{key} = {tpt[key]}")
        ax.axvline(tpt["mean"], color="#333", linewidth=1, label=f"mean = {tpt['mean']:.1f}")
        ax.legend(frameon=False, fontsize=8)
        if not shown.all():
            ax.set_xlim(0, top)
            ax.text(
                0.99,
                0.6,
                f"{int(counts[~shown].sum()):,} tweets longer than {top}",
                ha="right",
                transform=ax.transAxes,
                fontsize=8,
                color="#555",
            )
    ax.set_xlabel("tokens per tweet (EOS included)")
    ax.set_ylabel("tweets")
    ax.set_title("Tokens per tweet")
    return _svg(fig, "tokens-per-tweet")


@_styled
def languages_plot(detected: dict[str, int], twitter: dict[str, int], rows: int, top: int = 10) -> str:
    """Detected language and Twitter's tag side by side, for the most frequent detected languages."""

    langs = list(detected)[:top]
    for lang in twitter:  # Twitter's frequent tags too, so a disagreement shows
        if len(langs) >= top + 3:
            break
        if lang not in langs and lang != "(none)":
            langs.append(lang)
    fig, ax = _figure(6.2, 0.26 * len(langs) + 1.0)
    y = np.arange(len(langs))
    total = max(rows, 1)
    ax.barh(
        y - 0.2,
        [100 * detected.get(x, 0) / total for x in langs],
        height=0.38,
        color=BLUE,
        label="detected (lang)",
    )
    ax.barh(
        y + 0.2,
        [100 * twitter.get(x, 0) / total for x in langs],
        height=0.38,
        color=GREY,
        label="Twitter's tag (twitter_lang)",
    )
    ax.set_yticks(y, langs)
    ax.invert_yaxis()
    ax.set_xlabel("share of tweets (%)")
    none = twitter.get("(none)", 0)
    ax.set_title("Languages" + (f" ({100 * none / total:.0f} % have no Twitter tag)" if none else ""))
    ax.legend(frameon=False, fontsize=8, loc="lower right")
    return _svg(fig, "languages")


@_styled
def months_plot(per_month: dict[str, int], undated: int) -> str:
    """Tweets per month of created_at, every month of the span drawn (empty ones as gaps)."""

    fig, ax = _figure(12.4, 2.6)
    if per_month:
        months = np.array(list(per_month), dtype="datetime64[M]")
        span = np.arange(months.min(), months.max() + 1)
        counts = np.zeros(len(span), dtype=np.int64)
        counts[(months - months.min()).astype(np.int64)] = list(per_month.values())
        ax.bar(span.astype("datetime64[D]").astype("O"), counts, width=25, color=BLUE, linewidth=0)
        ax.set_ylabel("tweets")
    else:
        ax.text(0.5, 0.5, "no tweet has a date", ha="center", transform=ax.transAxes)
    title = "Tweets per month (created_at, UTC)"
    if undated:
        title += f"; {undated:,} tweets without a date are not shown"
    ax.set_title(title)
    return _svg(fig, "tweets-per-month")


@_styled
def coverage_plot(vocab: dict[str, Any]) -> str:
    """How many distinct tokens make which share of all tokens (a rank-coverage curve)."""
    from matplotlib.ticker import FuncFormatter

    fig, ax = _figure(6.2, 2.8)
    points = vocab.get("coverage") or []
    if points:
        k, share = np.array(points).T
        ax.plot(k, 100 * share, color=BLUE)
        ax.set_xscale("log")
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:,.0f}"))
        ax.axhline(50, color=GREY, linewidth=0.8, linestyle=":")
        ax.axhline(90, color=GREY, linewidth=0.8, linestyle=":")
        ax.axvline(
            vocab["size"], color=ORANGE, linewidth=1, linestyle="--", label=f"vocabulary ({vocab['size']:,})"
        )
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_ylim(0, 101)
    ax.set_xlabel("the k most frequent tokens")
    ax.set_ylabel("% of all tokens")
    ax.set_title(f"Vocabulary: {vocab['used']:,} of {vocab['size']:,} tokens used")
    return _svg(fig, "vocabulary")


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int], wrap: set[int] = frozenset()) -> str:
    head = "".join(
        f'<th class="n">{_e(h)}</th>' if i in numeric else f"<th>{_e(h)}</th>" for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="n"' if i in numeric else (' class="f"' if i in wrap else "")
            cells.append(f"<td{cls}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def render_html(stats: dict[str, Any], top: int = 15) -> str:
    """The whole page, as a string."""
    rows, tokens = stats["rows"], stats["tokens"]
    tpt = stats["tokens_per_tweet"]
    funnel = stats["funnel"]
    months = list(stats["tweets_per_month"])
    cards = [
        ("tweets", count_text(rows)),
        ("tokens", count_text(tokens)),
        ("shards", count_text(stats["shards"])),
        ("size", size_text(stats["bytes"])),
        ("tokens / tweet", f"{tpt['mean']:.1f}"),
        ("kept of read", share_text(funnel["kept"], funnel["read"])),
        ("time span", f"{months[0][:4]}–{months[-1][:4]}" if months else "-"),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>tweetmill stats: {_e(stats['shard_dir'])}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f'<h1>tweetmill stats</h1><p class="sub">{_e(stats["shard_dir"])} · run '
        f"<code>{_e(stats['run_fingerprint'][:16])}</code> · {_e(stats.get('created_by', ''))}</p>",
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="v">{_e(v)}</div><div class="k">{_e(k)}</div></div>'
            for k, v in cards
        )
        + "</div>",
        '<div class="grid">',
        _panel(funnel_plot(funnel) + _balance(funnel) + _dedup(stats["dedup"])),
        _panel(
            length_plot(tpt) + f'<p class="note">p10 {tpt["p10"]} · p50 {tpt["p50"]} · p90 {tpt["p90"]} · '
            f"p99 {tpt['p99']} · min {tpt['min']} · max {tpt['max']} tokens; sd {tpt['std']:.1f}</p>"
        ),
        _panel(months_plot(stats["tweets_per_month"], stats["time"]["undated"]), wide=True),
        _panel(languages_plot(stats["languages"], stats["twitter_languages"], rows)),
        _panel(coverage_plot(stats["vocabulary"]) + _tokens_table(stats, top)),
        _panel("<h2>Input files</h2>" + _inputs_table(stats), wide=True),
        _panel(
            "<h2>Source formats</h2>" + _counts(stats["source_formats"], rows, "format", top) + _flags(stats)
        ),
        _panel(_hashtags(stats, top)),
        _panel("<h2>Shards</h2>" + _shards_table(stats), wide=True),
        "</div>",
        '<p class="note">Written by <code>tweetmill stats --html</code>; the same figures: '
        "<code>tweetmill stats DIR --json</code>.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _panel(content: str, wide: bool = False) -> str:
    return f'<section class="panel{" wide" if wide else ""}">{content}</section>'


def _balance(funnel: dict[str, Any]) -> str:
    ok = funnel["balanced"]
    verdict = '<span class="ok">balanced</span>' if ok else '<span class="bad">NOT balanced</span>'
    return (
        f'<p class="note">read {count_text(funnel["read"])} = kept {count_text(funnel["kept"])} + dropped '
        f"{count_text(funnel['dropped'])} + errors {count_text(funnel['errors'])}; "
        f"{count_text(funnel['rows_in_shards'])} rows in the shards: {verdict}</p>"
    )


def _dedup(dedup: dict[str, Any]) -> str:
    text = (
        f"Dedup: {count_text(dedup['duplicate_id'])} repeated ids, "
        f"{count_text(dedup['exact_duplicate'])} exact and "
        f"{count_text(dedup['near_duplicate'])} near duplicates removed."
    )
    near = dedup.get("near_dedup")
    if near:
        text += (
            f" Near-duplicate clusters: {count_text(near.get('clusters', 0))}, the largest "
            f"{count_text(near.get('largest_cluster', 0))} tweets "
            f"(threshold {_e(near.get('threshold', '?'))})."
        )
    elif not dedup["near_duplicate"]:
        text += " No near-dedup stage in this run."
    return f'<p class="note">{text}</p>'


def _counts(counts: dict[str, int], total: int, key: str, top: int) -> str:
    items = list(counts.items())
    rows = [[_e(k), count_text(n), share_text(n, total)] for k, n in items[:top]]
    if len(items) > top:
        rest = sum(n for _, n in items[top:])
        rows.append([f"({len(items) - top} more)", count_text(rest), share_text(rest, total)])
    return _table([key, "tweets", "share"], rows, {1, 2})


def _flags(stats: dict[str, Any]) -> str:
    f, rows = stats["flags"], stats["rows"]
    return (
        f'<p class="note">replies {share_text(f["is_reply"], rows)} · '
        f"quotes {share_text(f['is_quote'], rows)} · "
        f"retweets {share_text(f['is_retweet'], rows)} · derived ids {share_text(f['id_derived'], rows)} · "
        f"author known {share_text(f['author_known'], rows)}</p>"
    )


def _inputs_table(stats: dict[str, Any]) -> str:
    rows = [
        [
            _e(f["file"]),
            _e(f["format"] or "?"),
            *(count_text(f[k]) for k in ("records", "tweets", "dropped", "errors", "kept")),
        ]
        for f in stats["inputs"]
    ]
    table = _table(
        ["file", "format", "records", "tweets", "dropped", "errors", "kept"], rows, {2, 3, 4, 5, 6}, {0}
    )
    if len(rows) > 30:
        return f"<details><summary>{len(rows):,} files</summary>{table}</details>"
    return table


def _shards_table(stats: dict[str, Any]) -> str:
    rows = [
        [_e(s["file"]), count_text(s["rows"]), count_text(s["tokens"]), size_text(s["bytes"])]
        for s in stats["per_shard"]
    ]
    table = _table(["shard", "tweets", "tokens", "size"], rows, {1, 2, 3})
    agree = (
        '<span class="ok">agree</span>' if stats["matches_manifest"] else '<span class="bad">DISAGREE</span>'
    )
    note = f'<p class="note">Rows and tokens read from the shards {agree} with the manifest.</p>'
    if len(rows) > 12:
        return f"<details><summary>{len(rows):,} shards</summary>{table}</details>{note}"
    return table + note


def _hashtags(stats: dict[str, Any], top: int) -> str:
    tags = stats["hashtags"]
    out = ["<h2>Hashtags</h2>"]
    if not tags["counted"]:
        out.append('<p class="note">not counted (<code>--no-hashtags</code>)</p>')
    else:
        rows = [[_e(t), count_text(n), share_text(n, tags["total"])] for t, n in tags["top"][:top]]
        out.append(_table(["hashtag", "uses", "share"], rows, {1, 2}))
        approx = " Counts are approximate (rare tags were pruned)." if tags["approximate"] else ""
        out.append(
            f'<p class="note">{count_text(tags["total"])} uses of '
            f"{count_text(tags['distinct'])} distinct hashtags "
            f"(case-folded).{approx}</p>"
        )
    domains = stats["domains"]
    if domains["available"]:
        rows = [[_e(d), count_text(n), share_text(n, domains["total"])] for d, n in domains["top"][:top]]
        out.append("<h2>Link domains</h2>" + _table(["domain", "links", "share"], rows, {1, 2}))
    else:
        out.append(f'<p class="note">Link domains: not recoverable. {_e(domains["why"])}.</p>')
    return "".join(out)


def _tokens_table(stats: dict[str, Any], top: int) -> str:
    vocab = stats["vocabulary"]
    rows = [
        [
            str(t["id"]),
            "<code>" + _e(visible(t["text"])) + "</code>" if t["text"] is not None else "?",
            count_text(t["count"]),
            f"{100 * t['share']:.2f} %",
        ]
        for t in vocab["top_tokens"][:top]
    ]
    note = (
        f'<p class="note">The {count_text(vocab["tokens_for_50pct"])} most frequent tokens make 50 % and '
        f"{count_text(vocab['tokens_for_90pct'])} make 90 % of all tokens. ␣ is a space, ⏎ a newline."
    )
    if vocab["out_of_vocab"]:
        note += (
            f' <span class="bad">{count_text(vocab["out_of_vocab"])} token ids outside the vocabulary.</span>'
        )
    if stats["tokenizer"].get("decoded_with") is None:
        note += f" Tokens not decoded: {_e(stats['tokenizer'].get('not_decoded_because'))}."
    return "<h2>Top tokens</h2>" + _table(["id", "token", "count", "share"], rows, {0, 2, 3}) + note + "</p>"


def write_html(stats: dict[str, Any], path: str, top: int = 15) -> None:
    """Write the page to ``path`` (local or any Beam filesystem)."""
    page = render_html(stats, top=top).encode("utf-8")
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(page)
    log.info("wrote %s (%d bytes)", path, len(page))

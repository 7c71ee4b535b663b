"""``tweetmill stats --html``: the figures of ``compute_stats`` as one self-contained HTML page.

One file, no network, no JavaScript: plots are inline SVG drawn by matplotlib (Agg backend, text
kept as text so the page stays small and sharp), tables are plain HTML. The page is laid out for a
laptop screen (max 1200 px wide, two plot columns). Everything taken from the data (tweet texts,
languages, file names, hashtags, tokens) is escaped; matplotlib's math parsing is off so a '$' stays
a '$'.

The page is for a person deciding about a corpus: a chart only where there is data (a note says
what is missing and why), every bar labelled with its count, count axes with a few short ticks
(``10k``), small categories gathered into one labelled "(N more)" bar rather than drawn invisibly
thin; and beside the figures what they are made of: tweets each drop reason removed, near-duplicate
pairs (removed beside kept), what the clean stage changed, and per input file where its records went.

This module lays out the page (CSS, cards, panels) and writes it; the parts come from
``report_markup`` (escaping, tables, notes), ``report_charts`` (how a chart is drawn),
``report_plots`` (the charts), ``report_removed`` (what the run removed and changed),
``report_corpus`` (what the kept tweets are) and ``report_files`` (input files and shards).
"""

from __future__ import annotations

import logging
from typing import Any

from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tweetmill.pipeline.report_corpus import (
    authors_card,
    authors_section,
    chars_section,
    confidence_section,
    counts_table,
    documents_section,
    flags_note,
    hashtags_section,
    missing_section,
    percentiles_note,
    tokens_per_language_section,
    tokens_table,
)
from tweetmill.pipeline.report_files import inputs_table, shards_table
from tweetmill.pipeline.report_markup import esc, html_panel
from tweetmill.pipeline.report_plots import (
    coverage_plot,
    funnel_plot,
    languages_plot,
    length_plot,
    months_plot,
)
from tweetmill.pipeline.report_removed import (
    balance_note,
    clean_section,
    dedup_note,
    near_duplicates_section,
    removed_section,
)
from tweetmill.pipeline.stats_print import count_text, share_text, size_text

log = logging.getLogger(__name__)

_CSS = """
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; background: #f4f6f8; color: #1d2630;
  font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; }
main { max-width: 1200px; margin: 0 auto; padding: 20px 24px 40px; }
h1 { font-size: 22px; margin: 0 0 2px; }
h2 { font-size: 16px; margin: 0 0 8px; }
.sub { color: #5b6773; margin: 0 0 16px; font-size: 13px; word-break: break-all; }
.cards { display: grid; grid-template-columns: repeat(auto-fit, minmax(112px, 1fr)); gap: 10px;
  margin-bottom: 16px; }
.card { background: #fff; border-radius: 8px; padding: 10px 14px; box-shadow: 0 1px 2px rgba(0,0,0,.08); }
.card .v { font-size: 20px; font-weight: 600; white-space: nowrap; }
.card .k { color: #5b6773; font-size: 12px; text-transform: uppercase; letter-spacing: .04em; }
.grid { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; margin-bottom: 16px; }
.panel { background: #fff; border-radius: 8px; padding: 14px 16px; box-shadow: 0 1px 2px rgba(0,0,0,.08);
  min-width: 0; }
.wide { grid-column: 1 / -1; }
.cols { display: grid; grid-template-columns: 1fr 1fr; gap: 16px; }
.gap { margin-top: 14px; }
.panel svg { width: 100%; height: auto; display: block; }
table { border-collapse: collapse; width: 100%; font-size: 13px; }
th, td { padding: 3px 8px; border-bottom: 1px solid #e6e9ed; text-align: left; vertical-align: top; }
th { color: #5b6773; font-weight: 600; }
td.n, th.n { text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }
td.f { word-break: break-all; }
.ok { color: #2e7d4f; font-weight: 600; }
.bad { color: #c0392b; font-weight: 600; }
.note { color: #5b6773; font-size: 12px; margin: 6px 0 0; }
.small { color: #5b6773; font-size: 11px; }
code { background: #eef1f4; padding: 0 3px; border-radius: 3px; }
details summary { cursor: pointer; color: #3b6fb6; }
.tweet { white-space: pre-wrap; overflow-wrap: anywhere; font-size: 12.5px; background: #f7f8fa;
  border-left: 3px solid #d5dae0; padding: 3px 8px; margin: 0 0 4px; }
.tweet .meta { display: block; color: #5b6773; font-size: 11px; white-space: normal; }
.examples { display: grid; grid-template-columns: repeat(3, minmax(0, 1fr)); gap: 6px; }
.examples .tweet { margin: 0; }
.removed .tweet { border-left-color: #e0803a; }
.kept .tweet { border-left-color: #3a9a5b; }
mark { background: #ffe7a3; padding: 0; }
.reason { white-space: nowrap; }
.fate { display: flex; height: 10px; min-width: 90px; border-radius: 2px; overflow: hidden;
  background: #eef1f4; }
.fate span { display: block; height: 100%; }
.k-kept { background: #3a9a5b; } .k-later { background: #e0803a; } .k-parse { background: #9aa3ad; }
.k-err { background: #c0392b; }
.key span { display: inline-block; width: 9px; height: 9px; margin: 0 3px 0 8px; border-radius: 2px; }
@media (max-width: 800px) { .grid, .cols { grid-template-columns: 1fr; } }
"""


def render_html(stats: dict[str, Any], top: int = 15) -> str:
    """The whole page, as a string."""
    rows, tokens = stats["rows"], stats["tokens"]
    tpt = stats["tokens_per_tweet"]
    funnel = stats["funnel"]
    months = list(stats["tweets_per_month"])
    authors = stats.get("authors") or {}
    cards = [
        ("tweets", count_text(rows)),
        ("tokens", count_text(tokens)),
        ("shards", count_text(stats["shards"])),
        ("size", size_text(stats["bytes"])),
        ("tokens / tweet", f"{tpt['mean']:.1f}"),
        ("kept of read", share_text(funnel["kept"], funnel["read"])),
        ("time span", f"{months[0][:4]}–{months[-1][:4]}" if months else "no dates"),
        ("authors", authors_card(authors)),
    ]
    missing, documents = missing_section(stats), documents_section(stats)
    panels = [
        html_panel(missing, wide=True) if missing else "",
        html_panel(funnel_plot(funnel) + balance_note(funnel) + dedup_note(stats["dedup"])),
        html_panel(length_plot(tpt) + percentiles_note(tpt, "tokens") + chars_section(stats)) if rows else "",
        html_panel(documents) if documents else "",
        html_panel(removed_section(stats), wide=True),
        html_panel(near_duplicates_section(stats), wide=True),
        html_panel(clean_section(stats)),
        html_panel(confidence_section(stats)) if rows else "",
        html_panel(languages_plot(stats["languages"], stats["twitter_languages"], rows)) if rows else "",
        html_panel(tokens_per_language_section(stats, top)) if tokens else "",
        html_panel(authors_section(stats, top)) if authors.get("known") else "",
        html_panel(
            "<h2>Source formats</h2>"
            + counts_table(stats["source_formats"], rows, "format", top)
            + flags_note(stats)
            + hashtags_section(stats, top)
        ),
        html_panel(months_plot(stats["tweets_per_month"], stats["time"]["undated"]), wide=True)
        if months
        else "",
        html_panel(
            f'<div class="cols"><div>{coverage_plot(stats["vocabulary"])}</div>'
            f"<div>{tokens_table(stats, top)}</div></div>",
            wide=True,
        )
        if tokens
        else "",
        html_panel("<h2>Input files: where each file's records went</h2>" + inputs_table(stats), wide=True),
        html_panel("<h2>Shards</h2>" + shards_table(stats), wide=True),
    ]
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>tweetmill stats: {esc(stats['shard_dir'])}</title>",
        f"<style>{_CSS}</style></head><body><main>",
        f'<h1>tweetmill stats</h1><p class="sub">{esc(stats["shard_dir"])} · run '
        f"<code>{esc(stats['run_fingerprint'][:16])}</code> · {esc(stats.get('created_by', ''))}</p>",
        '<div class="cards">'
        + "".join(
            f'<div class="card"><div class="v">{esc(v)}</div><div class="k">{esc(k)}</div></div>'
            for k, v in cards
        )
        + "</div>",
        '<div class="grid">',
        *(p for p in panels if p),
        "</div>",
        '<p class="note">Written by <code>tweetmill stats --html</code>; the same figures: '
        "<code>tweetmill stats DIR --json</code>.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def write_html(stats: dict[str, Any], path: str, top: int = 15) -> None:
    """Write the page to ``path`` (local or any Beam filesystem)."""
    page = render_html(stats, top=top).encode("utf-8")
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(page)
    log.info("wrote %s (%d bytes)", path, len(page))

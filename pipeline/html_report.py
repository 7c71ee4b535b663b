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
"""

from __future__ import annotations

import difflib
import html
import io
import logging
import math
import re
from typing import Any

import numpy as np
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from tweetmill.pipeline.stats_print import common_dir, count_text, share_text, size_text, visible

log = logging.getLogger(__name__)

BLUE, ORANGE, GREY, GREEN, RED = "#3b6fb6", "#e0803a", "#9aa3ad", "#3a9a5b", "#c0392b"
LABEL_SIZE = 7.5  # points: the counts written on bars
MAX_BARS = 30  # a histogram's bars at most (each labelled with its count)
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


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def compact(n: float) -> str:
    """A count in at most four characters and a unit: 950, 12.3k, 4.56M (axes and histogram bars)."""
    n = float(n)
    if abs(n) < 1000:
        return f"{n:,.0f}" if n == round(n) else f"{n:.1f}"
    for unit, scale in (("k", 1e3), ("M", 1e6), ("G", 1e9), ("T", 1e12)):
        value = n / scale
        if abs(value) < 999.5:
            digits = 0 if abs(value) >= 99.5 else 1 if abs(value) >= 9.95 else 2
            return f"{value:.{digits}f}".rstrip("0").rstrip(".") + unit
    return f"{n:.3g}"


def _figure(width: float, height: float) -> tuple[Any, Any]:
    """A bare matplotlib Figure (no pyplot: no global backend or figure registry to touch).

    Its size is what the page gets: the layout fits the labels inside it, so every half-width plot
    is as wide as the others and its text as large."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def _svg(fig: Any, name: str) -> str:
    """A figure as an inline <svg> element (no XML prolog), ids salted per figure so several
    SVGs on one page never share an id."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"tweetmill-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    start = text.find("<svg")
    return f'<div role="img" aria-label="{_e(name)}">{text[start:]}</div>'


def _styled(fn):
    """Run a plotting function under tweetmill's matplotlib style."""

    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def _barh_figure(labels: list[str], per_bar: float, width: float = 6.2) -> tuple[Any, Any]:
    """A figure for horizontal bars named ``labels``."""
    return _figure(width, per_bar * len(labels) + 1.0)


def _inches(labels: list[str], size: float) -> float:
    """About how long the longest of ``labels`` is at ``size`` points."""
    return max((len(t) for t in labels), default=0) * size * 0.56 / 72


def _title(fig: Any, text: str) -> None:
    """The plot's title, at the figure's left edge (an axes title starts after the bar names)."""
    fig.suptitle(text, x=0.01, ha="left", fontsize=10, fontweight="bold")


def _count_axis(axis: Any, bins: int = 4) -> None:
    """A count axis with a few short tick labels (``0 10k 20k``): long ones collide."""
    from matplotlib.ticker import FuncFormatter, MaxNLocator

    axis.set_major_locator(MaxNLocator(nbins=bins, integer=True, min_n_ticks=2))
    axis.set_major_formatter(FuncFormatter(lambda v, _: compact(v)))


def _text_room(fig: Any, ax: Any, labels: list[str], largest: float, horizontal: bool) -> float:
    """The data limit that leaves room for ``labels`` (LABEL_SIZE points) past the largest bar."""
    width, height = fig.get_size_inches()
    if horizontal:  # the axes: the figure less the bar names and margins
        names = [t.get_text() for t in ax.get_yticklabels()]
        extent = width - _inches(names, 9) - 0.45
    else:  # less the title, the x labels and margins
        extent = height - 0.85
    share = min((_inches(labels, LABEL_SIZE) + 0.1) / max(extent, 0.5), 0.65)
    return max(largest, 1) / (1 - share)


def _label_barh(fig: Any, ax: Any, y: Any, ends: list[float], labels: list[str], largest: float) -> None:
    """Write each horizontal bar's label just past its end; widen the axis to hold them."""
    pad = max(largest, 1) * 0.01
    for yi, end, label in zip(y, ends, labels, strict=True):
        ax.text(end + pad, yi, label, va="center", fontsize=LABEL_SIZE, color="#333")
    ax.set_xlim(0, _text_room(fig, ax, labels, largest, horizontal=True))


def _label_bars(fig: Any, ax: Any, x: Any, heights: list[float], labels: list[str]) -> None:
    """Write each vertical bar's label (rotated) on top of it; raise the axis to hold them."""
    largest = max(heights, default=0)
    pad = max(largest, 1) * 0.015
    for xi, h, label in zip(x, heights, labels, strict=True):
        if h:
            ax.text(xi, h + pad, label, ha="center", va="bottom", rotation=90, fontsize=LABEL_SIZE - 0.5)
    ax.set_ylim(0, _text_room(fig, ax, labels, largest, horizontal=False))


# --- plots ------------------------------------------------------------------------------------------


@_styled
def funnel_plot(funnel: dict[str, Any]) -> str:
    """Waterfall: what remains after each step (blue) and what that step removed (orange)."""
    steps = funnel["steps"]
    labels = ["read"] + [f"{s['stage']}: {s['reason']}" for s in steps] + ["kept"]
    remaining = [funnel["read"]] + [s["remaining"] for s in steps] + [funnel["kept"]]
    removed = [0] + [s["count"] for s in steps] + [0]
    fig, ax = _barh_figure(labels, 0.3)
    y = np.arange(len(labels))
    colors = [BLUE] * (len(labels) - 1) + [GREEN]
    ax.barh(y, remaining, color=colors, height=0.62)
    ax.barh(y, removed, left=remaining, color=ORANGE, height=0.62)
    read = max(funnel["read"], 1)
    texts = [
        f"−{d:,} ({share_text(d, read)})" if d else f"{r:,}" + (f" ({share_text(r, read)})" if i else "")
        for i, (r, d) in enumerate(zip(remaining, removed, strict=True))
    ]
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    _label_barh(fig, ax, y, [r + d for r, d in zip(remaining, removed, strict=True)], texts, read)
    ax.set_xlabel("records")
    _count_axis(ax.xaxis)
    _title(fig, "Funnel: remaining after each step, removed in orange")
    return _svg(fig, "funnel")


def _bins(summary: dict[str, Any]) -> tuple[int, int, np.ndarray, int]:
    """``(width, upper, counts, beyond)``: an exact length histogram in at most MAX_BARS bins of
    ``width`` (1, 2, 5, 10, 20, 50...) from 0 to ``upper`` (past the 99th percentile), and the
    tweets at or past ``upper``."""
    lengths, counts = np.array(summary["histogram"], dtype=np.int64).reshape(-1, 2).T
    top = int(lengths.max()) + 1
    p99 = int(summary.get("p99", top))
    upper = top if top <= MAX_BARS else min(top, max(int(p99 * 1.15) + 1, MAX_BARS))
    width = next(
        w * 10**e for e in range(12) for w in (1, 2, 5) if math.ceil(upper / (w * 10**e)) <= MAX_BARS - 1
    )
    nbins = math.ceil(upper / width)
    upper = nbins * width
    inside = lengths < upper
    binned = np.bincount(lengths[inside] // width, weights=counts[inside], minlength=nbins).astype(np.int64)
    return width, upper, binned, int(counts[~inside].sum())


@_styled
def histogram_plot(summary: dict[str, Any], unit: str, title: str, name: str) -> str:
    """A length histogram (tokens or characters per tweet) in labelled bins, the mean and the
    percentiles marked; what lies past the 99th percentile gathered in one grey bar."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = _figure(6.2, 3.0)
    width, upper, binned, beyond = _bins(summary)
    starts = np.arange(len(binned)) * width
    x = list(starts + width / 2)
    heights = [int(n) for n in binned]
    ax.bar(x, heights, width=width * 0.88, color=BLUE, linewidth=0)
    if beyond:
        x.append(upper + width / 2)
        heights.append(beyond)
        ax.bar(x[-1], beyond, width=width * 0.88, color=GREY, linewidth=0, label=f"≥ {upper:,} {unit}")
    _label_bars(fig, ax, x, heights, [compact(h) for h in heights])
    for key, color in (("p50", GREEN), ("p90", ORANGE), ("p99", RED)):
        if summary[key] < upper:
            ax.axvline(
                summary[key], color=color, linewidth=1.1, linestyle="--", label=f"{key} = {summary[key]}"
            )
    ax.axvline(summary["mean"], color="#333", linewidth=1, label=f"mean = {summary['mean']:.1f}")
    ax.legend(frameon=False, fontsize=7.5, loc="best")
    first = int(np.flatnonzero(binned)[0]) if binned.any() else 0
    left = first * width if first * width > 0.2 * upper else 0  # no long empty stretch from 0
    ax.set_xlim(left, upper + (2 if beyond else 0.3) * width)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel(f"{unit} per tweet" + (f" (bins of {width})" if width > 1 else ""))
    ax.set_ylabel("tweets")
    _count_axis(ax.yaxis)
    _title(fig, title)
    return _svg(fig, name)


def length_plot(tpt: dict[str, Any]) -> str:
    """Tokens per tweet."""
    return histogram_plot(tpt, "tokens", "Tokens per tweet (EOS included)", "tokens-per-tweet")


def _with_rest(counts: dict[str, int], top: int) -> tuple[list[str], list[int]]:
    """The ``top`` largest and, as one "(N more)" entry, the rest."""
    items = list(counts.items())
    keys, values = [k for k, _ in items[:top]], [n for _, n in items[:top]]
    if len(items) > top:
        keys.append(f"({len(items) - top} more)")
        values.append(sum(n for _, n in items[top:]))
    return keys, values


@_styled
def languages_plot(detected: dict[str, int], twitter: dict[str, int], rows: int, top: int = 10) -> str:
    """Tweets per detected language and per Twitter's tag side by side, every bar labelled."""
    langs, _ = _with_rest(detected, top)
    if len(langs) > top:
        langs.pop()  # "(N more)" comes last, after Twitter's own frequent tags
    tagged = any(k != "(none)" for k in twitter)
    for lang in twitter if tagged else ():  # Twitter's frequent tags too, so a disagreement shows
        if len(langs) >= top + 3:
            break
        if lang not in langs and lang != "(none)":
            langs.append(lang)
    rest = [k for k in detected if k not in langs]
    labels = langs + ([f"({len(rest)} more)"] if rest else [])
    ours = [detected.get(x, 0) for x in langs] + ([sum(detected[k] for k in rest)] if rest else [])
    theirs = [twitter.get(x, 0) for x in langs] + (
        [sum(n for k, n in twitter.items() if k not in langs and k != "(none)")] if rest else []
    )
    fig, ax = _barh_figure(labels, 0.34 if tagged else 0.22)
    y = np.arange(len(labels))
    total = max(rows, 1)
    h = 0.38 if tagged else 0.7
    ax.barh(y - (0.2 if tagged else 0), ours, height=h, color=BLUE, label="detected (lang)")
    ends, texts, ys = (
        list(ours),
        [f"{n:,} ({share_text(n, total)})" for n in ours],
        list(y - (0.2 if tagged else 0)),
    )
    if tagged:
        ax.barh(y + 0.2, theirs, height=h, color=GREY, label="Twitter's tag (twitter_lang)")
        ends += theirs
        texts += [f"{n:,}" for n in theirs]
        ys += list(y + 0.2)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    _label_barh(fig, ax, ys, ends, texts, max(ends, default=1))
    ax.set_xlabel("tweets")
    _count_axis(ax.xaxis)
    none = twitter.get("(none)", 0)
    if not tagged:
        title = "Languages (detected; no tweet has a Twitter tag)"
    else:
        title = "Languages" + (f" ({share_text(none, total)} have no Twitter tag)" if none else "")
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    _title(fig, title)
    return _svg(fig, "languages")


@_styled
def tokens_per_language_plot(tokens: dict[str, int], top: int = 10) -> str:
    """Tokens per detected language: what mixture weights are computed from."""
    labels, values = _with_rest(tokens, top)
    total = max(sum(tokens.values()), 1)
    fig, ax = _barh_figure(labels, 0.24)
    y = np.arange(len(labels))
    colors = [BLUE] * min(len(labels), top) + [GREY] * (len(labels) - top)
    ax.barh(y, values, height=0.7, color=colors)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    _label_barh(
        fig, ax, y, values, [f"{n:,} ({share_text(n, total)})" for n in values], max(values, default=1)
    )
    ax.set_xlabel("tokens")
    _count_axis(ax.xaxis)
    _title(fig, "Tokens per language (detected lang)")
    return _svg(fig, "tokens-per-language")


@_styled
def confidence_plot(confidence: dict[str, Any], bins: int = 20) -> str:
    """The detector's confidence (lang_score) in ``bins`` labelled bins, the run's threshold marked."""
    fine = np.array(confidence["histogram"], dtype=np.int64)
    counts = fine.reshape(bins, -1).sum(axis=1) if len(fine) % bins == 0 else fine
    width = 1 / len(counts)
    x = np.arange(len(counts)) * width + width / 2
    threshold = confidence.get("threshold")
    below = x < threshold if isinstance(threshold, (int, float)) else np.zeros(len(x), dtype=bool)
    fig, ax = _figure(6.2, 3.0)
    colors = np.where(below, GREY, BLUE)
    ax.bar(x, counts, width=width * 0.88, color=colors, linewidth=0)
    _label_bars(fig, ax, x, [int(n) for n in counts], [compact(n) for n in counts])
    if isinstance(threshold, (int, float)):
        ax.axvline(
            threshold, color=RED, linestyle="--", linewidth=1.1, label=f"--min-lang-confidence {threshold:g}"
        )
        ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"lang_score (bins of {width:.2f}); grey: below the threshold, language 'und'")
    ax.set_ylabel("tweets")
    _count_axis(ax.yaxis)
    _title(fig, "Language confidence")
    return _svg(fig, "language-confidence")


@_styled
def months_plot(per_month: dict[str, int], undated: int) -> str:
    """Tweets per month of created_at (per year where the span is longer than three years), every
    month or year of the span drawn (empty ones as gaps), every bar labelled. Only for dated tweets."""
    months = np.array(list(per_month), dtype="datetime64[M]")
    span = np.arange(months.min(), months.max() + 1)
    counts = np.zeros(len(span), dtype=np.int64)
    counts[(months - months.min()).astype(np.int64)] = list(per_month.values())
    if len(span) > 36:
        years = span.astype("datetime64[Y]")
        keys, inverse = np.unique(years, return_inverse=True)
        counts = np.bincount(inverse, weights=counts).astype(np.int64)
        names, per = [str(k) for k in keys], "year"
    else:
        names, per = [str(m) for m in span], "month"
    fig, ax = _figure(12.4, 2.8)
    x = np.arange(len(names))
    ax.bar(x, counts, width=0.8, color=BLUE, linewidth=0)
    _label_bars(fig, ax, x, [int(n) for n in counts], [f"{n:,}" for n in counts])
    step = max(1, math.ceil(len(names) / 24))
    ax.set_xticks(x[::step], names[::step], rotation=0 if per == "year" or len(names) <= 12 else 45)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("tweets")
    _count_axis(ax.yaxis)
    title = f"Tweets per {per} (created_at, UTC)"
    if undated:
        title += f"; {undated:,} tweets without a date are not shown"
    _title(fig, title)
    return _svg(fig, "tweets-per-month")


@_styled
def clean_plot(clean: dict[str, Any]) -> str:
    """What the clean stage changed: texts changed by each step, of all texts it cleaned."""
    steps = clean["steps"]
    labels = ["any change"] + [s["what"] for s in steps]
    values = [clean["changed"]] + [s["texts"] for s in steps]
    fig, ax = _barh_figure(labels, 0.24)
    y = np.arange(len(labels))
    ax.barh(y, values, height=0.7, color=[GREEN] + [BLUE] * len(steps))
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    texts = [f"{n:,} ({share_text(n, clean['texts'])})" for n in values]
    _label_barh(fig, ax, y, values, texts, max(max(values, default=1), 1))
    ax.set_xlabel("texts changed")
    _count_axis(ax.xaxis)
    _title(fig, f"Clean stage: what it changed in {clean['texts']:,} texts")
    return _svg(fig, "clean")


@_styled
def authors_plot(authors: dict[str, Any]) -> str:
    """The share of the tweets (with an author) that the k most prolific authors wrote."""
    shares = authors["top_share"]
    labels = [f"top {k}" if k != "1" else "top author" for k in shares]
    values = [100 * v for v in shares.values()]
    fig, ax = _barh_figure(labels, 0.3)
    y = np.arange(len(labels))
    ax.barh(y, values, height=0.65, color=BLUE)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    known = authors["known"]
    at_least = "≥ " if authors["approximate"] else ""
    texts = [f"{at_least}{v:.1f} % ({round(v * known / 100):,} tweets)" for v in values]
    _label_barh(fig, ax, y, values, texts, 100)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel("% of the tweets with an author id")
    _title(fig, "Share of the most prolific authors")
    return _svg(fig, "authors")


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
        ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: compact(v)))
        ax.axhline(50, color=GREY, linewidth=0.8, linestyle=":")
        ax.axhline(90, color=GREY, linewidth=0.8, linestyle=":")
        ax.axvline(
            vocab["size"], color=ORANGE, linewidth=1, linestyle="--", label=f"vocabulary ({vocab['size']:,})"
        )
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    ax.set_ylim(0, 101)
    ax.set_xlabel("the k most frequent tokens")
    ax.set_ylabel("% of all tokens")
    _title(fig, f"Vocabulary: {vocab['used']:,} of {vocab['size']:,} tokens used")
    return _svg(fig, "vocabulary")


# --- the page ---------------------------------------------------------------------------------------


def _table(headers: list[str], rows: list[list[Any]], numeric: set[int], wrap: set[int] = frozenset()) -> str:
    """An HTML table; ``rows`` hold HTML (escape data before), ``headers`` plain text."""
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


def _note(text: str) -> str:
    return f'<p class="note">{text}</p>'


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
        ("authors", _authors_card(authors)),
    ]
    missing = _missing(stats)
    panels = [
        _panel(missing, wide=True) if missing else "",
        _panel(funnel_plot(funnel) + _balance(funnel) + _dedup(stats["dedup"])),
        _panel(length_plot(tpt) + _percentiles(tpt, "tokens") + _chars(stats)) if rows else "",
        _panel(_removed(stats), wide=True),
        _panel(_near_duplicates(stats), wide=True),
        _panel(_clean(stats)),
        _panel(_confidence(stats)) if rows else "",
        _panel(languages_plot(stats["languages"], stats["twitter_languages"], rows)) if rows else "",
        _panel(_tokens_per_language(stats, top)) if tokens else "",
        _panel(_authors(stats, top)) if authors.get("known") else "",
        _panel(
            "<h2>Source formats</h2>"
            + _counts(stats["source_formats"], rows, "format", top)
            + _flags(stats)
            + _hashtags(stats, top)
        ),
        _panel(months_plot(stats["tweets_per_month"], stats["time"]["undated"]), wide=True) if months else "",
        _panel(
            f'<div class="cols"><div>{coverage_plot(stats["vocabulary"])}</div>'
            f"<div>{_tokens_table(stats, top)}</div></div>",
            wide=True,
        )
        if tokens
        else "",
        _panel("<h2>Input files: where each file's records went</h2>" + _inputs_table(stats), wide=True),
        _panel("<h2>Shards</h2>" + _shards_table(stats), wide=True),
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
        *(p for p in panels if p),
        "</div>",
        '<p class="note">Written by <code>tweetmill stats --html</code>; the same figures: '
        "<code>tweetmill stats DIR --json</code>.</p>",
        "</main></body></html>",
    ]
    return "\n".join(parts) + "\n"


def _panel(content: str, wide: bool = False) -> str:
    return f'<section class="panel{" wide" if wide else ""}">{content}</section>'


def _percentiles(summary: dict[str, Any], unit: str) -> str:
    s = summary
    return _note(
        f"p10 {s['p10']:,} · p50 {s['p50']:,} · p90 {s['p90']:,} · p99 {s['p99']:,} · min {s['min']:,} · "
        f"max {s['max']:,} {unit}; sd {s['std']:.1f}"
    )


def _balance(funnel: dict[str, Any]) -> str:
    ok = funnel["balanced"]
    verdict = '<span class="ok">balanced</span>' if ok else '<span class="bad">NOT balanced</span>'
    return _note(
        f"read {count_text(funnel['read'])} = kept {count_text(funnel['kept'])} + dropped "
        f"{count_text(funnel['dropped'])} + errors {count_text(funnel['errors'])}; "
        f"{count_text(funnel['rows_in_shards'])} rows in the shards: {verdict}"
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
    return _note(text)


def _tweet(text: str, meta: str = "") -> str:
    """A tweet's text as it is (escaped, line breaks kept), with a line of escaped ``meta``."""
    return f'<div class="tweet">{_e(text)}<span class="meta">{_e(meta)}</span></div>'


def _example_meta(x: dict[str, Any]) -> str:
    """Where a dropped tweet came from; its language only where one was detected (stages before the
    language stage drop tweets that have none yet)."""
    lang = f" · {x['lang']}" if x.get("lang") not in (None, "und") else ""
    return f"{_file_name(x['source_file'])}{lang} · id {x['id']}"


def _file_name(path: Any) -> str:
    return str(path or "?").rstrip("/").rpartition("/")[2]


def _removed(stats: dict[str, Any]) -> str:
    """Every drop reason that removed something, with a few of the tweets it removed."""
    removed = stats.get("removed") or {}
    reasons = removed.get("reasons") or []
    read = max(stats["funnel"]["read"], 1)
    out = ["<h2>What each drop reason removed</h2>"]
    if not reasons:
        return out[0] + _note("Nothing was dropped.")
    rows = []
    for r in reasons:
        head = (
            f'<span class="reason"><b>{_e(r["stage"])}: {_e(r["reason"])}</b></span><br>'
            f'<span class="small">{count_text(r["count"])} removed '
            f"({share_text(r['count'], read)} of read)</span>"
        )
        if not r["tweets"]:
            shown = _note("Records that are not tweets (notices, API errors): counted per input file below.")
        elif r["examples"]:
            shown = (
                '<div class="examples">'
                + "".join(_tweet(x["text"], _example_meta(x)) for x in r["examples"])
                + "</div>"
            )
        else:
            shown = _note(
                "None in the run's sample of dropped tweets: stages that combine rather than group "
                "(the exact dedup stages) hand on the tweets they remove only with "
                "<code>--write-dropped</code>."
            )
        rows.append([head, shown])
    out.append(_table(["stage: reason", "examples of removed tweets"], rows, set()))
    source = removed.get("source")
    if source == "dropped/":
        where = "from every dropped tweet (<code>--write-dropped</code>, <code>dropped/</code>)"
    elif source:
        where = f"from <code>{_e(source)}</code>, the run's sample of dropped tweets per reason"
    else:
        where = "none: this run wrote no sample of dropped tweets (a run of an older tweetmill)"
    out.append(
        _note(
            f"Up to {removed.get('per_reason', 0)} examples per reason, the same ones on every run of "
            f"the same input (ordered by a hash of the tweet id); {where}. Text as the stage saw it, "
            "after cleaning."
        )
    )
    return "".join(out)


_WORDS = re.compile(r"\s+|[^\s]+")


def _marked(text: str, other: str) -> str:
    """``text`` escaped, its words that ``other`` does not have at that place in <mark>."""
    words, others = _WORDS.findall(text), _WORDS.findall(other)
    out = []
    matcher = difflib.SequenceMatcher(a=words, b=others, autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        chunk = _e("".join(words[i1:i2]))
        out.append(chunk if tag == "equal" or not chunk.strip() else f"<mark>{chunk}</mark>")
    return "".join(out)


def _near_duplicates(stats: dict[str, Any]) -> str:
    near = (stats.get("removed") or {}).get("near_duplicates") or {}
    pairs = near.get("shown") or []
    out = ["<h2>Near-duplicate pairs: removed beside kept</h2>"]
    if not pairs:
        if stats["dedup"]["near_duplicate"]:
            return out[0] + _note("No sample of the pairs in this run (near_duplicates.sample.jsonl).")
        return out[0] + _note("No near duplicates removed (or no near-dedup stage in this run).")
    rows = [
        [
            f'<div class="removed"><div class="tweet">{_marked(p["removed_text"], p["kept_text"])}'
            f'<span class="meta">id {_e(p["removed_id"])}</span></div></div>',
            f'<div class="kept"><div class="tweet">{_marked(p["kept_text"], p["removed_text"])}'
            f'<span class="meta">id {_e(p["kept_id"])}</span></div></div>',
            _e(f"{p['similarity']:.2f}" if isinstance(p.get("similarity"), (int, float)) else "?"),
        ]
        for p in pairs
    ]
    out.append(_table(["removed", "kept (the near duplicate with the smaller id)", "similarity"], rows, {2}))
    out.append(
        _note(
            f"The first {len(pairs)} of the {count_text(near.get('sampled', 0))} pairs in "
            "<code>near_duplicates.sample.jsonl</code>; words that differ are marked. Similarity: "
            "estimated Jaccard of the texts' shingles."
        )
    )
    return "".join(out)


def _clean(stats: dict[str, Any]) -> str:
    clean = stats.get("clean")
    if not clean:
        return "<h2>Clean stage</h2>" + _note(
            "This run's manifest does not record what the clean stage changed (a run of an older tweetmill)."
        )
    if not clean["texts"]:
        return "<h2>Clean stage</h2>" + _note("The clean stage saw no text.")
    return clean_plot(clean) + _note(
        "Texts each step changed, of every tweet the clean stage saw (before the filters); a text "
        "counts once per step."
    )


def _confidence(stats: dict[str, Any]) -> str:
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
    return confidence_plot(conf) + _note(_e(note))


def _tokens_per_language(stats: dict[str, Any], top: int) -> str:
    per = stats["tokens_per_language"]
    tweets = stats["languages"]
    rows = [
        [
            _e(k),
            count_text(n),
            share_text(n, stats["tokens"]),
            f"{n / tweets[k]:.1f}" if tweets.get(k) else "-",
        ]
        for k, n in list(per.items())[: min(top, 8)]
    ]
    return (
        tokens_per_language_plot(per, min(top, 12))
        + _table(["lang", "tokens", "share", "tokens / tweet"], rows, {1, 2, 3})
        + _note("Mixture weights by language are computed from these token counts, not from tweets.")
    )


def _chars(stats: dict[str, Any]) -> str:
    chars = stats.get("chars_per_tweet")
    if not chars or not chars.get("histogram"):
        return ""
    plot = histogram_plot(
        chars, "characters", "Characters per tweet (text after cleaning)", "chars-per-tweet"
    )
    return f'<div class="gap">{plot}</div>' + _percentiles(chars, "characters")


def _authors_card(authors: dict[str, Any]) -> str:
    if not authors.get("known"):
        return "unknown"
    if authors.get("distinct") is not None:
        return count_text(authors["distinct"])
    return f"≥ {count_text(authors.get('distinct_at_least') or 0)}"


def _missing(stats: dict[str, Any]) -> str:
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


def _authors(stats: dict[str, Any], top: int) -> str:
    authors = stats.get("authors") or {}
    rows = stats["rows"]
    if not authors.get("known"):
        return ""  # said by ``_missing``
    out = [authors_plot(authors)]
    table_rows = [
        [_e(a), count_text(n), share_text(n, authors["known"])] for a, n in authors["top"][: min(top, 10)]
    ]
    out.append(_table(["author_id", "tweets", "share"], table_rows, {1, 2}))
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
    out.append(_note(_e(note)))
    return "".join(out)


def _counts(counts: dict[str, int], total: int, key: str, top: int) -> str:
    items = list(counts.items())
    rows = [[_e(k), count_text(n), share_text(n, total)] for k, n in items[:top]]
    if len(items) > top:
        rest = sum(n for _, n in items[top:])
        rows.append([f"({len(items) - top} more)", count_text(rest), share_text(rest, total)])
    return _table([key, "tweets", "share"], rows, {1, 2})


def _flags(stats: dict[str, Any]) -> str:
    f, rows = stats["flags"], stats["rows"]
    return _note(
        f"replies {share_text(f['is_reply'], rows)} · "
        f"quotes {share_text(f['is_quote'], rows)} · "
        f"retweets {share_text(f['is_retweet'], rows)} · derived ids {share_text(f['id_derived'], rows)} · "
        f"author known {share_text(f['author_known'], rows)}"
    )


def _reasons_text(by_reason: dict[str, int] | None) -> str:
    if not by_reason:
        return ""
    return '<br><span class="small">' + _e(" · ".join(f"{k} {v:,}" for k, v in by_reason.items())) + "</span>"


def _fate_bar(f: dict[str, Any]) -> str:
    """A file's records as one stacked bar: kept, dropped later, not tweets, errors."""
    parts = [
        ("k-kept", f["kept"]),
        ("k-later", f["dropped_later"] or 0),
        ("k-parse", f["parse_dropped"]),
        ("k-err", f["errors"]),
    ]
    total = sum(n for _, n in parts)
    if not total:
        return ""
    spans = "".join(
        f'<span class="{cls}" style="width:{100 * n / total:.2f}%"></span>' for cls, n in parts if n
    )
    return f'<div class="fate">{spans}</div>'


def _inputs_table(stats: dict[str, Any]) -> str:
    files = stats["inputs"]
    prefix = common_dir([str(f["file"]) for f in files])
    by_reason = any(f.get("dropped_later_by_reason") is not None for f in files)
    rows = []
    for f in files:
        later = f.get("dropped_later")
        row = [
            _e(str(f["file"])[len(prefix) :]),
            _e(f["format"] or "?"),
            count_text(f["records"]),
            count_text(f["errors"]),
            count_text(f["parse_dropped"]) + _reasons_text(f.get("parse_dropped_by_reason")),
            count_text(f["tweets"]),
            "?" if later is None else count_text(later),
            count_text(f["kept"]),
            share_text(f["kept"], f["tweets"]) if f["tweets"] else "-",
            _fate_bar(f),
        ]
        if by_reason:
            row.append(
                _e(" · ".join(f"{k} {v:,}" for k, v in (f.get("dropped_later_by_reason") or {}).items()))
            )
        rows.append(row)
    headers = [
        "file",
        "format",
        "records",
        "errors",
        "not tweets",
        "tweets",
        "dropped later",
        "kept",
        "kept of tweets",
        "",
    ]
    if by_reason:
        headers.append("dropped later, by stage: reason")
    table = _table(headers, rows, {2, 3, 4, 5, 6, 7, 8}, {0})
    if len(rows) > 30:
        table = f"<details><summary>{len(rows):,} files</summary>{table}</details>"
    acc = stats.get("inputs_accounting") or {}
    key = (
        '<p class="note key"><span class="k-kept"></span>kept<span class="k-later"></span>dropped later'
        '<span class="k-parse"></span>not tweets<span class="k-err"></span>errors</p>'
    )
    note = (
        (f"In <code>{_e(prefix)}</code>. " if prefix else "")
        + "records = tweets + not tweets (delete notices, API errors... dropped while parsing, by reason) "
        "+ errors (dead letters). <b>dropped later</b> = tweets − kept: the file's tweets that a stage after "
        "parsing removed (exact: kept is counted in the shards by <code>source_file</code>)."
    )
    if acc.get("stages_dropped_later") is not None:
        verdict = '<span class="ok">agree</span>' if acc["agree"] else '<span class="bad">DISAGREE</span>'
        note += (
            f" Over all files {count_text(acc['dropped_later'])}; the stages after parsing dropped "
            f"{count_text(acc['stages_dropped_later'])}: {verdict}."
        )
    if by_reason:
        note += " By stage and reason per file: counted in every dropped tweet (<code>dropped/</code>)."
    else:
        note += (
            " Per file by reason only for runs with <code>--write-dropped</code> (the run's sample of "
            "dropped tweets does not count per file); the funnel has the reasons over all files."
        )
    return table + key + _note(note)


def _shards_table(stats: dict[str, Any]) -> str:
    rows = [
        [_e(s["file"]), count_text(s["rows"]), count_text(s["tokens"]), size_text(s["bytes"])]
        for s in stats["per_shard"]
    ]
    table = _table(["shard", "tweets", "tokens", "size"], rows, {1, 2, 3})
    agree = (
        '<span class="ok">agree</span>' if stats["matches_manifest"] else '<span class="bad">DISAGREE</span>'
    )
    note = _note(f"Rows and tokens read from the shards {agree} with the manifest.")
    if len(rows) > 12:
        return f"<details><summary>{len(rows):,} shards</summary>{table}</details>{note}"
    return table + note


def _hashtags(stats: dict[str, Any], top: int) -> str:
    tags = stats["hashtags"]
    out = ["<h2>Hashtags</h2>"]
    if not tags["counted"]:
        out.append(_note("not counted (<code>--no-hashtags</code>)"))
    elif not tags["total"]:
        out.append(_note("No kept tweet has a hashtag."))
    else:
        rows = [[_e(t), count_text(n), share_text(n, tags["total"])] for t, n in tags["top"][:top]]
        out.append(_table(["hashtag", "uses", "share"], rows, {1, 2}))
        approx = " Counts are approximate (rare tags were pruned)." if tags["approximate"] else ""
        out.append(
            _note(
                f"{count_text(tags['total'])} uses of {count_text(tags['distinct'])} distinct hashtags "
                f"(case-folded).{approx}"
            )
        )
    domains = stats["domains"]
    if domains["available"]:
        rows = [[_e(d), count_text(n), share_text(n, domains["total"])] for d, n in domains["top"][:top]]
        out.append("<h2>Link domains</h2>" + _table(["domain", "links", "share"], rows, {1, 2}))
    else:
        out.append(_note(f"Link domains: not recoverable. {_e(domains['why'])}."))
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
        f"The {count_text(vocab['tokens_for_50pct'])} most frequent tokens make 50 % and "
        f"{count_text(vocab['tokens_for_90pct'])} make 90 % of all tokens. ␣ is a space, ⏎ a newline."
    )
    if vocab["out_of_vocab"]:
        note += (
            f' <span class="bad">{count_text(vocab["out_of_vocab"])} token ids outside the vocabulary.</span>'
        )
    if stats["tokenizer"].get("decoded_with") is None:
        note += f" Tokens not decoded: {_e(stats['tokenizer'].get('not_decoded_because'))}."
    return "<h2>Top tokens</h2>" + _table(["id", "token", "count", "share"], rows, {0, 2, 3}) + _note(note)


def write_html(stats: dict[str, Any], path: str, top: int = 15) -> None:
    """Write the page to ``path`` (local or any Beam filesystem)."""
    page = render_html(stats, top=top).encode("utf-8")
    with FileSystems.create(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        f.write(page)
    log.info("wrote %s (%d bytes)", path, len(page))

"""The report's charts: the funnel, length and confidence histograms, languages, months, the clean
stage, authors and vocabulary coverage, each a function of its part of the stats returning an
inline <svg> (drawn with ``report_charts``)."""

from __future__ import annotations

import math
from typing import Any

import numpy as np
from tweetmill.pipeline.report_charts import (
    BLUE,
    GREEN,
    GREY,
    MAX_BARS,
    ORANGE,
    RED,
    barh_figure,
    compact,
    count_axis,
    figure,
    figure_title,
    label_barh,
    label_bars,
    styled,
    svg,
)
from tweetmill.pipeline.stats_print import share_text


@styled
def funnel_plot(funnel: dict[str, Any]) -> str:
    """Waterfall: what remains after each step (blue) and what that step removed (orange)."""
    steps = funnel["steps"]
    labels = ["read"] + [f"{s['stage']}: {s['reason']}" for s in steps] + ["kept"]
    remaining = [funnel["read"]] + [s["remaining"] for s in steps] + [funnel["kept"]]
    removed = [0] + [s["count"] for s in steps] + [0]
    fig, ax = barh_figure(labels, 0.3)
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
    label_barh(fig, ax, y, [r + d for r, d in zip(remaining, removed, strict=True)], texts, read)
    ax.set_xlabel("records")
    count_axis(ax.xaxis)
    figure_title(fig, "Funnel: remaining after each step, removed in orange")
    return svg(fig, "funnel")


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


@styled
def histogram_plot(summary: dict[str, Any], unit: str, title: str, name: str) -> str:
    """A length histogram (tokens or characters per tweet) in labelled bins, the mean and the
    percentiles marked; what lies past the 99th percentile gathered in one grey bar."""
    from matplotlib.ticker import MaxNLocator

    fig, ax = figure(6.2, 3.0)
    width, upper, binned, beyond = _bins(summary)
    starts = np.arange(len(binned)) * width
    x = list(starts + width / 2)
    heights = [int(n) for n in binned]
    ax.bar(x, heights, width=width * 0.88, color=BLUE, linewidth=0)
    if beyond:
        x.append(upper + width / 2)
        heights.append(beyond)
        ax.bar(x[-1], beyond, width=width * 0.88, color=GREY, linewidth=0, label=f"≥ {upper:,} {unit}")
    label_bars(fig, ax, x, heights, [compact(h) for h in heights])
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
    count_axis(ax.yaxis)
    figure_title(fig, title)
    return svg(fig, name)


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


@styled
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
    fig, ax = barh_figure(labels, 0.34 if tagged else 0.22)
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
    label_barh(fig, ax, ys, ends, texts, max(ends, default=1))
    ax.set_xlabel("tweets")
    count_axis(ax.xaxis)
    none = twitter.get("(none)", 0)
    if not tagged:
        title = "Languages (detected; no tweet has a Twitter tag)"
    else:
        title = "Languages" + (f" ({share_text(none, total)} have no Twitter tag)" if none else "")
        ax.legend(frameon=False, fontsize=8, loc="lower right")
    figure_title(fig, title)
    return svg(fig, "languages")


@styled
def tokens_per_language_plot(tokens: dict[str, int], top: int = 10) -> str:
    """Tokens per detected language: what mixture weights are computed from."""
    labels, values = _with_rest(tokens, top)
    total = max(sum(tokens.values()), 1)
    fig, ax = barh_figure(labels, 0.24)
    y = np.arange(len(labels))
    colors = [BLUE] * min(len(labels), top) + [GREY] * (len(labels) - top)
    ax.barh(y, values, height=0.7, color=colors)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    label_barh(
        fig, ax, y, values, [f"{n:,} ({share_text(n, total)})" for n in values], max(values, default=1)
    )
    ax.set_xlabel("tokens")
    count_axis(ax.xaxis)
    figure_title(fig, "Tokens per language (detected lang)")
    return svg(fig, "tokens-per-language")


@styled
def confidence_plot(confidence: dict[str, Any], bins: int = 20) -> str:
    """The detector's confidence (lang_score) in ``bins`` labelled bins, the run's threshold marked."""
    fine = np.array(confidence["histogram"], dtype=np.int64)
    counts = fine.reshape(bins, -1).sum(axis=1) if len(fine) % bins == 0 else fine
    width = 1 / len(counts)
    x = np.arange(len(counts)) * width + width / 2
    threshold = confidence.get("threshold")
    below = x < threshold if isinstance(threshold, (int, float)) else np.zeros(len(x), dtype=bool)
    fig, ax = figure(6.2, 3.0)
    colors = np.where(below, GREY, BLUE)
    ax.bar(x, counts, width=width * 0.88, color=colors, linewidth=0)
    label_bars(fig, ax, x, [int(n) for n in counts], [compact(n) for n in counts])
    if isinstance(threshold, (int, float)):
        ax.axvline(
            threshold, color=RED, linestyle="--", linewidth=1.1, label=f"--min-lang-confidence {threshold:g}"
        )
        ax.legend(frameon=False, fontsize=8, loc="upper left")
    ax.set_xlim(0, 1)
    ax.set_xlabel(f"lang_score (bins of {width:.2f}); grey: below the threshold, language 'und'")
    ax.set_ylabel("tweets")
    count_axis(ax.yaxis)
    figure_title(fig, "Language confidence")
    return svg(fig, "language-confidence")


@styled
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
    fig, ax = figure(12.4, 2.8)
    x = np.arange(len(names))
    ax.bar(x, counts, width=0.8, color=BLUE, linewidth=0)
    label_bars(fig, ax, x, [int(n) for n in counts], [f"{n:,}" for n in counts])
    step = max(1, math.ceil(len(names) / 24))
    ax.set_xticks(x[::step], names[::step], rotation=0 if per == "year" or len(names) <= 12 else 45)
    ax.set_xlim(-0.6, len(names) - 0.4)
    ax.set_ylabel("tweets")
    count_axis(ax.yaxis)
    title = f"Tweets per {per} (created_at, UTC)"
    if undated:
        title += f"; {undated:,} tweets without a date are not shown"
    figure_title(fig, title)
    return svg(fig, "tweets-per-month")


@styled
def clean_plot(clean: dict[str, Any]) -> str:
    """What the clean stage changed: texts changed by each step, of all texts it cleaned."""
    steps = clean["steps"]
    labels = ["any change"] + [s["what"] for s in steps]
    values = [clean["changed"]] + [s["texts"] for s in steps]
    fig, ax = barh_figure(labels, 0.24)
    y = np.arange(len(labels))
    ax.barh(y, values, height=0.7, color=[GREEN] + [BLUE] * len(steps))
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    texts = [f"{n:,} ({share_text(n, clean['texts'])})" for n in values]
    label_barh(fig, ax, y, values, texts, max(max(values, default=1), 1))
    ax.set_xlabel("texts changed")
    count_axis(ax.xaxis)
    figure_title(fig, f"Clean stage: what it changed in {clean['texts']:,} texts")
    return svg(fig, "clean")


@styled
def authors_plot(authors: dict[str, Any]) -> str:
    """The share of the tweets (with an author) that the k most prolific authors wrote."""
    shares = authors["top_share"]
    labels = [f"top {k}" if k != "1" else "top author" for k in shares]
    values = [100 * v for v in shares.values()]
    fig, ax = barh_figure(labels, 0.3)
    y = np.arange(len(labels))
    ax.barh(y, values, height=0.65, color=BLUE)
    ax.set_yticks(y, labels)
    ax.invert_yaxis()
    known = authors["known"]
    at_least = "≥ " if authors["approximate"] else ""
    texts = [f"{at_least}{v:.1f} % ({round(v * known / 100):,} tweets)" for v in values]
    label_barh(fig, ax, y, values, texts, 100)
    ax.set_xticks([0, 25, 50, 75, 100])
    ax.set_xlabel("% of the tweets with an author id")
    figure_title(fig, "Share of the most prolific authors")
    return svg(fig, "authors")


@styled
def coverage_plot(vocab: dict[str, Any]) -> str:
    """How many distinct tokens make which share of all tokens (a rank-coverage curve)."""
    from matplotlib.ticker import FuncFormatter

    fig, ax = figure(6.2, 2.8)
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
    figure_title(fig, f"Vocabulary: {vocab['used']:,} of {vocab['size']:,} tokens used")
    return svg(fig, "vocabulary")

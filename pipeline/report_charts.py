"""How the report's charts are drawn: matplotlib figures as inline SVG, in tweetmill's style.

A bare ``Figure`` (no pyplot) per chart, text kept as SVG text (small and sharp, the page's fonts),
math parsing off so a '$' stays a '$'. Every bar is labelled with its count (``label_barh``,
``label_bars`` widen the axis to hold the labels) and count axes get a few short ticks (``10k``).
What is drawn lives in ``report_plots``.
"""

from __future__ import annotations

import io
from typing import Any

from tweetmill.pipeline.report_markup import esc

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


def figure(width: float, height: float) -> tuple[Any, Any]:
    """A bare matplotlib Figure (no pyplot: no global backend or figure registry to touch).

    Its size is what the page gets: the layout fits the labels inside it, so every half-width plot
    is as wide as the others and its text as large."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    return fig, fig.add_subplot()


def svg(fig: Any, name: str) -> str:
    """A figure as an inline <svg> element (no XML prolog), ids salted per figure so several
    SVGs on one page never share an id."""
    import matplotlib

    buf = io.StringIO()
    with matplotlib.rc_context({"svg.hashsalt": f"tweetmill-{name}"}):
        fig.savefig(buf, format="svg", metadata={"Date": None, "Creator": None})
    text = buf.getvalue()
    start = text.find("<svg")
    return f'<div role="img" aria-label="{esc(name)}">{text[start:]}</div>'


def styled(fn):
    """Run a plotting function under tweetmill's matplotlib style."""

    def wrapper(*args, **kwargs):
        import matplotlib

        with matplotlib.rc_context(_RC):
            return fn(*args, **kwargs)

    wrapper.__name__, wrapper.__doc__ = fn.__name__, fn.__doc__
    return wrapper


def barh_figure(labels: list[str], per_bar: float, width: float = 6.2) -> tuple[Any, Any]:
    """A figure for horizontal bars named ``labels``."""
    return figure(width, per_bar * len(labels) + 1.0)


def _inches(labels: list[str], size: float) -> float:
    """About how long the longest of ``labels`` is at ``size`` points."""
    return max((len(t) for t in labels), default=0) * size * 0.56 / 72


def figure_title(fig: Any, text: str) -> None:
    """The plot's title, at the figure's left edge (an axes title starts after the bar names)."""
    fig.suptitle(text, x=0.01, ha="left", fontsize=10, fontweight="bold")


def count_axis(axis: Any, bins: int = 4) -> None:
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


def label_barh(fig: Any, ax: Any, y: Any, ends: list[float], labels: list[str], largest: float) -> None:
    """Write each horizontal bar's label just past its end; widen the axis to hold them."""
    pad = max(largest, 1) * 0.01
    for yi, end, label in zip(y, ends, labels, strict=True):
        ax.text(end + pad, yi, label, va="center", fontsize=LABEL_SIZE, color="#333")
    ax.set_xlim(0, _text_room(fig, ax, labels, largest, horizontal=True))


def label_bars(fig: Any, ax: Any, x: Any, heights: list[float], labels: list[str]) -> None:
    """Write each vertical bar's label (rotated) on top of it; raise the axis to hold them."""
    largest = max(heights, default=0)
    pad = max(largest, 1) * 0.015
    for xi, h, label in zip(x, heights, labels, strict=True):
        if h:
            ax.text(xi, h + pad, label, ha="center", va="bottom", rotation=90, fontsize=LABEL_SIZE - 0.5)
    ax.set_ylim(0, _text_room(fig, ax, labels, largest, horizontal=False))

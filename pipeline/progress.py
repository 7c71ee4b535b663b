"""What ``tweetmill run`` shows while a local run runs: its options (``-q``, ``--progress-interval``),
the monitor that reads the stages' reports and sums them, and its display.

The stages report on a side channel (``transforms/progress.py`` writes it; ``run_watch.RunWatch``
makes its folder and polls the monitor every ``POLL_SECONDS``). The monitor shows bytes and records
read of the inputs' total size, tweets dropped so far by the stages that report, tweets kept (once
shards are written), the rate, the time left (from bytes while reading, from the running stage's
tweets after), and the stages running (``parse→repetition`` when Beam fused them; ``after X`` while
only stages that do not report run). On a terminal (stderr) that is a Rich live display; otherwise
one plain line every ``--progress-interval`` seconds (CI, logs) and a final line, none for a run
shorter than the interval. How it works and what it costs: ``docs/progress.md``.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

DEFAULT_INTERVAL = 10.0  # seconds between plain progress lines
POLL_SECONDS = 0.5  # how often the monitor reads the progress folder
IDLE_SECONDS = 3.0  # a stage silent this long is shown as "after <stage>"
RATE_WINDOW = 20.0  # seconds of history behind a rate


@dataclass(frozen=True)
class ProgressOptions:
    """What ``tweetmill run`` shows while it runs (``build.run(progress=...)``)."""

    show: bool = True  # False: -q, nothing shown (Ctrl-C is still handled)
    interval: float = DEFAULT_INTERVAL  # seconds between plain lines
    live: bool | None = None  # a Rich live display; None: when the stream is a terminal
    stream: TextIO | None = None  # default: sys.stderr


def add_progress_arguments(parser: Any) -> None:
    """``tweetmill run``'s progress options."""
    parser.add_argument(
        "-q",
        "--quiet",
        action="store_true",
        help="show no progress while the pipeline runs (the report at the end stays)",
    )
    parser.add_argument(
        "--progress-interval",
        type=_seconds,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="seconds between progress lines when stderr is not a terminal, and between "
        "polls of a remote job (default: %(default)s)",
    )


def _seconds(text: str) -> float:
    import argparse

    try:
        value = float(text)
    except ValueError:
        value = -1.0
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a number of seconds > 0, got {text!r}")
    return value


def progress_from_args(args: Any) -> ProgressOptions:
    return ProgressOptions(show=not args.quiet, interval=args.progress_interval)


# --- what the stages reported -------------------------------------------------------------------


@dataclass
class Tally:
    """The sum of the reports read so far (``transforms/progress.py`` names the keys)."""

    bytes: int = 0
    records: int = 0
    tweets: int = 0
    dropped: int = 0
    errors: int = 0
    kept: int = 0
    order: list[str] = field(default_factory=list)  # stages in the order they first reported
    stage_in: dict[str, int] = field(default_factory=dict)  # tweets into each stage
    stage_dropped: dict[str, int] = field(default_factory=dict)  # tweets each stage dropped
    first_at: dict[str, float] = field(default_factory=dict)  # each stage's first report (monotonic)
    last_at: dict[str, float] = field(default_factory=dict)  # and its latest

    def add(self, report: dict[str, Any], now: float) -> None:
        stage = str(report.get("s", "?"))
        self.bytes += report.get("b", 0)
        self.records += report.get("r", 0)
        self.tweets += report.get("t", 0)
        self.dropped += report.get("d", 0)
        self.errors += report.get("e", 0)
        self.kept += report.get("k", 0)
        if stage not in self.stage_in:
            self.order.append(stage)
            self.stage_in[stage] = self.stage_dropped[stage] = 0
            self.first_at[stage] = now
        self.stage_in[stage] += report.get("i", 0)
        if stage != "parse":  # the parse stage drops records that are not tweets
            self.stage_dropped[stage] += report.get("d", 0)
        self.last_at[stage] = now

    def copy(self) -> Tally:
        return replace(
            self,
            order=list(self.order),
            stage_in=dict(self.stage_in),
            stage_dropped=dict(self.stage_dropped),
            first_at=dict(self.first_at),
            last_at=dict(self.last_at),
        )

    def active(self, now: float) -> list[str]:
        """The stages that reported lately, in pipeline order (a fused stage runs several at once)."""
        return [s for s in self.order if now - self.last_at[s] <= IDLE_SECONDS]

    def expected_into(self, stage: str) -> int:
        """Tweets that will reach ``stage``: parsed, less what reporting stages before it dropped (an
        upper bound: the deduplication stages do not report)."""
        before = self.order[1 : self.order.index(stage)] if stage in self.order else self.order
        return max(0, self.tweets - sum(self.stage_dropped.get(s, 0) for s in before))


class ProgressFolder:
    """The reading end: the complete lines appended to the folder's files since the last ``poll``."""

    def __init__(self, path: str):
        self.path = path
        self._offsets: dict[str, int] = {}

    def poll(self) -> list[dict[str, Any]]:
        reports: list[dict[str, Any]] = []
        try:
            names = sorted(os.listdir(self.path))
        except OSError:
            return reports
        for name in names:
            path = os.path.join(self.path, name)
            offset = self._offsets.get(name, 0)
            try:
                with open(path, "rb") as f:
                    f.seek(offset)
                    data = f.read()
            except OSError:
                continue
            end = data.rfind(b"\n") + 1  # a line being written is read next time
            for line in data[:end].splitlines():
                with contextlib.suppress(ValueError):
                    reports.append(json.loads(line))
            self._offsets[name] = offset + end
        return reports


# --- formatting ---------------------------------------------------------------------------------


def human_bytes(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError  # unreachable


def clock(seconds: float) -> str:
    seconds = max(0, int(seconds + 0.5))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


@dataclass(frozen=True)
class Snapshot:
    """What one progress line says; made by ``Monitor.snapshot``."""

    elapsed: float
    tally: Tally
    total_bytes: int | None
    records_per_s: float | None  # while reading
    eta: float | None  # seconds left: of the read while reading, of the running stage after
    stage: str | None  # the stages running ("parse→repetition" when fused), or "after X"
    stage_share: float | None = None  # of the running stage's tweets, once reading is over

    @property
    def reading(self) -> bool:
        return self.total_bytes is None or self.tally.bytes < self.total_bytes


def status_line(s: Snapshot) -> str:
    """One plain progress line."""
    t = s.tally
    if s.total_bytes:
        done = min(t.bytes, s.total_bytes)
        parts = [f"read {human_bytes(done)} of {human_bytes(s.total_bytes)} ({done / s.total_bytes:.0%})"]
    else:
        parts = [f"read {human_bytes(t.bytes)}"]
    parts.append(f"{t.records:,} records")
    if s.records_per_s is not None and s.reading:
        parts.append(f"{s.records_per_s:,.0f} records/s")
    parts.append(f"dropped {t.dropped:,}")
    if t.kept:
        parts.append(f"kept {t.kept:,}")
    if t.errors:
        parts.append(f"errors {t.errors:,}")
    if s.stage:
        share = f" ~{s.stage_share:.0%}" if s.stage_share is not None else ""
        parts.append(f"stage {s.stage}{share}")
    if s.eta is not None:
        parts.append(f"ETA {clock(s.eta)}" + ("" if s.reading else f" ({s.stage})"))
    return f"[{clock(s.elapsed)}] " + " · ".join(parts)


def final_line(tally: Tally, total_bytes: int | None, elapsed: float) -> str:
    """The line a finished run ends with. A finished run balances (or it fails), so what was read
    and not kept nor an error was dropped, including by the stages that do not report."""
    read = human_bytes(total_bytes if total_bytes is not None else tally.bytes)
    dropped = tally.records - tally.kept - tally.errors
    return (
        f"done in {clock(elapsed)} · read {read} · {tally.records:,} records · kept {tally.kept:,} · "
        f"dropped {dropped:,} · errors {tally.errors:,}"
    )


# --- the monitor --------------------------------------------------------------------------------


class Monitor:
    """Reads the progress folder, keeps the tally, and shows it (plain lines or a Rich live view)."""

    def __init__(
        self,
        folder: str,
        total_bytes: int | None,
        options: ProgressOptions,
        now: Callable[[], float] = time.monotonic,
    ):
        self.folder = ProgressFolder(folder)
        self.total_bytes = total_bytes
        self.options = options
        self.stream = options.stream or sys.stderr
        self.tally = Tally()
        self._now = now
        self._started = now()
        self._history: deque[tuple[float, int, int]] = deque()  # (time, bytes, records): the rates
        self._lock = threading.Lock()
        self._last_line = self._started
        self.lines = 0  # plain progress lines written
        live = options.live if options.live is not None else _is_terminal(self.stream)
        self._live = _LiveView(self) if live else None

    def poll(self) -> None:
        now = self._now()
        with self._lock:
            for report in self.folder.poll():
                self.tally.add(report, now)
            self._history.append((now, self.tally.bytes, self.tally.records))
            while len(self._history) > 2 and now - self._history[1][0] > RATE_WINDOW:
                self._history.popleft()
        if self._live is None and now - self._last_line >= self.options.interval:
            self._last_line = now
            self._write(status_line(self.snapshot()))
            self.lines += 1

    def snapshot(self) -> Snapshot:
        with self._lock:
            now = self._now()
            t = self.tally.copy()
            first = self._history[0] if self._history else (self._started, 0, 0)
        span = now - first[0]
        reading = self.total_bytes is None or t.bytes < self.total_bytes
        records_per_s = (t.records - first[2]) / span if span >= 1 else None
        eta = share = None
        if reading and self.total_bytes and span >= 1 and t.bytes > first[1]:
            eta = (self.total_bytes - t.bytes) / ((t.bytes - first[1]) / span)
        active = t.active(now)
        if active:
            stage = active[0] if len(active) == 1 else f"{active[0]}→{active[-1]}"
        else:
            stage = f"after {t.order[-1]}" if t.order else None
        if not reading and len(active) == 1 and active[0] not in ("parse", "write"):
            name = active[0]
            expected, done = t.expected_into(name), t.stage_in.get(name, 0)
            if expected:
                share = min(1.0, done / expected)
                running = now - t.first_at[name]
                if running >= 2 and 0 < done < expected:
                    eta = (expected - done) * running / done
        return Snapshot(now - self._started, t, self.total_bytes, records_per_s, eta, stage, share)

    def start_display(self) -> None:
        if self._live is not None:
            self._live.start()

    def stop_display(self, *, finished: bool) -> None:
        """Stop showing. A finished run gets its final line if progress was shown: always on a
        terminal; in plain lines only after a first one (a run shorter than the interval says nothing)."""
        shown = self._live is not None or self.lines > 0
        if self._live is not None:
            self._live.stop()
        if finished and shown:
            self.poll_quietly()
            self._write(final_line(self.tally, self.total_bytes, self._now() - self._started))

    def poll_quietly(self) -> None:
        now = self._now()
        with self._lock:
            for report in self.folder.poll():
                self.tally.add(report, now)

    def _write(self, line: str) -> None:
        try:
            self.stream.write(line + "\n")
            self.stream.flush()
        except (OSError, ValueError):  # a closed or broken stderr: progress is optional
            pass


def _is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class _LiveView:
    """The Rich live display on a terminal: a bar of the bytes read and the status line under it."""

    def __init__(self, monitor: Monitor):
        from rich.console import Console

        self._monitor = monitor
        self._console = Console(file=monitor.stream)
        self._live = None

    def _render(self) -> Any:
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.text import Text

        s = self._monitor.snapshot()
        line = Text(status_line(s), style="dim" if s.stage and s.stage.startswith("after") else "")
        if not s.total_bytes:
            return line
        total = s.total_bytes
        if s.reading:
            bar = ProgressBar(total=total, completed=min(s.tally.bytes, total), width=40)
        else:  # reading done: the bar follows the current stage where that is known
            bar = ProgressBar(
                total=1.0, completed=s.stage_share or 0.0, width=40, pulse=s.stage_share is None
            )
        return Group(bar, line)

    def start(self) -> None:
        from rich.live import Live

        self._live = Live(
            get_renderable=self._render,
            console=self._console,
            refresh_per_second=4,
            transient=True,
            redirect_stdout=False,
        )
        self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

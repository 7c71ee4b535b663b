"""Live progress of ``tweetmill run``, and a Ctrl-C that stops a local run cleanly.

**Local runs** (Beam's embedded FnApiRunner, in this process or in ``--direct_num_workers N
--direct_running_mode multi_processing`` worker processes). Beam's metrics cannot be read while
that runner runs, so the stages report on a side channel: ``RunWatch`` makes a folder for the run
in the system's temporary directory and names its ``progress/`` in ``TWEETMILL_PROGRESS_DIR``,
which the worker processes inherit; the read stage (per batch of tweets, with the bytes read so
far of its file), the tweet-by-tweet stages (per batch) and the shard writer (per shard) append
one short JSON line each to a file per process (``transforms/progress.py``). A monitor thread here
reads the new lines every half second and shows: bytes and records read of the inputs' total size
(file sizes, known up front), tweets dropped so far by the stages that report, tweets kept (once
shards are written), the rate, the time left (from bytes while reading, from the running stage's
tweets after), and the stages running (``parse→repetition`` when Beam fused them; ``after X``
while only stages that do not report run: the shuffles, tokenizing). On a terminal (stderr) that
is a Rich live display; otherwise one plain line every ``--progress-interval`` seconds (CI, logs)
and a final line, none for a run shorter than the interval. ``-q`` shows nothing, and then no
stage reports. The folder is removed when the run ends, however it ends.

**Ctrl-C.** While a local run runs, SIGINT's handler only notes it; the monitor thread then stops
the worker processes (SIGTERM) and raises ``KeyboardInterrupt`` in the main thread through SIGUSR2,
which wakes it from any wait. Worker processes would otherwise get the terminal's SIGINT too and
die printing tracebacks: for a multi-process run they import a ``sitecustomize`` of this run first
(``PYTHONPATH``), which makes them ignore SIGINT and leave their pid. Once the runner has stopped
and the workers are gone, ``build.run`` removes the temporary directory and re-raises a plain
``KeyboardInterrupt``, and the CLI prints one line. Beam's logging and thread tracebacks of the
teardown are silenced from the first Ctrl-C.

**Dataflow.** Nothing of the above: the workers are elsewhere. ``watch_remote`` prints the job id
and its console URL after submission, then each state change and tweetmill's counters as they
grow (``result.metrics().query()``, which Dataflow answers while the job runs), until the job ends.
Ctrl-C stops waiting; the job goes on and its temporary directory stays (``RemoteDetached``).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import select
import shutil
import signal
import sys
import tempfile
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, TextIO

from tweetmill.transforms.progress import ENV_DIR

log = logging.getLogger(__name__)

DEFAULT_INTERVAL = 10.0  # seconds between plain progress lines
POLL_SECONDS = 0.5  # how often the monitor reads the progress folder
IDLE_SECONDS = 3.0  # a stage silent this long is shown as "after <stage>"
RATE_WINDOW = 20.0  # seconds of history behind a rate
INTERRUPTED_LINE = "interrupted: the run was stopped before it finished; nothing was published"


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


# --- interrupts ---------------------------------------------------------------------------------


def quiet_teardown() -> None:
    """From now on, no log record and no thread traceback: what is left is the runner's teardown
    after a Ctrl-C, whose errors say only that it was interrupted."""
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda _args: None


class _InterruptGuard:
    """Ctrl-C during a local run: SIGINT's handler only notes it (CPython writes it to the wakeup fd,
    whatever thread the kernel gave it to), and ``take`` in the monitor thread acts: it calls
    ``on_interrupt`` (which stops the worker processes) and raises ``KeyboardInterrupt`` in the main
    thread through SIGUSR2, which wakes it from any wait. Only on the main thread, on POSIX."""

    WAKE = getattr(signal, "SIGUSR2", None)

    def __init__(self, on_interrupt: Callable[[], None]) -> None:
        self.count = 0  # Ctrl-Cs seen
        self._on_interrupt = on_interrupt
        self._armed = False
        self._raise = False
        self._main = threading.get_ident()
        self._saved: dict[str, Any] = {}
        self._read_fd = self._write_fd = -1

    @classmethod
    def possible(cls) -> bool:
        return (
            cls.WAKE is not None
            and hasattr(signal, "pthread_kill")
            and threading.current_thread() is threading.main_thread()
        )

    def __enter__(self) -> _InterruptGuard:
        self._read_fd, self._write_fd = os.pipe()
        os.set_blocking(self._read_fd, False)
        os.set_blocking(self._write_fd, False)
        self._saved = {"excepthook": threading.excepthook}
        self._saved["fd"] = signal.set_wakeup_fd(self._write_fd, warn_on_full_buffer=False)
        self._saved["wake"] = signal.signal(self.WAKE, self._on_wake)
        self._saved["int"] = signal.signal(signal.SIGINT, self._on_sigint)
        self._armed = True
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._armed = False
        signal.signal(signal.SIGINT, self._saved["int"])
        signal.signal(self.WAKE, self._saved["wake"])
        signal.set_wakeup_fd(self._saved["fd"])
        if self.count:  # the teardown is over: Beam's logging and thread tracebacks come back
            logging.disable(logging.NOTSET)
            threading.excepthook = self._saved["excepthook"]
        for fd in (self._read_fd, self._write_fd):
            with contextlib.suppress(OSError):
                os.close(fd)

    def disarm(self) -> None:
        """The run is over: a Ctrl-C from now on stops nothing, and raises nothing."""
        self._armed = False

    def _on_sigint(self, *_: Any) -> None:
        """Noted through the wakeup fd; ``take`` acts on it."""

    def _on_wake(self, *_: Any) -> None:
        if self._armed and self._raise:
            self._raise = False
            raise KeyboardInterrupt

    def take(self, timeout: float) -> bool:
        """Wait up to ``timeout`` for a Ctrl-C and act on it; True if one came."""
        ready, _, _ = select.select([self._read_fd], [], [], timeout)
        if not ready:
            return False
        try:
            got = os.read(self._read_fd, 512).count(signal.SIGINT)
        except OSError:  # BlockingIOError: nothing after all
            return False
        if not got or not self._armed:
            return False
        self.count += got
        if self.count == got:  # the first: quiet, stop the workers, interrupt the main thread
            quiet_teardown()
            with contextlib.suppress(Exception):
                self._on_interrupt()
        self._raise = True
        signal.pthread_kill(self._main, self.WAKE)
        return True


# --- one run ------------------------------------------------------------------------------------


class RemoteDetached(KeyboardInterrupt):
    """Ctrl-C while waiting for a remote job: this command stops waiting, the job goes on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# Imported first by the worker processes of a multi-process local run (``PYTHONPATH``): they leave
# Ctrl-C to the main process, which stops them (so none dies half-way printing its traceback), and
# say their pid for that. The ``sitecustomize`` this one hides, if any, runs after it.
WORKER_SITE = """\
import os as _os
import signal as _signal
import sys as _sys

_signal.signal(_signal.SIGINT, _signal.SIG_IGN)
_signal.signal(_signal.SIGTERM, lambda *_: _os._exit(0))  # stopped: no "Terminated" from its shell
_folder = _os.environ.get("TWEETMILL_WORKER_PIDS")
if _folder:
    try:
        open(_os.path.join(_folder, str(_os.getpid())), "w").close()
    except OSError:
        pass
_here = _os.path.dirname(_os.path.abspath(__file__))
_sys.path[:] = [p for p in _sys.path if _os.path.abspath(p or ".") != _here]
from importlib.machinery import PathFinder as _PathFinder

if _PathFinder.find_spec("sitecustomize") is not None:
    del _sys.modules["sitecustomize"]
    import sitecustomize  # noqa: F401
"""
ENV_WORKER_PIDS = "TWEETMILL_WORKER_PIDS"
WORKER_EXIT_SECONDS = 10.0  # how long stopped workers get to be gone before temporary files go


class RunWatch:
    """Progress and Ctrl-C handling around ``p.run()``, for ``build.run``.

    ``with RunWatch(...) as watch: watch.wait(p.run())``. With ``progress=None`` it does nothing
    (library use, tests): the run behaves as Beam makes it.
    """

    def __init__(self, progress: ProgressOptions | None, pipeline_options: Any, inputs: list[str]):
        from apache_beam.options.pipeline_options import DirectOptions
        from tweetmill.pipeline.dataflow import is_remote_runner

        self.progress = progress
        self.options = pipeline_options
        self.inputs = list(inputs)
        self.remote = is_remote_runner(pipeline_options)
        mode = pipeline_options.view_as(DirectOptions).direct_running_mode
        self.worker_processes = not self.remote and mode == "multi_processing"
        self.interrupted = False  # Ctrl-C stopped a local run
        self.detached = False  # Ctrl-C stopped waiting for a remote job, which goes on
        self._guard: _InterruptGuard | None = None
        self._monitor: Monitor | None = None
        self._folder: str | None = None
        self._env: dict[str, str | None] = {}  # the variables set for the run, and their old values
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunWatch:
        if self.progress is None or self.remote:
            return self
        guard = _InterruptGuard.possible()
        if not (self.progress.show or guard):
            return self
        try:
            remove_stale_folders()
            self._folder = tempfile.mkdtemp(prefix=f"{FOLDER_PREFIX}{os.getpid()}-")
            if self.progress.show:
                total = input_bytes(self.inputs)
                self._set_env(ENV_DIR, self._make_dir("progress"))  # the worker processes inherit it
                self._monitor = Monitor(os.path.join(self._folder, "progress"), total, self.progress)
            if guard:
                if self.worker_processes:
                    self._protect_workers()
                self._guard = _InterruptGuard(self._stop_workers).__enter__()
            self._thread = threading.Thread(target=self._loop, name="tweetmill-progress", daemon=True)
            self._thread.start()
            if self._monitor is not None:
                self._monitor.start_display()
        except BaseException:
            self._close(finished=False)
            raise
        return self

    def _make_dir(self, name: str) -> str:
        path = os.path.join(self._folder, name)
        os.mkdir(path)
        return path

    def _set_env(self, name: str, value: str) -> None:
        self._env.setdefault(name, os.environ.get(name))
        os.environ[name] = value

    def _protect_workers(self) -> None:
        site = self._make_dir("site")
        with open(os.path.join(site, "sitecustomize.py"), "w") as f:
            f.write(WORKER_SITE)
        path = os.environ.get("PYTHONPATH")
        self._set_env("PYTHONPATH", site + (os.pathsep + path if path else ""))
        self._set_env(ENV_WORKER_PIDS, self._make_dir("workers"))

    def _worker_pids(self) -> list[int]:
        if self._folder is None or not self.worker_processes:
            return []
        with contextlib.suppress(OSError):
            return [int(n) for n in os.listdir(os.path.join(self._folder, "workers")) if n.isdigit()]
        return []

    def _stop_workers(self) -> None:
        """SIGTERM to the worker processes (which ignore Ctrl-C): they stop at once, quietly."""
        for pid in self._worker_pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def _wait_workers_gone(self) -> None:
        """Until the stopped workers are gone; one that outlives ``WORKER_EXIT_SECONDS`` is killed."""
        pids = self._worker_pids()
        for last in (False, True):
            deadline = time.monotonic() + WORKER_EXIT_SECONDS
            while pids and time.monotonic() < deadline:
                pids = [pid for pid in pids if _is_running(pid)]
                if pids:
                    time.sleep(0.05)
            if not pids or last:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)

    def _loop(self) -> None:
        while not self._stop.is_set():
            if self._guard is not None:
                if self._guard.take(POLL_SECONDS):
                    self.interrupted = True
            else:
                self._stop.wait(POLL_SECONDS)
            if self._monitor is not None and not self.interrupted:
                try:
                    self._monitor.poll()
                except Exception:  # progress must never fail a run
                    log.debug("progress poll failed", exc_info=True)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._close(finished=exc_type is None)

    def _close(self, *, finished: bool) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None
        if self._guard is not None:
            self.interrupted = self.interrupted or self._guard.count > 0
            self._guard.__exit__()
            self._guard = None
        if self.interrupted:  # nothing may write into the output once this returns
            self._stop_workers()
            self._wait_workers_gone()
        if self._monitor is not None:
            with contextlib.suppress(Exception):
                self._monitor.stop_display(finished=finished and not self.interrupted)
            self._monitor = None
        for name, value in self._env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        self._env = {}
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    def wait(self, result: Any) -> Any:
        """Wait for the pipeline; on Dataflow, with progress, show the job while waiting."""
        from tweetmill.pipeline.dataflow import is_dataflow

        if self.remote and self.progress is not None and is_dataflow(self.options):
            try:
                return watch_remote(result, self.options, self.progress)
            except KeyboardInterrupt as exc:
                self.detached = True
                raise RemoteDetached(detached_line(result, self.options)) from exc
        try:
            return result.wait_until_finish()
        finally:
            if self._guard is not None:  # a Ctrl-C now comes after the run: it stops nothing
                self._guard.disarm()


FOLDER_PREFIX = "tweetmill-run-"  # + the pid of the run's process


def remove_stale_folders() -> None:
    """The folders of runs whose process is gone without removing them (killed: SIGKILL, SIGTERM)."""
    base = tempfile.gettempdir()
    with contextlib.suppress(OSError):
        for name in os.listdir(base):
            pid = name[len(FOLDER_PREFIX) :].split("-", 1)[0]
            if name.startswith(FOLDER_PREFIX) and pid.isdigit() and not _is_running(int(pid)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)


def _is_running(pid: int) -> bool:
    """Whether ``pid`` runs: it exists, and is not a zombie waiting to be reaped (seen on Linux)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's: it runs
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            return f.read().rsplit(b")", 1)[1].split()[0] != b"Z"
    except (OSError, IndexError):
        return True


def input_bytes(patterns: list[str]) -> int | None:
    """The total size of the files the inputs stand for (``preflight.expand_input``'s rules), or None
    when a size cannot be had."""
    from apache_beam.io.filesystems import FileSystems
    from tweetmill.pipeline.preflight import as_beam_pattern, expand_input, is_local

    total = 0
    try:
        for pattern in patterns:
            files = expand_input(pattern)
            remote = [f for f in files if not is_local(f)]
            total += sum(os.path.getsize(f) for f in files if is_local(f))
            if remote:
                wanted = set(remote)
                for result in FileSystems.match([as_beam_pattern(f) for f in remote]):
                    total += sum(m.size_in_bytes for m in result.metadata_list if m.path in wanted)
    except Exception:  # no total: the display shows bytes read, without a share or a time left
        log.debug("input sizes unknown", exc_info=True)
        return None
    return total


# --- remote runners -----------------------------------------------------------------------------


def _job_location(options: Any) -> tuple[str | None, str | None]:
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    gcp = options.view_as(GoogleCloudOptions)
    return gcp.region, gcp.project


def detached_line(result: Any, options: Any) -> str:
    job_id = result.job_id()
    region, _ = _job_location(options)
    return (
        f"interrupted: stopped waiting; job {job_id} goes on and publishes when it ends "
        f"(to stop it: gcloud dataflow jobs cancel {job_id} --region {region})"
    )


def counters(result: Any) -> dict[str, int]:
    """tweetmill's counters of a running job (empty when the runner cannot say yet)."""
    from tweetmill.transforms.common import METRICS_NAMESPACE

    try:
        found = result.metrics().query()
    except Exception:  # the service may not answer yet; the next poll asks again
        log.debug("metrics query failed", exc_info=True)
        return {}
    out: dict[str, int] = {}
    for item in found.get("counters", []):
        if item.key.metric.namespace != METRICS_NAMESPACE:
            continue
        value = item.committed if item.committed is not None else item.attempted
        if isinstance(value, int):
            out[item.key.metric.name] = out.get(item.key.metric.name, 0) + value
    return out


def counters_line(now: dict[str, int], before: dict[str, int]) -> str | None:
    """The counters that grew since ``before``, one line (None: none grew)."""
    grown = {k: v for k, v in sorted(now.items()) if v != before.get(k)}
    if not grown:
        return None
    return "counters: " + ", ".join(f"{k} {v:,}" for k, v in grown.items())


def watch_remote(
    result: Any,
    options: Any,
    progress: ProgressOptions,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> Any:
    """Print the job, then its state changes and growing counters until it ends; its final state
    (``wait_until_finish``, which raises as Beam does when the job failed)."""
    from apache_beam.runners.runner import PipelineState
    from tweetmill.pipeline.dataflow import console_url

    stream = progress.stream or sys.stderr

    def say(line: str) -> None:
        if progress.show:
            stream.write(line + "\n")
            stream.flush()

    job_id = result.job_id()
    region, project = _job_location(options)
    say(f"submitted job {job_id}")
    if region and project:
        say(f"console: {console_url(project, region, job_id)}")
    started, last_state, last_counters = now(), None, {}
    while True:
        state = result.state
        if state != last_state:
            say(f"[{clock(now() - started)}] job {job_id}: {state}")
            last_state = state
        grown = counters(result)
        line = counters_line(grown, last_counters)
        if line:
            say(f"[{clock(now() - started)}] {line}")
            last_counters = grown
        if PipelineState.is_terminal(state):
            break
        sleep(max(1.0, progress.interval))
    return result.wait_until_finish()

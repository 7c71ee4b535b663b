"""Progress of ``tweetmill run`` and Ctrl-C: the side channel (``transforms/progress.py``), the monitor
and its lines (``pipeline/progress.py``), the run's folder and variables (``pipeline/run_watch.py``),
the worker processes' part (``pipeline/interrupt.py``, ``logs.py``), Dataflow's job watch
(``pipeline/remote_watch.py``), and real runs in a subprocess."""

from __future__ import annotations

import gzip
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from apache_beam.metrics.execution import MetricKey, MetricResult
from apache_beam.metrics.metricbase import MetricName
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.runner import PipelineState
from conftest import REPO_ROOT
from tweetmill.pipeline import interrupt, progress, remote_watch, run_watch
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest
from tweetmill.transforms import progress as reports
from tweetmill.transforms.common import METRICS_NAMESPACE
from tweetmill.transforms.read import _KIND_FILE, ReadOptions, _ListUnitsFn, _ParseUnitsFn

TWEETMILL = Path(sys.executable).with_name("tweetmill")
SAMPLE = REPO_ROOT / "examples" / "sample" / "data"
PROGRESS_LINE = re.compile(r"^\[\d+:\d\d(:\d\d)?\] read ")
FINAL_LINE = re.compile(r"^done in \S+ · read .+ · ([\d,]+) records · kept ([\d,]+) · dropped ([\d,]+)")


def _texts(n: int) -> str:
    return "".join(f"tweet number {i} about the weather in town and the news of the day\n" for i in range(n))


# --- the side channel ------------------------------------------------------------------------------


def _read_with_reports(paths: list[Path], folder: Path, monkeypatch) -> tuple[list[dict], list[dict]]:
    """The read stage's DoFns, run here with progress watched: (file summaries, reports)."""
    monkeypatch.setenv(reports.ENV_DIR, str(folder))
    lister, parser = _ListUnitsFn(), _ParseUnitsFn(ReadOptions(), 1000)
    lister.setup()
    parser.setup()
    summaries = []
    for path in paths:
        for unit in lister.process(("file", str(path))):
            summaries += [payload for kind, payload in parser.process(unit) if kind == _KIND_FILE]
    return summaries, progress.ProgressFolder(str(folder)).poll()


def test_reports_add_up_to_the_input_bytes_and_records(tmp_path, monkeypatch):
    text = tmp_path / "a.txt"
    text.write_text(_texts(2500))
    packed = tmp_path / "b.gz"
    packed.write_bytes(gzip.compress(_texts(1200).encode()))
    archive = tmp_path / "c.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("one.txt", _texts(1500))
        zf.writestr("two.txt", _texts(700))
        zf.writestr(".hidden.txt", _texts(10))  # skipped, but its bytes are read past
    folder = tmp_path / "progress"
    folder.mkdir()
    summaries, found = _read_with_reports([text, packed, archive], folder, monkeypatch)

    tally = progress.Tally()
    for report in found:
        tally.add(report, 0.0)
    assert tally.bytes == sum(p.stat().st_size for p in (text, packed, archive))
    assert tally.records == sum(s["records"] for s in summaries) == 2500 + 1200 + 1500 + 700
    assert tally.tweets == sum(s["tweets"] for s in summaries)
    # per batch of 1000 and per file, never per tweet
    assert len(found) <= 2 * (tally.records // 1000 + 3 * len(summaries) + 2)


def test_no_reporter_and_no_report_unless_watched(tmp_path, monkeypatch):
    monkeypatch.delenv(reports.ENV_DIR, raising=False)
    assert reports.reporter() is None
    source = tmp_path / "a.txt"
    source.write_text(_texts(30))
    lister, parser = _ListUnitsFn(), _ParseUnitsFn(ReadOptions(), 10)
    lister.setup()
    parser.setup()
    units = list(lister.process(("file", str(source))))
    out = [item for unit in units for item in parser.process(unit)]
    assert next(s for kind, s in out if kind == _KIND_FILE)["records"] == 30


def test_a_reporter_whose_folder_is_gone_stays_quiet(tmp_path):
    out = reports.Reporter(str(tmp_path / "gone"))
    out.report("parse", r=5)  # no error: progress is optional
    assert not (tmp_path / "gone").exists()


def test_the_folder_is_read_line_by_line_as_lines_complete(tmp_path):
    folder = progress.ProgressFolder(str(tmp_path))
    with open(tmp_path / "1.jsonl", "wb") as f:
        f.write(b'{"s":"parse","r":3}\n{"s":"parse","r"')
        f.flush()
        assert folder.poll() == [{"s": "parse", "r": 3}]
        f.write(b":4}\n")
        f.flush()
        assert folder.poll() == [{"s": "parse", "r": 4}]
        assert folder.poll() == []


def test_folders_of_runs_killed_before_their_cleanup_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    dead, alive = (
        tmp_path / f"tweetmill-run-{gone.stdout.strip()}-x1",
        tmp_path / f"tweetmill-run-{os.getpid()}-x2",
    )
    for folder in (dead, alive, tmp_path / "tweetmill-runner", tmp_path / "other"):
        (folder / "progress").mkdir(parents=True)
    run_watch.remove_stale_folders()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([alive.name, "tweetmill-runner", "other"])


def test_a_worker_that_joins_the_run_leaves_ctrl_c_and_its_pid_to_it(tmp_path):
    """``join_run`` in a worker process (here a bare Python): it ignores SIGINT, leaves its pid in the
    run's folder, and the run's SIGTERM ends it at once, with status 0 and nothing printed."""
    probe = (
        "import json, os, signal, time; from tweetmill.pipeline.interrupt import join_run; "
        f"join_run({str(tmp_path)!r}); "
        "print(json.dumps([os.getpid(), signal.getsignal(signal.SIGINT) == signal.SIG_IGN]), flush=True); "
        "os.kill(os.getpid(), signal.SIGTERM); time.sleep(60)"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    pid, ignores_sigint = json.loads(found.stdout)
    assert ignores_sigint and found.returncode == 0 and found.stderr == ""
    assert interrupt.WorkerProcesses(str(tmp_path)).pids() == [pid]


def test_a_worker_lets_only_warnings_through_and_no_noise():
    """Beam's harness logs at info in each worker process, and configures the root logger at info
    (its options never reach a multi-process run's workers); the worker's handler, installed first,
    prints only warnings and errors, without the messages nobody can act on."""
    probe = (
        "import logging; from tweetmill.pipeline.logs import setup_worker; setup_worker(); "
        "logging.basicConfig(level=logging.INFO); logging.getLogger().setLevel(logging.INFO); "
        "logging.getLogger('beam').info('harness chatter'); logging.warning('apitools not found, ...'); "
        "logging.getLogger('w').warning('No semi_persistent_directory found: ...'); "
        "logging.getLogger('tweetmill').warning('a warning to show')"
    )
    found = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert "a warning to show" in found.stderr
    assert "chatter" not in found.stderr and "apitools" not in found.stderr
    assert "semi_persistent" not in found.stderr


def test_a_multi_process_run_sets_its_variable_and_folder_only_while_it_runs(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", "/own/path")
    monkeypatch.delenv(interrupt.ENV_WORKER_PIDS, raising=False)
    options = PipelineOptions(["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    with run_watch.RunWatch(progress.ProgressOptions(show=False), options, []):
        assert Path(os.environ[interrupt.ENV_WORKER_PIDS]).is_dir()
        assert os.environ["PYTHONPATH"] == "/own/path"
    assert interrupt.ENV_WORKER_PIDS not in os.environ
    assert list(tmp_path.iterdir()) == []


# --- the monitor's lines ---------------------------------------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def _report(folder: Path, line: str) -> None:
    with open(folder / "7.jsonl", "a") as f:
        f.write(line + "\n")


def test_lines_say_bytes_records_rate_eta_and_stage(tmp_path):
    clock, stream = Clock(), _Stream()
    options = progress.ProgressOptions(interval=10, live=False, stream=stream)
    monitor = progress.Monitor(str(tmp_path), 1_000_000, options, now=clock)
    _report(tmp_path, '{"s":"parse","b":250000,"r":2000,"t":1900,"d":100}')
    _report(tmp_path, '{"s":"retweets","i":1900,"d":40}')
    clock.now += 5
    monitor.poll()
    assert stream.lines == []  # the first line comes after the interval
    _report(tmp_path, '{"s":"parse","b":250000,"r":2000,"t":2000}')
    _report(tmp_path, '{"s":"retweets","i":2000,"d":60}')
    clock.now += 5
    monitor.poll()
    line = stream.lines[-1]
    assert line.startswith("[0:10] read 500.0 kB of 1.0 MB (50%) · 4,000 records")
    assert "dropped 200" in line and "stage parse→retweets" in line
    assert "400 records/s" in line and "ETA 0:10" in line  # 250 kB in the last 5 s, 500 kB to go

    _report(tmp_path, '{"s":"parse","b":500000,"r":4000,"t":4000}')
    clock.now += 1
    monitor.poll()
    clock.now += 5  # the read is over and every stage went quiet: past the last one to report
    _report(tmp_path, '{"s":"language","i":3900}')
    clock.now += 4
    monitor.poll()
    snap = monitor.snapshot()
    assert not snap.reading and snap.stage == "language"
    assert snap.stage_share == pytest.approx(3900 / (7900 - 100))
    clock.now += 10
    assert monitor.snapshot().stage == "after language"

    _report(tmp_path, '{"s":"write","k":7700}')
    monitor.poll()
    monitor.stop_display(finished=True)
    assert stream.lines[-1].startswith("done in ")
    assert FINAL_LINE.match(stream.lines[-1]).groups() == ("8,000", "7,700", "300")


def test_a_run_shorter_than_the_interval_prints_nothing(tmp_path):
    stream = _Stream()
    monitor = progress.Monitor(str(tmp_path), 10, progress.ProgressOptions(live=False, stream=stream))
    _report(tmp_path, '{"s":"parse","b":10,"r":1,"t":1}')
    monitor.poll()
    monitor.stop_display(finished=True)
    assert stream.lines == []


class _Stream:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def write(self, text: str) -> None:
        self.lines += text.splitlines()

    def flush(self) -> None:
        pass

    def isatty(self) -> bool:
        return False


def test_human_units():
    assert progress.human_bytes(999) == "999 B"
    assert progress.human_bytes(1_250_000) == "1.2 MB"
    assert progress.clock(59.6) == "1:00" and progress.clock(3725) == "1:02:05"


# --- Dataflow ----------------------------------------------------------------------------------------

DATAFLOW = PipelineOptions(["--runner", "DataflowRunner", "--project", "proj", "--region", "europe-west1"])


class FakeDataflowResult:
    """What the watch uses of Beam's ``DataflowPipelineResult`` (the service cannot be reached from a
    test): ``job_id()``, ``state`` (each read is one poll), ``metrics().query()`` answering Beam's own
    ``MetricResult``s, and ``wait_until_finish()``."""

    def __init__(self, states: list[str], counters: list[dict[str, int]], interrupt_at: int | None = None):
        self._states, self._counters = list(states), list(counters)
        self._polls = 0
        self._interrupt_at = interrupt_at
        self.waited = False

    def job_id(self) -> str:
        return "2026-12-07_01_02_03-123"

    @property
    def state(self) -> str:
        self._polls += 1
        if self._polls == self._interrupt_at:
            raise KeyboardInterrupt
        return self._states[min(self._polls, len(self._states)) - 1]

    def metrics(self):
        return self

    def query(self):
        values = self._counters[min(self._polls, len(self._counters)) - 1]
        key = lambda name: MetricKey("ReadArchives/ParseUnits", MetricName(METRICS_NAMESPACE, name))  # noqa: E731
        other = MetricResult(MetricKey("x", MetricName("beam", "elements")), 9, 9)
        return {"counters": [other, *(MetricResult(key(k), v, v) for k, v in values.items())]}

    def wait_until_finish(self):
        self.waited = True
        return self._states[-1]


def test_dataflow_job_id_url_states_and_growing_counters():
    result = FakeDataflowResult(
        [PipelineState.PENDING, PipelineState.RUNNING, PipelineState.RUNNING, PipelineState.DONE],
        [
            {},
            {"parse_records_read_v1": 1000},
            {"parse_records_read_v1": 1000},
            {"parse_records_read_v1": 2500},
        ],
    )
    stream, sleeps = _Stream(), []
    options = progress.ProgressOptions(interval=30, stream=stream)
    assert remote_watch.watch_remote(result, DATAFLOW, options, sleep=sleeps.append) == PipelineState.DONE
    assert result.waited and sleeps == [30, 30, 30]
    lines = [re.sub(r"^\[\d+:\d\d\] ", "", line) for line in stream.lines]
    assert lines == [
        "submitted job 2026-12-07_01_02_03-123",
        "console: https://console.cloud.google.com/dataflow/jobs/europe-west1/2026-12-07_01_02_03-123"
        "?project=proj",
        "job 2026-12-07_01_02_03-123: PENDING",
        "job 2026-12-07_01_02_03-123: RUNNING",
        "counters: parse_records_read_v1 1,000",
        "job 2026-12-07_01_02_03-123: DONE",
        "counters: parse_records_read_v1 2,500",
    ]


def test_ctrl_c_while_waiting_for_dataflow_leaves_the_job_running():
    result = FakeDataflowResult([PipelineState.RUNNING], [{}], interrupt_at=1)
    watch = run_watch.RunWatch(progress.ProgressOptions(stream=_Stream()), DATAFLOW, [])
    with pytest.raises(remote_watch.RemoteDetached) as caught, watch:
        watch.wait(result)
    assert watch.detached and not result.waited
    assert "goes on" in caught.value.message
    assert "gcloud dataflow jobs cancel 2026-12-07_01_02_03-123 --region europe-west1" in caught.value.message


# --- real runs -------------------------------------------------------------------------------------


def _env(tmp_path: Path) -> dict[str, str]:
    """The subprocess's environment: its own temporary directory, to see that it leaves nothing there."""
    temp = tmp_path / "tmp"
    temp.mkdir(exist_ok=True)
    return {**os.environ, "COLUMNS": "200", "TMPDIR": str(temp)}


@pytest.mark.slow
def test_progress_lines_match_the_manifest_and_change_no_output(tmp_path):
    """Not a terminal: plain lines, then the final line, whose counts are the manifest's; ``-q``: no
    line. Both runs at once (a Beam start each), and their shards are the same bytes."""
    env = _env(tmp_path)
    common = [str(TWEETMILL), "run", str(SAMPLE / "*"), "--rows-per-shard", "1000"]
    shown = subprocess.Popen(
        [*common, "-o", str(tmp_path / "shown"), "--progress-interval", "0.2"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    quiet = subprocess.Popen(
        [*common, "-o", str(tmp_path / "quiet"), "-q"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    shown_err, quiet_err = shown.communicate(timeout=300)[1], quiet.communicate(timeout=300)[1]
    assert shown.returncode == 0 and quiet.returncode == 0, shown_err + quiet_err

    lines = shown_err.splitlines()
    assert any(PROGRESS_LINE.match(line) for line in lines), shown_err
    manifest = Manifest.from_json((tmp_path / "shown" / MANIFEST_NAME).read_text())
    final = FINAL_LINE.match(lines[-1])
    assert final, shown_err
    read, kept, dropped = (int(n.replace(",", "")) for n in final.groups())
    assert (read, kept) == (manifest.counts.read, manifest.counts.kept)
    assert dropped == sum(manifest.counts.dropped.values())

    assert not any(PROGRESS_LINE.match(line) or FINAL_LINE.match(line) for line in quiet_err.splitlines())
    again = Manifest.from_json((tmp_path / "quiet" / MANIFEST_NAME).read_text())
    assert [s.sha256 for s in again.shards] == [s.sha256 for s in manifest.shards]
    assert again.counts == manifest.counts
    assert list((tmp_path / "tmp").iterdir()) == []  # the progress folder went with the run


def test_the_watch_thread_ends_with_the_run_not_at_its_next_poll(monkeypatch, tmp_path):
    """The thread waits for a Ctrl-C in ``select`` between polls; the run's end wakes it at once."""
    monkeypatch.setattr(run_watch, "POLL_SECONDS", 60.0)
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    watch = run_watch.RunWatch(progress.ProgressOptions(show=False), PipelineOptions([]), [])
    with watch:
        thread = watch._thread
        assert thread is not None and thread.is_alive()  # a guard is possible: this is the main thread
        started = time.monotonic()
    assert time.monotonic() - started < 30  # not the minute the poll would have waited
    assert not thread.is_alive() and not watch.interrupted


@pytest.mark.slow
@pytest.mark.parametrize(
    "workers",
    [[], ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]],
    ids=["in-process", "worker-processes"],
)
def test_ctrl_c_stops_cleanly(tmp_path, workers):
    """Ctrl-C as a terminal sends it, to the whole process group (worker processes included), once
    progress shows: one line, exit 130, no traceback, nothing published, no temporary file left."""
    source = tmp_path / "in.txt"
    source.write_text(
        "".join(f"line {i} of a long input that takes a while to read\n" for i in range(200_000))
    )
    out = tmp_path / "out"
    process = subprocess.Popen(
        [str(TWEETMILL), "run", str(source), "-o", str(out), "--progress-interval", "0.2", *workers],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(tmp_path),
        start_new_session=True,
    )
    lines: list[str] = []
    reading = threading.Event()

    def collect() -> None:
        for line in process.stderr:
            lines.append(line.rstrip("\n"))
            if PROGRESS_LINE.match(line) and not re.search(r" · 0 records", line):
                reading.set()

    collector = threading.Thread(target=collect, daemon=True)
    collector.start()
    try:
        assert reading.wait(timeout=180), "\n".join(lines)
        shown = len(lines)
        os.killpg(process.pid, signal.SIGINT)
        assert process.wait(timeout=60) == 130, "\n".join(lines)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
    collector.join(timeout=10)

    after = [line for line in lines[shown:] if not PROGRESS_LINE.match(line)]
    assert after == [interrupt.INTERRUPTED_LINE], "\n".join(lines)
    assert "nothing was published" in after[0]
    assert not any("Traceback" in line or "KeyboardInterrupt" in line for line in lines), "\n".join(lines)
    if not workers:  # worker processes log their start on their own; the main process only this
        assert all(PROGRESS_LINE.match(line) for line in lines[:shown]), "\n".join(lines)
    assert not out.exists() or sorted(p.name for p in out.iterdir()) == []
    assert list((tmp_path / "tmp").iterdir()) == []
    assert _processes_with(f"TMPDIR={tmp_path / 'tmp'}") == []  # no worker process left running


def _processes_with(variable: str) -> list[int]:
    """Processes (Linux) whose environment holds ``variable``: the run's, and its workers'."""
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if variable.encode() in environ and (entry / "stat").read_text().split()[2] != "Z":
            found.append(int(entry.name))
    return found

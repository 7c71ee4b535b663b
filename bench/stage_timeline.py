"""Where a local run's wall time goes, stage by stage, and how many cores each stage kept busy.

Run by hand (never in CI), from the repository root, on Linux:

    .venv/bin/python bench/stage_timeline.py INPUT --workers 2
    .venv/bin/python bench/stage_timeline.py /tmp/tweetmill-bench-peers/input/data --workers 1

It runs ``tweetmill run INPUT`` in this process (the bundled tokenizer, a temporary output, every
other option at its default; ``--workers N`` adds ``--direct_num_workers N`` and, above one,
``--direct_running_mode multi_processing``) with Beam's ``FnApiRunner._execute_bundle`` timed, while
a thread reads the CPU time of this process and all its descendants from ``/proc`` every
``--interval`` seconds. It prints, in order: the time before the first stage (imports, the job
graph, the runner's planning; the worker processes start in the first stage), every stage that
took ``--min-seconds`` or more with the cores it kept busy (CPU-seconds of the process tree over
its wall time; 2.0 on two cores is all of them), the shorter stages summed, and the time from the
last stage to the end of the command (closing the workers, the report). With ``--workers 1`` and
``2`` on the same input it shows what the second worker does not halve: whatever runs on one core
at a time (``cores`` near 1), and the stages that are the same with either.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import os
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench_peers import descendants, proc_table

REPO = Path(__file__).resolve().parents[1]
TOKENIZER = REPO / "transforms" / "assets" / "tweet-bpe-16k.json"


class TreeCpu:
    """CPU-seconds of this process and its descendants, those that exited included, sampled."""

    def __init__(self) -> None:
        self.samples: list[tuple[float, float]] = []
        self._live: dict[tuple[int, int], float] = {}
        self._gone = 0.0
        self._stop = threading.Event()

    def _read(self) -> float:
        table = proc_table()
        tree = [os.getpid(), *descendants(table, os.getpid())]
        live = {(pid, table[pid][1]): table[pid][2] for pid in tree if pid in table}  # by pid and start
        for gone in self._live.keys() - live.keys():
            self._gone += self._live.pop(gone)
        self._live.update(live)
        return self._gone + sum(self._live.values())

    def _loop(self, interval: float) -> None:
        while not self._stop.is_set():
            self.samples.append((time.time(), self._read()))
            self._stop.wait(interval)

    def start(self, interval: float) -> None:
        threading.Thread(target=self._loop, args=(interval,), daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        self.samples.append((time.time(), self._read()))

    def at(self, t: float) -> float:
        """CPU-seconds at time ``t``, interpolated between samples."""
        before = self.samples[0]
        for after in self.samples:
            if after[0] >= t:
                if after[0] == before[0]:
                    return after[1]
                return before[1] + (after[1] - before[1]) * (t - before[0]) / (after[0] - before[0])
            before = after
        return self.samples[-1][1]


def timed_stages(spans: list[tuple[float, float, str]]) -> None:
    """Record each ``FnApiRunner`` stage's start, end and name into ``spans``."""
    from apache_beam.runners.portability.fn_api_runner import fn_runner

    execute = fn_runner.FnApiRunner._execute_bundle

    def timed(self, runner_execution_context, bundle_context_manager, bundle_input):
        start = time.time()
        try:
            return execute(self, runner_execution_context, bundle_context_manager, bundle_input)
        finally:
            spans.append((start, time.time(), bundle_context_manager.stage.name))

    fn_runner.FnApiRunner._execute_bundle = timed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("input", help="what tweetmill run reads (a file, a glob or a folder)")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--tokenizer", default=str(TOKENIZER))
    parser.add_argument("--interval", type=float, default=0.05, help="seconds between CPU samples")
    parser.add_argument("--min-seconds", type=float, default=0.15, help="shorter stages are summed")
    args = parser.parse_args()

    started = time.time()
    cpu = TreeCpu()
    cpu.start(args.interval)
    from tweetmill.pipeline import logs
    from tweetmill.pipeline.cli import main as tweetmill

    logs.setup()  # before Beam is imported, as the CLI does (pipeline/logs.py)
    spans: list[tuple[float, float, str]] = []
    timed_stages(spans)

    output = tempfile.mkdtemp(prefix="stage-timeline-")
    argv = ["run", args.input, "-o", output, "--overwrite", "-q", "--tokenizer", args.tokenizer,
            "--direct_num_workers", str(args.workers)]
    if args.workers > 1:
        argv += ["--direct_running_mode", "multi_processing"]
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # the run's report: not what is measured here
            code = tweetmill(argv)
    finally:
        cpu.stop()
        shutil.rmtree(output, ignore_errors=True)
    ended = time.time()
    if code or not spans:
        sys.exit(f"tweetmill run failed (exit {code})")

    def row(label: str, start: float, end: float) -> str:
        cores = (cpu.at(end) - cpu.at(start)) / max(end - start, 1e-9)
        return f"{start - started:7.2f} {end - start:7.2f} s {cores:5.2f} cores  {label[:110]}"

    total_cpu = cpu.samples[-1][1]
    print(f"{args.workers} worker(s): {ended - started:.2f} s, {total_cpu:.1f} CPU-s, {len(spans)} stages")
    print("  start   wall      cores")
    print(row("(before the first stage)", started, spans[0][0]))
    short = []
    for start, end, name in spans:
        if end - start >= args.min_seconds:
            print(row(name, start, end))
        else:
            short.append((start, end))
    wall = sum(end - start for start, end in short)
    used = sum(cpu.at(end) - cpu.at(start) for start, end in short)
    print(f"{'':7} {wall:7.2f} s {used / max(wall, 1e-9):5.2f} cores  ({len(short)} stages under "
          f"{args.min_seconds} s each)")
    print(row("(after the last stage: closing the workers, the report)", spans[-1][1], ended))


if __name__ == "__main__":
    main()

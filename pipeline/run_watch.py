"""Progress and Ctrl-C handling around ``p.run()``, for ``build.run``: ``RunWatch`` makes the run's
folder in the system's temporary directory (the side channel's ``progress/``, and the worker
processes' pids), sets the variables the worker processes inherit, runs the monitor thread, and
undoes all of it when the run ends, however it ends. A remote job is watched instead
(``remote_watch.py``). How it works: ``docs/progress.md``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import tempfile
import threading
from typing import Any

from tweetmill.pipeline.interrupt import ENV_WORKER_PIDS, InterruptGuard, WorkerProcesses, is_running
from tweetmill.pipeline.progress import POLL_SECONDS, Monitor, ProgressOptions
from tweetmill.pipeline.remote_watch import RemoteDetached, detached_line, watch_remote
from tweetmill.transforms.progress import ENV_DIR

log = logging.getLogger(__name__)


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
        self._guard: InterruptGuard | None = None
        self._monitor: Monitor | None = None
        self._folder: str | None = None
        self._workers: WorkerProcesses | None = None  # a multi-process run's, once protected
        self._env: dict[str, str | None] = {}  # the variables set for the run, and their old values
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> RunWatch:
        if self.progress is None or self.remote:
            return self
        guard = InterruptGuard.possible()
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
                self._guard = InterruptGuard(self._stop_workers).__enter__()
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
        self._workers = WorkerProcesses(self._make_dir("workers"))
        self._set_env(ENV_WORKER_PIDS, self._workers.folder)  # the worker processes inherit it

    def _stop_workers(self) -> None:
        if self._workers is not None:
            self._workers.stop()

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
            if self._guard is not None:
                self._guard.wake()
            self._thread.join()
            self._thread = None
        if self._guard is not None:
            self.interrupted = self.interrupted or self._guard.count > 0
            self._guard.__exit__()
            self._guard = None
        if self.interrupted and self._workers is not None:
            self._workers.stop()  # nothing may write into the output once this returns
            self._workers.wait_gone()
        self._workers = None
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
            if name.startswith(FOLDER_PREFIX) and pid.isdigit() and not is_running(int(pid)):
                shutil.rmtree(os.path.join(base, name), ignore_errors=True)


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

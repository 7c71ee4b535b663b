"""Ctrl-C of a local run: SIGINT only noted, then acted on from the monitor thread (``InterruptGuard``);
the worker processes of a multi-process run made to leave Ctrl-C to this process and stopped by it
(``WorkerProcesses``, ``join_run``). How and why, in one place: ``docs/progress.md`` ("Ctrl-C").
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Any

INTERRUPTED_LINE = "interrupted: the run was stopped before it finished; nothing was published"


def quiet_teardown() -> None:
    """From now on, no log record and no thread traceback: what is left is the runner's teardown
    after a Ctrl-C, whose errors say only that it was interrupted."""
    logging.disable(logging.CRITICAL)
    threading.excepthook = lambda _args: None


class InterruptGuard:
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

    def __enter__(self) -> InterruptGuard:
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

    def wake(self) -> None:
        """End a ``take`` that is waiting now (the run is over: its thread should not sleep on)."""
        with contextlib.suppress(OSError):
            os.write(self._write_fd, b"\0")  # not SIGINT's number: counted as no Ctrl-C

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


# --- the worker processes of a multi-process run ------------------------------------------------

ENV_WORKER_PIDS = "TWEETMILL_WORKER_PIDS"
WORKER_EXIT_SECONDS = 10.0  # how long stopped workers get to be gone before temporary files go


def join_run(folder: str) -> None:
    """In a worker process of a multi-process run (``pipeline/local_worker.py``), first thing: leave
    Ctrl-C to the run's process, exit at once and quietly when it stops this one (SIGTERM: no
    traceback, no "Terminated" from the shell that started it), and leave this process's pid in
    ``folder`` for it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    with contextlib.suppress(OSError):
        open(os.path.join(folder, str(os.getpid())), "w").close()


class WorkerProcesses:
    """The worker processes of a multi-process local run: started with ``ENV_WORKER_PIDS`` naming
    ``folder``, each ignores SIGINT and leaves its pid there (``join_run``), and this process stops them."""

    def __init__(self, folder: str) -> None:
        self.folder = folder

    def pids(self) -> list[int]:
        with contextlib.suppress(OSError):
            return [int(n) for n in os.listdir(self.folder) if n.isdigit()]
        return []

    def stop(self) -> None:
        """SIGTERM to the worker processes (which ignore Ctrl-C): they stop at once, quietly."""
        for pid in self.pids():
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGTERM)

    def wait_gone(self) -> None:
        """Until the stopped workers are gone; one that outlives ``WORKER_EXIT_SECONDS`` is killed."""
        pids = self.pids()
        for last in (False, True):
            deadline = time.monotonic() + WORKER_EXIT_SECONDS
            while pids and time.monotonic() < deadline:
                pids = [pid for pid in pids if is_running(pid)]
                if pids:
                    time.sleep(0.05)
            if not pids or last:
                return
            for pid in pids:
                with contextlib.suppress(OSError):
                    os.kill(pid, signal.SIGKILL)


def is_running(pid: int) -> bool:
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

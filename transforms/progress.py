"""Progress reports from the workers of a local run: the writing end of ``pipeline/progress.py``.

Beam's metrics cannot be read while the embedded FnApiRunner runs, so the stages report their
progress on a side channel instead: when ``TWEETMILL_PROGRESS_DIR`` names a folder (the command
line sets it for a local run, and the runner's worker processes inherit it), each process appends
one short JSON line per report to a file of its own there. A report is made per unit of work (a
batch of tweets, a shard), never per tweet, holds counts since the previous report, and is
best effort: a report that cannot be written is dropped, and none is ever made when the variable
is unset (remote workers, tests, library use). Reports change no output.

A report: ``{"s": stage, "b": bytes read, "r": records read, "t": tweets, "d": dropped,
"e": errors, "k": kept, "i": tweets in}``, only the non-zero counts.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any, BinaryIO

ENV_DIR = "TWEETMILL_PROGRESS_DIR"


class Reporter:
    """Appends reports to this process's file in the progress folder (one ``write`` per report)."""

    def __init__(self, folder: str):
        self._folder = folder
        self._fd: int | None = None
        self._pid = -1
        self._lock = threading.Lock()
        self._broken = False

    def report(self, stage: str, **counts: int) -> None:
        if self._broken:
            return
        record: dict[str, Any] = {"s": stage}
        record.update((k, v) for k, v in counts.items() if v)
        line = (json.dumps(record, separators=(",", ":")) + "\n").encode()
        try:
            with self._lock:
                if self._pid != os.getpid():  # first report, or a forked child: a file of its own
                    self._pid = os.getpid()
                    name = os.path.join(self._folder, f"{self._pid}.jsonl")
                    self._fd = os.open(name, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
                os.write(self._fd, line)
        except OSError:  # the folder is gone (the run ended) or the disk is full: progress is optional
            self._broken = True


_REPORTERS: dict[str, Reporter] = {}
_REPORTERS_LOCK = threading.Lock()


def reporter() -> Reporter | None:
    """This process's reporter, or None when progress is not being watched (the usual case)."""
    folder = os.environ.get(ENV_DIR)
    if not folder:
        return None
    with _REPORTERS_LOCK:
        if folder not in _REPORTERS:
            _REPORTERS[folder] = Reporter(folder)
        return _REPORTERS[folder]


class UnitMeter:
    """Progress of one read unit (a file, or one member of a zip or tar): the bytes read from its
    input file so far, and its records, reported as the read stage emits each batch."""

    def __init__(self, out: Reporter, unit: Any, opener: Callable[[str], BinaryIO]):
        self._out = out
        self._opener = opener
        self._file: BinaryIO | None = None
        locator = unit.locator
        self._start = locator.offset if locator is not None else 0
        self._size = locator.size if locator is not None else None  # a whole file: known once opened
        self._bytes = 0  # bytes reported so far
        self._counts = (0, 0, 0, 0)  # records, tweets, dropped, errors of the file, reported so far

    def open(self, path: str) -> BinaryIO:
        """The unit's opener for ``containers.leaves``: keeps the file, to ask its position."""
        f = self._opener(path)
        if self._size is None:
            try:
                self._size = f.seek(0, os.SEEK_END)
                f.seek(0)
            except (OSError, ValueError, AttributeError):
                self._size = 0
        self._file = f
        return f

    def _position(self) -> int:
        try:
            done = self._file.tell() - self._start if self._file is not None else 0
        except (OSError, ValueError):  # closed
            return self._bytes
        return max(self._bytes, min(done, self._size or 0))

    def file_started(self) -> None:
        self._counts = (0, 0, 0, 0)

    def update(self, records: int, tweets: int, dropped: int, errors: int) -> None:
        """Counts so far of the file being read; the report holds what grew since the last one."""
        r, t, d, e = self._counts
        self._counts = (records, tweets, dropped, errors)
        position = self._position()
        self._out.report(
            "parse", b=position - self._bytes, r=records - r, t=tweets - t, d=dropped - d, e=errors - e
        )
        self._bytes = position

    def finish(self) -> None:
        """The unit is read: the rest of its bytes count as read (a skipped member, a stop on error)."""
        rest = (self._size or 0) - self._bytes
        if rest > 0:
            self._out.report("parse", b=rest)
            self._bytes += rest


class _NoMeter:
    """The meter when progress is not watched: opens with the stage's own opener, reports nothing."""

    def __init__(self, opener: Callable[[str], BinaryIO]):
        self.open = opener

    def file_started(self) -> None:
        pass

    def update(self, records: int, tweets: int, dropped: int, errors: int) -> None:
        pass

    def finish(self) -> None:
        pass


def unit_meter(out: Reporter | None, unit: Any, opener: Callable[[str], BinaryIO]) -> UnitMeter | _NoMeter:
    return _NoMeter(opener) if out is None else UnitMeter(out, unit, opener)


def listed(out: Reporter | None, units: Iterator[Any], fileobj: BinaryIO) -> Iterator[Any]:
    """``units`` of one input file; a zip's or tar's own bytes (headers, directory) are reported as
    read once its members are listed, so the units' bytes add up to the size of the file."""
    if out is None:
        yield from units
        return
    members, container = 0, False
    for unit in units:
        if unit.locator is not None:
            members += unit.locator.size
            container = True
        yield unit
    if container:
        try:
            size = fileobj.seek(0, os.SEEK_END)
        except (OSError, ValueError):
            return
        if size > members:
            out.report("parse", b=size - members)

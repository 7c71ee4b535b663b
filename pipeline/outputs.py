"""The output directory: checked before a run starts, held by one run at a time, left clean after it.

* ``check_output``: every problem with ``--output`` as one line each, found before anything is read,
  loaded or written (a file in its place, no write access, a finished run without ``--overwrite``,
  another run writing into it).
* ``OutputLock``: on local disk a run holds ``_tweetmill.lock`` in the output directory, created with
  ``O_CREAT | O_EXCL`` (atomic, also on NFS v3+), holding one JSON object ``{"pid", "host", "started",
  "tweetmill"}``. A lock whose process is gone (same host, pid not running) is taken over with a
  warning; one from another host cannot be checked and stays until someone deletes it.
  Object stores have no atomic create-if-absent through Beam's FileSystems, so there is no lock: a
  ``_tmp-*`` prefix under the output (a run writing, or one that crashed) is refused unless
  ``--overwrite`` is given.
* ``run_failure``: a run that broke on the filesystem (disk full, permissions, read-only, I/O error)
  becomes one ``RunFailedError`` line naming the file, instead of Beam's wrapped traceback.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import socket
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field

from apache_beam.io.filesystems import FileSystems
from tweetmill.pipeline.errors import RunFailedError, UserError
from tweetmill.schemas.manifest import MANIFEST_NAME
from tweetmill.transforms.write import TempDir, delete_tree, local_path, temp_dirs

log = logging.getLogger(__name__)

LOCK_NAME = "_tweetmill.lock"

# What a run that broke on the filesystem tells the user: errno -> (what happened, what to do).
_ADVICE = {
    errno.ENOSPC: ("no space left on device", "free space and run again"),
    errno.EDQUOT: ("disk quota exceeded", "free space or raise the quota and run again"),
    errno.EACCES: ("permission denied", "fix the permissions and run again"),
    errno.EPERM: ("operation not permitted", "fix the permissions and run again"),
    errno.EROFS: ("read-only file system", "make it writable and run again"),
    errno.EIO: ("I/O error", "check the disk and run again"),
}
# An OSError as text, which is all that is left of it once it crossed a worker's process boundary.
_ERRNO_TEXT = re.compile(r"\[Errno (\d+)\] [^:'\[\]\n]*(?:: '((?:[^'\\\n]|\\.)*)')?")


# --- checks before the run ----------------------------------------------------------------------


@dataclass
class OutputCheck:
    problems: list[str] = field(default_factory=list)
    finished_run: bool = False  # manifest.json is there and --overwrite was not given
    # Object stores: ``_tmp-*`` prefixes of other runs that --overwrite allowed; removed after success.
    stale_temps: list[TempDir] = field(default_factory=list)


def check_output(output: str, *, overwrite: bool) -> OutputCheck:
    """Every reason ``output`` cannot take this run, without writing anything."""
    check = OutputCheck()
    local = local_path(output)
    if local is not None:
        if os.path.exists(local) and not os.path.isdir(local):
            check.problems.append(
                f"{output} is a file, not a directory: --output names the directory the shards go to"
            )
            return check  # nothing else about it means anything
        if problem := _not_writable(output, local):
            check.problems.append(problem)
    if FileSystems.exists(FileSystems.join(output, MANIFEST_NAME)) and not overwrite:
        check.finished_run = True
        check.problems.append(f"{output} already holds a finished run; pass --overwrite to replace it")
    if local is not None:
        lock_path = os.path.join(local, LOCK_NAME)
        held = read_lock(lock_path)
        if held is not None and holder_alive(held) is not False:
            check.problems.append(_lock_problem(output, lock_path, held))
        return check
    for temp in temp_dirs(output):
        if overwrite:
            log.warning("%s: %d file(s) of another run; removed after this run succeeds (--overwrite)",
                        temp.path, temp.files)
            check.stale_temps.append(temp)
        else:
            check.problems.append(
                f"{temp.path}: another run is writing into {output}, or one crashed ({temp.files} file(s), "
                f"last written {_when(temp.last_modified)}); pass --overwrite if no run is writing there"
            )
    return check


def _not_writable(output: str, local: str) -> str | None:
    """Why the directory (or the nearest existing directory above it) cannot be written, if it cannot."""
    existing = os.path.abspath(local)
    while not os.path.exists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"cannot create {output}: {existing} is a file, not a directory"
    if os.access(existing, os.W_OK | os.X_OK):
        return None
    if os.statvfs(existing).f_flag & os.ST_RDONLY:
        return f"cannot write into {output}: {existing} is on a read-only file system"
    return f"cannot write into {output}: no write permission on {existing}"


def _when(seconds: float | None) -> str:
    if not seconds:
        return "at an unknown time"
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(seconds))


# --- the lock -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class LockInfo:
    """Who holds an output directory: enough to find that run, or to see that it is gone."""

    pid: int
    host: str
    started: str  # ISO 8601, local time with offset
    tweetmill: str = ""

    @classmethod
    def mine(cls, version: str) -> LockInfo:
        return cls(os.getpid(), socket.gethostname(), time.strftime("%Y-%m-%dT%H:%M:%S%z"), version)

    def describe(self) -> str:
        if self.pid < 0:
            return "unreadable lock file: being written this instant, or damaged"
        return f"pid {self.pid} on {self.host}, started {self.started}"


def read_lock(path: str) -> LockInfo | None:
    """The lock at ``path``; None when there is none. One that cannot be parsed (being written this
    instant, or damaged) counts as held by an unknown run: safer than taking it over."""
    try:
        with open(path, encoding="utf-8") as f:
            doc = json.load(f)
        return LockInfo(int(doc["pid"]), str(doc["host"]), str(doc["started"]), str(doc.get("tweetmill", "")))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        return LockInfo(-1, "", "")


def holder_alive(info: LockInfo) -> bool | None:
    """Whether the lock's process still runs; None when that cannot be told from here (another host)."""
    if info.host != socket.gethostname() or info.pid <= 0:
        return None
    try:
        os.kill(info.pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    # A zombie (exited, not yet reaped) no longer writes anything.
    with contextlib.suppress(OSError), open(f"/proc/{info.pid}/stat", encoding="ascii") as f:
        if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
            return False
    return True


def _lock_problem(output: str, lock_path: str, held: LockInfo) -> str:
    unknown = holder_alive(held) is None and held.pid > 0
    why = f"; {socket.gethostname()} cannot tell whether it still runs" if unknown else ""
    return (
        f"{output} is being written by another run (lock {lock_path}: {held.describe()}{why}); "
        "wait for it to finish, or delete the lock if that run is gone"
    )


class OutputLock:
    """The one-writer lock of a local output directory; a context manager that always releases it."""

    def __init__(self, output: str, version: str = ""):
        local = local_path(output)
        if local is None:
            raise ValueError(f"{output}: only local directories are locked")
        self.output = output
        self.dir = local
        self.path = os.path.join(local, LOCK_NAME)
        self.info = LockInfo.mine(version)
        self._created_dir = False
        self._held = False

    def __enter__(self) -> OutputLock:
        self.acquire()
        return self

    def __exit__(self, *_exc) -> None:
        self.release()

    def acquire(self) -> None:
        """Create the lock atomically; a second run gets a ``UserError`` naming the holder."""
        try:
            self._acquire()
        except BaseException:
            self.release()
            raise

    def _acquire(self) -> None:
        try:
            if not os.path.isdir(self.dir):
                os.makedirs(self.dir)
                self._created_dir = True
            for attempt in range(3):
                try:
                    fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
                except FileExistsError:
                    held = read_lock(self.path)
                    if held is None:  # released between our two looks
                        continue
                    if attempt == 0 and holder_alive(held) is False and self._take_over(held):
                        continue
                    raise UserError(_lock_problem(self.output, self.path, held)) from None
                self._held = True
                with os.fdopen(fd, "w", encoding="utf-8") as f:
                    json.dump(asdict(self.info), f)
                    f.write("\n")
                return
        except OSError as exc:
            raise UserError(f"cannot create the lock {self.path}: {exc.strerror or exc}") from exc
        raise UserError(f"could not take the lock {self.path}: other runs keep replacing it")

    def _take_over(self, stale: LockInfo) -> bool:
        """Move a dead run's lock aside, unless another run replaced it meanwhile."""
        aside = f"{self.path}.stale-{os.getpid()}"
        try:
            os.rename(self.path, aside)
        except FileNotFoundError:
            return True  # someone else removed it; try to create ours
        if read_lock(aside) != stale:  # a live run's lock, created after we read the dead one: give back
            with contextlib.suppress(OSError):
                os.link(aside, self.path)
            os.unlink(aside)
            return False
        os.unlink(aside)
        log.warning("took over the lock %s of a run that is gone (%s)", self.path, stale.describe())
        return True

    def release(self) -> None:
        """Remove the lock if it is still ours, and the directory if this run created it and left it empty."""
        if self._held and read_lock(self.path) == self.info:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.path)
        self._held = False
        if self._created_dir:
            with contextlib.suppress(OSError):  # not empty: the run published into it
                os.rmdir(self.dir)


# --- after the run ------------------------------------------------------------------------------


def remove_temps(paths: list[str], why: str) -> None:
    """Best effort: a temporary directory that stays behind is reported, and cleaned by the next run."""
    for path in paths:
        try:
            delete_tree(path)
        except Exception as exc:  # whatever the filesystem raises, the run's outcome stands
            log.warning("could not remove %s (%s): %s", path, why, exc)
        else:
            log.info("removed %s (%s)", path, why)


def _os_errors(exc: BaseException) -> Iterator[tuple[int, str | None]]:
    """(errno, file name) of the filesystem errors behind ``exc``: its cause/context chain and the
    per-file errors of Beam's batch operations (``BeamIOError.exception_details``)."""
    seen: set[int] = set()
    stack: list[BaseException | None] = [exc]
    while stack:
        e = stack.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        if isinstance(e, OSError) and e.errno in _ADVICE:
            yield e.errno, e.filename if isinstance(e.filename, str) else None
        details = getattr(e, "exception_details", None)
        if isinstance(details, dict):
            stack.extend(v for v in details.values() if isinstance(v, BaseException))
        stack.extend((e.__cause__, e.__context__))
    for m in _ERRNO_TEXT.finditer(str(exc)):
        if int(m.group(1)) in _ADVICE:
            yield int(m.group(1)), m.group(2)


def filesystem_error(exc: BaseException) -> tuple[int, str | None] | None:
    """The filesystem error that broke a run, preferring one that names its file; None for other errors."""
    found = list(_os_errors(exc))
    named = [f for f in found if f[1]]
    return (named or found or [None])[0]


def run_failure(exc: BaseException, output: str) -> RunFailedError | None:
    """One line for a run that broke on the filesystem; None when ``exc`` is something else (a bug)."""
    found = filesystem_error(exc)
    if found is None:
        return None
    code, path = found
    what, advice = _ADVICE[code]
    if path is None:
        where = f"while writing into {output}"
    elif _inside(path, output):
        where = f"while writing {path}"
    else:  # an input, the tokenizer
        where = f"on {path}"
    return RunFailedError(f"{what} {where}; nothing was published; {advice}")


def _inside(path: str, directory: str) -> bool:
    local, local_dir = local_path(path), local_path(directory)
    if local is not None and local_dir is not None:
        path, directory = os.path.abspath(local), os.path.abspath(local_dir)
    return path.startswith(directory.rstrip("/") + "/")


class _DropFilesystemErrors(logging.Filter):
    """Beam logs each failed bundle with its whole traceback; for a filesystem error the run's one
    ``RunFailedError`` line says it all."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None:
            return filesystem_error(exc) is None
        return not any(int(m.group(1)) in _ADVICE for m in _ERRNO_TEXT.finditer(record.getMessage()))


_BEAM_ERROR_LOGGERS = ("apache_beam.runners.common", "apache_beam.runners.worker.sdk_worker")


@contextlib.contextmanager
def quiet_filesystem_errors() -> Iterator[None]:
    """While the pipeline runs, Beam's own logging of a filesystem error is left out."""
    drop = _DropFilesystemErrors()
    loggers = [logging.getLogger(name) for name in _BEAM_ERROR_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)

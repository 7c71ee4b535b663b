"""Logging of every ``tweetmill`` command, set up here and nowhere else.

Importing Apache Beam logs a warning through the root logger ("apitools not found, ..."), and
``logging.warning`` on a root logger without a handler installs one (``basicConfig``); Beam's
``PipelineOptions`` calls ``basicConfig`` too. A later ``logging.basicConfig`` is then a no-op, and
``-v`` would do nothing. So ``setup`` runs first thing in ``main``, before anything imports Beam, and
again once the command line is parsed; it owns one handler on the root logger, and removes one that
``basicConfig`` installed before it.

* tweetmill's own loggers (``tweetmill.*``) log at the level asked: ``--log-level``, ``-v`` (info),
  else the command's default (warning; info for ``train``).
* Beam's (``apache_beam.*``, and what Beam's modules log through the root logger) stay at warning
  unless asked: ``--beam-log-level``, or ``--log-level debug``, which shows everything.
* Other libraries log warnings and errors (everything with ``--log-level debug``).
* Messages nobody can act on (``NOISE``) are dropped; a warning repeated word for word is shown once.

The trainer (``gpu_train``, which never imports the pipeline) sets up its own handler when it runs
alone (``python -m tweetmill.gpu_train``, torchrun); under ``tweetmill train`` this module's applies.
"""

from __future__ import annotations

import logging
import sys

LEVELS = ("debug", "info", "warning", "error")
FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
# Substrings of messages that are never shown: nothing the user can do about them.
NOISE = (
    # Beam, at import, when the optional GCP clients are missing: a local run does not need them.
    "apitools not found",
    # Beam's worker processes of a local multi-process run, at their start.
    "No semi_persistent_directory found",
)
_BEAM = "apache_beam"


def _level(name: str | int) -> int:
    return name if isinstance(name, int) else logging.getLevelName(name.upper())


class _StderrHandler(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (a test's capture, Rich's redirect)."""

    stream = property(lambda self: sys.stderr, lambda self, _: None)


class _Policy(logging.Filter):
    """Drops ``NOISE``, Beam's root-logger messages below Beam's level, and repeated warnings."""

    def __init__(self, beam_level: int) -> None:
        super().__init__()
        self.beam_level = beam_level
        self.seen: set[tuple[str, str]] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        if any(noise in message for noise in NOISE):
            return False
        from_beam = record.name.startswith(_BEAM) or f"/{_BEAM}/" in record.pathname.replace("\\", "/")
        if from_beam and record.levelno < self.beam_level:
            return False
        if record.levelno == logging.WARNING:
            key = (record.name, message)
            if key in self.seen:
                return False
            self.seen.add(key)
        return True


def _stderr_handler(beam_level: int) -> logging.Handler:
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter(FORMAT))
    handler.addFilter(_Policy(beam_level))
    return handler


def setup(level: str | int = "warning", *, beam_level: str | int | None = None) -> None:
    """Log tweetmill's messages at ``level`` and Beam's at ``beam_level`` (default: warning, or debug
    when ``level`` is debug) to stderr, one handler on the root logger. Safe to call again."""
    level = _level(level)
    if beam_level is not None:
        beam = _level(beam_level)
    else:  # warnings (and errors), unless tweetmill's own level is quieter still, or debug
        beam = level if level <= logging.DEBUG else max(level, logging.WARNING)
    root = logging.getLogger()
    for handler in list(root.handlers):
        # Ours from an earlier call, and the one basicConfig (Beam's import) left; others (a test's
        # log capture, an embedding program's) stay.
        if isinstance(handler, _StderrHandler) or type(handler) is logging.StreamHandler:
            root.removeHandler(handler)
            if type(handler) is logging.StreamHandler:
                handler.close()
    root.addHandler(_stderr_handler(beam))
    # Other libraries: warnings and errors, everything with debug (a record of a logger with a level of
    # its own, tweetmill's or Beam's, reaches the handler whatever the root logger's level).
    root.setLevel(logging.DEBUG if level <= logging.DEBUG else max(level, logging.WARNING))
    logging.getLogger("tweetmill").setLevel(level)
    logging.getLogger(_BEAM).setLevel(beam)


def setup_worker() -> None:
    """A local run's worker process (``pipeline/local_worker.py``), before Beam loads: warnings and
    errors to stderr, without ``NOISE``. Beam's harness logs at info in each worker whatever the
    run's options (they never reach a multi-process run's workers), and what it logs also reaches
    the main process, which shows it by its own rules. Installed first, Beam's ``basicConfig`` is
    then a no-op."""
    handler = _stderr_handler(logging.WARNING)
    handler.setLevel(logging.WARNING)
    logging.getLogger().addHandler(handler)


def level_from_args(log_level: str | None, verbose: bool, default: str = "warning") -> str:
    """``--log-level`` when given, else info with ``-v``, else the command's ``default``."""
    return log_level or ("info" if verbose else default)

"""Errors a user can act on, and the exit codes of every ``tweetmill`` subcommand.

The CLI prints a ``UserError`` as one line (or one line per problem) and exits with its code; a
traceback is shown only with ``--debug``. Exit codes:

* 0 — success.
* 1 — ``verify`` found a problem in a shard directory.
* 2 — a mistake found before anything ran: an option, an input, an output (nothing was written).
* 3 — the run finished and wrote its manifest, but its result is not usable as is: the accounting
  does not balance, it kept no tweet, or its errors exceed ``--max-error-share`` of what it read.
* 4 — the run failed while running (disk full, permissions lost, a worker crash): nothing was
  published and its temporary directory was removed.
* 130 — interrupted (Ctrl-C).
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_VERIFY_FAILED = 1
EXIT_USAGE = 2
EXIT_REJECTED = 3
EXIT_RUN_FAILED = 4
EXIT_INTERRUPTED = 130


class UserError(Exception):
    """A problem the user can fix; its message says what to do. Shown without a traceback."""

    exit_code = EXIT_USAGE

    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


class RunFailedError(UserError):
    """The run broke while running; nothing was published (exit 4)."""

    exit_code = EXIT_RUN_FAILED


def require(*problems: str | None) -> None:
    """Raise a ``UserError`` with every problem found (None: no problem)."""
    found = [p for p in problems if p]
    if found:
        raise UserError(*found)

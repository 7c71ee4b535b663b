"""The ``tweetmill`` command line: the subcommand table, the options every subcommand shares, and
``main``. The subcommands themselves are in ``cli_corpus.py`` and ``cli_training.py``.

A mistake the user can fix (an option, an input, a shard directory) is a ``UserError``: one
``error: ...`` line per problem on stderr and the exit code of ``pipeline/errors.py``, which lists
them all. ``--debug`` shows the traceback instead. Everything printed that came from input data goes
through ``pipeline/terminal.py`` first.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import NoReturn

from tweetmill.pipeline import cli_corpus, cli_training
from tweetmill.pipeline.errors import EXIT_INTERRUPTED, EXIT_OK, UserError
from tweetmill.pipeline.terminal import error_line

log = logging.getLogger("tweetmill")


# --- the command line -----------------------------------------------------------------------------
#
# ``tweetmill --help`` lists the subcommands from this static table, and a subcommand's options are
# added only when it is the one run (``_ARGUMENTS``): the options of ``run`` need every stage module,
# and so Beam (~3 s); the top-level help and ``--version`` import nothing heavy.

COMMANDS: dict[str, str] = {
    "run": "archives → cleaned, deduplicated, tokenized Arrow shards",
    "stats": "statistics of a shard directory (table, --json, --html report)",
    "sample": "decoded example tweets from a shard directory",
    "verify": "check every shard against the manifest (sha256, rows, tokens, schema, run)",
    "train-tokenizer": "train a byte-level BPE tokenizer on tweet files",
    "export": "a shard directory as Megatron-LM (.bin/.idx) or nanoGPT (train.bin/val.bin) files",
    "fetch": "copy a shard directory on gs:// (any Beam filesystem) into the local cache; print its path",
    "train": "train a causal LM on a shard directory (needs tweetmill[train])",
    "generate": "generate text from a trained checkpoint (needs tweetmill[train])",
    "export-hf": "a trained checkpoint as a transformers model directory (needs tweetmill[train])",
}
_DEFAULT_LOG_LEVEL = {"train": "info"}  # the others: warning

_ARGUMENTS = {
    "run": cli_corpus.run_arguments,
    "stats": cli_corpus.stats_arguments,
    "sample": cli_corpus.sample_arguments,
    "verify": cli_corpus.verify_arguments,
    "train-tokenizer": cli_corpus.train_tokenizer_arguments,
    "export": cli_corpus.export_arguments,
    "fetch": cli_training.fetch_arguments,
    **{name: cli_training.gpu_train_arguments(name) for name in cli_training.TRAIN_COMMANDS},
    "export-hf": cli_training.export_hf_arguments,
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a ``UserError`` (one line, exit 2), not usage text."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def tweetmill_version() -> str:
    """The installed distribution's version (``0+unknown`` when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("tweetmill")
    except PackageNotFoundError:
        return "0+unknown"


class _VersionAction(argparse.Action):
    """``--version``: the version is looked up only when asked for."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS, **kwargs) -> None:
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None) -> NoReturn:
        print(f"tweetmill {tweetmill_version()}")
        parser.exit()


# Top-level options that take a value, to find the subcommand in argv before parsing.
_VALUE_OPTIONS = ("--log-level", "--beam-log-level")


def _add_common(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """-v, --log-level, --beam-log-level and --debug, accepted before and after the subcommand. On
    subcommands they default to SUPPRESS, so they do not reset what was given before the subcommand."""
    from tweetmill.pipeline.logs import LEVELS

    default = {} if top_level else {"default": argparse.SUPPRESS}
    none = {"default": None} if top_level else default
    parser.add_argument(
        "-v", "--verbose", action="store_true", help="log progress (INFO); --log-level info", **default
    )
    parser.add_argument(
        "--log-level",
        type=str.lower,
        choices=LEVELS,
        metavar="LEVEL",
        help="tweetmill's logging: debug, info, warning or error (default: warning; info for train); "
        "debug shows Beam's and other libraries' too",
        **none,
    )
    parser.add_argument(
        "--beam-log-level",
        type=str.lower,
        choices=LEVELS,
        metavar="LEVEL",
        help="Apache Beam's logging (default: warning; debug with --log-level debug)",
        **none,
    )
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of any error, not one line", **default
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser of the whole command line, with the options of subcommand ``command`` only (the
    others are listed, empty: their options need imports a run of ``command`` does not)."""
    parser = _Parser(
        prog="tweetmill",
        description="Tweet archives → cleaned, deduplicated, tokenized Arrow shards (Apache Beam), "
        "and a small trainer for them.",
        epilog="Exit codes: 0 done, 1 verify "
        "found a problem, 2 a mistake in the command line or its inputs, 3 a run whose result is not "
        "usable as is, 4 a run that failed while running, 130 interrupted.",
    )
    parser.add_argument("--version", action=_VersionAction, help="print tweetmill's version and exit")
    _add_common(parser, top_level=True)
    sub = parser.add_subparsers(
        dest="command",
        required=True,
        metavar="command",
        title="commands",
        help="one of these; 'tweetmill COMMAND --help' shows its options",
    )
    for name, help_text in COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text, description=help_text[:1].upper() + help_text[1:] + ".")
        if name == command:
            _ARGUMENTS[name](cmd)
        _add_common(cmd, top_level=False)
    return parser


def _command_in(argv: list[str]) -> str | None:
    """The subcommand ``argv`` names: its first argument that is neither an option nor an option's value."""
    args = iter(argv)
    for arg in args:
        if arg in _VALUE_OPTIONS:
            next(args, None)
        elif arg == "--":
            return next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def _run_option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """The options ``tweetmill run`` accepts: its own and the top-level ones."""
    found = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found |= set(action.choices["run"]._option_string_actions)
    return found


def _main(argv: list[str]) -> int:
    from tweetmill.pipeline import logs

    command = _command_in(argv)
    parser = build_parser(command)
    extra: list[str] = []
    if command == "run":
        from tweetmill.pipeline.options import split_beam_args

        argv, extra = split_beam_args(argv, _run_option_strings(parser))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help, --version: argparse has printed them
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    default = _DEFAULT_LOG_LEVEL.get(args.command, "warning")
    level = logs.level_from_args(args.log_level, args.verbose, default)
    logs.setup(level, beam_level=args.beam_log_level)
    args.log_level = level
    return args.handler(args, extra)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit code (``pipeline/errors.py``)."""
    from tweetmill.pipeline import logs

    logs.setup()  # before anything imports Beam (see pipeline/logs.py)
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return _main(argv)
    except UserError as exc:
        if debug:
            raise
        for problem in exc.problems:
            for line in problem.splitlines() or [""]:
                error_line(line)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        error_line("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

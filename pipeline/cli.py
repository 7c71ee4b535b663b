"""The ``tweetmill`` command line: run, stats, sample, verify, train-tokenizer, train, generate.

A mistake the user can fix (an option, an input, a shard directory) is a ``UserError``: one
``error: ...`` line per problem on stderr and the exit code of ``pipeline/errors.py``, which lists
them all. ``--debug`` shows the traceback instead. Everything printed that came from input data goes
through ``pipeline/terminal.py`` first.
"""

from __future__ import annotations

import argparse
import importlib.util
import logging
import sys
import time
from typing import NoReturn

from rich.console import Console
from tweetmill.pipeline.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED, UserError
from tweetmill.pipeline.terminal import json_text, plain

log = logging.getLogger("tweetmill")


def _error_line(message: str) -> None:
    """One ``error:`` line on stderr, control characters made visible."""
    sys.stderr.write(f"error: {plain(message)}\n")
    sys.stderr.flush()


def _require(*problems: str | None) -> None:
    """Raise a ``UserError`` with every problem found (None: no problem)."""
    found = [p for p in problems if p]
    if found:
        raise UserError(*found)


def _cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from tweetmill.pipeline.build import run
    from tweetmill.pipeline.dataflow import RunnerOptionsError
    from tweetmill.pipeline.options import config_from_args
    from tweetmill.pipeline.preflight import input_problems, tokenizer_problem
    from tweetmill.pipeline.report import print_run_report, rejection_reasons
    from tweetmill.transforms.write import AccountingError

    config = config_from_args(args)
    problem = tokenizer_problem(config.tokenizer)
    if problem:  # run() checks the inputs (and the output) itself; here they are said together
        raise UserError(*input_problems(list(config.inputs)), problem)
    started = time.perf_counter()
    try:
        manifest = run(config, beam_args, overwrite=args.overwrite)  # UserError: inputs, output
    except RunnerOptionsError as exc:
        raise UserError(str(exc)) from exc
    except AccountingError as exc:  # nothing was published
        for line in str(exc).splitlines():
            _error_line(line)
        return EXIT_REJECTED
    console = Console()
    if manifest is None:  # --dry_run=True: translated and staged, nothing submitted
        console.print("dry run: the job graph was built, translated and staged; nothing was submitted")
        return EXIT_OK
    print_run_report(console, manifest, config.output, time.perf_counter() - started)
    reasons = rejection_reasons(manifest, config.max_error_share, config.output)
    for reason in reasons:
        _error_line(reason)
    return EXIT_REJECTED if reasons else EXIT_OK


def _shard_read_error(shard_dir: str, exc: Exception) -> UserError:
    return UserError(
        f"{shard_dir}: a shard cannot be read ({exc}); tweetmill verify {shard_dir} says which and why"
    )


def _cmd_stats(args: argparse.Namespace, _: list[str]) -> int:
    import pyarrow as pa
    from tweetmill.pipeline.preflight import output_file_problem, shard_dir_problem
    from tweetmill.pipeline.stats import compute_stats, print_stats

    html_problem = None
    if args.html:
        try:
            import matplotlib  # noqa: F401  (fail before the scan, not after it)
        except ImportError:
            html_problem = "--html needs matplotlib: pip install 'tweetmill[report]'"
        html_problem = html_problem or output_file_problem(args.html, "--html")
    _require(shard_dir_problem(args.shards), html_problem)
    try:
        stats = compute_stats(args.shards, top=args.top, hashtags=not args.no_hashtags, workers=args.workers)
    except (OSError, pa.ArrowException) as exc:
        raise _shard_read_error(args.shards, exc) from exc
    if args.html:
        from tweetmill.pipeline.html_report import write_html

        write_html(stats, args.html, top=args.top)
    if args.json:
        print(json_text(stats))
    else:
        console = Console()
        print_stats(console, stats, top=args.top)
        if args.html:
            console.print(f"report: {plain(args.html)}", markup=False)
    return EXIT_OK


def _cmd_sample(args: argparse.Namespace, _: list[str]) -> int:
    import pyarrow as pa
    from tweetmill.pipeline.options import language_problems
    from tweetmill.pipeline.preflight import shard_dir_problem
    from tweetmill.pipeline.sample import print_samples, sample

    lang = args.lang.strip().lower().replace("_", "-") if args.lang else None
    _require(
        shard_dir_problem(args.shards),
        *(language_problems([lang], "profiles", option="--lang", detected_only=True) if lang else ()),
    )
    try:
        samples = sample(args.shards, args.n, seed=args.seed, lang=lang)
    except (OSError, pa.ArrowException) as exc:
        raise _shard_read_error(args.shards, exc) from exc
    if args.json:
        print(json_text(samples))
    else:
        print_samples(Console(), samples)
    return EXIT_OK


def _cmd_verify(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.pipeline.preflight import shard_dir_problem
    from tweetmill.pipeline.verify import print_report, verify

    _require(shard_dir_problem(args.shards, parse=False))  # a damaged manifest is verify's to report
    report = verify(args.shards)
    if args.json:
        print(json_text(report.to_dict()))
    else:
        print_report(Console(), report)
    return EXIT_OK if report.ok else 1


def _cmd_train_tokenizer(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.pipeline.preflight import (
        as_beam_pattern,
        expand_input,
        input_problems,
        output_file_problem,
    )
    from tweetmill.pipeline.tokenizer_training import iter_clean_texts, train_tokenizer_from_files

    _require(*input_problems(args.inputs), output_file_problem(args.output, "--output"))
    # Directories are read like `tweetmill run` reads them: every non-hidden file below.
    files = [as_beam_pattern(f) for pattern in args.inputs for f in expand_input(pattern)]
    if next(iter_clean_texts(files, 1), None) is None:  # reads only up to the first tweet
        raise UserError(
            f"no tweet text in {', '.join(args.inputs)}: every record was a retweet, empty, or not in a "
            "format tweetmill reads (see tweetmill run --format)"
        )
    stats = train_tokenizer_from_files(files, args.output, vocab_size=args.vocab_size, limit=args.limit)
    Console().print(
        f"trained a byte-level BPE of {stats['vocab_size']} tokens on {stats['texts']} tweets → "
        f"{plain(args.output)}",
        markup=False,
    )
    return EXIT_OK


def _train_command(name: str):
    """Subcommands from gpu_train, imported only when used (torch is an optional extra)."""

    def handler(args: argparse.Namespace, _: list[str]) -> int:
        from tweetmill.gpu_train import cli as train_cli

        try:
            return getattr(train_cli, f"run_{name}")(args) or EXIT_OK
        except train_cli.user_errors() as exc:
            raise UserError(*getattr(exc, "problems", [str(exc)])) from exc

    return handler


TRAIN_COMMANDS = {
    "train": "train a causal LM on a shard directory",
    "generate": "generate text from a trained checkpoint",
}


class _Parser(argparse.ArgumentParser):
    """argparse that reports a bad command line as a ``UserError`` (one line, exit 2), not usage text."""

    def error(self, message: str) -> NoReturn:
        raise UserError(f"{self.prog}: {message} (see {self.prog} --help)")


def _add_common(parser: argparse.ArgumentParser, *, top_level: bool) -> None:
    """-v and --debug, accepted before and after the subcommand. On subcommands they default to
    SUPPRESS, so they do not reset what was given before the subcommand."""
    default = {} if top_level else {"default": argparse.SUPPRESS}
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)", **default)
    parser.add_argument(
        "--debug", action="store_true", help="show the traceback of any error, not one line", **default
    )


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    from tweetmill.pipeline.options import add_run_arguments, int_at_least
    from tweetmill.transforms.tokenize import SPECIAL_TOKENS

    parser = _Parser(prog="tweetmill", description=__doc__.split("\n\n")[0])
    _add_common(parser, top_level=True)
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="archives → cleaned, deduplicated, tokenized Arrow shards",
        description="Run the pipeline. Other options must be Beam pipeline options (--runner, "
        "--direct_num_workers, Dataflow's options...); without --runner it runs here, on Beam's "
        "embedded FnApiRunner. Exit 3 when the result is not usable as is (see --max-error-share).",
    )
    add_run_arguments(run)
    run.set_defaults(handler=_cmd_run)

    stats = sub.add_parser(
        "stats",
        help="statistics of a shard directory (table, --json, --html report)",
        description="Figures of a shard directory, streamed over its (memory-mapped) shards.",
    )
    stats.add_argument("shards", help="shard directory (with manifest.json), local or Beam path")
    stats.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    stats.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report with plots")
    stats.add_argument(
        "--top", type=int_at_least(1), default=10, help="rows of the top-N tables (default: %(default)s)"
    )
    stats.add_argument("--no-hashtags", action="store_true", help="skip counting hashtags (faster)")
    stats.add_argument(
        "--workers", type=int_at_least(1), default=None, help="threads (default: CPUs, at most 4)"
    )
    stats.set_defaults(handler=_cmd_stats)

    smp = sub.add_parser("sample", help="decoded example tweets from a shard directory")
    smp.add_argument("shards", help="shard directory (with manifest.json), local or Beam path")
    smp.add_argument("-n", type=int_at_least(1), default=5, help="how many tweets (default: %(default)s)")
    smp.add_argument("--seed", type=int, default=0, help="the same seed picks the same tweets")
    smp.add_argument("--lang", help="only tweets of this detected language, e.g. de")
    smp.add_argument("--json", action="store_true", help="machine-readable output")
    smp.set_defaults(handler=_cmd_sample)

    ver = sub.add_parser(
        "verify",
        help="check every shard against the manifest (sha256, rows, tokens, schema, run)",
        description="Exit status 0 when every check passes, 1 otherwise, 2 when the path is not a "
        "shard directory at all.",
    )
    ver.add_argument("shards", help="shard directory (with manifest.json), local or Beam path")
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    ver.set_defaults(handler=_cmd_verify)

    min_vocab = 256 + len(SPECIAL_TOKENS) + 4  # the byte alphabet, special tokens, placeholders
    tok = sub.add_parser("train-tokenizer", help="train a byte-level BPE tokenizer on tweet files")
    tok.add_argument("inputs", nargs="+", help="archive files, directories or globs, any supported format")
    tok.add_argument("--output", "-o", required=True, help="tokenizer.json to write")
    tok.add_argument(
        "--vocab-size",
        type=int_at_least(min_vocab),
        default=16384,
        help=f"tokens, at least {min_vocab}: 256 bytes, special tokens, placeholders (default: %(default)s)",
    )
    tok.add_argument("--limit", type=int_at_least(1), default=None, help="train on at most this many tweets")
    tok.set_defaults(handler=_cmd_train_tokenizer)

    for name, help_text in TRAIN_COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text)
        if name == command:  # torch is imported only for the command that needs it
            if importlib.util.find_spec("torch") is None:
                raise UserError(f"tweetmill {name} needs torch: pip install 'tweetmill[train]'")
            from tweetmill.gpu_train import cli as train_cli

            getattr(train_cli, f"add_{name}_arguments")(cmd)
            cmd.set_defaults(handler=_train_command(name))

    for action in parser._actions:  # every subcommand takes -v and --debug too
        if isinstance(action, argparse._SubParsersAction):
            for subparser in action.choices.values():
                _add_common(subparser, top_level=False)
    return parser


def _run_option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """The options ``tweetmill run`` accepts: its own and the top-level ones."""
    found = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found |= set(action.choices["run"]._option_string_actions)
    return found


class _QuietBeamImport(logging.Filter):
    """Beam warns at import that optional GCP clients are missing; a local run does not need them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def _main(argv: list[str]) -> int:
    from tweetmill.pipeline.options import split_beam_args

    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    extra: list[str] = []
    if command == "run":
        argv, extra = split_beam_args(argv, _run_option_strings(parser))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.handler(args, extra)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; its exit code (``pipeline/errors.py``)."""
    logging.getLogger().addFilter(_QuietBeamImport())
    argv = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in argv
    try:
        return _main(argv)
    except UserError as exc:
        if debug:
            raise
        for problem in exc.problems:
            for line in problem.splitlines() or [""]:
                _error_line(line)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        _error_line("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

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
from typing import TYPE_CHECKING, NoReturn

from tweetmill.pipeline.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED, UserError
from tweetmill.pipeline.terminal import json_text, plain

if TYPE_CHECKING:
    from rich.console import Console

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


def _next_steps(console: Console, output: str) -> None:
    """What to try on a finished run's shards, its path quoted for the shell (and made printable)."""
    import shlex

    path = plain(shlex.quote(output))
    steps = (
        (f"tweetmill stats {path}", "figures of the shards (--html PATH: a report with plots)"),
        (f"tweetmill sample {path}", "a few tweets, decoded"),
        (f"tweetmill train {path} --model tiny --steps 100", "a toy model, minutes on a CPU"),
    )
    width = max(len(command) for command, _ in steps)
    console.print("next:", markup=False, highlight=False)
    for command, what in steps:
        console.print(f"  {command:<{width}}  # {what}", markup=False, highlight=False, soft_wrap=True)


def _cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from rich.console import Console
    from tweetmill.pipeline.build import run
    from tweetmill.pipeline.dataflow import RunnerOptionsError
    from tweetmill.pipeline.interrupt import INTERRUPTED_LINE, quiet_teardown
    from tweetmill.pipeline.options import config_from_args
    from tweetmill.pipeline.preflight import input_problems, tokenizer_problem
    from tweetmill.pipeline.progress import progress_from_args
    from tweetmill.pipeline.report import print_run_report, rejection_reasons
    from tweetmill.transforms.write import AccountingError

    config = config_from_args(args)
    problem = tokenizer_problem(config.tokenizer)
    if problem:  # run() checks the inputs (and the output) itself; here they are said together
        raise UserError(*input_problems(list(config.inputs)), problem)
    started = time.perf_counter()
    try:
        manifest = run(config, beam_args, overwrite=args.overwrite, progress=progress_from_args(args))
    except KeyboardInterrupt as exc:  # Ctrl-C: run() removed the temporary directory
        if getattr(args, "debug", False):
            raise
        quiet_teardown()  # what Beam's threads may still say as they stop
        sys.stderr.write(f"{getattr(exc, 'message', INTERRUPTED_LINE)}\n")
        return EXIT_INTERRUPTED
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
    if not reasons:
        _next_steps(console, config.output)
    return EXIT_REJECTED if reasons else EXIT_OK


def _shard_read_error(shard_dir: str, exc: Exception) -> UserError:
    return UserError(
        f"{shard_dir}: a shard cannot be read ({exc}); tweetmill verify {shard_dir} says which and why"
    )


def _cmd_stats(args: argparse.Namespace, _: list[str]) -> int:
    import pyarrow as pa
    from rich.console import Console
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
    from rich.console import Console
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
    from rich.console import Console
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
    from rich.console import Console
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


def _cmd_export(args: argparse.Namespace, _: list[str]) -> int:
    from rich.console import Console
    from tweetmill.pipeline.export import ExportError, export, format_problem
    from tweetmill.pipeline.preflight import shard_dir_problem

    _require(format_problem(args.to, dtype=args.dtype), shard_dir_problem(args.shards))
    try:
        summary = export(
            args.shards,
            args.out,
            args.to,
            val_fraction=args.val_fraction,
            dtype=args.dtype,
            overwrite=args.overwrite,
        )
    except ExportError as exc:
        raise UserError(str(exc)) from exc
    splits = ", ".join(
        f"{s} {c['documents']} documents / {c['tokens']} tokens" for s, c in summary["splits"].items()
    )
    Console().print(f"exported {args.to} ({summary['dtype']}) → {plain(args.out)}: {splits}", markup=False)
    return EXIT_OK


def _train_command(name: str):
    """Subcommands from gpu_train, imported only when used (torch is an optional extra)."""

    def handler(args: argparse.Namespace, _: list[str]) -> int:
        from tweetmill.gpu_train import cli as train_cli

        if name == "train":
            from tweetmill.pipeline.shard_cache import is_remote

            if is_remote(args.data):  # gs://...: the trainer reads a local copy (and never imports Beam)
                args.data = _cached_shards(args.data, args)
        try:
            return getattr(train_cli, f"run_{name}")(args) or EXIT_OK
        except train_cli.user_errors() as exc:
            raise UserError(*getattr(exc, "problems", [str(exc)])) from exc

    return handler


def _cached_shards(source: str, args: argparse.Namespace) -> str:
    """The local cache directory holding ``source``'s shards, synced (pipeline/shard_cache.py)."""
    from tweetmill.pipeline.shard_cache import CacheError, sync
    from tweetmill.schemas.shard_dir import ShardDirError

    try:
        result = sync(
            source, args.cache_dir, max_bytes=args.cache_max_bytes, full_check=bool(args.verify)
        )
    except (CacheError, ShardDirError, OSError) as exc:
        raise UserError(str(exc)) from exc
    return str(result.path)


def _cmd_fetch(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.pipeline.shard_cache import is_remote

    print(_cached_shards(args.shards, args) if is_remote(args.shards) else args.shards)
    return EXIT_OK


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
TRAIN_COMMANDS = ("train", "generate")  # from gpu_train; need torch
_DEFAULT_LOG_LEVEL = {"train": "info"}  # the others: warning
_SHARDS_HELP = "shard directory (with manifest.json), local or Beam path"


def _run_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.pipeline.options import add_run_arguments

    cmd.description = (
        "Run the pipeline. Other options must be Beam pipeline options (--runner, --direct_num_workers, "
        "Dataflow's options...); without --runner it runs here, on Beam's embedded FnApiRunner. Exit 3 "
        "when the result is not usable as is (see --max-error-share)."
    )
    add_run_arguments(cmd)
    from tweetmill.pipeline.progress import add_progress_arguments

    add_progress_arguments(cmd)  # -q, --progress-interval
    cmd.set_defaults(handler=_cmd_run)


def _stats_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.gpu_train.cli import int_at_least

    cmd.description = "Figures of a shard directory, streamed over its (memory-mapped) shards."
    cmd.add_argument("shards", help=_SHARDS_HELP)
    cmd.add_argument("--json", action="store_true", help="print the figures as JSON instead of tables")
    cmd.add_argument("--html", metavar="PATH", help="also write a self-contained HTML report with plots")
    cmd.add_argument(
        "--top", type=int_at_least(1), default=10, help="rows of the top-N tables (default: %(default)s)"
    )
    cmd.add_argument("--no-hashtags", action="store_true", help="skip counting hashtags (faster)")
    cmd.add_argument(
        "--workers", type=int_at_least(1), default=None, help="threads (default: CPUs, at most 4)"
    )
    cmd.set_defaults(handler=_cmd_stats)


def _sample_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.gpu_train.cli import int_at_least

    cmd.add_argument("shards", help=_SHARDS_HELP)
    cmd.add_argument("-n", type=int_at_least(1), default=5, help="how many tweets (default: %(default)s)")
    cmd.add_argument("--seed", type=int, default=0, help="the same seed picks the same tweets")
    cmd.add_argument("--lang", help="only tweets of this detected language, e.g. de")
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd.set_defaults(handler=_cmd_sample)


def _verify_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.description = (
        "Exit status 0 when every check passes, 1 otherwise, 2 when the path is not a shard directory at all."
    )
    cmd.add_argument("shards", help=_SHARDS_HELP)
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd.set_defaults(handler=_cmd_verify)


def _train_tokenizer_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.gpu_train.cli import int_at_least
    from tweetmill.transforms.tokenize import SPECIAL_TOKENS

    min_vocab = 256 + len(SPECIAL_TOKENS) + 4  # the byte alphabet, special tokens, placeholders
    cmd.add_argument("inputs", nargs="+", help="archive files, directories or globs, any supported format")
    cmd.add_argument("--output", "-o", required=True, help="tokenizer.json to write")
    cmd.add_argument(
        "--vocab-size",
        type=int_at_least(min_vocab),
        default=16384,
        help=f"tokens, at least {min_vocab}: 256 bytes, special tokens, placeholders (default: %(default)s)",
    )
    cmd.add_argument("--limit", type=int_at_least(1), default=None, help="train on at most this many tweets")
    cmd.set_defaults(handler=_cmd_train_tokenizer)


def _export_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.gpu_train.cli import number_in
    from tweetmill.pipeline.export import DEFAULT_VAL_FRACTION, FORMATS, NANOGPT_DTYPES

    cmd.description = (
        "Write the shards' documents (EOS kept at each end) as Megatron-LM, nanoGPT, MosaicML "
        "streaming (MDS) or Hugging Face datasets files, shard by shard, with the validation split of "
        "tweetmill train and the tokenizer; see docs/export.md."
    )
    cmd.add_argument("shards", help=_SHARDS_HELP)
    cmd.add_argument(
        "--to",
        required=True,
        choices=FORMATS,
        help="the format: Megatron-LM, nanoGPT, MosaicML streaming (MDS) or Hugging Face datasets",
    )
    cmd.add_argument("out", help="output directory (local), created if missing")
    cmd.add_argument(
        "--val-fraction",
        type=number_in(0, 1, high_open=True),
        default=DEFAULT_VAL_FRACTION,
        help="share of tweet ids held out, as tweetmill train --val-fraction (default: %(default)s)",
    )
    cmd.add_argument(
        "--dtype",
        choices=tuple(NANOGPT_DTYPES),
        help="nanogpt token files: uint16 (default, nanoGPT's) or uint32 for vocabularies above 65536",
    )
    cmd.add_argument("--overwrite", action="store_true", help="replace an earlier export in OUT")
    cmd.set_defaults(handler=_cmd_export)


def _cache_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.pipeline.shard_cache import parse_size

    def size(text: str) -> int:
        try:
            return parse_size(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    cmd.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="local copy of shards on gs:// or another Beam filesystem (default: "
        "$TWEETMILL_CACHE/<key>, else ~/.cache/tweetmill/shards/<key>; key: the manifest's sha256)",
    )
    cmd.add_argument(
        "--cache-max-bytes",
        type=size,
        metavar="SIZE",
        help="bound of all cached shard sets beside it, e.g. 50G: the least recently used are evicted "
        "first; a shard set larger on its own is refused",
    )


def _fetch_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.description = (
        "Copy the shards, tokenizer.json and tokenizer_config.json of a shard directory on a Beam "
        "filesystem into a local cache, each checked by sha256 against the manifest, and print the "
        "local path (a local SHARDS is printed as is), e.g. for torchrun -m tweetmill.gpu_train "
        '"$(tweetmill fetch gs://bucket/shards)". A second call fetches only what is missing or changed.'
    )
    cmd.add_argument("shards", help=_SHARDS_HELP)
    _cache_arguments(cmd)
    cmd.add_argument("--verify", action="store_true", help="hash the cached files again, not just stat them")
    cmd.set_defaults(handler=_cmd_fetch)


def _gpu_train_arguments(name: str):
    def add(cmd: argparse.ArgumentParser) -> None:
        if importlib.util.find_spec("torch") is None:
            raise UserError(f"tweetmill {name} needs torch: pip install 'tweetmill[train]'")
        from tweetmill.gpu_train import cli as train_cli

        getattr(train_cli, f"add_{name}_arguments")(cmd)
        if name == "train":
            _cache_arguments(cmd)
        cmd.set_defaults(handler=_train_command(name))

    return add


def _export_hf_arguments(cmd: argparse.ArgumentParser) -> None:
    if importlib.util.find_spec("torch") is None:
        raise UserError("tweetmill export-hf needs torch: pip install 'tweetmill[train]'")
    from tweetmill.gpu_train.export_hf import add_arguments

    cmd.description = (
        "Write CHECKPOINT as a transformers GPT2LMHeadModel directory (safetensors, config, tokenizer) "
        "for AutoModelForCausalLM / AutoTokenizer.from_pretrained(OUT); see docs/export.md."
    )
    add_arguments(cmd)
    cmd.set_defaults(handler=_cmd_export_hf)


def _cmd_export_hf(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.gpu_train import export_hf

    try:
        return export_hf.run(args) or EXIT_OK
    except export_hf.user_errors() as exc:
        raise UserError(str(exc)) from exc


_ARGUMENTS = {
    "run": _run_arguments,
    "stats": _stats_arguments,
    "sample": _sample_arguments,
    "verify": _verify_arguments,
    "train-tokenizer": _train_tokenizer_arguments,
    "export": _export_arguments,
    "fetch": _fetch_arguments,
    **{name: _gpu_train_arguments(name) for name in TRAIN_COMMANDS},
    "export-hf": _export_hf_arguments,
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
                _error_line(line)
        return exc.exit_code
    except KeyboardInterrupt:
        if debug:
            raise
        _error_line("interrupted")
        return EXIT_INTERRUPTED


if __name__ == "__main__":
    sys.exit(main())

"""The subcommands that make and inspect a corpus: run, stats, sample, verify, train-tokenizer, export.

Each has an ``*_arguments`` function that adds its options (called only when it is the subcommand
run, so its imports stay out of ``tweetmill --help``) and a handler that turns user mistakes into
``UserError``s (``pipeline/errors.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from tweetmill.pipeline.errors import EXIT_INTERRUPTED, EXIT_OK, EXIT_REJECTED, UserError, require
from tweetmill.pipeline.terminal import error_line, json_text, plain

if TYPE_CHECKING:
    from rich.console import Console

SHARDS_HELP = "shard directory (with manifest.json), local or Beam path"


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
            error_line(line)
        return EXIT_REJECTED
    console = Console()
    if manifest is None:  # --dry_run=True: translated and staged, nothing submitted
        console.print("dry run: the job graph was built, translated and staged; nothing was submitted")
        return EXIT_OK
    print_run_report(console, manifest, config.output, time.perf_counter() - started)
    reasons = rejection_reasons(manifest, config.max_error_share, config.output)
    for reason in reasons:
        error_line(reason)
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
    require(shard_dir_problem(args.shards), html_problem)
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
    require(
        shard_dir_problem(args.shards),
        *(language_problems([lang], "profiles", option="--lang", detected_only=True) if lang else ()),
    )
    try:
        samples = sample(args.shards, args.n, seed=args.seed, lang=lang, min_turns=args.min_turns)
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

    require(shard_dir_problem(args.shards, parse=False))  # a damaged manifest is verify's to report
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

    require(*input_problems(args.inputs), output_file_problem(args.output, "--output"))
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

    require(format_problem(args.to, dtype=args.dtype), shard_dir_problem(args.shards))
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


def run_arguments(cmd: argparse.ArgumentParser) -> None:
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


def stats_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.gpu_train.cli import int_at_least

    cmd.description = "Figures of a shard directory, streamed over its (memory-mapped) shards."
    cmd.add_argument("shards", help=SHARDS_HELP)
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


def sample_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.gpu_train.cli import int_at_least

    cmd.add_argument("shards", help=SHARDS_HELP)
    cmd.add_argument("-n", type=int_at_least(1), default=5, help="how many tweets (default: %(default)s)")
    cmd.add_argument("--seed", type=int, default=0, help="the same seed picks the same tweets")
    cmd.add_argument("--lang", help="only tweets of this detected language, e.g. de")
    cmd.add_argument(
        "--min-turns",
        type=int_at_least(1),
        default=1,
        metavar="N",
        help="only documents of at least N turns: 2 shows threads and conversations (run --documents)",
    )
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd.set_defaults(handler=_cmd_sample)


def verify_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.description = (
        "Exit status 0 when every check passes, 1 otherwise, 2 when the path is not a shard directory at all."
    )
    cmd.add_argument("shards", help=SHARDS_HELP)
    cmd.add_argument("--json", action="store_true", help="machine-readable output")
    cmd.set_defaults(handler=_cmd_verify)


def train_tokenizer_arguments(cmd: argparse.ArgumentParser) -> None:
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


def export_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.gpu_train.cli import number_in
    from tweetmill.pipeline.export import DEFAULT_VAL_FRACTION, FORMATS, NANOGPT_DTYPES

    cmd.description = (
        "Write the shards' documents (EOS kept at each end) as Megatron-LM, nanoGPT, MosaicML "
        "streaming (MDS) or Hugging Face datasets files, shard by shard, with the validation split of "
        "tweetmill train and the tokenizer; see docs/export.md."
    )
    cmd.add_argument("shards", help=SHARDS_HELP)
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

"""The ``tweetmill`` command line: run, stats, train-tokenizer, train, generate."""

from __future__ import annotations

import argparse
import logging
import sys
import time

from rich.console import Console

log = logging.getLogger("tweetmill")


def _cmd_run(args: argparse.Namespace, beam_args: list[str]) -> int:
    from rich.markup import escape
    from tweetmill.pipeline.build import OutputExistsError, run
    from tweetmill.pipeline.dataflow import RunnerOptionsError
    from tweetmill.pipeline.options import config_from_args
    from tweetmill.pipeline.report import print_run_report
    from tweetmill.transforms.write import AccountingError

    console = Console(stderr=False)
    config = config_from_args(args)
    started = time.perf_counter()
    try:
        manifest = run(config, beam_args, overwrite=args.overwrite)
    except (OutputExistsError, RunnerOptionsError) as exc:
        console.print(f"[red]error:[/red] {escape(str(exc))}")
        return 2
    except AccountingError as exc:
        console.print(f"[red]accounting error:[/red] {exc}")
        return 3
    if manifest is None:  # --dry_run=True: translated and staged, nothing submitted
        console.print("dry run: the job graph was built, translated and staged; nothing was submitted")
        return 0
    print_run_report(console, manifest, config.output, time.perf_counter() - started)
    return 0 if manifest.counts.balanced else 3


def _cmd_stats(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.pipeline.stats import compute_stats, print_stats

    if args.html:
        try:
            import matplotlib  # noqa: F401  (fail before the scan, not after it)
        except ImportError:
            Console(stderr=True).print(
                "[red]error:[/red] --html needs matplotlib: pip install 'tweetmill[report]'"
            )
            return 2
    stats = compute_stats(args.shards, top=args.top, hashtags=not args.no_hashtags, workers=args.workers)
    if args.html:
        from tweetmill.pipeline.html_report import write_html

        write_html(stats, args.html, top=args.top)
    if args.json:
        import json

        print(json.dumps(stats, indent=2, ensure_ascii=False))
    else:
        console = Console()
        print_stats(console, stats, top=args.top)
        if args.html:
            console.print(f"report: {args.html}")
    return 0


def _cmd_sample(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.pipeline.sample import print_samples, sample

    samples = sample(args.shards, args.n, seed=args.seed, lang=args.lang)
    if args.json:
        import json

        print(json.dumps(samples, indent=2, ensure_ascii=False))
    else:
        print_samples(Console(), samples)
    return 0


def _cmd_verify(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.pipeline.verify import print_report, verify

    report = verify(args.shards)
    if args.json:
        import json

        print(json.dumps(report.to_dict(), indent=2, ensure_ascii=False))
    else:
        print_report(Console(), report)
    return 0 if report.ok else 1


def _cmd_train_tokenizer(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.pipeline.tokenizer_training import train_tokenizer_from_files

    stats = train_tokenizer_from_files(args.inputs, args.output, vocab_size=args.vocab_size, limit=args.limit)
    Console().print(
        f"trained a byte-level BPE of {stats['vocab_size']} tokens on {stats['texts']} tweets → {args.output}"
    )
    return 0


def _train_command(name: str):
    """Subcommands from gpu_train, imported only when used (torch is an optional extra)."""

    def handler(args: argparse.Namespace, _: list[str]) -> int:
        from tweetmill.gpu_train import cli as train_cli

        return getattr(train_cli, f"run_{name}")(args) or 0

    return handler


TRAIN_COMMANDS = {
    "train": "train a causal LM on a shard directory",
    "generate": "generate text from a trained checkpoint",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    from tweetmill.pipeline.options import add_run_arguments

    parser = argparse.ArgumentParser(prog="tweetmill", description=__doc__)
    parser.add_argument("-v", "--verbose", action="store_true", help="log progress (INFO)")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser(
        "run",
        help="archives → cleaned, deduplicated, tokenized Arrow shards",
        description="Run the pipeline. Unknown options are Beam pipeline options (--runner, "
        "--direct_num_workers, Dataflow's options...); without --runner it runs here, on Beam's "
        "embedded FnApiRunner.",
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
    stats.add_argument("--top", type=int, default=10, help="rows of the top-N tables (default: %(default)s)")
    stats.add_argument("--no-hashtags", action="store_true", help="skip counting hashtags (faster)")
    stats.add_argument("--workers", type=int, default=None, help="threads (default: CPUs, at most 4)")
    stats.set_defaults(handler=_cmd_stats)

    smp = sub.add_parser("sample", help="decoded example tweets from a shard directory")
    smp.add_argument("shards", help="shard directory (with manifest.json), local or Beam path")
    smp.add_argument("-n", type=int, default=5, help="how many tweets (default: %(default)s)")
    smp.add_argument("--seed", type=int, default=0, help="the same seed picks the same tweets")
    smp.add_argument("--lang", help="only tweets of this detected language, e.g. de")
    smp.add_argument("--json", action="store_true", help="machine-readable output")
    smp.set_defaults(handler=_cmd_sample)

    ver = sub.add_parser(
        "verify",
        help="check every shard against the manifest (sha256, rows, tokens, schema, run)",
        description="Exit status 0 when every check passes, 1 otherwise.",
    )
    ver.add_argument("shards", help="shard directory (with manifest.json), local or Beam path")
    ver.add_argument("--json", action="store_true", help="machine-readable output")
    ver.set_defaults(handler=_cmd_verify)

    tok = sub.add_parser("train-tokenizer", help="train a byte-level BPE tokenizer on tweet files")
    tok.add_argument("inputs", nargs="+", help="archive files or globs, any supported format")
    tok.add_argument("--output", "-o", required=True, help="tokenizer.json to write")
    tok.add_argument("--vocab-size", type=int, default=16384)
    tok.add_argument("--limit", type=int, default=None, help="train on at most this many tweets")
    tok.set_defaults(handler=_cmd_train_tokenizer)

    for name, help_text in TRAIN_COMMANDS.items():
        cmd = sub.add_parser(name, help=help_text)
        if name == command:  # torch is imported only for the command that needs it
            try:
                from tweetmill.gpu_train import cli as train_cli
            except ImportError as exc:
                parser.exit(2, f"tweetmill {name} needs torch ({exc}): pip install 'tweetmill[train]'\n")
            getattr(train_cli, f"add_{name}_arguments")(cmd)
            cmd.set_defaults(handler=_train_command(name))
    return parser


def _option_strings(parser: argparse.ArgumentParser) -> set[str]:
    found = set(parser._option_string_actions)
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _option_strings(sub)
    return found


class _QuietBeamImport(logging.Filter):
    """Beam warns at import that optional GCP clients are missing; a local run does not need them."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "apitools not found" not in record.getMessage()


def main(argv: list[str] | None = None) -> int:
    logging.getLogger().addFilter(_QuietBeamImport())
    from tweetmill.pipeline.options import split_beam_args

    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)
    parser = build_parser(command)
    extra: list[str] = []
    if command == "run":
        argv, extra = split_beam_args(argv, _option_strings(parser))
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    return args.handler(args, extra)


if __name__ == "__main__":
    sys.exit(main())

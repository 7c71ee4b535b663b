"""The options of ``tweetmill run``: tweetmill's own, and Beam's passed through untouched.

tweetmill's options are parsed here; every argument it does not know (``--runner``,
``--direct_num_workers``, Dataflow's ``--project``...) goes to Beam's ``PipelineOptions``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
from dataclasses import asdict, dataclass, field

from tweetmill.schemas.records import SOURCE_FORMATS
from tweetmill.transforms.clean import CleanConfig
from tweetmill.transforms.filter import FilterConfig
from tweetmill.transforms.near_dedup import NearDedupConfig
from tweetmill.transforms.tokenize import BUNDLED_TOKENIZER, TokenizerSpec

PLACEHOLDER_MODES = ("keep", "remove", "placeholder")
LANG_ENGINES = ("profiles", "langdetect")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's output (and so its fingerprint)."""

    inputs: tuple[str, ...]
    output: str
    fmt: str | None = None
    csv_text_column: str | None = None
    clean: CleanConfig = field(default_factory=CleanConfig)
    filter: FilterConfig = field(default_factory=FilterConfig)
    near_dedup: NearDedupConfig | None = field(default_factory=NearDedupConfig)  # None: off
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    num_shards: int | None = None
    rows_per_shard: int = 500_000
    # How finely near dedup splits its shuffles (what one worker holds at once); never changes the
    # output, so it is left out of the fingerprint.
    near_dup_partitions: int = 64

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self, tokenizer_sha256: str, version: str) -> str:
        """Identifies the run's output: same inputs, options, tokenizer and version, same value."""
        doc = {"config": self.to_dict(), "tokenizer_sha256": tokenizer_sha256, "version": version}
        for execution_only in ("output", "near_dup_partitions"):
            doc["config"].pop(execution_only)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


def _positive_int(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return number


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", help="files or globs (local, gs://, any Beam filesystem); .gz/.bz2 ok"
    )
    parser.add_argument("--output", "-o", required=True, help="shard directory (local or Beam path)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --output")
    parser.add_argument("--format", dest="fmt", choices=SOURCE_FORMATS, help="skip auto-detection")
    parser.add_argument("--csv-text-column", help="text column of generic CSV inputs (default: detected)")

    clean = parser.add_argument_group("cleaning")
    for name, default in (
        ("urls", "placeholder"),
        ("mentions", "placeholder"),
        ("emails", "placeholder"),
        ("phones", "placeholder"),
    ):
        clean.add_argument(
            f"--{name}",
            choices=PLACEHOLDER_MODES,
            default=default,
            help=f"what to do with {name} (default: {default})",
        )
    clean.add_argument(
        "--keep-reply-prefix",
        action="store_true",
        help="keep the leading @mentions of replies (hidden by Twitter's clients)",
    )
    clean.add_argument("--no-ftfy", action="store_true", help="do not repair mojibake")

    filt = parser.add_argument_group("filtering")
    filt.add_argument(
        "--keep-retweets", action="store_true", help="keep retweets (they duplicate their original)"
    )
    filt.add_argument(
        "--min-chars",
        type=int,
        default=FilterConfig.min_chars,
        help="minimum letters and digits outside mentions, URLs and placeholders (default: %(default)s)",
    )
    filt.add_argument(
        "--languages",
        default="",
        help="comma-separated language codes to keep, e.g. en,de (default: all; always detected)",
    )
    filt.add_argument(
        "--lang-engine",
        choices=LANG_ENGINES,
        default=FilterConfig.lang_engine,
        help="language detector (default: %(default)s)",
    )
    filt.add_argument(
        "--min-lang-confidence",
        type=float,
        default=FilterConfig.min_lang_confidence,
        help="below this the language is 'und' (default: %(default)s)",
    )

    dedup = parser.add_argument_group("near-duplicate removal (MinHash LSH)")
    dedup.add_argument(
        "--near-dup-threshold",
        type=float,
        default=NearDedupConfig.threshold,
        help="estimated Jaccard similarity of character shingles at or above which tweets "
        "are near-duplicates (default: %(default)s)",
    )
    dedup.add_argument("--no-near-dedup", action="store_true", help="keep near-duplicates")
    dedup.add_argument(
        "--near-dup-samples",
        type=int,
        default=NearDedupConfig.max_samples,
        help="removed pairs written to near_duplicates.sample.jsonl (default: %(default)s)",
    )
    dedup.add_argument(
        "--near-dup-partitions",
        type=_positive_int,
        default=RunConfig.near_dup_partitions,
        help="hash partitions of near dedup's shuffles: one worker holds ~1/N of the tweets at once; "
        "raise it with the input, e.g. one per million tweets (never changes the output; "
        "default: %(default)s)",
    )

    out = parser.add_argument_group("tokenizing and writing")
    out.add_argument(
        "--tokenizer",
        default=BUNDLED_TOKENIZER,
        help="HF tokenizer.json (local or Beam path); default: the bundled tweet BPE",
    )
    out.add_argument("--eos-token", help="end-of-document token (default: detected from the vocabulary)")
    out.add_argument(
        "--num-shards", type=_positive_int, help="fixed number of shards (default: from --rows-per-shard)"
    )
    out.add_argument(
        "--rows-per-shard",
        type=_positive_int,
        default=RunConfig.rows_per_shard,
        help="target rows per shard (default: %(default)s)",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    languages = tuple(sorted({c.strip() for c in args.languages.split(",") if c.strip()}))
    return RunConfig(
        inputs=tuple(args.inputs),
        output=args.output,
        fmt=args.fmt,
        csv_text_column=args.csv_text_column,
        clean=CleanConfig(
            urls=args.urls,
            mentions=args.mentions,
            emails=args.emails,
            phones=args.phones,
            strip_reply_prefix=not args.keep_reply_prefix,
            fix_mojibake=not args.no_ftfy,
        ),
        filter=FilterConfig(
            drop_retweets=not args.keep_retweets,
            min_chars=args.min_chars,
            languages=languages,
            lang_engine=args.lang_engine,
            min_lang_confidence=args.min_lang_confidence,
        ),
        near_dedup=None
        if args.no_near_dedup
        else NearDedupConfig(threshold=args.near_dup_threshold, max_samples=args.near_dup_samples),
        tokenizer=TokenizerSpec(source=args.tokenizer, eos_token=args.eos_token),
        num_shards=args.num_shards,
        rows_per_shard=args.rows_per_shard,
        near_dup_partitions=args.near_dup_partitions,
    )


def _beam_option_actions() -> dict[str, argparse.Action]:
    """Every option Beam's PipelineOptions subclasses declare, with its argparse action."""
    from apache_beam.options import pipeline_options

    def subclasses(cls):
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    parser = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    for cls in set(subclasses(pipeline_options.PipelineOptions)):
        try:
            cls._add_argparse_args(parser)
        except argparse.ArgumentError:  # an option declared by two classes
            continue
    return parser._option_string_actions


def split_beam_args(argv: list[str], own_options: set[str]) -> tuple[list[str], list[str]]:
    """Split ``argv`` into tweetmill's arguments and Beam's, so ``--runner X`` never reads X as an input.

    An option tweetmill does not know goes to Beam with its value, when Beam's declaration of that
    option takes one.
    """
    beam_actions = _beam_option_actions()
    ours: list[str] = []
    beams: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg.startswith("--") and name not in own_options:
            beams.append(arg)
            action = beam_actions.get(name)
            takes_value = action is None or action.nargs != 0
            if "=" not in arg and takes_value and i + 1 < len(argv) and not argv[i + 1].startswith("--"):
                beams.append(argv[i + 1])
                i += 1
        else:
            ours.append(arg)
        i += 1
    return ours, beams

"""The options of ``tweetmill run``: tweetmill's own, and Beam's passed through untouched.

tweetmill's options are parsed here, their values checked (ranges, language codes) before anything
runs; every Beam pipeline option (``--runner``, ``--direct_num_workers``, Dataflow's ``--project``...)
goes to Beam's ``PipelineOptions``. An option that is neither is an error naming the closest spellings.
"""

from __future__ import annotations

import argparse
import dataclasses
import difflib
import hashlib
import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any

from tweetmill.gpu_train.cli import int_at_least, number_in
from tweetmill.pipeline.errors import UserError
from tweetmill.pipeline.stage_options import add_stage_arguments, stage_config_from_args
from tweetmill.pipeline.user_filters import UserFilter, user_filters
from tweetmill.schemas.records import SOURCE_FORMATS
from tweetmill.transforms.clean import CleanConfig
from tweetmill.transforms.language import DetectLanguage, LanguageConfig
from tweetmill.transforms.near_dedup import NearDedupConfig
from tweetmill.transforms.tokenize import BUNDLED_TOKENIZER, TokenizerSpec

PLACEHOLDER_MODES = ("keep", "remove", "placeholder")


@dataclass(frozen=True)
class RunConfig:
    """Everything that decides a run's output (and so its fingerprint)."""

    inputs: tuple[str, ...]
    output: str
    fmt: str | None = None
    csv_text_column: str | None = None
    include_deleted: bool = False  # read an account archive's deleted-tweets.js (skipped by default)
    csv_delimiter: str | None = None  # of CSV inputs; None: sniffed per file
    clean: CleanConfig = field(default_factory=CleanConfig)
    # Each configurable stage's Config by stage name (pipeline/build.py lists the stages); a stage
    # missing here runs with its defaults.
    stages: dict[str, Any] = field(default_factory=dict)
    user_filters: tuple[UserFilter, ...] = ()  # --filter: run after the built-in filters, in order
    write_dropped: bool = False  # every dropped tweet written under dropped/ (else a sample per reason)
    near_dedup: NearDedupConfig | None = field(default_factory=NearDedupConfig)  # None: off
    tokenizer: TokenizerSpec = field(default_factory=TokenizerSpec)
    num_shards: int | None = None
    rows_per_shard: int = 500_000
    # How finely near dedup splits its shuffles (what one worker holds at once); never changes the
    # output, so it is left out of the fingerprint.
    near_dup_partitions: int = 64
    # The share of the records read that may end as errors (dead letters) before the CLI rejects the
    # run (exit 3). Judges the output, never changes it: left out of the fingerprint.
    max_error_share: float = 0.10

    def __post_init__(self) -> None:
        # Every configurable stage's effective config, so the manifest shows it and the fingerprint
        # does not depend on whether a default was spelled out.
        from tweetmill.pipeline.build import CONFIGURABLE_STAGES

        given = dict(self.stages)
        full = {stage.name: given.pop(stage.name, None) or stage.Config() for stage in CONFIGURABLE_STAGES}
        if given:
            raise ValueError(f"no configurable stage named {sorted(given)}")
        object.__setattr__(self, "stages", full)

    def stage_config(self, stage: type) -> Any:
        """The config ``stage`` runs with."""
        return self.stages[stage.name]

    @property
    def language(self) -> LanguageConfig:
        return self.stage_config(DetectLanguage)

    def to_dict(self) -> dict:
        return asdict(self)

    def fingerprint(self, tokenizer_sha256: str, version: str) -> str:
        """Identifies the run's output: same inputs, options, tokenizer and version, same value."""
        doc = {"config": self.to_dict(), "tokenizer_sha256": tokenizer_sha256, "version": version}
        for execution_only in ("output", "near_dup_partitions", "max_error_share"):
            doc["config"].pop(execution_only)
        return hashlib.sha256(json.dumps(doc, sort_keys=True).encode()).hexdigest()


# --- option values: argparse ``type=`` functions, so a bad value is one line before anything runs ----


_positive_int = int_at_least(1)


def _csv_delimiter(value: str) -> str:
    from tweetmill.transforms.csv_records import parse_csv_delimiter

    try:
        return parse_csv_delimiter(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs", nargs="+", help="files or globs (local, gs://, any Beam filesystem); .gz/.bz2 ok"
    )
    parser.add_argument("--output", "-o", required=True, help="shard directory (local or Beam path)")
    parser.add_argument("--overwrite", action="store_true", help="replace a finished run in --output")
    parser.add_argument("--format", dest="fmt", choices=SOURCE_FORMATS, help="skip auto-detection")
    parser.add_argument("--csv-text-column", help="text column of generic CSV inputs (default: detected)")
    parser.add_argument(
        "--csv-delimiter",
        type=_csv_delimiter,
        help="delimiter of CSV inputs: one character or comma/semicolon/tab/pipe (default: sniffed per file)",
    )
    parser.add_argument(
        "--include-deleted-tweets",
        action="store_true",
        help="read an account archive's deleted-tweets.js and keep its tweets (default: skipped)",
    )

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

    from tweetmill.pipeline.build import CONFIGURABLE_STAGES

    parser.add_argument(
        "--languages",
        default="",
        help="comma-separated language codes to keep, e.g. en,de (default: all; always detected); "
        "und keeps tweets whose language is undetermined",
    )
    add_stage_arguments(parser, CONFIGURABLE_STAGES)

    own = parser.add_argument_group("your own filters (docs/stages.md)")
    own.add_argument(
        "--filter",
        dest="user_filters",
        action="append",
        default=[],
        metavar="MODULE:CLASS",
        help="run a filter from your own module (or an installed tweetmill.filters entry point); repeatable",
    )
    own.add_argument(
        "--filter-arg",
        dest="filter_args",
        action="append",
        default=[],
        metavar="NAME.FIELD=VALUE",
        help="an option of a --filter, by its stage name, e.g. no_crypto.words=bitcoin,eth; repeatable",
    )
    own.add_argument("--filter-config", metavar="FILE", help="options of the --filters: a JSON or TOML file")

    dedup = parser.add_argument_group("near-duplicate removal (MinHash LSH)")
    dedup.add_argument(
        "--near-dup-threshold",
        type=number_in(0, 1, low_open=True),
        default=NearDedupConfig.threshold,
        help="estimated Jaccard similarity of character shingles at or above which tweets "
        "are near-duplicates (default: %(default)s)",
    )
    dedup.add_argument("--no-near-dedup", action="store_true", help="keep near-duplicates")
    dedup.add_argument(
        "--near-dup-samples",
        type=int_at_least(0),
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

    check = parser.add_argument_group("checking the result")
    check.add_argument(
        "--max-error-share",
        type=number_in(0, 1),
        default=RunConfig.max_error_share,
        help="reject the run (exit 3) when more than this share of the records read are errors "
        "(dead letters); never changes the output (default: %(default)s)",
    )
    check.add_argument(
        "--write-dropped",
        action="store_true",
        help="write every dropped tweet, with its stage and reason, under dropped/ "
        "(default: a sample per reason in dropped.sample.jsonl)",
    )


def config_from_args(args: argparse.Namespace) -> RunConfig:
    """The run's configuration; a ``UserError`` naming every bad language code or filter at once."""
    from tweetmill.pipeline.build import CONFIGURABLE_STAGES

    stages = {stage.name: stage_config_from_args(args, stage) for stage in CONFIGURABLE_STAGES}
    language = stages[DetectLanguage.name]
    languages = tuple(sorted({_canonical_code(c) for c in args.languages.split(",") if c.strip()}))
    stages[DetectLanguage.name] = dataclasses.replace(language, languages=languages)
    problems = language_problems(languages, language.lang_engine)
    try:
        own_filters = user_filters(
            args.user_filters, args.filter_args, args.filter_config, reserved=set(stages)
        )
    except ValueError as exc:
        problems.append(str(exc))
    if problems:
        raise UserError(*problems)
    return RunConfig(
        inputs=tuple(args.inputs),
        output=args.output,
        fmt=args.fmt,
        csv_text_column=args.csv_text_column,
        include_deleted=args.include_deleted_tweets,
        csv_delimiter=args.csv_delimiter,
        clean=CleanConfig(
            urls=args.urls,
            mentions=args.mentions,
            emails=args.emails,
            phones=args.phones,
            strip_reply_prefix=not args.keep_reply_prefix,
            fix_mojibake=not args.no_ftfy,
        ),
        stages=stages,
        user_filters=own_filters,
        write_dropped=args.write_dropped,
        near_dedup=None
        if args.no_near_dedup
        else NearDedupConfig(threshold=args.near_dup_threshold, max_samples=args.near_dup_samples),
        tokenizer=TokenizerSpec(source=args.tokenizer, eos_token=args.eos_token),
        num_shards=args.num_shards,
        rows_per_shard=args.rows_per_shard,
        near_dup_partitions=args.near_dup_partitions,
        max_error_share=args.max_error_share,
    )


# --- language codes ---------------------------------------------------------------------------------

# Languages Twitter tags that neither detector answers. The filter keeps a tweet by the language
# ``resolve_language`` settles on, which is Twitter's tag when the detector cannot answer it (or says
# ``und``): a filter on these codes keeps the tweets Twitter tagged so.
TAG_ONLY_LANGUAGES: frozenset[str] = frozenset(
    {"am", "bo", "ckb", "dv", "eu", "gl", "ht", "hy", "is", "ka", "km", "lo", "my", "or", "ps", "sd",
     "si", "sr", "ug"}
)
# English (and a few native) names, to suggest a code for ``--languages english``.
LANGUAGE_NAMES: dict[str, str] = {
    "afrikaans": "af", "arabic": "ar", "bulgarian": "bg", "bengali": "bn", "bangla": "bn", "catalan": "ca",
    "czech": "cs", "welsh": "cy", "danish": "da", "german": "de", "deutsch": "de", "greek": "el",
    "english": "en", "spanish": "es", "espanol": "es", "español": "es", "estonian": "et", "persian": "fa",
    "farsi": "fa", "finnish": "fi", "french": "fr", "francais": "fr", "français": "fr", "gujarati": "gu",
    "hebrew": "he", "hindi": "hi", "croatian": "hr", "hungarian": "hu", "indonesian": "id",
    "italian": "it", "italiano": "it", "japanese": "ja", "kannada": "kn", "korean": "ko",
    "lithuanian": "lt", "latvian": "lv", "macedonian": "mk", "malayalam": "ml", "marathi": "mr",
    "nepali": "ne", "dutch": "nl", "nederlands": "nl", "norwegian": "no", "punjabi": "pa", "polish": "pl",
    "portuguese": "pt", "romanian": "ro", "russian": "ru", "slovak": "sk", "slovenian": "sl",
    "somali": "so", "albanian": "sq", "swedish": "sv", "swahili": "sw", "tamil": "ta", "telugu": "te",
    "thai": "th", "tagalog": "tl", "filipino": "tl", "turkish": "tr", "ukrainian": "uk", "urdu": "ur",
    "vietnamese": "vi", "chinese": "zh-cn,zh-tw", "mandarin": "zh-cn,zh-tw", "basque": "eu",
    "galician": "gl", "armenian": "hy", "georgian": "ka", "icelandic": "is", "serbian": "sr",
    "amharic": "am", "burmese": "my", "khmer": "km", "sinhala": "si", "tibetan": "bo",
    "undetermined": "und", "unknown": "und",
    # ISO 639-2/3 codes people type for the two-letter ones
    "eng": "en", "ger": "de", "deu": "de", "fre": "fr", "fra": "fr", "spa": "es", "ita": "it",
    "por": "pt", "rus": "ru", "jpn": "ja", "chi": "zh-cn,zh-tw", "zho": "zh-cn,zh-tw", "kor": "ko",
    "ara": "ar", "dut": "nl", "nld": "nl", "tur": "tr", "pol": "pl", "swe": "sv", "hin": "hi",
    "ind": "id", "ukr": "uk", "per": "fa", "fas": "fa", "heb": "he", "tha": "th", "vie": "vi",
}


def _canonical_code(code: str) -> str:
    """Case and separator do not matter: ``EN`` is ``en``, ``zh_CN`` is ``zh-cn``."""
    return code.strip().lower().replace("_", "-")


def supported_languages(engine: str) -> frozenset[str]:
    """The codes ``--languages`` accepts with this detector: what it answers, ``und``, and the tags
    only Twitter gives (see ``TAG_ONLY_LANGUAGES``). Both engines answer langdetect's 55 codes."""
    from tweetmill.transforms.langid import DETECTOR_LANGUAGES, ENGINES, UND

    if engine not in ENGINES:
        raise ValueError(f"unknown language engine {engine!r}")
    return DETECTOR_LANGUAGES | TAG_ONLY_LANGUAGES | {UND}


def _code_suggestion(code: str, known: frozenset[str]) -> str | None:
    from tweetmill.transforms.langid import normalize_language_code

    if code in LANGUAGE_NAMES:
        return LANGUAGE_NAMES[code]
    if code == "zh" or code.startswith("zh-"):
        return "zh-cn,zh-tw" if code == "zh" else normalize_language_code(code)
    normal = normalize_language_code(code)  # iw -> he, en-us -> en, nb -> no
    if normal in known and normal != "und":
        return normal
    names = difflib.get_close_matches(code, LANGUAGE_NAMES, n=1, cutoff=0.75)
    if names:
        return LANGUAGE_NAMES[names[0]]
    close = difflib.get_close_matches(code, sorted(known), n=3, cutoff=0.5)
    return " or ".join(close) if close else None


def language_problems(
    codes: Iterable[str], engine: str, *, option: str = "--languages", detected_only: bool = False
) -> list[str]:
    """One line per code in ``codes`` that ``engine`` cannot keep, each with a suggestion.

    ``detected_only``: only the codes the detector itself answers (and ``und``), for a filter on the
    shards' ``lang`` column, which holds the detector's answer (``tweetmill sample --lang``).
    """
    from tweetmill.transforms.langid import DETECTOR_LANGUAGES, UND

    # The tweet engine's ``lang`` also holds script-only codes (ka, hy...) and tags it cannot answer.
    known = DETECTOR_LANGUAGES | TAG_ONLY_LANGUAGES | {UND} if detected_only else supported_languages(engine)
    problems = []
    for code in codes:
        if code in known:
            continue
        suggestion = _code_suggestion(code, known)
        hint = f"did you mean {suggestion}?" if suggestion else f"known: {', '.join(sorted(known))}"
        problems.append(f"{option}: {code!r} is not a language code the {engine} detector knows; {hint}")
    return problems


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

    A Beam pipeline option goes to Beam with its value, when Beam's declaration of that option takes
    one. An option that is neither tweetmill's nor Beam's (``--langauges``) is a ``UserError`` naming
    the closest spellings of both: Beam would only log that it discarded it, and the run would go on
    without it. Options are matched exactly (no abbreviations).
    """
    beam_actions = _beam_option_actions()
    ours: list[str] = []
    beams: list[str] = []
    unknown: list[str] = []
    i = 0
    while i < len(argv):
        arg = argv[i]
        name = arg.split("=", 1)[0]
        if arg == "--":  # the rest are positional
            ours.extend(argv[i:])
            break
        if arg.startswith("--") and name not in own_options:
            action = beam_actions.get(name)
            if action is None:
                unknown.append(name)
                i += 1
                continue
            beams.append(arg)
            has_value = i + 1 < len(argv) and not argv[i + 1].startswith("--")
            if "=" not in arg and action.nargs != 0 and has_value:
                beams.append(argv[i + 1])
                i += 1
        else:
            ours.append(arg)
        i += 1
    if unknown:
        raise UserError(*(_unknown_option(name, own_options, set(beam_actions)) for name in unknown))
    return ours, beams


def _unknown_option(name: str, own_options: set[str], beam_options: set[str]) -> str:
    candidates = sorted(o for o in own_options | beam_options if o.startswith("--"))
    # Compare without dashes and underscores, so --direct-num-workers finds --direct_num_workers.
    keyed = {o.lstrip("-").replace("_", "-"): o for o in candidates}
    close = difflib.get_close_matches(name.lstrip("-").replace("_", "-"), keyed, n=3, cutoff=0.6)
    hint = f"; did you mean {' or '.join(keyed[c] for c in close)}?" if close else ""
    return (
        f"unknown option {name}: neither a tweetmill run option nor a Beam pipeline option{hint} "
        "(see tweetmill run --help)"
    )

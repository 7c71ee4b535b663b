"""Assembly of the stages into one Beam pipeline, and running it on the chosen runner.

The composition lives here and only here: each stage is a PTransform from ``tweetmill.transforms``
with a main output and, where it drops or rejects records, ``dropped`` / ``dead_letters`` outputs
that the write stage's finalizer turns into the manifest's accounting.
"""

from __future__ import annotations

import contextlib
import logging
import shutil
import tempfile
from collections.abc import Iterator

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems  # tests patch build.FileSystems too
from apache_beam.options.pipeline_options import DirectOptions, PipelineOptions, StandardOptions
from tweetmill.pipeline.beam_options import ViewCachingOptions
from tweetmill.pipeline.cli import tweetmill_version
from tweetmill.pipeline.dataflow import check_runner_options, is_dry_run, remote_pipeline_options
from tweetmill.pipeline.errors import UserError
from tweetmill.pipeline.local_workers import with_default_workers
from tweetmill.pipeline.options import RunConfig
from tweetmill.pipeline.outputs import (
    OutputCheck,
    OutputLock,
    check_output,
    quiet_filesystem_errors,
    remove_temps,
    run_failure,
)
from tweetmill.pipeline.progress import ProgressOptions
from tweetmill.pipeline.run_watch import RunWatch
from tweetmill.pipeline.shard_io import read_manifest
from tweetmill.pipeline.user_filters import pickle_by_value
from tweetmill.schemas.manifest import Manifest, StageRecord, TokenizerInfo
from tweetmill.schemas.shard_dir import ID_CONFLICT_SAMPLE_NAME
from tweetmill.transforms.audit import SampleDropped, WriteDropped
from tweetmill.transforms.author_cap import CapAuthors
from tweetmill.transforms.clean import CleanTweets
from tweetmill.transforms.common import TAG_DEAD_LETTERS, TAG_DROPPED, TAG_SAMPLES, TAG_STATS
from tweetmill.transforms.dedup import DeduplicateIds, DeduplicateTexts
from tweetmill.transforms.dedup_batches import UnbatchTweets
from tweetmill.transforms.documents import BuildDocuments
from tweetmill.transforms.filters.empty import EmptyText
from tweetmill.transforms.filters.entities_only import EntitiesOnly
from tweetmill.transforms.filters.entity_counts import EntityCounts
from tweetmill.transforms.filters.length import Length
from tweetmill.transforms.filters.repetition import Repetition
from tweetmill.transforms.filters.retweets import Retweets
from tweetmill.transforms.language import DetectLanguage
from tweetmill.transforms.near_dedup import RemoveNearDuplicates
from tweetmill.transforms.read import TAG_FILES, ReadArchives
from tweetmill.transforms.shard_parts import WriteShards
from tweetmill.transforms.stage import KIND_USER, TAG_DROPPED_TWEETS, ApplyStage, Stage
from tweetmill.transforms.tokenize import TokenizeTweets, load_tokenizer
from tweetmill.transforms.write import Finalize, OutputSpec, WriteDeadLetters, local_path, temp_dirs

# The tweet-by-tweet filters, in the order they run: after cleaning, before deduplication (cheap
# rules first, so the shuffles carry fewer tweets). Adding a filter is one module and one line here.
FILTERS: tuple[type[Stage], ...] = (EmptyText, Retweets, Length, EntitiesOnly, EntityCounts, Repetition)
# The stages whose options ``tweetmill run`` offers, derived from their ``Config`` (stage_options.py).
CONFIGURABLE_STAGES: tuple[type, ...] = (*FILTERS, DetectLanguage, CapAuthors, BuildDocuments)

log = logging.getLogger(__name__)

SPILL_DIR = "spill"  # in the run's temporary directory

# Runners that mean "run here, in this process (or its local workers)". Beam's DirectRunner first
# tries to download and start Prism, which hangs without network; the FnApiRunner is the embedded
# runner behind it and opens no connection, so tweetmill uses it explicitly.
LOCAL_RUNNERS = (None, "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner")


def filter_stages(config: RunConfig) -> list[Stage]:
    """The filters this run applies, in order: the built-in ones its options leave on, then the user's."""
    built_in = [stage(config.stage_config(stage)) for stage in FILTERS]
    return [stage for stage in built_in if stage.enabled()] + [f.load() for f in config.user_filters]


def declared(stage, kind: str | None = None) -> StageRecord:
    """A stage's entry in the manifest, before its counts are known."""
    return StageRecord(stage.name, kind or stage.kind, dict.fromkeys(stage.reasons, 0), stage.description)


def output_spec(config: RunConfig) -> OutputSpec:
    tok = load_tokenizer(config.tokenizer)
    ver = tweetmill_version()
    return OutputSpec(
        output=config.output,
        run_fingerprint=config.fingerprint(tok.sha256, ver),
        tokenizer=TokenizerInfo(
            sha256=tok.sha256,
            vocab_size=tok.vocab_size,
            eos_id=tok.eos_id,
            eos_token=tok.eos_token,
            source=tok.source,
        ),
        num_shards=config.num_shards,
        rows_per_shard=config.rows_per_shard,
        config=config.to_dict(),
        created_by=f"tweetmill {ver}",
        stages=tuple(run_stages(config)),
        write_dropped=config.write_dropped,
    )


def run_stages(config: RunConfig) -> list[StageRecord]:
    """The stages of this run in pipeline order, as the manifest records them."""
    user = {f.name for f in config.user_filters}
    stages = [
        declared(ReadArchives),
        declared(CleanTweets),
        *(declared(s, KIND_USER if s.name in user else None) for s in filter_stages(config)),
        declared(DeduplicateIds),
        declared(DeduplicateTexts),
    ]
    if config.near_dedup is not None:
        stages.append(declared(RemoveNearDuplicates))
    stages.append(declared(DetectLanguage))
    if CapAuthors(config.stage_config(CapAuthors)).enabled():
        stages.append(declared(CapAuthors))
    if BuildDocuments(config.stage_config(BuildDocuments)).enabled():
        stages.append(declared(BuildDocuments))
    return [*stages, declared(TokenizeTweets)]


def build(p: beam.Pipeline, config: RunConfig, spec: OutputSpec, spill_dir: str | None = None) -> None:
    """Archives → clean → filters → id, exact, near dedup → language → tokenize → shards + manifest.

    ``spill_dir`` (local runs): where what waits between the stages goes instead of the runner's
    memory: batches, the large shuffles' values, the shards' parts (``transforms/spill.py``,
    ``docs/memory.md``)."""
    audit = config.write_dropped
    parsed = p | "ReadArchives" >> ReadArchives(
        list(config.inputs),
        fmt=config.fmt,
        csv_text_column=config.csv_text_column,
        include_deleted=config.include_deleted,
        csv_delimiter=config.csv_delimiter,
        spread=not is_one_local_worker(p.options),
        spill_dir=spill_dir,
    )
    drops = [parsed[TAG_DROPPED]]
    dropped_tweets = []  # (stage, reason, tweet) of every stage after parsing
    stage_stats, side_samples = [], []

    def apply(batches, stage: Stage):
        out = batches | stage.name >> ApplyStage(stage)
        drops.append(out[TAG_DROPPED])
        dropped_tweets.append(out[TAG_DROPPED_TWEETS])
        return out.tweets

    batches, clean_stats = parsed.tweets | "Clean" >> CleanTweets(config.clean, with_stats=True)
    stage_stats.append(clean_stats)  # the manifest's stages["clean"]: texts each step changed
    for stage in filter_stages(config):
        pickle_by_value(stage)
        batches = apply(batches, stage)
    # Dedup and near dedup keep the tweets in their batches and shuffle only compact keys
    # (ids, text hashes, band keys): each tweet is decided where it is (docs/memory.md).
    unique_ids = batches | "DeduplicateIds" >> DeduplicateIds(
        audit=audit, batched=True, texts_next=True, spill_dir=spill_dir
    )
    drops.append(unique_ids[TAG_DROPPED])
    dropped_tweets.append(unique_ids[TAG_DROPPED_TWEETS])
    stage_stats.append(unique_ids[TAG_STATS])
    name_sample = beam.Map(lambda rows: (ID_CONFLICT_SAMPLE_NAME, rows))
    side_samples.append(unique_ids[TAG_SAMPLES] | "NameIdConflictSample" >> name_sample)
    # Near dedup takes the kept batches and the survivors apart: each is signed and parked once.
    unique_texts = unique_ids.for_texts() | "DeduplicateTexts" >> DeduplicateTexts(
        audit=audit, batched=True, spill_dir=spill_dir, join=config.near_dedup is None
    )
    drops.append(unique_texts[TAG_DROPPED])
    dropped_tweets.append(unique_texts[TAG_DROPPED_TWEETS])
    distinct = unique_texts.tweets
    if config.near_dedup is not None:
        near = distinct | "RemoveNearDuplicates" >> RemoveNearDuplicates(
            config.near_dedup, partitions=config.near_dup_partitions, batched=True, spill_dir=spill_dir
        )
        distinct = near.tweets
        drops.append(near[TAG_DROPPED])
        dropped_tweets.append(near[TAG_DROPPED_TWEETS])
        stage_stats.append(near[TAG_STATS])
        side_samples.append(near[TAG_SAMPLES])

    batches = apply(distinct, DetectLanguage(config.language))
    cap = CapAuthors(config.stage_config(CapAuthors), batched=True, spill_dir=spill_dir)
    if cap.enabled():  # on the corpus the other stages leave, so a share is of what gets trained on
        capped = batches | "CapAuthors" >> cap
        drops.append(capped[TAG_DROPPED])
        dropped_tweets.append(capped[TAG_DROPPED_TWEETS])
        stage_stats.append(capped[TAG_STATS])
        batches = capped.tweets
    documents = BuildDocuments(config.stage_config(BuildDocuments))
    if documents.enabled():  # after every per-tweet decision: a document holds only kept tweets
        built = batches | "UnbatchForDocuments" >> UnbatchTweets() | "BuildDocuments" >> documents
        stage_stats.append(built[TAG_STATS])
        rebatch = beam.BatchElements(min_batch_size=16, max_batch_size=256)
        batches = built["tweets"] | "BatchDocuments" >> rebatch
    # One local worker may use a thread pool to tokenize; anywhere else a core has a worker each.
    threads = is_one_local_worker(p.options)
    tokenized = batches | "Tokenize" >> TokenizeTweets(config.tokenizer, threads=threads)

    shards = tokenized | "WriteShards" >> WriteShards(spec, spill_dir)
    error_files = parsed[TAG_DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(spec)
    if audit:
        all_dropped = dropped_tweets | "AllDroppedTweets" >> beam.Flatten()
        dropped_files = all_dropped | "WriteDropped" >> WriteDropped(spec)
    else:
        dropped_files = p | "NoDroppedFiles" >> beam.Create([])
        side_samples.append(tuple(dropped_tweets) | "SampleDropped" >> SampleDropped())

    dropped = drops | "AllDrops" >> beam.Flatten() | "SumDropsByStageAndReason" >> beam.CombinePerKey(sum)
    read = (
        [
            parsed.tweets | "CountParsed" >> beam.Map(len),
            parsed[TAG_DROPPED] | "CountParseDrops" >> beam.Map(lambda kv: kv[1]),
            parsed[TAG_DEAD_LETTERS] | "CountDeadLetters" >> beam.Map(lambda _: 1),
        ]
        | "AllReads" >> beam.Flatten()
        | "SumRead" >> beam.CombineGlobally(sum)
    )
    _ = p | "Finalize" >> Finalize(
        spec,
        num_shards=shards["num_shards"],
        written=shards["written"],
        error_files=error_files,
        dropped_files=dropped_files,
        read=read,
        dropped=dropped,
        stages=stage_stats | "AllStageStats" >> beam.Flatten(),
        inputs=parsed[TAG_FILES],
        samples=side_samples | "AllSamples" >> beam.Flatten(),
    )


@contextlib.contextmanager
def spill_directory(spec: OutputSpec, options: PipelineOptions) -> Iterator[str | None]:
    """Where a local run parks its batches (None on other runners, whose shuffles spill): in the
    run's temporary directory when the output is local (removed with it, also after a crash), else
    a new directory under ``TMPDIR``, removed when the run ends."""
    if options.view_as(StandardOptions).runner not in LOCAL_RUNNERS:
        yield None
    elif local_path(spec.output) is not None:
        yield FileSystems.join(spec.temp_dir, SPILL_DIR)
    else:
        directory = tempfile.mkdtemp(prefix="tweetmill-spill-")
        try:
            yield directory
        finally:
            shutil.rmtree(directory, ignore_errors=True)


def is_one_local_worker(options: PipelineOptions) -> bool:
    """The embedded runner with one worker: nothing gains from spreading data between workers."""
    workers = options.view_as(DirectOptions).direct_num_workers
    return options.view_as(StandardOptions).runner in LOCAL_RUNNERS and workers == 1


def make_pipeline(beam_args: list[str]) -> beam.Pipeline:
    options = ViewCachingOptions(beam_args)
    runner = options.view_as(StandardOptions).runner
    if runner in LOCAL_RUNNERS:
        from tweetmill.pipeline.local_runner import LocalRunner

        return beam.Pipeline(runner=LocalRunner(), options=options)
    # A remote runner's workers get tweetmill and its requirements staged (pipeline/dataflow.py).
    return beam.Pipeline(options=remote_pipeline_options(beam_args))


class OutputExistsError(UserError):
    """``--output`` holds a finished run and ``--overwrite`` was not given (exit 2)."""


def _input_problems(patterns: list[str]) -> list[str]:
    try:
        from tweetmill.pipeline.preflight import input_problems
    except ModuleNotFoundError as exc:  # pipeline/preflight.py not there: inputs are checked as they are read
        if exc.name != "tweetmill.pipeline.preflight":
            raise
        return []
    return input_problems(patterns)


def preflight(config: RunConfig, *, overwrite: bool) -> OutputCheck:
    """Every problem with the inputs and the output, raised as one ``UserError`` (one line each)
    before the tokenizer, the job graph or the output are touched."""
    check = check_output(config.output, overwrite=overwrite)
    problems = [*_input_problems(list(config.inputs)), *check.problems]
    if problems:
        raise (OutputExistsError if check.finished_run else UserError)(*problems)
    return check


def run(
    config: RunConfig,
    beam_args: list[str] | None = None,
    *,
    overwrite: bool = False,
    progress: ProgressOptions | None = None,
) -> Manifest | None:
    """Run the pipeline to completion and return the manifest it published.

    With ``--dry_run`` (Dataflow) the job graph is built, translated and staged but not submitted,
    and nothing is read or written (nor checked): the result is None.

    A run that fails publishes nothing and leaves no temporary directory; one that broke on the
    filesystem (disk full, permissions) raises a one-line ``RunFailedError``, anything else its own
    traceback. A local output is locked for the run (``pipeline/outputs.py``); a successful run also
    removes the ``_tmp-*`` directories that crashed runs left in it.

    ``progress`` (the CLI's): show the run's progress, and make Ctrl-C stop a local run cleanly: a
    plain ``KeyboardInterrupt`` once the temporary directory is removed (``pipeline/run_watch.py``).
    """
    beam_args = list(beam_args or [])
    options = PipelineOptions(beam_args)
    check_runner_options(config, options)  # a clear error before the output, tokenizer or graph are touched
    dry_run = is_dry_run(options)
    check = OutputCheck() if dry_run else preflight(config, overwrite=overwrite)
    if not dry_run and options.view_as(StandardOptions).runner in LOCAL_RUNNERS:
        beam_args = with_default_workers(beam_args, list(config.inputs))  # a large input: every core
        options = PipelineOptions(beam_args)
    local = not dry_run and local_path(config.output) is not None
    with OutputLock(config.output, tweetmill_version()) if local else contextlib.nullcontext():
        spec = output_spec(config)
        p = make_pipeline(beam_args)
        with spill_directory(spec, options) as spill_dir:
            build(p, config, spec, spill_dir)
            watch = RunWatch(None if dry_run else progress, options, list(config.inputs))
            try:
                with quiet_filesystem_errors(), watch:
                    watch.wait(p.run())
            except BaseException as exc:  # Ctrl-C too: its temporary directory goes as well
                if not dry_run and not watch.detached:  # a remote job that goes on still needs it
                    remove_temps([spec.temp_dir], "this run failed")
                if watch.interrupted:  # Beam wraps a Ctrl-C in errors of its own
                    raise KeyboardInterrupt from None
                if not isinstance(exc, Exception):
                    raise
                failure = run_failure(exc, config.output)
                if failure is None:
                    raise
                raise failure from exc
        if dry_run:
            log.info("dry run: the job graph was translated; nothing was submitted")
            return None
        # Under the lock every other temporary directory is a crashed run's; on an object store only
        # those --overwrite allowed before the run are removed (one that appeared since may be live).
        stale = temp_dirs(config.output) if local else check.stale_temps
        remove_temps([t.path for t in stale], "left by a run that did not finish")
        return read_manifest(config.output)

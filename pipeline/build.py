"""Assembly of the stages into one Beam pipeline, and running it on the chosen runner.

The composition lives here and only here: each stage is a PTransform from ``tweetmill.transforms``
with a main output and, where it drops or rejects records, ``dropped`` / ``dead_letters`` outputs
that the write stage's finalizer turns into the manifest's accounting.
"""

from __future__ import annotations

import logging
from importlib.metadata import PackageNotFoundError, version

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.options.pipeline_options import PipelineOptions, StandardOptions
from tweetmill.pipeline.dataflow import check_runner_options, is_dry_run, remote_pipeline_options
from tweetmill.pipeline.options import RunConfig
from tweetmill.pipeline.stats import read_manifest
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest, TokenizerInfo
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.clean import CleanTweets
from tweetmill.transforms.common import TAG_DEAD_LETTERS, TAG_DROPPED
from tweetmill.transforms.dedup import DeduplicateIds, DeduplicateTexts
from tweetmill.transforms.filter import DetectLanguage, FilterTweets
from tweetmill.transforms.near_dedup import TAG_SAMPLES, TAG_STATS, RemoveNearDuplicates
from tweetmill.transforms.parse import TAG_FILES, ReadArchives
from tweetmill.transforms.tokenize import TokenizeTweets, load_tokenizer
from tweetmill.transforms.write import Finalize, OutputSpec, WriteDeadLetters, WriteShards

log = logging.getLogger(__name__)

# Runners that mean "run here, in this process (or its local workers)". Beam's DirectRunner first
# tries to download and start Prism, which hangs without network; the FnApiRunner is the embedded
# runner behind it and opens no connection, so tweetmill uses it explicitly.
LOCAL_RUNNERS = (None, "DirectRunner", "FnApiRunner", "BundleBasedDirectRunner")


def tweetmill_version() -> str:
    try:
        return version("tweetmill")
    except PackageNotFoundError:
        return "0+unknown"


class _Unbatch(beam.PTransform):
    def expand(self, batches):
        return batches | "Flatten" >> beam.FlatMap(lambda batch: batch).with_output_types(Tweet)


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
    )


def build(p: beam.Pipeline, config: RunConfig, spec: OutputSpec) -> None:
    """Archive files → clean → filter → exact dedup → near dedup → language → tokenize → shards + manifest."""
    parsed = p | "ReadArchives" >> ReadArchives(
        list(config.inputs), fmt=config.fmt, csv_text_column=config.csv_text_column
    )
    cleaned = parsed.tweets | "Clean" >> CleanTweets(config.clean)
    filtered = cleaned | "Filter" >> FilterTweets(config.filter)
    unique_ids = filtered.tweets | "Unbatch" >> _Unbatch() | "DeduplicateIds" >> DeduplicateIds()
    unique_texts = unique_ids.tweets | "DeduplicateTexts" >> DeduplicateTexts()
    drops = [parsed[TAG_DROPPED], filtered[TAG_DROPPED], unique_ids[TAG_DROPPED], unique_texts[TAG_DROPPED]]
    distinct = unique_texts.tweets
    if config.near_dedup is not None:
        near = unique_texts.tweets | "RemoveNearDuplicates" >> RemoveNearDuplicates(
            config.near_dedup, partitions=config.near_dup_partitions
        )
        distinct = near.tweets
        drops.append(near[TAG_DROPPED])
        stages, samples = near[TAG_STATS], near[TAG_SAMPLES]
    else:
        stages = p | "NoStageExtras" >> beam.Create([])
        samples = p | "NoSamples" >> beam.Create([])
    languages = distinct | "DetectLanguage" >> DetectLanguage(config.filter)
    drops.append(languages[TAG_DROPPED])
    tokenized = languages.tweets | "Tokenize" >> TokenizeTweets(config.tokenizer)

    shards = tokenized | "WriteShards" >> WriteShards(spec)
    error_files = parsed[TAG_DEAD_LETTERS] | "WriteDeadLetters" >> WriteDeadLetters(spec)

    dropped = drops | "AllDrops" >> beam.Flatten() | "SumDropsByReason" >> beam.CombinePerKey(sum)
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
        read=read,
        dropped=dropped,
        stages=stages,
        inputs=parsed[TAG_FILES],
        samples=samples,
    )


def make_pipeline(beam_args: list[str]) -> beam.Pipeline:
    options = PipelineOptions(beam_args)
    runner = options.view_as(StandardOptions).runner
    if runner in LOCAL_RUNNERS:
        from apache_beam.runners.portability.fn_api_runner import FnApiRunner

        return beam.Pipeline(runner=FnApiRunner(), options=options)
    # A remote runner's workers get tweetmill and its requirements staged (pipeline/dataflow.py).
    return beam.Pipeline(options=remote_pipeline_options(beam_args))


class OutputExistsError(FileExistsError):
    pass


def run(config: RunConfig, beam_args: list[str] | None = None, *, overwrite: bool = False) -> Manifest | None:
    """Run the pipeline to completion and return the manifest it published.

    With ``--dry_run`` (Dataflow) the job graph is built, translated and staged but not submitted,
    and nothing is read or written: the result is None.
    """
    beam_args = list(beam_args or [])
    options = PipelineOptions(beam_args)
    check_runner_options(config, options)  # a clear error before the output, tokenizer or graph are touched
    manifest_path = FileSystems.join(config.output, MANIFEST_NAME)
    if not is_dry_run(options) and FileSystems.exists(manifest_path) and not overwrite:
        raise OutputExistsError(
            f"{config.output} already holds a finished run; pass --overwrite to replace it"
        )
    spec = output_spec(config)
    p = make_pipeline(beam_args)
    build(p, config, spec)
    result = p.run()
    result.wait_until_finish()
    if is_dry_run(options):
        log.info("dry run: the job graph was translated; nothing was submitted")
        return None
    return read_manifest(config.output)

"""Throughput of the whole pipeline and of each stage alone, on ../shared/data/bench.

Run by hand (never in CI):  .venv/bin/python bench/bench_pipeline.py [--limit N] [--repeat K]

Each stage's pure core is timed alone, single process, on the same tweets; their sum is the
baseline the Beam pipeline (FnApiRunner, one worker) is compared with in the same run, so the
ratio shows what the runner costs on top of the work itself.
"""

from __future__ import annotations

import argparse
import io
import os
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bench"


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def _stage_label(stage) -> str:
    """A fused stage's readable name: its first and last step (Beam names it by all of them)."""
    names = [
        t.unique_name for t in stage.transforms if t.unique_name and not t.unique_name.startswith("ref_")
    ]
    return names[0] if len(names) < 2 else f"{names[0]} … {names[-1]}"


def stage_memory(inputs: str, tokenizer: str | None, out: str) -> None:
    """The pipeline on ``inputs`` (FnApiRunner, one worker, in this process), printing for every
    bundle the runner executes: its stage, seconds, RSS after it and the peak RSS so far. The
    FnApiRunner runs stage after stage and keeps each PCollection that crosses stages in memory
    until its consumer has run, so the table shows what holds memory when."""
    import resource

    from apache_beam.runners.portability.fn_api_runner import fn_runner
    from tweetmill.pipeline.build import run
    from tweetmill.pipeline.options import RunConfig
    from tweetmill.transforms.tokenize import TokenizerSpec

    original = fn_runner.FnApiRunner._execute_bundle
    rows: list[tuple[str, float, float, float]] = []

    def traced(self, context, bundle_context_manager, bundle_input):
        start = time.perf_counter()
        result = original(self, context, bundle_context_manager, bundle_input)
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        rows.append(
            (_stage_label(bundle_context_manager.stage), time.perf_counter() - start, _rss_mb(), peak)
        )
        return result

    fn_runner.FnApiRunner._execute_bundle = traced
    spec = TokenizerSpec(source=tokenizer) if tokenizer else TokenizerSpec()
    start_rss = _rss_mb()
    manifest = run(RunConfig(inputs=(inputs,), output=out, tokenizer=spec), ["--direct_num_workers=1"])
    n = manifest.counts.read
    print(f"{n:,} records read; RSS before the run {start_rss:,.0f} MB")
    print(f"{'s':>7} {'RSS MB':>8} {'peak MB':>8}  stage (first … last step)")
    for label, seconds, rss, peak in rows:
        if seconds > 0.05 or rss > start_rss + 50:
            print(f"{seconds:7.2f} {rss:8,.0f} {peak:8,.0f}  {label[:110]}")
    top = max(rows, key=lambda r: r[3])
    per_record = (top[3] - start_rss) * 2**20 / n
    print(f"peak {top[3]:,.0f} MB = {per_record:,.0f} bytes per record above the start")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N tweets")
    parser.add_argument("--lang-engine", default="tweet")
    parser.add_argument(
        "--stage-memory",
        metavar="INPUTS",
        default=None,
        help="only run the pipeline on INPUTS (a glob) and print RSS after each stage (docs/memory.md)",
    )
    parser.add_argument("--tokenizer", default=None, help="with --stage-memory: a tokenizer.json")
    args = parser.parse_args()
    if args.stage_memory:
        with tempfile.TemporaryDirectory() as tmp:
            stage_memory(args.stage_memory, args.tokenizer, str(Path(tmp) / "out"))
        return

    from tweetmill.pipeline.build import filter_stages, output_spec, run
    from tweetmill.pipeline.options import RunConfig
    from tweetmill.schemas.records import Tweet
    from tweetmill.schemas.shard import shard_schema
    from tweetmill.transforms.clean import CleanConfig, clean_batch
    from tweetmill.transforms.dedup import dedup_batch, normalized_text_key, text_survivor_order
    from tweetmill.transforms.language import DetectLanguage, LanguageConfig
    from tweetmill.transforms.near_dedup import NearDedupConfig, near_duplicates
    from tweetmill.transforms.parse import iter_records
    from tweetmill.transforms.tokenize import TokenizerSpec, load_tokenizer, tokenize_batch
    from tweetmill.transforms.write import serialize_table, tweets_to_table

    files = sorted(DATA.glob("*.txt"))
    with tempfile.TemporaryDirectory() as tmp:
        inputs = files
        if args.limit:
            lines = [ln for f in files for ln in f.read_text().splitlines() if ln.strip()][: args.limit]
            sample = Path(tmp) / "sample.txt"
            sample.write_text("\n".join(lines) + "\n")
            inputs = [sample]

        stages: dict[str, float] = {}
        tweets: list[Tweet] = []
        start = time.perf_counter()
        for path in inputs:
            with open(path, "rb") as f:
                tweets += [r for r in iter_records(str(path), io.BufferedReader(f)) if isinstance(r, Tweet)]
        stages["parse"] = time.perf_counter() - start
        n = len(tweets)
        tweets, stages["clean"] = timed(clean_batch, tweets, CleanConfig())
        language = DetectLanguage(LanguageConfig(lang_engine=args.lang_engine))
        config = RunConfig(
            inputs=tuple(str(p) for p in inputs),
            output=str(Path(tmp) / "out"),
            stages={language.name: language.config},
        )

        def apply_filters(batch):
            for stage in filter_stages(config):
                batch, _ = stage.process_batch(batch)
            return batch

        tweets, stages["filter"] = timed(apply_filters, tweets)
        (tweets, _), stages["dedup"] = timed(
            dedup_batch, tweets, lambda t: normalized_text_key(t.text), text_survivor_order
        )
        (tweets, _), stages["near dedup"] = timed(near_duplicates, tweets, NearDedupConfig())
        language.setup()
        language.process_batch([tweets[0]])  # warm up
        (tweets, _), stages["language"] = timed(language.process_batch, tweets)
        tokenizer = load_tokenizer(TokenizerSpec())
        tweets, stages["tokenize"] = timed(tokenize_batch, tokenizer, tweets)
        schema = shard_schema(
            tokenizer_sha256="x", vocab_size=1, eos_id=0, run_fingerprint="x", shard_index=0, num_shards=1
        )
        tweets.sort(key=lambda t: t.id)
        _, stages["write"] = timed(lambda: serialize_table(tweets_to_table(tweets, schema)))

        print(f"{n:,} tweets read from {len(inputs)} file(s)\n")
        print(f"{'stage':<12}{'µs/tweet':>10}{'tweets/s':>12}{'share':>8}  (µs per tweet read)")
        total = sum(stages.values())
        for name, seconds in stages.items():
            print(f"{name:<12}{1e6 * seconds / n:>10.1f}{n / seconds:>12,.0f}{100 * seconds / total:>7.1f}%")
        print(f"{'all stages':<12}{1e6 * total / n:>10.1f}{n / total:>12,.0f}")

        output_spec(config)  # load the tokenizer outside the timed run
        manifest, seconds = timed(run, config, ["--direct_num_workers=1"])
        rate = manifest.counts.read / seconds
        print(f"\nBeam pipeline (FnApiRunner, 1 worker): {seconds:.1f} s, {rate:,.0f} tweets/s")
        print(f"kept {manifest.counts.kept:,} of {manifest.counts.read:,}")
        print(f"pipeline / sum of stage cores: {seconds / total:.2f}x")


if __name__ == "__main__":
    main()

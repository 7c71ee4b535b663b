"""Throughput of the whole pipeline and of each stage alone, on ../shared/data/bench.

Run by hand (never in CI):  .venv/bin/python bench/bench_pipeline.py [--limit N] [--repeat K]

Each stage's pure core is timed alone, single process, on the same tweets; their sum is the
baseline the Beam pipeline (FnApiRunner, one worker) is compared with in the same run, so the
ratio shows what the runner costs on top of the work itself.
"""

from __future__ import annotations

import argparse
import io
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bench"


def timed(fn, *args):
    start = time.perf_counter()
    result = fn(*args)
    return result, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--limit", type=int, default=None, help="use only the first N tweets")
    parser.add_argument("--lang-engine", default="tweet")
    args = parser.parse_args()

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
        config = RunConfig(inputs=tuple(str(p) for p in inputs), output=str(Path(tmp) / "out"),
                           stages={language.name: language.config})

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

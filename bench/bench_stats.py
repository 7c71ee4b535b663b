"""Throughput and memory of ``tweetmill stats`` (pipeline/stats.py) on synthetic shard sets.

Run by hand (never in CI):  .venv/bin/python bench/bench_stats.py [--tweets 2000000] [--shards 8]

Writes ``--shards`` shards (per schemas/shard.py, with a manifest and the bundled tokenizer.json)
whose rows are drawn from real tweets (../shared/data/bench, tokenized with the bundled BPE; random
words if it is absent), so text length, hashtags and token ids look like the pipeline's output. Then
``compute_stats`` runs in a fresh child process per measurement, on the first half of the shards and
on all of them: tokens/s (wall and CPU), peak RSS and peak anonymous RSS (sampled; mapped shard pages
are file-backed page cache and count in RSS while a shard is open). Flat memory means the two peaks
agree although the second set is twice as large. Target: >= 50M tokens/s.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_BENCH = REPO.parent / "shared" / "data" / "bench"
TARGET = 50e6


def _pool(per_file: int = 10_000) -> list[str]:
    """Real tweets: the first ``per_file`` lines of each file in ../shared/data/bench (TweetEval:
    about one '#' per tweet, several times the hashtag density of the bundled sample, so the
    hashtag scan is measured at its most expensive)."""
    texts: list[str] = []
    for path in sorted(SHARED_BENCH.glob("*.txt")):
        with open(path, encoding="utf-8") as f:
            lines = [line.strip() for line in f if line.strip()]
        texts.extend(lines[:per_file])
    if texts:
        return texts
    import random

    rng = random.Random(0)
    words = ["the", "a", "to", "and", "of", "in", "is", "it", "you", "that", "for", "on", "my", "this"]
    words += ["with", "be", "at", "so", "me", "just", "have", "love", "day", "good", "new", "time", "now"]
    tags = ["#tbt", "#blessed", "#Brexit", "#music", "#MondayMotivation"]
    return [
        " ".join(rng.choice(words) for _ in range(rng.randint(3, 30)))
        + (f" {rng.choice(tags)}" if rng.random() < 0.2 else "")
        for _ in range(3 * per_file)
    ]


def write_shards(out: Path, tweets: int, num_shards: int, seed: int = 0) -> None:
    """A shard directory of ``tweets`` rows in ``num_shards`` shards, and its manifest."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    from tweetmill.schemas.manifest import ShardEntry, TokenizerInfo
    from tweetmill.schemas.shard import SHARD_FIELDS, shard_file_name, shard_schema
    from tweetmill.schemas.shard_dir import TOKENIZER_NAME
    from tweetmill.transforms.tokenize import (
        TokenizerSpec,
        encode_batch,
        load_tokenizer,
        read_tokenizer_bytes,
    )
    from tweetmill.transforms.write import serialize_table

    tok = load_tokenizer(TokenizerSpec())
    texts = _pool()
    encoded = [np.frombuffer(b, dtype="<i4") for b in encode_batch(tok, texts)]
    lengths = np.array([len(e) for e in encoded], dtype=np.int32)
    offsets = np.zeros(len(encoded) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    pool_tokens = pa.ListArray.from_arrays(
        pa.array(offsets), pa.array(np.concatenate(encoded)), type=SHARD_FIELDS[-1].type
    )
    pool_text = pa.array(texts, pa.string())
    rng = np.random.default_rng(seed)
    info = TokenizerInfo(tok.sha256, tok.vocab_size, tok.eos_id, tok.eos_token, tok.source)
    fingerprint = hashlib.sha256(f"bench-stats-{tweets}-{num_shards}-{seed}".encode()).hexdigest()
    langs = pa.array(["en", "de", "es", "und", "fr", "ja"])
    lang_p = np.array([0.55, 0.15, 0.1, 0.1, 0.05, 0.05])
    files = pa.array([f"gs://archive/part-{i:03d}.jsonl.gz" for i in range(40)])
    formats = pa.array(["v1", "v2", "archive", "csv", "text"])
    out.mkdir(parents=True, exist_ok=True)
    (out / TOKENIZER_NAME).write_bytes(read_tokenizer_bytes(tok.source))
    entries = []
    next_id = 10**15
    for index in range(num_shards):
        n = tweets // num_shards + (1 if index < tweets % num_shards else 0)
        pick = pa.array(rng.integers(0, len(texts), n))
        lang_idx = pa.array(rng.choice(len(langs), n, p=lang_p))
        twitter_lang = pc.take(langs, lang_idx)
        twitter_lang = pc.if_else(pa.array(rng.random(n) < 0.3), pa.scalar(None, pa.string()), twitter_lang)
        created = rng.integers(1_230_000_000_000, 1_700_000_000_000, n)
        created_valid = rng.random(n) >= 0.05
        tokens = pc.take(pool_tokens, pick)
        columns = {
            "id": pa.array(next_id + np.arange(n, dtype=np.int64) * 7),
            "id_derived": pa.array(np.zeros(n, dtype=bool)),
            "created_at": pa.array(created, pa.timestamp("ms", tz="UTC"), mask=~created_valid),
            "author_id": pa.array(rng.integers(1, 10**9, n)),
            "lang": pc.take(langs, lang_idx),
            "lang_score": pa.array(rng.random(n, dtype=np.float32)),
            "twitter_lang": twitter_lang,
            "source_format": pc.take(formats, pa.array(rng.integers(0, len(formats), n))),
            "source_file": pc.take(files, pa.array(rng.integers(0, len(files), n))),
            "is_retweet": pa.array(np.zeros(n, dtype=bool)),
            "is_reply": pa.array(rng.random(n) < 0.3),
            "is_quote": pa.array(rng.random(n) < 0.05),
            "text": pc.take(pool_text, pick),
            "num_tokens": pc.list_value_length(tokens).cast(pa.int32()),
            "tokens": tokens,
        }
        next_id += 7 * n
        schema = shard_schema(
            tokenizer_sha256=tok.sha256,
            vocab_size=tok.vocab_size,
            eos_id=tok.eos_id,
            run_fingerprint=fingerprint,
            shard_index=index,
            num_shards=num_shards,
        )
        table = pa.Table.from_arrays([columns[f.name] for f in schema], schema=schema)
        data = serialize_table(table)
        name = shard_file_name(index, num_shards)
        (out / name).write_bytes(data)
        entries.append(
            ShardEntry(
                name, n, int(pc.sum(table["num_tokens"]).as_py()), len(data), hashlib.sha256(data).hexdigest()
            )
        )
    write_manifest(out, entries, info, fingerprint)


def write_manifest(out: Path, entries: list, info, fingerprint: str) -> None:
    from tweetmill.schemas.manifest import MANIFEST_NAME, Counts, Manifest

    kept = sum(e.rows for e in entries)
    manifest = Manifest(
        run_fingerprint=fingerprint,
        shard_format_version=1,
        tokenizer=info,
        counts=Counts(
            read=kept + kept // 4, kept=kept, dropped={"retweet": kept // 5, "too_short": kept // 20}
        ),
        shards=entries,
        created_by="bench_stats",
    )
    (out / MANIFEST_NAME).write_text(manifest.to_json(), encoding="utf-8")


def subset(src: Path, dst: Path, count: int) -> None:
    """A directory holding (symlinks to) the first ``count`` shards of ``src``, with its own manifest."""
    from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest
    from tweetmill.schemas.shard_dir import TOKENIZER_NAME

    manifest = Manifest.from_json((src / MANIFEST_NAME).read_text(encoding="utf-8"))
    dst.mkdir(parents=True, exist_ok=True)
    for entry in manifest.shards[:count]:
        link = dst / entry.file
        if not link.exists():
            link.symlink_to(src / entry.file)
    tokenizer = dst / TOKENIZER_NAME
    if not tokenizer.exists():
        tokenizer.symlink_to(src / TOKENIZER_NAME)
    write_manifest(dst, manifest.shards[:count], manifest.tokenizer, manifest.run_fingerprint)


def _status_kb(key: str) -> int:
    """A figure of /proc/self/status in KiB (VmHWM: peak RSS of this process image; RssAnon)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def child(shard_dir: str, repeats: int, workers: int | None, hashtags: bool) -> None:
    """Runs in a fresh process: ``compute_stats`` ``repeats`` times; prints one JSON line."""
    from tweetmill.pipeline.stats import compute_stats

    peak_anon = [_status_kb("RssAnon")]
    baseline_rss = _status_kb("VmHWM")
    stop = threading.Event()

    def sample() -> None:
        while not stop.is_set():
            peak_anon[0] = max(peak_anon[0], _status_kb("RssAnon"))
            time.sleep(0.005)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    runs = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        stats = compute_stats(shard_dir, workers=workers, hashtags=hashtags)
        runs.append((time.perf_counter() - wall, time.process_time() - cpu))
    stop.set()
    sampler.join()
    result = {
        "tokens": stats["tokens"],
        "rows": stats["rows"],
        "bytes": stats["bytes"],
        "runs": runs,
        "baseline_rss_mb": baseline_rss / 1024,
        "peak_rss_mb": _status_kb("VmHWM") / 1024,
        "peak_anon_mb": peak_anon[0] / 1024,
    }
    print(json.dumps(result))


def measure(shard_dir: Path, repeats: int, workers: int, hashtags: bool = True) -> dict:
    command = [sys.executable, __file__, "--child", str(shard_dir), "--repeats", str(repeats)]
    command += ["--workers", str(workers)] + ([] if hashtags else ["--no-hashtags"])
    proc = subprocess.run(command, capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tweets", type=int, default=2_000_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=3, help="runs per measurement; the best counts")
    parser.add_argument("--workers", type=int, default=0, help="threads (default: 1 and stats' default)")
    parser.add_argument("--dir", help="keep the synthetic shards here (default: a temporary directory)")
    parser.add_argument("--no-hashtags", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--write", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(args.child, args.repeats, args.workers or None, not args.no_hashtags)
        return 0
    if args.write:
        write_shards(Path(args.write), args.tweets, args.shards)
        return 0

    from tweetmill.schemas.manifest import MANIFEST_NAME

    with tempfile.TemporaryDirectory(prefix="bench-stats-") as tmp:
        root = Path(args.dir or tmp)
        full = root / "all"
        if not (full / MANIFEST_NAME).exists():
            started = time.perf_counter()
            # in a child, so that no process measured below inherits the generator's memory
            write = [sys.executable, __file__, "--write", str(full), "--tweets", str(args.tweets)]
            subprocess.run([*write, "--shards", str(args.shards)], check=True)
            seconds = time.perf_counter() - started
            print(f"wrote {args.tweets:,} tweets in {args.shards} shards in {seconds:.1f} s")
        half = root / "half"
        subset(full, half, max(1, args.shards // 2))
        print(
            f"stats throughput (target >= {TARGET / 1e6:.0f}M tokens/s; best of {args.repeats}, warm cache)"
        )
        from tweetmill.pipeline.stats_scan import default_workers

        ok = True
        default = args.workers or default_workers()
        runs = [
            (w, label, path, True)
            for w in sorted({1, default})
            for label, path in (("half", half), ("all", full))
        ]
        runs.append((1, "all", full, False))
        for workers, label, path, hashtags in runs:
            r = measure(path, args.repeats, workers, hashtags)
            wall = min(w for w, _ in r["runs"])
            cpu = min(c for _, c in r["runs"])
            rate, cpu_rate = r["tokens"] / wall, r["tokens"] / cpu
            if (workers, label, hashtags) == (default, "all", True):
                ok = rate >= TARGET
            print(
                f"  {workers} thread(s), {label:>4}{'' if hashtags else ', no hashtags'}: "
                f"{r['rows']:,} tweets, {r['tokens']:,} tokens, {r['bytes'] / 1e6:,.0f} MB | "
                f"{rate / 1e6:5.1f}M tokens/s wall, "
                f"{cpu_rate / 1e6:5.1f}M per CPU second | peak RSS {r['peak_rss_mb']:,.0f} MB "
                f"(after imports {r['baseline_rss_mb']:,.0f} MB), peak anonymous {r['peak_anon_mb']:,.0f} MB"
            )
        print(f"target ({default} thread(s), all): " + ("met" if ok else "MISSED"))
        print(f"(load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs)")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())

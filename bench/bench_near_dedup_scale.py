"""Scale of near-dedup: 1M tweets through RemoveNearDuplicates on the FnApiRunner, and peers.

Run by hand (never in CI), once, when the machine is quiet:

    .venv/bin/python bench/bench_near_dedup_scale.py                 # 1M tweets, all peers
    .venv/bin/python bench/bench_near_dedup_scale.py --n 100000 --peers none   # quick

Input: the bench corpus repeated until ``--n`` tweets, every repetition after the first made of
near-duplicate variants (typos, links, hashtags, case, ``RT @x:``), with random ids. Each run is a
child process; its wall time, CPU time (user + sys, children included) and peak RSS come from
``wait4``. Reported:

* signatures alone, in this process on ``--sig-sample`` tweets: ours (``minhash_signatures``,
  normalising and shingling included) vs datasketch 2.0.0's ``MinHash().update_batch`` per tweet
  (constructor included, as users call it, and with permutations built once), and rensa (Rust) on
  the same shingle hashes (its batch API: the floor for MinHash itself);
* the Beam stage end to end (read + parse + near-dedup), and the same pipeline without the stage;
* text-dedup's MinHash (``python -m text_dedup.minhash``) and datatrove's four MinHash stages on
  the same tweets, with their own tokenisation (word n-grams) and ``--threshold``/128 permutations
  where they take them, one process each (``num_proc``/workers 1).

Peers live in another virtualenv (``--peer-python``, default /tmp/peers/bin/python: ``python3 -m venv
/tmp/peers && /tmp/peers/bin/pip install rensa text-dedup datatrove spacy tokenizers orjson``) so
that their dependencies (pyspark, datasets, a newer pyarrow) never enter the project's.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULT_PREFIX = "RESULT "


# --- children (some run in the peers' virtualenv: import only what each needs) -----------------


def child_beam(args: argparse.Namespace) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from tweetmill.schemas.records import Tweet
    from tweetmill.transforms.common import TAG_DROPPED
    from tweetmill.transforms.near_dedup import NearDedupConfig, RemoveNearDuplicates

    out_dir = Path(args.workdir) / f"beam_{args.child}"
    shutil.rmtree(out_dir, ignore_errors=True)
    out_dir.mkdir(parents=True)

    def parse(line: str) -> Tweet:
        tid, text = line.split("\t", 1)
        return Tweet(id=int(tid), text=text, source_format="text", source_file="bench", position=0)

    def write_json(value, name: str) -> None:
        (out_dir / name).write_text(json.dumps(value))

    options = ["--direct_num_workers", str(args.workers)]
    if args.workers > 1:
        options += ["--direct_running_mode", "multi_processing"]
    config = NearDedupConfig(threshold=args.threshold)
    start = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(options)) as p:
        tweets = (
            p
            | "Read" >> beam.io.ReadFromText(str(Path(args.workdir) / "in.tsv"))
            | "Parse" >> beam.Map(parse)
        )
        if args.child == "beam-baseline":
            kept = tweets
        else:
            out = tweets | "NearDedup" >> RemoveNearDuplicates(
                config, partitions=args.partitions, batch_size=args.batch_size
            )
            kept = out.tweets
            _ = (
                out[TAG_DROPPED]
                | "DropCounts" >> beam.Map(lambda kv: kv[1])
                | "SumDrops" >> beam.CombineGlobally(sum)
                | "WriteDrops" >> beam.Map(write_json, "dropped.json")
            )
            _ = out["stats"] | "WriteStats" >> beam.Map(lambda kv: write_json(kv[1], "stats.json"))
            _ = (
                out["samples"]
                | "AllSamples" >> beam.combiners.ToList()
                | "WriteSamples" >> beam.Map(write_json, "samples.json")
            )
        _ = (
            kept
            | "Count" >> beam.combiners.Count.Globally()
            | "WriteKept" >> beam.Map(write_json, "kept.json")
        )
    wall = time.perf_counter() - start
    result = {"wall_s": wall, "kept": json.loads((out_dir / "kept.json").read_text())}
    if args.child == "beam":
        result["removed"] = json.loads((out_dir / "dropped.json").read_text())
        result["stats"] = json.loads((out_dir / "stats.json").read_text())
    return result


def child_rensa(args: argparse.Namespace) -> dict:
    """rensa's MinHash on our shingle hashes (its batch API), and per tweet on shingle strings."""
    import numpy as np
    import rensa

    data = np.load(Path(args.workdir) / "shingles.npz")
    hashes, offsets = data["hashes"].astype(np.uint64), data["offsets"].astype(np.uint64)
    n = len(offsets) - 1
    texts = (Path(args.workdir) / "sample.txt").read_text().splitlines()

    def per_tweet() -> None:
        for text in texts:
            norm = " ".join(text.casefold().split())
            m = rensa.RMinHash(128, 1)
            m.update([norm[i : i + 4] for i in range(max(len(norm) - 3, 1))])
            m.digest()

    batch_us = per_tweet_us = math.inf
    for _ in range(3):  # fastest of 3, as for ours
        start = time.perf_counter()
        rensa.RMinHash.digest_matrix_from_flat_token_hashes(hashes, offsets, 128, 1)
        batch_us = min(batch_us, (time.perf_counter() - start) / n * 1e6)
        start = time.perf_counter()
        per_tweet()
        per_tweet_us = min(per_tweet_us, (time.perf_counter() - start) / len(texts) * 1e6)
    return {"batch_us_per_tweet": batch_us, "per_tweet_us": per_tweet_us, "n": n}


def child_datatrove(args: argparse.Namespace) -> dict:
    from datatrove.executor import LocalPipelineExecutor
    from datatrove.pipeline.dedup.minhash import (
        MinhashConfig,
        MinhashDedupBuckets,
        MinhashDedupCluster,
        MinhashDedupFilter,
        MinhashDedupSignature,
    )
    from datatrove.pipeline.readers import JsonlReader
    from datatrove.pipeline.writers import JsonlWriter
    from datatrove.utils.hashes import xxhash as dt_xxhash

    # datatrove 0.10 hands str to xxhash, which 4.x refuses ("Strings must be encoded"): encode
    # first, its default hash function otherwise unchanged.
    xxh32, xxh64 = dt_xxhash.xxhash.xxh32_intdigest, dt_xxhash.xxhash.xxh64_intdigest
    dt_xxhash.xxhash32 = lambda data: xxh32(data.encode() if isinstance(data, str) else data)
    dt_xxhash.xxhash64 = lambda data: xxh64(data.encode() if isinstance(data, str) else data)

    work = Path(args.workdir) / "datatrove"
    shutil.rmtree(work, ignore_errors=True)
    config = MinhashConfig()  # 5-word shingles, 14 buckets x 8 hashes (112 permutations)
    reader = JsonlReader(str(Path(args.workdir) / "peers"), text_key="text", id_key="id")
    stages = {
        "signatures": ([reader, MinhashDedupSignature(output_folder=str(work / "sigs"), config=config)], 1),
        "buckets": (
            [
                MinhashDedupBuckets(
                    input_folder=str(work / "sigs"), output_folder=str(work / "buckets"), config=config
                )
            ],
            config.num_buckets,
        ),
        "cluster": (
            [
                MinhashDedupCluster(
                    input_folder=str(work / "buckets"), output_folder=str(work / "remove_ids"), config=config
                )
            ],
            1,
        ),
        "filter": (
            [
                JsonlReader(str(Path(args.workdir) / "peers"), text_key="text", id_key="id"),
                MinhashDedupFilter(input_folder=str(work / "remove_ids")),
                JsonlWriter(str(work / "out"), compression=None),
            ],
            1,
        ),
    }
    times = {}
    for name, (pipeline, tasks) in stages.items():
        start = time.perf_counter()
        LocalPipelineExecutor(
            pipeline=pipeline, tasks=tasks, workers=1, logging_dir=str(work / f"logs_{name}")
        ).run()
        times[name] = time.perf_counter() - start
    kept = sum(1 for f in (work / "out").glob("*.jsonl") for _ in f.open())
    return {"stage_s": times, "kept": kept}


CHILDREN = {
    "beam": child_beam,
    "beam-baseline": child_beam,
    "rensa": child_rensa,
    "datatrove": child_datatrove,
}


# --- parent -------------------------------------------------------------------------------------


def make_inputs(n: int, workdir: Path, peer_n: int, sig_sample: int, seed: int) -> list[str]:
    """in.tsv (id, text) for Beam, peers/in.jsonl for the peers, sample.txt for signatures."""
    sys.path.insert(0, str(HERE))
    from bench_near_dedup_data import load_corpus, make_variant, unique_ids

    rng = random.Random(seed)
    corpus = [" ".join(t.split()) for t in load_corpus()]
    texts: list[str] = []
    for rep in range(math.ceil(n / len(corpus))):
        for text in corpus[: n - len(texts)]:
            texts.append(text if rep == 0 else " ".join(make_variant(text, rng)[1].split()))
    ids = unique_ids(n, rng)
    with open(workdir / "in.tsv", "w") as f:
        f.writelines(f"{i}\t{t}\n" for i, t in zip(ids, texts, strict=True))
    (workdir / "peers").mkdir(exist_ok=True)
    with open(workdir / "peers" / "in.jsonl", "w") as f:
        f.writelines(
            json.dumps({"id": str(i), "text": t}) + "\n" for i, t in zip(ids[:peer_n], texts, strict=False)
        )
    sample = random.Random(seed + 1).sample(texts, min(sig_sample, n))
    (workdir / "sample.txt").write_text("\n".join(sample) + "\n")
    return sample


def run_child(cmd: list[str], env: dict | None = None, timeout: float | None = None) -> dict:
    """Run a command; its wall time, CPU time and peak RSS (children included) from wait4."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _, status, usage = os.wait4(proc.pid, 0)
        except KeyboardInterrupt:
            proc.kill()
            raise
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        log.seek(0)
        output = log.read()
    result: dict = {}
    for line in output.splitlines():
        if line.startswith(RESULT_PREFIX):
            result = json.loads(line[len(RESULT_PREFIX) :])
    result.update(
        rc=proc.returncode,
        process_wall_s=wall,
        cpu_s=usage.ru_utime + usage.ru_stime,
        peak_rss_mb=usage.ru_maxrss / 1024,
    )
    if proc.returncode != 0:
        result["error"] = output[-3000:]
    result["log_tail"] = output[-1500:]
    return result


def signature_benchmarks(sample: list[str], workdir: Path) -> dict:
    import numpy as np
    from datasketch import MinHash
    from tweetmill.transforms.minhash import minhash_signatures, permutations, shingle_strings, shingles
    from tweetmill.transforms.near_dedup import NearDedupConfig

    config = NearDedupConfig()
    minhash_signatures(sample[:100], config)  # warm caches (permutations)

    sh = shingles(sample, config.shingle_size)
    np.savez(workdir / "shingles.npz", hashes=sh.hashes, offsets=sh.offsets)
    sub = sample[: min(2000, len(sample))]
    shingled = [[s.encode("utf-8") for s in shingle_strings(t, config.shingle_size)] for t in sub]
    perms = np.array(permutations(config.num_perm, config.seed))

    def ours_batched(texts: list[str]) -> None:  # in the pipeline's batches
        for i in range(0, len(texts), 2048):
            minhash_signatures(texts[i : i + 2048], config)

    def datasketch_fresh(items) -> None:
        for tokens in items:
            MinHash(num_perm=config.num_perm, seed=config.seed).update_batch(tokens)

    def datasketch_prebuilt(items) -> None:
        for tokens in items:
            m = MinHash(num_perm=config.num_perm, seed=config.seed, permutations=perms, scheme="affine32")
            m.update_batch(tokens)

    # Interleaved rounds, fastest of each: the machine is shared, and noise only ever adds time.
    runs = {"ours": (ours_batched, sample), "fresh": (datasketch_fresh, shingled)}
    runs["prebuilt"] = (datasketch_prebuilt, shingled)
    best = dict.fromkeys(runs, math.inf)
    for _ in range(3):
        for name, (fn, items) in runs.items():
            start = time.perf_counter()
            fn(items)
            best[name] = min(best[name], (time.perf_counter() - start) / len(items) * 1e6)
    ours, ds_fresh, ds_prebuilt = best["ours"], best["fresh"], best["prebuilt"]
    return {"ours_us": ours, "datasketch_us": ds_fresh, "datasketch_prebuilt_us": ds_prebuilt}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--threshold", type=float, default=None, help="default: NearDedupConfig's")
    parser.add_argument("--workers", type=int, default=1, help="FnApiRunner workers (>1: multi_processing)")
    parser.add_argument("--partitions", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--peers", default="rensa,text-dedup,datatrove", help="comma list, or 'none'")
    parser.add_argument("--peer-python", default="/tmp/peers/bin/python")
    parser.add_argument(
        "--peer-n", type=int, default=None, help="tweets given to text-dedup/datatrove (default: --n)"
    )
    parser.add_argument("--sig-sample", type=int, default=20000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workdir", default=None, help="default: a temporary folder, removed at the end")
    parser.add_argument("--child", choices=sorted(CHILDREN), help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.child:
        result = CHILDREN[args.child](args)
        print(RESULT_PREFIX + json.dumps(result), flush=True)
        return

    from tweetmill.transforms.near_dedup import NearDedupConfig

    if args.threshold is None:
        args.threshold = NearDedupConfig().threshold
    config = NearDedupConfig(threshold=args.threshold)
    peers = [] if args.peers == "none" else args.peers.split(",")
    peer_n = min(args.peer_n or args.n, args.n)
    workdir = Path(args.workdir or tempfile.mkdtemp(prefix="near_dedup_scale_"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        start = time.perf_counter()
        sample = make_inputs(args.n, workdir, peer_n if peers else 0, args.sig_sample, args.seed)
        print(f"{args.n:,} tweets generated in {time.perf_counter() - start:.0f} s ({workdir})")
        print(
            f"config: threshold {config.threshold}, shingle_size {config.shingle_size}, num_perm "
            f"{config.num_perm}, bands x rows {config.bands} x {config.rows}; workers {args.workers}, "
            f"partitions {args.partitions}, batch {args.batch_size}; {os.cpu_count()} CPUs\n"
        )

        sig = signature_benchmarks(sample, workdir)
        print(
            f"signatures ({len(sample):,} tweets, µs/tweet): ours {sig['ours_us']:.1f} | datasketch "
            f"update_batch {sig['datasketch_us']:.0f} ({sig['datasketch_us'] / sig['ours_us']:.0f}x ours), "
            f"with permutations built once {sig['datasketch_prebuilt_us']:.0f} "
            f"({sig['datasketch_prebuilt_us'] / sig['ours_us']:.0f}x)"
        )
        script = [
            str(Path(__file__).resolve()),
            "--workdir",
            str(workdir),
            "--threshold",
            str(args.threshold),
            "--workers",
            str(args.workers),
            "--partitions",
            str(args.partitions),
            "--batch-size",
            str(args.batch_size),
        ]
        if "rensa" in peers:
            r = run_child([args.peer_python, *script, "--child", "rensa"])
            if r["rc"] == 0:
                print(
                    f"  rensa (Rust): batch API on our shingle hashes {r['batch_us_per_tweet']:.1f}, "
                    f"per tweet "
                    f"from Python {r['per_tweet_us']:.1f} (ours / rensa batch: "
                    f"{sig['ours_us'] / r['batch_us_per_tweet']:.1f}x)"
                )
            else:
                print(f"  rensa failed: {r['error'][-500:]}")
        print()

        rows = []
        base = run_child([sys.executable, *script, "--child", "beam-baseline"])
        rows.append(("Beam read + parse only", args.n, base))
        ours = run_child([sys.executable, *script, "--child", "beam"])
        rows.append(("Beam read + parse + RemoveNearDuplicates", args.n, ours))
        if "text-dedup" in peers:
            out = workdir / "text_dedup_out"
            cmd = [
                args.peer_python,
                "-m",
                "text_dedup.minhash",
                "--path",
                "json",
                "--data_files",
                str(workdir / "peers" / "in.jsonl"),
                "--split",
                "train",
                "--column",
                "text",
                "--output",
                str(out),
                "--cache_dir",
                str(workdir / "hf_cache"),
                "--num_proc",
                "1",
                "--num_perm",
                "128",
                "--threshold",
                str(args.threshold),
                "--min_length",
                "0",
            ]
            # A wide COLUMNS keeps its (rich) log on one line per record: "After : <kept>".
            env = {**os.environ, "HF_DATASETS_OFFLINE": "1", "HF_HUB_OFFLINE": "1", "COLUMNS": "400"}
            r = run_child(cmd, env=env)
            kept = re.findall(r"After\s*:\s*(\d+)\b", r.get("log_tail", ""))
            if kept:
                r["kept"] = int(kept[-1])
            rows.append(("text-dedup MinHash (word 5-grams, sha1)", peer_n, r))
        if "datatrove" in peers:
            r = run_child([args.peer_python, *script, "--child", "datatrove"])
            rows.append(("datatrove MinHash, 4 stages (word 5-grams)", peer_n, r))

        print(
            f"{'run':<44}{'tweets':>10}{'wall s':>9}{'CPU s':>9}{'peak MB':>9}{'tweets/s':>10}"
            f"{'/CPU-s':>9}{'kept':>10}"
        )
        for name, n, r in rows:
            if r["rc"] != 0:
                print(f"{name:<44}{n:>10,}  FAILED: {r['error'][-800:]}")
                continue
            wall = r["process_wall_s"]
            print(
                f"{name:<44}{n:>10,}{wall:>9.1f}{r['cpu_s']:>9.1f}{r['peak_rss_mb']:>9.0f}{n / wall:>10,.0f}"
                f"{n / r['cpu_s']:>9,.0f}{r.get('kept', 0):>10,}"
            )
            if "stage_s" in r:
                print(
                    "    "
                    + ", ".join(f"{k} {v:.1f} s" for k, v in r["stage_s"].items())
                    + f" (signatures: {r['stage_s']['signatures'] / n * 1e6:.0f} µs/tweet)"
                )
        if ours["rc"] == 0:
            print(f"\nnear_dedup stats: {json.dumps(ours['stats'])}")
            peer_rates = [n / r["cpu_s"] for name, n, r in rows[2:] if r["rc"] == 0]
            if peer_rates:
                rate = args.n / ours["cpu_s"]
                print(
                    f"ours {rate:,.0f} tweets/CPU-s vs fastest peer {max(peer_rates):,.0f}: "
                    f"{rate / max(peer_rates):.1f}x (wall: {args.n / ours['process_wall_s']:,.0f} tweets/s)"
                )
    finally:
        if not args.workdir:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()

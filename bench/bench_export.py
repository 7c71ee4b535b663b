"""Throughput and memory of ``tweetmill export --to megatron|nanogpt`` (pipeline/export.py).

Run by hand (never in CI):  .venv/bin/python bench/bench_export.py [--rows 1700000] [--dir DIR]

Writes synthetic shards (``--rows`` tweets of ~30 random tokens, vocabulary 50257: ~50M tokens by
default) in a child process, copies their bytes with ``cp`` (the disk-bound baseline, same run, same
page cache) and exports each format in a child process of its own, so each figure is the export's
alone: wall and CPU seconds, tokens per CPU-second, and peak RSS (flat in the corpus size: the
export holds one record batch at a time). Target: >= 100M tokens per CPU-second.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_reader import synthetic_shards  # this folder is on sys.path when run as a script

TARGET = 100e6


def export_child(shards: Path, fmt: str, out: Path) -> None:
    from tweetmill.pipeline.export import export

    t0, c0 = time.perf_counter(), time.process_time()
    summary = export(shards, out, fmt, require_tokenizer=False)
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    tokens = sum(s["tokens"] for s in summary["splits"].values())
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"wall": wall, "cpu": cpu, "tokens": tokens, "peak_rss_mb": peak_mb}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_700_000)
    parser.add_argument("--shards", type=int, default=8)
    parser.add_argument("--dir", type=Path, help="reuse (or create) shards here instead of a temp dir")
    parser.add_argument("--export-only", nargs=3, metavar=("SHARDS", "FORMAT", "OUT"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.export_only:
        shards, fmt, out = args.export_only
        export_child(Path(shards), fmt, Path(out))
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} (other processes slow this down)")
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        shards = args.dir or Path(tmp) / "shards"
        synthetic_shards(shards, args.rows, args.shards)
        manifest = json.loads((shards / "manifest.json").read_text())
        files = [str(shards / s["file"]) for s in manifest["shards"]]
        shard_bytes = sum(os.path.getsize(f) for f in files)

        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        t0 = time.perf_counter()
        (Path(tmp) / "cp").mkdir()
        subprocess.run(["cp", *files, str(Path(tmp) / "cp")], check=True)
        cp_wall = time.perf_counter() - t0
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cp_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        print(
            f"cp of the shard bytes ({shard_bytes / 1e6:.0f} MB): {cp_wall:.2f} s wall, {cp_cpu:.2f} s CPU, "
            f"{shard_bytes / cp_wall / 1e6:.0f} MB/s"
        )
        shutil.rmtree(Path(tmp) / "cp")

        for fmt in ("megatron", "nanogpt"):
            out = Path(tmp) / f"out-{fmt}"
            cmd = [sys.executable, __file__, "--export-only", str(shards), fmt, str(out)]
            r = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)
            written = sum(p.stat().st_size for p in out.iterdir())
            per_cpu = r["tokens"] / r["cpu"]
            print(
                f"{fmt:>8}: {r['tokens'] / 1e6:.1f}M tokens in {r['wall']:.2f} s wall, "
                f"{r['cpu']:.2f} s CPU = "
                f"{r['tokens'] / r['wall'] / 1e6:.0f}M tokens/s wall, {per_cpu / 1e6:.0f}M tokens/CPU-s "
                f"({'meets' if per_cpu >= TARGET else 'below'} the {TARGET / 1e6:.0f}M target); "
                f"read {shard_bytes / r['wall'] / 1e6:.0f} MB/s of shards "
                f"({cp_wall / r['wall']:.2f}x cp's speed), "
                f"wrote {written / 1e6:.0f} MB; peak RSS {r['peak_rss_mb']:.0f} MB"
            )
            shutil.rmtree(out)


if __name__ == "__main__":
    main()

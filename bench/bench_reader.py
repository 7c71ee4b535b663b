"""Throughput and memory of the trainer's shard reader and block packer (gpu_train/data.py).

Run by hand (never in CI):  .venv/bin/python bench/bench_reader.py [--rows 1000000] [--threads 2]

Writes synthetic shards (``--rows`` tweets of ~30 random tokens, per schemas/) in a child process,
so this process's peak RSS is the reader's alone; then opens them (memory maps) and packs whole
epochs of ``--seq-len`` blocks in global batches of ``--batch-tokens``, as the train loop asks for
them: per-epoch shuffles included. The target is 100x what a GPU consumes: GPT-2 124M on an H200
trains at ~1.5M tokens/s (an upper bound: 989 TFLOP/s / 6N is 1.33M), so >= 150M tokens/s.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TARGET = 150e6


def write(out: Path, rows: int, shards: int) -> None:
    sys.path.insert(0, str(REPO / "tests"))
    from train_fixtures import write_synthetic_shards

    write_synthetic_shards(out, rows, num_shards=shards, mean_tokens=30.0)


def synthetic_shards(out: Path, rows: int, shards: int) -> None:
    """Synthetic shards in ``out`` unless a run is there already, written by a child process so that
    its memory does not count in the peak RSS the benchmarks print."""
    if (out / "manifest.json").exists():
        return
    t0 = time.perf_counter()
    cmd = [sys.executable, __file__, "--write-only", str(out), "--rows", str(rows), "--shards", str(shards)]
    subprocess.run(cmd, check=True)
    print(f"wrote {rows:,} synthetic tweets in {shards} shards in {time.perf_counter() - t0:.1f} s")


def memory() -> str:
    """Peak RSS, and the current split between anonymous memory and mapped shard pages."""
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
    status = {}
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            key, _, value = line.partition(":")
            status[key] = value.strip()
    except OSError:
        pass
    now = (
        f" (now: anon {status.get('RssAnon', '?')}, file-backed {status.get('RssFile', '?')} = "
        "shared libraries + mapped shard pages, reclaimable page cache)"
    )
    return f"peak RSS {peak_mb:.0f} MB" + (now if status else "")


def pack_epochs(packer, global_blocks: int, epochs: int, threads: int) -> tuple[float, float, float, int]:
    """(wall seconds, CPU seconds, best single-batch tokens/s, tokens) packing ``epochs`` epochs.

    CPU seconds (this process) make the single-thread figure robust on a shared machine."""
    per_epoch = packer.blocks_per_epoch // global_blocks
    batches = [
        (e * packer.blocks_per_epoch + i * global_blocks) for e in range(epochs) for i in range(per_epoch)
    ]
    best = 0.0
    start, cpu = time.perf_counter(), time.process_time()
    if threads == 1:
        for first in batches:
            t0 = time.perf_counter()
            packer.blocks(first, global_blocks)
            best = max(best, global_blocks * packer.seq_len / (time.perf_counter() - t0))
    else:
        with ThreadPoolExecutor(threads) as pool:
            for _ in pool.map(lambda first: packer.blocks(first, global_blocks), batches):
                pass
    seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
    return seconds, cpu, best, len(batches) * global_blocks * packer.seq_len


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=4)
    parser.add_argument("--seq-len", type=int, default=1024)
    parser.add_argument("--batch-tokens", type=int, default=524_288, help="tokens per packing call (a step)")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1))
    parser.add_argument("--dir", type=Path, help="reuse (or create) shards here instead of a temp dir")
    parser.add_argument("--write-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.write_only:
        write(args.write_only, args.rows, args.shards)
        return

    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"{os.cpu_count()} CPUs, load average {load:.1f} (other processes slow this down)")
    with tempfile.TemporaryDirectory(prefix="bench-reader-") as tmp:
        out = args.dir or Path(tmp) / "shards"
        synthetic_shards(out, args.rows, args.shards)

        from tweetmill.gpu_train.data import BlockPacker, open_shards, split_documents

        t0 = time.perf_counter()
        data = open_shards(out)
        opened = time.perf_counter() - t0
        size = sum(p.stat().st_size for p in data.files) / 1e6
        table_mb = (
            sum(a.nbytes for a in (data.table.doc_source, data.table.doc_start, data.table.doc_len)) / 1e6
        )
        print(
            f"open_shards: {opened * 1e3:.0f} ms for {data.num_docs:,} tweets, "
            f"{data.num_tokens / 1e6:.1f}M tokens, {size:.0f} MB of shards; "
            f"document table {table_mb:.0f} MB; {memory()}"
        )
        t0 = time.perf_counter()
        data.verify()
        print(f"verify (sha256 + EOS + token range): {time.perf_counter() - t0:.2f} s")

        train_docs, _ = split_documents(data, 0.01)
        global_blocks = args.batch_tokens // args.seq_len
        results = {}
        for threads in sorted({1, args.threads}):
            packer = BlockPacker(data.table, train_docs, args.seq_len, seed=0)
            seconds, cpu, best, tokens = pack_epochs(packer, global_blocks, args.epochs, threads)
            results[threads] = tokens / seconds
            extra = (
                f"; per CPU-second {tokens / cpu / 1e6:.0f}M; best single batch {best / 1e6:.0f}M"
                if threads == 1
                else ""
            )
            print(
                f"pack, {threads} thread(s): {args.epochs} epochs, {tokens / 1e6:.0f}M tokens "
                f"in {seconds:.2f} s = {tokens / seconds / 1e6:.0f}M tokens/s (shuffles included){extra}"
            )
            print(f"  after packing: {memory()}")
            del packer
        try:
            import torch
            from tweetmill.gpu_train.loader import StepLoader
        except ImportError:
            pass
        else:
            torch.set_num_threads(1)
            packer = BlockPacker(data.table, train_docs, args.seq_len, seed=0)
            loader = StepLoader(
                packer,
                global_blocks=global_blocks,
                micro_blocks=global_blocks,
                rank=0,
                world=1,
                device=torch.device("cpu"),
                vocab_size=data.vocab_size,
                workers=args.threads,
            )
            steps = args.epochs * (packer.blocks_per_epoch // global_blocks)
            t0 = time.perf_counter()
            for _ in range(steps):
                loader.next()
                loader.advance()
            seconds = time.perf_counter() - t0
            loader.close()
            tokens = steps * global_blocks * args.seq_len
            print(
                f"StepLoader ({args.threads} worker(s), vocab check, torch tensors): "
                f"{tokens / seconds / 1e6:.0f}M tokens/s"
            )
        print(memory())
        best = max(results.values())  # wall clock, whole epochs
        verdict = "meets" if best >= TARGET else "MISSES"
        print(f"best {best / 1e6:.0f}M tokens/s {verdict} the {TARGET / 1e6:.0f}M tokens/s target")


if __name__ == "__main__":
    main()

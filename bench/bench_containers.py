"""What containers cost, and whether the members of one big tar are parsed by every worker.

Run by hand (never in CI):  .venv/bin/python bench/bench_containers.py [--members 120] [--per-member 1000]

A stream-grab-like corpus is built in a temp dir: ``YYYY/MM/DD/HH/MM.json.bz2`` minute files of v1
tweets (the real templates of ``../shared/data/v1`` with the real texts of ``../shared/data/bench``),
once as plain files in a folder and once packed in one ``.tar``. Printed, all measured in this run:

1. CPU-seconds per tweet of the read stage's core (``read_path``) on the tar against the plain
   folder, single process, best of three alternated runs: the container's cost (target <= 5 %).
2. The same through Beam (FnApiRunner, one worker), CPU-seconds of the whole process tree.
3. With 2 local worker processes, the parse CPU each process spent on the members of the one tar.
"""

from __future__ import annotations

import argparse
import bz2
import io
import json
import os
import resource
import tarfile
import tempfile
import time
from collections import Counter
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def build_corpus(root: Path, members: int, per_member: int) -> tuple[Path, Path, int]:
    templates = [json.loads(line) for line in (SHARED / "v1/python-twitter/streaming__lines.json").open()
                 if line.strip() and '"text"' in line]
    texts = [t for f in sorted((SHARED / "bench").glob("*.txt"))
             for t in f.read_text().splitlines() if t.strip()]
    folder = root / "plain"
    grab = root / "grab.tar"
    n = 0
    with tarfile.open(grab, "w") as tf:
        for m in range(members):
            lines = []
            for i in range(per_member):
                tweet = dict(templates[(m + i) % len(templates)])
                tweet.pop("extended_tweet", None)
                tweet["id"] = tweet["id_str"] = 10**18 + n
                tweet["id_str"] = str(tweet["id"])
                tweet["text"] = texts[n % len(texts)]
                tweet["truncated"] = False
                lines.append(json.dumps(tweet))
                n += 1
            data = bz2.compress(("\n".join(lines) + "\n").encode(), compresslevel=9)
            name = f"2022/01/01/{m // 60:02d}/{m % 60:02d}.json.bz2"
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes(data)
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return folder, grab, n


def core_cpu(inputs: list[str]) -> tuple[float, int]:
    from tweetmill.schemas.records import Tweet
    from tweetmill.transforms.read import read_path

    start = time.process_time()
    n = 0
    for path in inputs:
        for parsed in read_path(path):
            n += sum(type(r) is Tweet for r in parsed.records)
    return time.process_time() - start, n


def tree_cpu() -> float:
    own = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def beam_read(patterns: list[str], extra: list[str], out: Path) -> int:
    """ReadArchives' own steps, with the parse step timed per worker process."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from tweetmill.schemas.records import Tweet
    from tweetmill.transforms.read import _ListUnitsFn, _MatchInputs, parse_unit

    class TimedParse(beam.DoFn):
        def process(self, unit):
            start = time.process_time()
            n = sum(sum(type(r) is Tweet for r in f.records) for f in parse_unit(unit))
            yield {"pid": os.getpid(), "cpu": time.process_time() - start, "tweets": n, "units": 1}

    def write(rows):
        out.write_text(json.dumps(list(rows)))

    with beam.Pipeline(runner="FnApiRunner", options=PipelineOptions(extra)) as p:
        _ = (
            p
            | _MatchInputs(patterns)
            | "ReshuffleFiles" >> beam.Reshuffle()
            | beam.ParDo(_ListUnitsFn())
            | "ReshuffleUnits" >> beam.Reshuffle()
            | beam.ParDo(TimedParse())
            | beam.combiners.ToList()
            | beam.Map(write)
        )
    return sum(r["tweets"] for r in json.loads(out.read_text()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--members", type=int, default=120)
    parser.add_argument("--per-member", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        folder, grab, n = build_corpus(root, args.members, args.per_member)
        plain_files = sorted(str(p) for p in folder.rglob("*.json.bz2"))
        print(f"corpus: {n:,} tweets in {args.members} minute files; tar {grab.stat().st_size / 1e6:.1f} MB")

        best = {"plain": float("inf"), "tar": float("inf")}
        for _ in range(3):
            for label, inputs in (("plain", plain_files), ("tar", [str(grab)])):
                cpu, got = core_cpu(inputs)
                assert got == n, (label, got, n)
                best[label] = min(best[label], cpu)
        ratio = best["tar"] / best["plain"]
        print(f"1. read core, 1 process: plain {best['plain']:.2f} CPU-s, tar {best['tar']:.2f} CPU-s "
              f"-> tar/plain {ratio:.3f} ({(ratio - 1) * 100:+.1f} % per tweet)")

        for label, patterns in (("plain folder", [str(folder)]), ("tar", [str(grab)])):
            before = tree_cpu()
            got = beam_read(patterns, [], root / "rows.json")
            assert got == n
            print(f"2. Beam, 1 worker, {label}: {tree_cpu() - before:.2f} CPU-s of the process tree")

        before, wall = tree_cpu(), time.perf_counter()
        got = beam_read([str(grab)], ["--direct_num_workers=2", "--direct_running_mode=multi_processing"],
                        root / "rows.json")
        rows = json.loads((root / "rows.json").read_text())
        per_pid: Counter = Counter()
        units: Counter = Counter()
        for r in rows:
            per_pid[r["pid"]] += r["cpu"]
            units[r["pid"]] += r["units"]
        print(f"3. Beam, 2 worker processes, one tar: {tree_cpu() - before:.2f} CPU-s, "
              f"{time.perf_counter() - wall:.1f} s wall, {got:,} tweets")
        for pid, cpu in sorted(per_pid.items()):
            print(f"   process {pid}: {units[pid]} members, {cpu:.2f} parse CPU-s")


if __name__ == "__main__":
    main()

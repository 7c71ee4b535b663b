"""``--documents threads|conversations`` at scale: a deep chain and a wide reply tree.

Run by hand (never in CI):

    .venv/bin/python bench/bench_documents.py                  # 10,000-deep chain, 100,000-reply tree
    .venv/bin/python bench/bench_documents.py --workers 2      # the same on 2 worker processes
    .venv/bin/python bench/bench_documents.py --deep 2000 --wide 20000 --modes tweets,conversations

Two synthetic corpora, written as v1.1 JSON lines (texts: real TweetEval tweets from
``../shared/data/bench`` combined two by two, so every text is distinct and passes the filters):

* ``deep``: one author's self-thread of ``--deep`` tweets, each replying to the one before;
* ``wide``: one tweet and ``--wide`` replies to it, each by another author (a viral tweet).

Each corpus runs through ``tweetmill run`` (its defaults; ``--no-near-dedup`` leaves LSH out of
every run) once per ``--modes`` entry, in a child process. Reported per run: wall time,
CPU-seconds of the child's whole process tree (user + sys from ``wait4``, worker processes included)
and that per input tweet, the ratio to ``--documents tweets`` on the same corpus, the peak RSS of
the largest process (a worker, or the one process with one worker) and of the whole tree (sampled
from ``/proc`` every 50 ms), rows, tweets and tokens written, and the manifest's ``documents``
figures. Each run is also checked: balanced accounting, every tweet in the shards.

Then ``duplication``: the characters of the documents of a *comb* (a chain of ``--comb`` tweets
with one reply hanging off each) under tweetmill's rule (first-child chains, a branch gets its
parent as context) and under root-to-leaf paths, computed with ``documents_core`` in one process:
the measurement behind the rule (docs/documents.md).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SHARED = ROOT.parent / "shared" / "data"
TWEETMILL = ROOT / ".venv" / "bin" / "tweetmill"
AUTHOR = 424242


def texts(n: int, seed: int) -> list[str]:
    """``n`` distinct tweet-like texts: real tweets combined two by two (or made-up words)."""
    pool: list[str] = []
    for name in ("tweeteval_emoji__train_text.txt", "tweeteval_sentiment__test_text.txt"):
        path = SHARED / "bench" / name
        if path.exists():
            pool += [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if len(line) > 30]
    rng = random.Random(seed)
    if not pool:
        words = [
            "".join(rng.choice("aeioubcdfghklmnprst") for _ in range(rng.randint(3, 8))) for _ in range(5000)
        ]
        pool = [" ".join(rng.choices(words, k=12)) for _ in range(5000)]
    out = []
    for i in range(n):
        a, b = pool[rng.randrange(len(pool))], pool[rng.randrange(len(pool))]
        out.append(f"{a} {b}"[:270] + f" {i}")
    return out


def v1(i: int, text: str, author: int, reply_to: int | None = None, reply_author: int | None = None) -> str:
    obj = {
        "id_str": str(i),
        "full_text": text,
        "created_at": "Wed Aug 27 13:08:45 +0000 2014",
        "user": {"id_str": str(author)},
        "lang": "en",
        "in_reply_to_status_id_str": str(reply_to) if reply_to else None,
        "in_reply_to_user_id_str": str(reply_author) if reply_author else None,
    }
    return json.dumps(obj, ensure_ascii=False)


def write_corpora(folder: Path, deep: int, wide: int) -> dict[str, Path]:
    base = 1_500_000_000_000_000_000
    chain = texts(deep, seed=1)
    deep_path = folder / "deep.jsonl"
    with deep_path.open("w", encoding="utf-8") as f:
        for k, text in enumerate(chain):
            f.write(v1(base + k, text, AUTHOR, base + k - 1 if k else None, AUTHOR if k else None) + "\n")
    tree = texts(wide + 1, seed=2)
    wide_path = folder / "wide.jsonl"
    root = base + 10_000_000
    with wide_path.open("w", encoding="utf-8") as f:
        f.write(v1(root, tree[0], AUTHOR) + "\n")
        for k in range(1, wide + 1):
            f.write(v1(root + k, tree[k], 1_000_000 + k, root, AUTHOR) + "\n")
    return {"deep": deep_path, "wide": wide_path}


def _tree_rss(pid: int) -> tuple[int, int]:
    """(sum, max) RSS in bytes of ``pid`` and its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ppid, pages = int(fields[1]), int(fields[21])
        children.setdefault(ppid, []).append(int(entry))
        rss[int(entry)] = pages * os.sysconf("SC_PAGE_SIZE")
    todo, total, largest = [pid], 0, 0
    while todo:
        p = todo.pop()
        total += rss.get(p, 0)
        largest = max(largest, rss.get(p, 0))
        todo.extend(children.get(p, []))
    return total, largest


def run_child(cmd: list[str]) -> dict:
    """Wall, CPU (wait4: the whole tree) and peak RSS (the tree, and its largest process) of a command."""
    start = time.perf_counter()
    peaks = {"tree": 0, "process": 0}
    with tempfile.TemporaryFile("w+") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.05):
                total, largest = _tree_rss(proc.pid)
                peaks["tree"] = max(peaks["tree"], total)
                peaks["process"] = max(peaks["process"], largest)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        done.set()
        sampler.join()
        log.seek(0)
        output = log.read()
    rc = os.waitstatus_to_exitcode(status)
    result = {
        "rc": rc,
        "wall_s": round(time.perf_counter() - start, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "peak_rss_process_mb": round(max(peaks["process"], usage.ru_maxrss * 1024) / 2**20, 1),
        "peak_rss_tree_mb": round(peaks["tree"] / 2**20, 1),
    }
    if rc != 0:
        result["error"] = output[-3000:]
    return result


def run_mode(corpus: Path, mode: str, out: Path, workers: int, extra: list[str]) -> dict:
    cmd = [str(TWEETMILL), "run", str(corpus), "-o", str(out), "--documents", mode, "--overwrite", *extra]
    if workers > 1:
        cmd += ["--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]
    result = run_child(cmd)
    if result["rc"] != 0:
        return result
    manifest = json.loads((out / "manifest.json").read_text())
    counts = manifest["counts"]
    tweets = sum(s.get("tweets", s["rows"]) for s in manifest["shards"])
    assert counts["balanced"] and tweets == counts["kept"], (counts, tweets)
    result.update(
        read=counts["read"],
        kept=counts["kept"],
        rows=manifest["totals"]["rows"],
        tokens=manifest["totals"]["tokens"],
        documents=manifest["stages"].get("documents"),
    )
    return result


def duplication(n: int) -> dict:
    """Characters of the documents of a comb under tweetmill's rule and under root-to-leaf paths."""
    sys.path.insert(0, str(ROOT.parent))
    from tweetmill.schemas.records import Tweet
    from tweetmill.transforms.documents_core import DOCUMENTS_CONVERSATIONS, build_documents

    words = texts(2 * n, seed=3)
    tweets = []
    for k in range(n):  # the spine, and one reply hanging off each of its tweets
        spine = Tweet(
            id=2 * k + 1,
            text=words[2 * k],
            source_format="v1",
            source_file="comb",
            position=2 * k,
            author_id=1 + k % 2,
            reply_to_id=2 * k - 1 if k else None,
        )
        side = Tweet(
            id=2 * k + 2,
            text=words[2 * k + 1],
            source_format="v1",
            source_file="comb",
            position=2 * k + 1,
            author_id=3,
            reply_to_id=2 * k + 1,
        )
        tweets += [spine, side]
    ours = build_documents(tweets, DOCUMENTS_CONVERSATIONS, max_chars=10**9)
    own = sum(len(t.text) for t in tweets)
    # root-to-leaf: one document per leaf (every side reply, and the spine's last tweet) holding its path
    spine_prefix = [0]
    for k in range(n):
        spine_prefix.append(spine_prefix[-1] + len(words[2 * k]))
    paths = sum(spine_prefix[k + 1] + len(words[2 * k + 1]) for k in range(n)) + spine_prefix[n]
    return {
        "comb_tweets": len(tweets),
        "tweet_chars": own,
        "tweetmill_rule_chars": sum(len(d.text) for d in ours),
        "tweetmill_rule_documents": len(ours),
        "root_to_leaf_chars": paths,
        "root_to_leaf_documents": n + 1,
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--deep", type=int, default=10_000, help="tweets in the self-thread")
    parser.add_argument("--wide", type=int, default=100_000, help="replies to the viral tweet")
    parser.add_argument("--comb", type=int, default=1_000, help="spine tweets of the duplication comb")
    parser.add_argument("--modes", default="tweets,threads,conversations")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--no-near-dedup", action="store_true", help="pass --no-near-dedup to every run")
    parser.add_argument("--json", type=Path, help="write the results here too")
    args = parser.parse_args()
    results: dict = {"workers": args.workers, "runs": {}}
    with tempfile.TemporaryDirectory(prefix="bench-documents-") as tmp:
        corpora = write_corpora(Path(tmp), args.deep, args.wide)
        for name, path in corpora.items():
            for mode in args.modes.split(","):
                extra = ["--no-near-dedup"] if args.no_near_dedup else []
                r = run_mode(path, mode, Path(tmp) / f"out-{name}-{mode}", args.workers, extra)
                results["runs"][f"{name}/{mode}"] = r
                base = results["runs"].get(f"{name}/tweets")
                if "read" in r:
                    r["cpu_ms_per_tweet"] = round(1000 * r["cpu_s"] / r["read"], 3)
                    if base and "cpu_s" in base:
                        r["cpu_vs_tweets"] = round(r["cpu_s"] / base["cpu_s"], 2)
                print(
                    f"{name:5} {mode:13} " + json.dumps({k: v for k, v in r.items() if k != "documents"}),
                    flush=True,
                )
                if r.get("documents"):
                    print(f"      documents: {json.dumps(r['documents'])}", flush=True)
    results["duplication"] = duplication(args.comb)
    print("duplication " + json.dumps(results["duplication"]))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()

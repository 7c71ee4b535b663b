"""The per-author cap (``transforms/author_cap.py``): its cost at scale, and the data behind its defaults.

Run by hand (never in CI):

    .venv/bin/python bench/bench_author_cap.py scale               # 200k synthetic tweets, 1 worker
    .venv/bin/python bench/bench_author_cap.py scale --workers 2   # the same on 2 worker processes
    .venv/bin/python bench/bench_author_cap.py data                # tweets per author in ../shared/data

``scale``: a synthetic corpus of ``--n`` tweets (texts cycled from the TweetEval bench files when
present): ``--floods`` flood authors holding ``--flood-share`` of the tweets between them (the
largest twice the next, and so on), 5% of tweets without an author, the rest from ~``n / 3``
ordinary authors with a long-tailed count each (1 to ~200). Each pipeline runs in a child
process on the FnApiRunner, reading the same TSV: ``baseline`` (read, parse to ``Tweet``, count:
a pass-through) and ``CapAuthors`` under each ``--configs`` entry (and with ``--dedup``,
``DeduplicateTexts``: another shuffle stage, for scale). Reported per run: wall time,
CPU-seconds of the child's whole process tree (user + sys from ``wait4``, worker processes
included), peak RSS of the largest process, tweets kept, and the CPU ratio against the baseline
measured in the same invocation; each pipeline runs ``--repeat`` times and the run with the least
CPU is shown (other processes on the machine only ever add to it). Every run's kept count is
checked against ``cap_authors``.

``data``: every v1/v2/archive/csv/bench file parsed with tweetmill's own parser (the account
archive's tweets get the id of its ``account.js``, as ``ReadArchives`` gives them); per source and
for all of it together: tweets, tweets with an author, authors, the largest author's count and
share, and what the default config would remove. CSV collections without author ids (the
FiveThirtyEight stream, TweetLID) are counted by their ``screen_name`` column as a proxy.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from bench_near_dedup_scale import RESULT_PREFIX, run_child  # a child's wall, CPU and RSS from wait4

HERE = Path(__file__).resolve().parent
SHARED = HERE.parent.parent / "shared" / "data"
DEFAULT_CONFIGS = ("default", "count=1000", "count=20")
FIELDS = {"count": "max_tweets_per_author", "share": "max_author_share", "authors": "min_authors_for_share"}
# What ``data`` compares: the default, lower shares, and count caps with the share cap off.
SWEEP = ("default", "share=0.01", "share=0.005", "authors=100", "count=1000,share=0", "count=100,share=0",
         "count=20,share=0")


# --- scale ---------------------------------------------------------------------------------------


def make_corpus(n: int, floods: int, flood_share: float, seed: int) -> list[tuple[int, int | None, str]]:
    rng = random.Random(seed)
    texts = []
    for name in ("tweeteval_emoji__train_text.txt", "tweeteval_sentiment__test_text.txt"):
        path = SHARED / "bench" / name
        if path.exists():
            texts += path.read_text(encoding="utf-8").splitlines()
    if not texts:
        texts = [f"synthetic tweet number {i} with a few words in it" for i in range(1000)]
    flood_total = int(n * flood_share)
    weights = [2.0 ** -i for i in range(floods)]
    flood_counts = [int(flood_total * w / sum(weights)) for w in weights]
    authors: list[int | None] = []
    for i, c in enumerate(flood_counts):
        authors += [1 + i] * c
    authors += [None] * (n // 20)
    next_author = 1000
    while len(authors) < n:  # ordinary authors: 1 + a long tail (Pareto), at most ~200 each
        count = min(int(rng.paretovariate(1.2)), 200, n - len(authors))
        authors += [next_author] * count
        next_author += 1
    rng.shuffle(authors)
    return [(rng.getrandbits(63), a, texts[i % len(texts)]) for i, a in enumerate(authors)]


def parse_config(spec: str):
    from tweetmill.transforms.author_cap import AuthorCapConfig

    if spec == "default":
        return AuthorCapConfig()
    fields = {}
    for part in spec.split(","):
        key, value = part.split("=")
        fields[FIELDS[key]] = float(value) if key == "share" else int(value)
    return AuthorCapConfig(**fields)


def child(args: argparse.Namespace) -> dict:
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions
    from apache_beam.runners.portability.fn_api_runner import FnApiRunner
    from tweetmill.schemas.records import Tweet
    from tweetmill.transforms.author_cap import CapAuthors

    out_dir = Path(tempfile.mkdtemp(dir=args.workdir))

    def parse(line: str) -> Tweet:
        tid, author, text = line.split("\t", 2)
        return Tweet(id=int(tid), text=text, source_format="text", source_file="bench", position=0,
                     author_id=int(author) if author else None)

    def write(value, name: str) -> None:
        (out_dir / name).write_text(json.dumps(value))

    options = ["--direct_num_workers", str(args.workers)]
    if args.workers > 1:
        options += ["--direct_running_mode", "multi_processing"]
    start = time.perf_counter()
    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(options)) as p:
        tweets = (
            p
            | "Read" >> beam.io.ReadFromText(str(Path(args.workdir) / "in.tsv"))
            | "Parse" >> beam.Map(parse).with_output_types(Tweet)
        )
        if args.child == "baseline":
            kept = tweets
        elif args.child == "exact-dedup":  # another shuffle stage, for scale: full tweets per text key
            from tweetmill.transforms.dedup import DeduplicateTexts

            kept = (tweets | "Dedup" >> DeduplicateTexts()).tweets
        else:
            out = tweets | "Cap" >> CapAuthors(parse_config(args.child))
            kept = out.tweets
            _ = out["stats"] | "WriteStats" >> beam.Map(lambda kv: write(kv[1], "stats.json"))
        _ = kept | "Count" >> beam.combiners.Count.Globally() | "WriteKept" >> beam.Map(write, "kept.json")
    result = {"wall_s": time.perf_counter() - start, "kept": json.loads((out_dir / "kept.json").read_text())}
    if args.child not in ("baseline", "exact-dedup"):
        stats = json.loads((out_dir / "stats.json").read_text())
        result.update({k: stats[k] for k in ("tweets_removed", "limit", "capped_authors")})
    return result


def scale(args: argparse.Namespace) -> None:
    from tweetmill.schemas.records import Tweet

    corpus = make_corpus(args.n, args.floods, args.flood_share, args.seed)
    counts = Counter(a for _, a, _ in corpus if a is not None)
    top = counts.most_common(args.floods)
    workdir = Path(tempfile.mkdtemp(prefix="bench_author_cap_"))
    with open(workdir / "in.tsv", "w", encoding="utf-8") as f:
        for tid, author, text in corpus:
            f.write(f"{tid}\t{'' if author is None else author}\t{text}\n")
    tweets = [Tweet(id=t, text=x, source_format="text", source_file="bench", position=0, author_id=a)
              for t, a, x in corpus]
    print(f"{args.n:,} tweets, {len(counts):,} authors, {args.n - counts.total():,} without an author; "
          f"floods {[c for _, c in top]}; {args.workers} worker(s); {os.cpu_count()} CPUs", flush=True)
    print(f"{'pipeline':<22}{'wall s':>8}{'CPU s':>8}{'ratio':>7}{'RSS MB':>8}{'kept':>9}{'limit':>7}"
          f"{'capped':>8}")
    try:
        _scale_runs(args, corpus, tweets, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _scale_runs(args: argparse.Namespace, corpus: list, tweets: list, workdir: Path) -> None:
    from tweetmill.transforms.author_cap import cap_authors

    baseline = None
    for name in ("baseline", *args.configs, *(["exact-dedup"] if args.dedup else [])):
        cmd = [sys.executable, __file__, "scale", "--child", name, "--workdir", str(workdir),
               "--workers", str(args.workers)]
        runs = [run_child(cmd) for _ in range(args.repeat)]
        r = min(runs, key=lambda run: (run["rc"] != 0, run["cpu_s"]))
        if r["rc"] != 0:
            print(f"{name}: failed\n{r['error']}")
            continue
        if name == "baseline":
            baseline = r["cpu_s"]
            expected = args.n
        elif name == "exact-dedup":
            expected = r["kept"]  # not checked: a reference only for its cost
        else:
            expected = len(cap_authors(tweets, parse_config(name))[0])
        ok = "" if r["kept"] == expected else f"  MISMATCH: reference keeps {expected}"
        ratio = r["cpu_s"] / baseline if baseline else float("nan")
        print(f"{name:<22}{r['wall_s']:>8.1f}{r['cpu_s']:>8.1f}{ratio:>7.2f}{r['peak_rss_mb']:>8.0f}"
              f"{r['kept']:>9,}{r.get('limit') or '-':>7}{r.get('capped_authors', '-'):>8}{ok}", flush=True)


# --- data ----------------------------------------------------------------------------------------


def _parse_all() -> dict[str, list]:
    """Tweets of each source directory, parsed as the pipeline parses them."""
    from tweetmill.schemas.records import Tweet
    from tweetmill.transforms.account_archive import read_account_id
    from tweetmill.transforms.parse import open_records

    account = SHARED / "archive-layout" / "milahu-twitter-milahu104" / "data" / "account.js"
    archive_author = read_account_id(lambda: account.open("rb")) if account.exists() else None
    sources: dict[str, list] = {}
    for sub in ("v1", "v2", "archive", "csv", "bench"):
        for path in sorted((SHARED / sub).rglob("*")):
            if not path.is_file():
                continue
            with open(path, "rb") as f:
                _, records = open_records(str(path), f)
                tweets = [r for r in records if isinstance(r, Tweet)]
            rel = path.relative_to(SHARED)
            if rel.parts[0] == "archive" and rel.parts[1].startswith("milahu"):
                tweets = [t.replace(author_id=t.author_id or archive_author) for t in tweets]
            group = "/".join(rel.parts[:2]) if len(rel.parts) > 2 else str(rel)
            group = group.replace("fivethirtyeight_", "538_")[:42]
            sources.setdefault(group, []).extend(tweets)
    return sources


def _row(name: str, tweets: list, config) -> str:
    from tweetmill.transforms.author_cap import cap_authors, cap_limit

    counts = Counter(t.author_id for t in tweets if t.author_id is not None)
    authored = counts.total()
    top = counts.most_common(1)[0][1] if counts else 0
    limit = cap_limit(config, len(tweets), len(counts))
    removed = len(cap_authors(tweets, config)[1])
    over = {k: sum(1 for c in counts.values() if c > k) for k in (20, 100, 1000)}
    return (f"{name:<44}{len(tweets):>7,}{authored:>8,}{len(counts):>8,}{top:>6,}"
            f"{100 * top / max(len(tweets), 1):>7.1f}%{over[20]:>5}{over[100]:>5}{over[1000]:>5}"
            f"{limit or '-':>7}{removed:>6}")


def _screen_names(path: Path, column: int | str, delimiter: str = ",") -> Counter:
    csv.field_size_limit(1 << 30)
    with open(path, encoding="utf-8", newline="") as f:
        if isinstance(column, str):
            return Counter(row[column] for row in csv.DictReader(f, delimiter=delimiter))
        return Counter(row[column] for row in csv.reader(f, delimiter=delimiter) if len(row) > column)


def data(args: argparse.Namespace) -> None:
    from tweetmill.transforms.author_cap import AuthorCapConfig, cap_authors

    config = AuthorCapConfig()
    print(f"default config: {config}")
    sources = _parse_all()
    print(f"{'source':<44}{'tweets':>7}{'w/auth':>8}{'authors':>8}{'top':>6}{'share':>8}"
          f"{'>20':>5}{'>100':>5}{'>1k':>5}{'limit':>7}{'cut':>6}")
    everything = []
    for name, tweets in sources.items():
        everything += tweets
        if tweets:
            print(_row(name, tweets, config))
    print(_row("ALL sources together", everything, config))
    authored = [t for t in everything if t.author_id is not None]
    print(_row("  only the tweets with an author id", authored, config))
    print("\nCollections without author ids, counted by screen name (a proxy):")
    proxies = {
        "mayweather-mcgregor (stream)": _screen_names(
            SHARED / "csv" / "fivethirtyeight_mayweather-mcgregor__tweets.csv", "screen_name"),
        "tweetlid (search)": _screen_names(
            SHARED / "lang" / "tweetlid" / "train_complete_clean.tsv", 1, "\t"),
    }
    corpora = {"ALL sources together": everything}
    for name, counts in proxies.items():
        n = counts.total()
        (who, top), = counts.most_common(1)
        over = {k: sum(1 for c in counts.values() if c > k) for k in (20, 100)}
        print(f"{name:<30} tweets {n:,}  authors {len(counts):,}  mean {n / len(counts):.2f}  "
              f"largest {top} ({100 * top / n:.2f}%, {who})  >20: {over[20]}  >100: {over[100]}  "
              f"next: {[c for _, c in counts.most_common(6)[1:]]}")
        corpora[name.split(" ")[0] + ", by screen name"] = _proxy_tweets(counts)
    print("\nTweets removed (authors capped) under other settings:")
    print(f"{'corpus':<32}" + "".join(f"{c:>19}" for c in SWEEP))
    for name, tweets in corpora.items():
        cells = []
        for spec in SWEEP:
            dropped = cap_authors(tweets, parse_config(spec))[1]
            cells.append(f"{len(dropped)} ({len({t.author_id for t in dropped})})")
        print(f"{name:<32}" + "".join(f"{c:>19}" for c in cells))
    capped = Counter()
    for t in cap_authors(everything, parse_config("count=100,share=0"))[1]:
        capped[f"{Path(t.source_file).relative_to(SHARED).parts[0]} author {t.author_id}"] += 1
    print(f"\nWho a count cap of 100 cuts in ALL: {dict(capped.most_common())}")


def _proxy_tweets(counts: Counter) -> list:
    """One tweet per row of a collection, its screen name standing in for the author id."""
    from tweetmill.schemas.records import Tweet

    rng = random.Random(0)
    names = {name: i for i, name in enumerate(sorted(counts))}
    return [Tweet(id=rng.getrandbits(63), text="", source_format="csv", source_file="proxy", position=0,
                  author_id=names[name]) for name, c in counts.items() for _ in range(c)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="mode", required=True)
    s = sub.add_parser("scale")
    s.add_argument("--n", type=int, default=200_000)
    s.add_argument("--floods", type=int, default=4)
    s.add_argument("--flood-share", type=float, default=0.2)
    s.add_argument("--seed", type=int, default=1)
    s.add_argument("--workers", type=int, default=1)
    s.add_argument("--configs", nargs="*", default=list(DEFAULT_CONFIGS),
                   help="'default' or key=value,... with count, share, authors")
    s.add_argument("--repeat", type=int, default=3, help="runs of each pipeline; the least CPU is shown")
    s.add_argument("--dedup", action="store_true", help="also time exact dedup (DeduplicateTexts), for scale")
    s.add_argument("--child", help=argparse.SUPPRESS)
    s.add_argument("--workdir", help=argparse.SUPPRESS)
    sub.add_parser("data")
    args = parser.parse_args()
    if args.mode == "data":
        data(args)
    elif args.child:
        print(RESULT_PREFIX + json.dumps(child(args)), flush=True)
    else:
        scale(args)


if __name__ == "__main__":
    main()

"""Throughput of the clean stage, and what the ftfy pre-check saves. Run by hand:

    .venv/bin/python bench/bench_clean.py [--repeat 3] [--lang]

Prints µs/tweet and tweets/s for ``clean_batch`` (default config, without ftfy, with every entity
kept) and, in the same run, ftfy with vs without the pre-check (``needs_ftfy``): the fraction of
texts it skips, the speed-up, and a check that both give identical output. Corpora:
``bench/*.txt`` (TweetEval, English) and the ``text`` column of ``csv/*.csv``; ``--lang`` adds the
multilingual XLM-T texts. Timings are the best of ``--repeat`` runs (the machine is shared).
"""

from __future__ import annotations

import argparse
import csv
import io
import time
from collections.abc import Callable
from pathlib import Path

import ftfy
from tweetmill.schemas.records import FORMAT_TEXT, Tweet
from tweetmill.transforms.clean import (
    FTFY_CONFIG,
    CleanConfig,
    clean_batch,
    clean_batch_counted,
    fix_mojibake,
    needs_ftfy,
    unescape_html,
)

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
BATCH = 500  # about what the parse stage emits per bundle


def shared_data(*parts: str) -> Path:
    """Path into the read-only corpus beside the project (``../shared/data``)."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        raise SystemExit(f"shared data not available: {path}")
    return path


def bench_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(shared_data("bench").glob("*.txt")):
        texts += path.read_text(encoding="utf-8").splitlines()
    return texts


def csv_texts() -> list[str]:
    """The ``text`` column; a file that is not UTF-8 (BarackObama.csv) is read as Mac Roman."""
    texts: list[str] = []
    for path in sorted(shared_data("csv").glob("*.csv")):
        raw = path.read_bytes()
        try:
            content = raw.decode("utf-8")
        except UnicodeDecodeError:
            content = raw.decode("mac_roman")
        texts += [row["text"] for row in csv.DictReader(io.StringIO(content))]
    return texts


def lang_texts() -> list[str]:
    texts: list[str] = []
    for path in sorted(shared_data("lang", "xlm-t").glob("*/*.txt")):
        texts += path.read_text(encoding="utf-8").splitlines()
    return texts


def as_tweets(texts: list[str]) -> list[Tweet]:
    """Tweets whose text starts with a mention count as replies, to exercise that rule too."""
    return [
        Tweet(
            id=i,
            text=text,
            source_format=FORMAT_TEXT,
            source_file="bench",
            position=i,
            is_reply=text.lstrip().startswith("@"),
        )
        for i, text in enumerate(texts)
    ]


def best_seconds(fn: Callable[[], object], repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def report(label: str, seconds: float, n: int) -> None:
    print(f"  {label:<34} {seconds / n * 1e6:8.2f} µs/tweet {n / seconds:12,.0f} tweets/s")


def bench_corpus(name: str, texts: list[str], repeat: int) -> None:
    n = len(texts)
    print(f"{name}: {n:,} texts")
    tweets = as_tweets(texts)
    batches = [tweets[i : i + BATCH] for i in range(0, n, BATCH)]

    keep_all = CleanConfig(urls="keep", mentions="keep", emails="keep", phones="keep")
    for label, config in (
        ("clean_batch (default config)", CleanConfig()),
        ("clean_batch (fix_mojibake=False)", CleanConfig(fix_mojibake=False)),
        ("clean_batch (all entities kept)", keep_all),
    ):
        seconds = best_seconds(lambda config=config: [clean_batch(b, config) for b in batches], repeat)
        report(label, seconds, n)

    # ftfy alone, on what it sees in the stage (HTML already unescaped), same run for both.
    unescaped = [unescape_html(t) for t in texts]
    with_check = best_seconds(lambda: [fix_mojibake(t) for t in unescaped], repeat)
    plain = best_seconds(lambda: [ftfy.fix_text(t, FTFY_CONFIG) for t in unescaped], repeat)
    check_only = best_seconds(lambda: [needs_ftfy(t) for t in unescaped], repeat)
    needed = sum(needs_ftfy(t) for t in unescaped)
    ascii_only = sum(t.isascii() for t in unescaped)
    mismatches = sum(fix_mojibake(t) != ftfy.fix_text(t, FTFY_CONFIG) for t in unescaped)
    report("ftfy with pre-check", with_check, n)
    report("ftfy without pre-check", plain, n)
    report("pre-check alone", check_only, n)
    print(
        f"  pre-check skips {n - needed:,}/{n:,} texts ({(n - needed) / n:.2%};"
        f" ASCII-only {ascii_only / n:.2%}), speed-up x{plain / with_check:.1f},"
        f" output differences: {mismatches}"
    )

    _, stats = clean_batch_counted(tweets, CleanConfig())
    changed = ", ".join(f"{k}={v:,}" for k, v in stats.items() if k != "texts")
    print(f"  texts changed per step (default config): {changed}\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per figure (best is kept)")
    parser.add_argument("--lang", action="store_true", help="also the multilingual XLM-T texts")
    args = parser.parse_args()
    corpora = [("bench/*.txt", bench_texts()), ("csv/*.csv text", csv_texts())]
    if args.lang:
        corpora.append(("lang/xlm-t/*/*.txt", lang_texts()))
    for name, texts in corpora:
        bench_corpus(name, texts, args.repeat)


if __name__ == "__main__":
    main()

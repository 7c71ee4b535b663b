"""What the tweet-quality filters drop from the real tweets of the shared corpus, and what they cost.
Run by hand:

    .venv/bin/python bench/measure_quality_filters.py [--examples 4] [--default-examples 20] [--repeat 3]

Reads every tweet of ``../shared/data`` (``bench/``, ``csv/``, ``lang/`` and the API and archive
payloads of ``v1/``, ``v2/``, ``archive/``), cleans it with the default clean config and runs the
existing filters (empty → retweets → length, without a maximum length). Then, in pipeline order
(entities_only → entity_counts → repetition, each seeing what the ones before it kept at their
defaults), each filter is run with each threshold of its table, one option varied at a time, the
others at their defaults or off. Per threshold: the tweets it drops and their share of the tweets
that reach it, per corpus group, and a few of the tweets it drops that the next looser threshold
keeps (``--examples``); then ``--default-examples`` of what the default drops, and µs/tweet of each
filter at its defaults (best of ``--repeat``), and what entities_only drops where length's lower
bound is off. The maximum length of ``length`` is measured the same way, before the others.
Examples are printed with @handles replaced by ``@user``.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from collections import Counter
from pathlib import Path

from bench_clean import SHARED_DATA, shared_data
from tweetmill.schemas.records import FORMAT_TEXT, Tweet, derived_tweet_id
from tweetmill.transforms.clean import CleanConfig, clean_batch
from tweetmill.transforms.filters.empty import EmptyText
from tweetmill.transforms.filters.entities_only import EntitiesOnly
from tweetmill.transforms.filters.entity_counts import EntityCounts
from tweetmill.transforms.filters.length import Length
from tweetmill.transforms.filters.repetition import Repetition
from tweetmill.transforms.filters.retweets import Retweets
from tweetmill.transforms.parse import iter_records
from tweetmill.transforms.stage import Stage, run_stage, sample_key
from tweetmill.transforms.twitter_text import MENTION

# Corpus groups: the folders each reads, in report order.
GROUPS = {
    "bench": ("bench",),
    "csv": ("csv",),
    "lang": ("lang",),
    "api+archive": ("v1", "v2", "archive"),
}
# TweetLID has no header row the CSV reader could find the text in: tweet_id, screen_name, lang, text.
TWEETLID = Path("lang") / "tweetlid" / "train_complete_clean.tsv"

# The thresholds measured per filter option: (stage class, option, values, options turned off).
LENGTH_TABLE = (Length, "max_chars", (280, 300, 320, 400, 1_100, 4_000, 25_000, 30_000), {})
TABLES = (
    (EntitiesOnly, "min_plain_chars", (1, 2, 3, 4, 5, 8), {}),
    (EntityCounts, "max_hashtags", (5, 6, 7, 8, 9, 10, 12), {"max_mentions": 0}),
    (EntityCounts, "max_mentions", (3, 4, 5, 6, 7, 8, 10), {"max_hashtags": 0}),
    (Repetition, "char_repetition", (0.3, 0.4, 0.5, 0.6, 0.7, 0.8), {"word_repeats": 0}),
    (Repetition, "word_repeats", (3, 4, 5, 6, 8, 10), {"char_repetition": 0.0}),
    (Repetition, "word_repetition", (0.3, 0.4, 0.5, 0.6, 0.8), {"char_repetition": 0.0}),
)


def read_group(folders: tuple[str, ...]) -> list[Tweet]:
    """Every tweet the parser reads from the files under ``folders`` (dead letters and notices left out)."""
    tweets: list[Tweet] = []
    for folder in folders:
        for path in sorted(shared_data(folder).rglob("*")):
            if not path.is_file() or path == SHARED_DATA / TWEETLID:
                continue
            with path.open("rb") as f:
                tweets += [r for r in iter_records(str(path), f) if isinstance(r, Tweet)]
    if "lang" in folders:
        tweets += read_tweetlid(shared_data(*TWEETLID.parts))
    return tweets


def read_tweetlid(path: Path) -> list[Tweet]:
    tweets = []
    for position, line in enumerate(path.read_text(encoding="utf-8").splitlines()):
        fields = line.split("\t", 3)
        if len(fields) == 4:
            text = fields[3]
            tweet_id = derived_tweet_id(path.name, position, text)
            tweets.append(Tweet(tweet_id, text, FORMAT_TEXT, str(path), position, id_derived=True))
    return tweets


def apply(stages: list[Stage], tweets: list[Tweet]) -> list[Tweet]:
    for stage in stages:
        tweets, _ = run_stage(stage, tweets)
    return tweets


def configured(cls: type[Stage], **changes) -> Stage:
    return cls(dataclasses.replace(cls.Config(), **changes))


def show(text: str, width: int = 120) -> str:
    text = MENTION.sub("@user", text).replace("\n", " ⏎ ")
    return text if len(text) <= width else text[: width - 1] + "…"


def measure_option(
    groups: dict[str, list[Tweet]], table: tuple, examples: int, default_examples: int
) -> None:
    """The table of one option: drops per threshold and group, then examples."""
    cls, field, values, off = table
    default = getattr(cls.Config(), field)
    reaching = sum(len(t) for t in groups.values())
    others = ", ".join(f"{k}={v}" for k, v in off.items()) or "defaults"
    print(f"\n## {cls.name}: {field} (default {default}; other options: {others})\n")
    print(f"{reaching} tweets reach it.\n")
    print(f"| {field} | dropped | share | " + " | ".join(groups) + " |")
    print("|---|---:|---:|" + "---:|" * len(groups))
    drops: dict = {}
    for value in values:
        stage = configured(cls, **{**off, field: value})
        per_group = [run_stage(stage, tweets)[1] for tweets in groups.values()]
        drops[value] = [pair for pairs in per_group for pair in pairs]
        mark = " (default)" if value == default else ""
        counts = " | ".join(str(len(pairs)) for pairs in per_group)
        print(f"| {value}{mark} | {len(drops[value])} | {len(drops[value]) / reaching:.3%} | {counts} |")
    # Thresholds are monotone: the loosest drops the fewest. Show what each adds to the next looser one.
    previous: set[int] = set()
    for value in sorted(values, key=lambda v: len(drops[v])):
        new = [(t, r) for t, r in drops[value] if t.id not in previous]
        previous = {t.id for t, _ in drops[value]}
        if new and examples:
            print(f"\n{field} = {value} drops {len(new)} more than the next looser value, e.g.")
            print_examples(new, examples)
    if drops.get(default) and default_examples:
        print(f"\n{field} = {default} (default) drops {len(drops[default])}, e.g.")
        print_examples(drops[default], default_examples)


def print_examples(drops: list[tuple[Tweet, str]], count: int) -> None:
    """``count`` of ``drops``, the same ones on every run (ordered by ``sample_key``)."""
    for tweet, reason in sorted(drops, key=lambda pair: sample_key(pair[0]))[:count]:
        print(f"  [{reason}] {show(tweet.text)}")


def time_stage(stage: Stage, tweets: list[Tweet], repeat: int) -> float:
    """µs per tweet of ``stage.process_batch`` over ``tweets`` in batches of 500 (best of ``repeat``)."""
    stage.setup()
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for i in range(0, len(tweets), 500):
            stage.process_batch(tweets[i : i + 500])
        best = min(best, time.perf_counter() - start)
    return best / len(tweets) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--examples", type=int, default=4, help="examples per threshold")
    parser.add_argument("--default-examples", type=int, default=20, help="examples of the default's drops")
    parser.add_argument("--repeat", type=int, default=3, help="timing runs (best is kept)")
    args = parser.parse_args()

    read = {name: clean_batch(read_group(folders), CleanConfig()) for name, folders in GROUPS.items()}
    existing = [EmptyText(), Retweets(), configured(Length, max_chars=0)]
    groups = {name: apply(existing, tweets) for name, tweets in read.items()}
    total_read = sum(len(t) for t in read.values())
    print("# Tweet-quality filters on the shared corpus\n")
    print("| group | read | after empty, retweets, length (min_chars) |\n|---|---:|---:|")
    for name in read:
        print(f"| {name} | {len(read[name])} | {len(groups[name])} |")
    print(f"| all | {total_read} | {sum(len(t) for t in groups.values())} |")

    measure_option(groups, LENGTH_TABLE, args.examples, args.default_examples)
    groups = {name: apply([Length()], tweets) for name, tweets in groups.items()}
    reaching = [t for tweets in groups.values() for t in tweets]
    for cls in (EntitiesOnly, EntityCounts, Repetition):
        for table in TABLES:
            if table[0] is cls:
                measure_option(groups, table, args.examples, args.default_examples)
        groups = {name: apply([cls()], tweets) for name, tweets in groups.items()}

    print("\n## At the defaults, in pipeline order\n")
    print("| stage | reaches | drops | share of reaching | share of read | by reason | µs/tweet |")
    print("|---|---:|---:|---:|---:|---|---:|")
    tweets = reaching
    for cls in (Length, EntitiesOnly, EntityCounts, Repetition):
        stage = cls()
        kept, dropped = run_stage(stage, tweets)
        reasons = Counter(reason for _, reason in dropped)
        cost = time_stage(stage, reaching, args.repeat)
        by_reason = ", ".join(f"{r} {n}" for r, n in reasons.most_common()) or "-"
        print(
            f"| {cls.name} | {len(tweets)} | {len(dropped)} | {len(dropped) / len(tweets):.3%} |"
            f" {len(dropped) / total_read:.3%} | {by_reason} | {cost:.2f} |"
        )
        tweets = kept

    # What entities_only gives on its own, where length's lower bound is off (--min-chars 0).
    alone = apply([EmptyText(), Retweets()], [t for tweets in read.values() for t in tweets])
    reasons = Counter(reason for _, reason in run_stage(EntitiesOnly(), alone)[1])
    print(f"\nentities_only without length (--min-chars 0), on the {len(alone)} tweets after retweets:")
    print("  " + ", ".join(f"{r} {n}" for r, n in reasons.most_common()))


if __name__ == "__main__":
    main()

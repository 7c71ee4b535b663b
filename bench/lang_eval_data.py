"""The evaluation sets of the language-ID benchmarks, loaded the same way for every engine.

* ``bench_english()``: the English TweetEval tweets of ``../shared/data/bench`` as the pipeline keeps
  them (parse, clean, filters, exact and near dedup; no language stage), all English by
  construction: the ``--languages en`` recall target.
* ``xlmt(split)``: XLM-T/UMSAB sentiment tweets, label = the set's language (``hindi`` is
  romanised and labelled ``hi``; the targets leave it out).
* ``tweetlid()``: TweetLID-2014, per-tweet manual labels (never used for training or tuning).
* ``tagged()``: the API and archive tweets of ``v1/``, ``v2/`` and ``archive/`` with Twitter's own
  ``lang`` tag, parsed and cleaned as the pipeline does, retweets left out.
"""

from __future__ import annotations

import io
import sys
from dataclasses import dataclass
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
XLMT_SETS = (  # (directory, code)
    ("arabic", "ar"),
    ("german", "de"),
    ("english", "en"),
    ("spanish", "es"),
    ("french", "fr"),
    ("hindi", "hi"),
    ("italian", "it"),
    ("portuguese", "pt"),
)
TWEETLID_LANGS = ("es", "pt", "ca", "en", "eu", "gl")
TAGGED_DIRS = ("v1", "v2", "archive")


def shared_data(*parts: str) -> Path:
    """Path into the read-only corpus beside the project (``../shared/data``)."""
    path = DATA.joinpath(*parts)
    if not path.exists():
        sys.exit(f"shared data not available: {path}")
    return path


@dataclass(frozen=True)
class Item:
    text: str
    gold: frozenset[str]  # codes any of which is right
    group: str  # the row of the accuracy table
    twitter_lang: str | None = None


def xlmt(split: str) -> list[Item]:
    items = []
    for name, code in XLMT_SETS:
        lines = shared_data("lang", "xlm-t", name, f"{split}_text.txt").read_text("utf-8").splitlines()
        items += [Item(t, frozenset([code]), code) for t in lines]
    return items


def tweetlid() -> list[Item]:
    """Labels es, pt, ca, en, eu, gl, other; mixed ``a+b`` / ambiguous ``a/b`` accept any of their
    languages (group ``mixed/ambiguous``); ``und`` tweets left out."""
    items = []
    path = shared_data("lang", "tweetlid", "train_complete_clean.tsv")
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) != 4 or parts[2] == "und":
            continue
        label, text = parts[2], parts[3]
        codes = frozenset(c for alt in label.split("/") for c in alt.split("+"))
        group = label if len(codes) == 1 else "mixed/ambiguous"
        items.append(Item(text, codes, group))
    return items


def bench_english() -> list[Item]:
    """The bench tweets the pipeline keeps before its language stage (60,735)."""
    from tweetmill.pipeline.build import filter_stages
    from tweetmill.pipeline.options import RunConfig
    from tweetmill.schemas.records import Tweet
    from tweetmill.transforms.clean import CleanConfig, clean_batch
    from tweetmill.transforms.dedup import dedup_batch, normalized_text_key, text_survivor_order
    from tweetmill.transforms.near_dedup import NearDedupConfig, near_duplicates
    from tweetmill.transforms.parse import iter_records

    files = sorted(shared_data("bench").glob("*.txt"))
    tweets: list[Tweet] = []
    for path in files:
        with open(path, "rb") as f:
            tweets += [r for r in iter_records(str(path), io.BufferedReader(f)) if isinstance(r, Tweet)]
    tweets = clean_batch(tweets, CleanConfig())
    for stage in filter_stages(RunConfig(inputs=tuple(map(str, files)), output="-")):
        tweets, _ = stage.process_batch(tweets)
    tweets, _ = dedup_batch(tweets, lambda t: normalized_text_key(t.text), text_survivor_order)
    tweets, _ = near_duplicates(tweets, NearDedupConfig())
    tweets.sort(key=lambda t: t.id)
    return [Item(t.text, frozenset(["en"]), "en") for t in tweets]


def tagged(dirs: tuple[str, ...] = TAGGED_DIRS) -> list[Item]:
    """Tweets with a language tag from Twitter (``und`` and the like included: the caller decides)."""
    from tweetmill.schemas.records import Tweet
    from tweetmill.transforms.clean import CleanConfig, clean_batch
    from tweetmill.transforms.langid import normalize_language_code
    from tweetmill.transforms.parse import iter_records

    tweets: list[Tweet] = []
    for name in dirs:
        for path in sorted(p for p in shared_data(name).rglob("*") if p.is_file()):
            with open(path, "rb") as f:
                tweets += [
                    r
                    for r in iter_records(str(path), f)
                    if isinstance(r, Tweet) and r.twitter_lang and not r.is_retweet
                ]
    tweets = clean_batch(tweets, CleanConfig())
    return [
        Item(
            t.text,
            frozenset([normalize_language_code(t.twitter_lang)]),
            normalize_language_code(t.twitter_lang),
            t.twitter_lang,
        )
        for t in tweets
    ]

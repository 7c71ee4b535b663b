"""Id dedup: a survivor chosen by content (never by path), conflicts counted and sampled, Beam = core."""

from __future__ import annotations

import dataclasses
import itertools
import json
import random
from pathlib import Path

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from tweetmill.pipeline.build import run
from tweetmill.pipeline.options import RunConfig
from tweetmill.schemas.records import DROP_DUPLICATE_ID, DROP_EXACT_DUPLICATE, Tweet
from tweetmill.schemas.shard import splitmix64
from tweetmill.schemas.shard_dir import ID_CONFLICT_SAMPLE_NAME
from tweetmill.transforms.common import TAG_DROPPED, TAG_SAMPLES, TAG_STATS
from tweetmill.transforms.dedup import (
    ID_STAGE,
    TEXT_STAGE,
    DeduplicateIds,
    DeduplicateTexts,
    KeepBestId,
    dedup_batch,
    id_dedup_report,
    id_survivor_order,
    normalized_text_key,
    same_text,
    text_survivor_order,
)
from tweetmill.transforms.dedup_batches import repeated
from tweetmill.transforms.stage import TAG_DROPPED_TWEETS


def tweet(i: int, text: str = "hello there world", **kw) -> Tweet:
    return Tweet(
        id=i,
        text=text,
        source_format=kw.pop("source_format", "v1"),
        source_file=kw.pop("source_file", "f.jsonl"),
        position=kw.pop("position", 0),
        **kw,
    )


def content(t: Tweet) -> Tweet:
    """A tweet without its origin: what must not depend on how the archives were packed."""
    return dataclasses.replace(t, source_file="", position=0)


def survivor(*copies: Tweet) -> Tweet:
    return min(copies, key=id_survivor_order)


# --- the rule ------------------------------------------------------------------------------------


def test_survivor_rule_real_then_longest_then_text_then_metadata():
    full = tweet(1, "the whole text of a tweet, not cut", source_file="z.json")
    cut = tweet(1, "the whole text of a tweet, not…", source_file="a.json")
    assert survivor(cut, full) is full  # longest text, whatever the file
    derived = tweet(1, full.text + " and even longer", id_derived=True)
    assert survivor(derived, cut, full) is full  # a real record before a derived one
    b, a = tweet(1, "same length b"), tweet(1, "same length a")
    assert survivor(b, a) is a  # equal length: lexicographic, so the order is total
    dated, undated = tweet(1, created_at_ms=2_000), tweet(1, created_at_ms=None, source_file="a.json")
    assert survivor(undated, dated) is dated
    assert survivor(dated, tweet(1, created_at_ms=1_000, source_file="z.json")).created_at_ms == 1_000
    assert survivor(tweet(1, author_id=None), tweet(1, author_id=7, source_file="z")).author_id == 7


def test_origin_breaks_ties_only_between_identical_rows_and_by_file_name_first():
    here, there = tweet(1, source_file="/home/me/b.json"), tweet(1, source_file="gs://bucket/a.json")
    assert survivor(here, there) is there  # a.json < b.json, whatever the folders
    zipped, plain = tweet(1, source_file="gs://b/x.zip!data/b.json"), tweet(1, source_file="/z/a.json.gz")
    assert survivor(zipped, plain) is plain  # nor containers or compression
    later, earlier = (
        tweet(1, source_file="x/a.json", position=5),
        tweet(1, source_file="y/a.json", position=2),
    )
    assert survivor(later, earlier) is earlier  # same name: the position, before the folder
    assert survivor(here, dataclasses.replace(there, is_reply=True)) is here  # content decides first


def test_same_text_ignores_whitespace_only():
    assert same_text(tweet(1, "line one\nline two"), tweet(1, "line one line two"))
    assert same_text(tweet(1, "a b"), tweet(1, "a b "))
    assert not same_text(tweet(1, "Hello"), tweet(1, "hello"))
    assert not same_text(tweet(1, "café"), tweet(1, "cafe\u0301"))  # a re-encoding is a conflict


# --- conflicts, stats, samples -------------------------------------------------------------------


def _groups() -> list[Tweet]:
    """id 1: identical copies; id 2: whitespace only; id 3: edited (3 copies); id 4: alone."""
    return [
        tweet(1, "an identical copy", source_file="a.jsonl"),
        tweet(1, "an identical copy", source_file="b.jsonl"),
        tweet(2, "line one\nline two", source_file="a.jsonl"),
        tweet(2, "line one line two", source_file="b.csv"),
        tweet(3, "the full text, as edited", source_file="a.jsonl"),
        tweet(3, "the full text", source_file="b.jsonl"),
        tweet(3, "the full text", source_file="c.jsonl"),
        tweet(4, "a tweet on its own"),
    ]


def test_conflicts_are_counted_and_sampled_and_accounting_is_unchanged():
    report = id_dedup_report(_groups())
    assert report.removed == 4
    assert sorted((t.id, t.text) for t in report.survivors) == [
        (1, "an identical copy"),
        (2, "line one\nline two"),  # the longer (a line break kept), yet no conflict
        (3, "the full text, as edited"),
        (4, "a tweet on its own"),
    ]
    name, stats = report.stats
    assert name == ID_STAGE
    assert (stats["duplicate_ids"], stats["duplicates_removed"]) == (3, 4)
    assert (stats["conflicting_ids"], stats["conflicting_records"]) == (1, 3)
    assert report.samples == [
        {
            "id": 3,
            "copies": 3,
            "kept_text": "the full text, as edited",
            "kept_source_file": "a.jsonl",
            "other_text": "the full text",
            "other_source_file": "b.jsonl",  # of two equal copies, the one from the first file name
        }
    ]


def test_core_survivors_match_dedup_batch():
    tweets = _groups()
    survivors, removed = dedup_batch(tweets, lambda t: t.id, id_survivor_order)
    report = id_dedup_report(tweets)
    assert removed == report.removed and survivors == report.survivors


def _random_archive(rng: random.Random, ids: int = 200) -> list[Tweet]:
    """Copies of ids with few distinct texts, fields and origins, so ties and conflicts are common."""
    tweets = []
    for i in range(ids):
        for _ in range(rng.randint(1, 5)):
            text = rng.choice(["short", "a longer text", "a longer text…", "A longer text", "short  "])
            tweets.append(
                tweet(
                    i,
                    text,
                    created_at_ms=rng.choice([None, 1, 2]),
                    author_id=rng.choice([None, 9]),
                    is_reply=rng.random() < 0.2,
                    source_file=rng.choice(["gs://b/x/a.json", "/tmp/b.json", "c.zip/a.json"]),
                    position=rng.randint(0, 3),
                )
            )
    return tweets


def _fold(tweets: list[Tweet], rng: random.Random) -> dict[int, tuple]:
    """What a runner may do: add inputs to several accumulators in any order, merge them in any order."""
    fn = KeepBestId()
    parts: dict[int, list] = {}
    for t in tweets:
        accs = parts.setdefault(t.id, [fn.create_accumulator() for _ in range(rng.randint(1, 4))])
        k = rng.randrange(len(accs))
        accs[k] = fn.add_input(accs[k], t)
    result = {}
    for i, accs in parts.items():
        while len(accs) > 1:
            rng.shuffle(accs)
            accs = [fn.merge_accumulators(accs[:2]), *accs[2:]]
        result[i] = fn.extract_output(accs[0])
    return result


def test_combine_fn_agrees_with_the_core_whatever_the_split_and_order():
    rng = random.Random(7)
    tweets = _random_archive(rng)
    report = id_dedup_report(tweets)
    expected = {t.id: t for t in report.survivors}
    conflicting = {s["id"] for s in id_dedup_report(tweets, max_samples=10**6).samples}
    assert 0 < len(conflicting) < len(expected)
    for _ in range(5):
        rng.shuffle(tweets)
        groups = _fold(tweets, rng)
        assert {i: best for i, (best, _, _) in groups.items()} == expected
        assert {i for i, (_, other, _) in groups.items() if other is not None} == conflicting
        again = id_dedup_report(tweets)
        assert {t.id: t for t in again.survivors} == expected
        assert again.stats == report.stats and again.samples == report.samples


def test_survivor_content_does_not_depend_on_paths_or_positions():
    rng = random.Random(11)
    tweets = _random_archive(rng)
    expected = {t.id: content(t) for t in id_dedup_report(tweets).survivors}
    for _ in range(3):
        moved = [
            t.replace(
                source_file=rng.choice(["z.json", "gs://other/a.json", "/x/y/q.txt"]),
                position=rng.randint(0, 9),
            )
            for t in tweets
        ]
        rng.shuffle(moved)
        assert {t.id: content(t) for t in id_dedup_report(moved).survivors} == expected


def test_sample_is_bounded_and_chosen_by_a_hash_of_the_id():
    tweets = [t for i in range(300) for t in (tweet(i, f"text {i}"), tweet(i, f"text {i}, edited"))]
    report = id_dedup_report(tweets, max_samples=100)
    assert len(report.samples) == 100
    ids = [s["id"] for s in report.samples]
    assert ids == sorted(range(300), key=splitmix64)[:100]
    assert ids != sorted(ids)  # spread over the id range, not the first 100 tweets
    random.Random(3).shuffle(tweets)
    assert id_dedup_report(tweets, max_samples=100).samples == report.samples
    assert id_dedup_report(tweets, max_samples=0).samples == []


# --- Beam ----------------------------------------------------------------------------------------


@pytest.mark.slow
def test_beam_transform_matches_the_core_whatever_order_and_paths():
    """One pipeline, three layouts of the same records: as given, shuffled, and with the source file
    names swapped between copies. Survivors' content, drops, stats and samples (but for their file
    names) are the same, and each equals the pure core on its own layout."""
    rng = random.Random(5)
    original = _random_archive(rng, ids=60)
    shuffled = rng.sample(original, len(original))
    swap = {
        "gs://b/x/a.json": "/tmp/b.json",
        "/tmp/b.json": "c.zip/a.json",
        "c.zip/a.json": "gs://b/x/a.json",
    }
    swapped = [t.replace(source_file=swap[t.source_file]) for t in reversed(original)]
    layouts = {"Original": original, "Shuffled": shuffled, "Swapped": swapped}
    reports = {name: id_dedup_report(tweets, max_samples=5) for name, tweets in layouts.items()}
    first = reports["Original"]
    survivors = sorted((content(t) for t in first.survivors), key=lambda t: t.id)
    for report in reports.values():
        assert sorted((content(t) for t in report.survivors), key=lambda t: t.id) == survivors
        assert report.stats == first.stats
        assert [{**s, "kept_source_file": "", "other_source_file": ""} for s in report.samples] == [
            {**s, "kept_source_file": "", "other_source_file": ""} for s in first.samples
        ]
    assert first.stats[1]["conflicting_ids"] > 0 and len(first.samples) == 5

    with beam.Pipeline(runner=FnApiRunner()) as p:
        for name, tweets in layouts.items():
            out = p | f"Create{name}" >> beam.Create(tweets) | f"Dedup{name}" >> DeduplicateIds(max_samples=5)
            report = reports[name]
            assert_that(
                out.tweets | f"Content{name}" >> beam.Map(content),
                equal_to(survivors),
                label=f"Survivors{name}",
            )
            assert_that(
                out[TAG_DROPPED] | f"SumDrops{name}" >> beam.CombinePerKey(sum),
                equal_to([((ID_STAGE, DROP_DUPLICATE_ID), report.removed)]),
                label=f"Drops{name}",
            )
            assert_that(out[TAG_STATS], equal_to([report.stats]), label=f"Stats{name}")
            assert_that(out[TAG_SAMPLES], equal_to([report.samples]), label=f"Samples{name}")


# --- end to end ----------------------------------------------------------------------------------


def _v1(tweet_id: int, text: str) -> str:
    return json.dumps({"id_str": str(tweet_id), "id": tweet_id, "text": text, "user": {"id_str": "1"}})


@pytest.mark.slow
def test_pipeline_reports_conflicts_in_the_manifest_and_a_sample_file(tmp_path: Path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    edited = "the council approved the new cycling lanes on the river road this morning, finally"
    shared = "an identical tweet that both exports hold, word for word"
    (inputs / "export-a.jsonl").write_text(
        "\n".join([_v1(500, edited), _v1(501, shared), _v1(502, "only the first export has this one tweet")])
        + "\n"
    )
    (inputs / "export-b.jsonl").write_text(
        "\n".join(
            [_v1(500, edited[:60] + "…"), _v1(501, shared), _v1(503, "and the second export has another")]
        )
        + "\n"
    )
    out = tmp_path / "out"
    manifest = run(RunConfig(inputs=(str(inputs / "*"),), output=str(out)))
    assert manifest.counts.dropped[DROP_DUPLICATE_ID] == 2
    stats = manifest.stages[ID_STAGE]
    assert (stats["duplicate_ids"], stats["conflicting_ids"], stats["conflicting_records"]) == (2, 1, 2)
    assert ID_CONFLICT_SAMPLE_NAME in manifest.side_files
    lines = [json.loads(line) for line in (out / ID_CONFLICT_SAMPLE_NAME).read_text().splitlines()]
    assert len(lines) == 1
    sample = lines[0]
    assert sample["id"] == 500 and sample["kept_text"] == edited and sample["other_text"] == edited[:60] + "…"
    assert Path(sample["kept_source_file"]).name == "export-a.jsonl"
    assert Path(sample["other_source_file"]).name == "export-b.jsonl"


# --- decided in place: only keys are shuffled -----------------------------------------------------


def test_repeated_marks_every_row_whose_key_another_row_holds():
    ids = np.array([5, 3, 5, 9, 3, 3, 1], dtype=np.int64)
    assert repeated(ids).tolist() == [True, True, True, False, True, True, False]
    keys = np.frombuffer(b"".join(normalized_text_key(t) for t in ["a b", "A  b", "c", "a\tb ", "d"]), "S16")
    assert repeated(keys).tolist() == [True, True, False, True, False]
    # keys that differ only in their second half are different keys
    halves = np.frombuffer(bytes(8) + bytes([1]) + bytes(7) + bytes(16), "S16")
    assert repeated(halves).tolist() == [False, False]
    assert repeated(np.zeros(0, dtype=np.int64)).tolist() == [] and repeated(ids[:1]).tolist() == [False]


def _texts_archive(rng: random.Random) -> list[Tweet]:
    """Texts that repeat after normalisation, some ids shared between different texts (which id
    dedup prevents in a run, but the stage must still agree with its core), origins that tie."""
    texts = ["Same text", "same   TEXT", "other", "Other ", "unique one", "unique two", "x"]
    tweets = []
    for i in range(120):
        tweets.append(
            tweet(
                rng.randrange(90),
                rng.choice(texts) + (f" {i}" if rng.random() < 0.3 else ""),
                source_file=rng.choice(["a.json", "b.json"]),
                position=rng.randrange(3),
            )
        )
    return tweets


@pytest.mark.slow
@pytest.mark.parametrize("batched", [False, True])
def test_text_dedup_in_place_matches_the_core(batched: bool):
    """Survivors (every field) and the drop count of DeduplicateTexts equal ``dedup_batch``'s, on
    input split into uneven batches, with 2 worker threads, audited and not."""
    rng = random.Random(9)
    tweets = _texts_archive(rng)
    survivors, removed = dedup_batch(tweets, lambda t: normalized_text_key(t.text), text_survivor_order)
    assert 0 < removed < len(tweets) - 10
    key = text_survivor_order
    options = PipelineOptions(["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"])
    with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
        for audit in (False, True):
            name = f"Audit{audit}"
            if batched:
                cuts = [0, 1, 8, 11, 40, 41, 90, len(tweets)]  # uneven batches, one of one tweet
                chunks = [tweets[a:b] for a, b in itertools.pairwise(cuts)]
                source = p | f"Create{name}" >> beam.Create(chunks, reshuffle=False)
            else:
                source = p | f"Create{name}" >> beam.Create(tweets)
            out = source | f"Dedup{name}" >> DeduplicateTexts(audit=audit, batched=batched)
            kept = out.tweets | f"Flat{name}" >> beam.FlatMap(lambda b: b) if batched else out.tweets
            assert_that(
                kept | f"Order{name}" >> beam.Map(key),
                equal_to([key(t) for t in survivors]),
                label=f"Survivors{name}",
            )
            assert_that(
                out[TAG_DROPPED] | f"SumDrops{name}" >> beam.CombinePerKey(sum),
                equal_to([((TEXT_STAGE, DROP_EXACT_DUPLICATE), removed)]),
                label=f"Drops{name}",
            )
            dropped = out[TAG_DROPPED_TWEETS] | f"CountDropped{name}" >> beam.combiners.Count.Globally()
            assert_that(dropped, equal_to([removed if audit else 0]), label=f"Dropped{name}")


@pytest.mark.slow
def test_id_dedup_in_place_on_batches_matches_the_core():
    """The pipeline's form (lists in, lists out): the same survivors, drops, stats and samples."""
    rng = random.Random(4)
    tweets = _random_archive(rng, ids=80) + [tweet(1000 + i, f"alone {i}") for i in range(50)]
    rng.shuffle(tweets)
    report = id_dedup_report(tweets, max_samples=5)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        chunks = [tweets[i : i + 11] for i in range(0, len(tweets), 11)]
        out = p | beam.Create(chunks, reshuffle=False) | DeduplicateIds(max_samples=5, batched=True)
        assert_that(
            out.tweets | "Flat" >> beam.FlatMap(lambda b: b),
            equal_to(report.survivors),
            label="Survivors",
        )
        assert_that(
            out[TAG_DROPPED] | "SumDrops" >> beam.CombinePerKey(sum),
            equal_to([((ID_STAGE, DROP_DUPLICATE_ID), report.removed)]),
            label="Drops",
        )
        assert_that(out[TAG_STATS], equal_to([report.stats]), label="Stats")
        assert_that(out[TAG_SAMPLES], equal_to([report.samples]), label="Samples")


@pytest.mark.slow
@pytest.mark.parametrize(("audit", "bundle_repeat"), [(False, 0), (True, 0), (False, 1)])
def test_exact_dedup_in_one_pass_equals_ids_then_texts(audit: bool, bundle_repeat: int):
    """The pipeline's form (``texts_next``) = id dedup, then text dedup of its survivors: the same
    kept tweets, drops per stage, stats, samples and (audited) removed copies, though both are
    decided in one pass and only the tweets of repeated ids or texts go to the combines. With
    every bundle run twice by the same DoFn instances, the side input read once per instance
    still splits every batch right."""
    rng = random.Random(21)
    tweets = (
        _random_archive(rng, ids=70) + _texts_archive(rng) + [tweet(5000 + i, f"lone {i}") for i in range(40)]
    )
    rng.shuffle(tweets)
    ids = id_dedup_report(tweets, max_samples=5)
    kept, text_removed = dedup_batch(
        ids.survivors, lambda t: normalized_text_key(t.text), text_survivor_order
    )
    assert ids.removed > 20 and text_removed > 20 and ids.stats[1]["conflicting_ids"] > 0
    key = text_survivor_order
    options = PipelineOptions([f"--direct_runner_bundle_repeat={bundle_repeat}"])
    with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
        cuts = [0, 1, 30, 31, 200, len(tweets)]
        batches = p | beam.Create([tweets[a:b] for a, b in itertools.pairwise(cuts)], reshuffle=False)
        ids_out = batches | "Ids" >> DeduplicateIds(max_samples=5, audit=audit, batched=True, texts_next=True)
        texts_out = ids_out.for_texts() | "Texts" >> DeduplicateTexts(audit=audit, batched=True)
        flat = texts_out.tweets | "Flat" >> beam.FlatMap(lambda b: b)
        assert_that(flat | "Order" >> beam.Map(key), equal_to([key(t) for t in kept]), label="Kept")
        for stage, outputs, reason, removed in (
            ("Ids", ids_out, DROP_DUPLICATE_ID, ids.removed),
            ("Texts", texts_out, DROP_EXACT_DUPLICATE, text_removed),
        ):
            name = ID_STAGE if stage == "Ids" else TEXT_STAGE
            drops = outputs[TAG_DROPPED] | f"Sum{stage}" >> beam.CombinePerKey(sum)
            assert_that(drops, equal_to([((name, reason), removed)]), label=f"Drops{stage}")
            gone = outputs[TAG_DROPPED_TWEETS] | f"CountGone{stage}" >> beam.combiners.Count.Globally()
            assert_that(gone, equal_to([removed if audit else 0]), label=f"Gone{stage}")
        assert_that(ids_out[TAG_STATS], equal_to([ids.stats]), label="Stats")
        assert_that(ids_out[TAG_SAMPLES], equal_to([ids.samples]), label="Samples")


def test_text_key_is_the_nfkc_casefold_collapsed_text_on_every_code_point():
    """``normalized_text_key``'s fast path (split/join, ASCII skips NFKC) equals its definition."""
    import hashlib
    import re
    import sys
    import unicodedata

    def reference(text: str) -> bytes:
        norm = re.sub(r"\s+", " ", unicodedata.normalize("NFKC", text).casefold()).strip()
        return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()

    chars = [chr(c) for c in range(sys.maxunicode + 1) if not 0xD800 <= c <= 0xDFFF]
    for i in range(0, len(chars), 64):
        text = "a" + " ".join(chars[i : i + 64]) + "\u00a0\t"
        assert normalized_text_key(text) == reference(text)
    for text in ["", " ", "\x1c\x1d x \u3000", "ﬁne  ＡＢＣ", "café", "cafe\u0301", "Straße STRASSE"]:
        assert normalized_text_key(text) == reference(text)
    assert normalized_text_key(" Hello\n\tWORLD ") == normalized_text_key("hello world")

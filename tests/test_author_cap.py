"""The per-author cap: the pure rule, and the Beam stage against it on the real FnApiRunner."""

from __future__ import annotations

import random
from collections import Counter

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from tweetmill.schemas.records import Tweet
from tweetmill.transforms import author_cap
from tweetmill.transforms.author_cap import (
    DROP_AUTHOR_CAP,
    AuthorCapConfig,
    CapAuthors,
    cap_authors,
    cap_key,
    cap_limit,
)
from tweetmill.transforms.common import TAG_DROPPED
from tweetmill.transforms.near_dedup_encoding import decode_arrays
from tweetmill.transforms.stage import KIND_SHUFFLE, TAG_DROPPED_TWEETS

COUNT_ONLY = AuthorCapConfig(max_tweets_per_author=3, max_author_share=0)


def tweet(tid: int, author: int | None, position: int = 0) -> Tweet:
    return Tweet(id=tid, text=f"t{tid}", source_format="v1", source_file="f.jsonl", position=position,
                 author_id=author)


def ids(tweets) -> list[int]:
    return sorted(t.id for t in tweets)


def corpus(seed: int = 7) -> list[Tweet]:
    """~1500 tweets: two floods, a mid-size author, 300 small authors, tweets without an author."""
    rng = random.Random(seed)
    authors = [1] * 600 + [2] * 250 + [3] * 40 + [None] * 120 + [100 + rng.randrange(300) for _ in range(500)]
    return [tweet(rng.getrandbits(63), a, i) for i, a in enumerate(authors)]


# --- the limit -----------------------------------------------------------------------------------


def test_limit_count_share_and_the_authors_guard():
    assert cap_limit(AuthorCapConfig(max_tweets_per_author=0, max_author_share=0), 10**6, 10**5) == 0
    assert cap_limit(AuthorCapConfig(max_tweets_per_author=500, max_author_share=0), 10**6, 1) == 500
    share = AuthorCapConfig(max_tweets_per_author=0, max_author_share=0.02, min_authors_for_share=1000)
    assert cap_limit(share, 10**6, 999) == 0  # too few authors: no share cap
    assert cap_limit(share, 10**6, 1000) == 20_000
    both = AuthorCapConfig(max_tweets_per_author=5000, max_author_share=0.02, min_authors_for_share=1000)
    assert cap_limit(both, 10**6, 5000) == 5000
    assert cap_limit(both, 10**5, 5000) == 2000
    assert cap_limit(both, 10**5, 10) == 5000  # the count cap applies whatever the authors


def test_limit_share_is_exact_and_at_least_one():
    assert cap_limit(AuthorCapConfig(max_author_share=0.29, min_authors_for_share=0), 100, 1) == 29
    assert cap_limit(AuthorCapConfig(max_author_share=0.001, min_authors_for_share=0), 10, 1) == 1


def test_config_validation_and_enabled():
    with pytest.raises(ValueError):
        AuthorCapConfig(max_tweets_per_author=-1)
    with pytest.raises(ValueError):
        AuthorCapConfig(max_author_share=1.5)
    with pytest.raises(ValueError):
        AuthorCapConfig(min_authors_for_share=-1)
    assert AuthorCapConfig().enabled
    assert not AuthorCapConfig(max_tweets_per_author=0, max_author_share=0).enabled


def test_stage_contract():
    assert (CapAuthors.name, CapAuthors.kind) == ("author_cap", KIND_SHUFFLE)
    assert CapAuthors.reasons == (DROP_AUTHOR_CAP,)
    assert CapAuthors.description
    assert CapAuthors(COUNT_ONLY).config.max_tweets_per_author == 3


# --- the pure rule -------------------------------------------------------------------------------


def test_count_cap_keeps_the_smallest_keys_of_each_author():
    flood = [tweet(i, 7, i) for i in range(1, 11)]
    other = [tweet(100 + i, 8, i) for i in range(3)]  # at the cap: untouched
    kept, dropped = cap_authors(flood + other, COUNT_ONLY)
    expected = sorted(flood, key=lambda t: cap_key(t.id))[:3]
    assert ids(kept) == ids(expected + other)
    assert ids(dropped) == sorted({t.id for t in flood} - {t.id for t in expected})


def test_tweets_without_an_author_are_never_capped():
    anonymous = [tweet(i, None, i) for i in range(50)]
    kept, dropped = cap_authors(anonymous, AuthorCapConfig(max_tweets_per_author=1, max_author_share=0.01,
                                                           min_authors_for_share=0))
    assert (len(kept), dropped) == (50, [])


def test_one_account_archive_is_never_capped_by_default():
    archive = [tweet(i, 42, i) for i in range(5000)]
    kept, dropped = cap_authors(archive, AuthorCapConfig())
    assert (len(kept), dropped) == (5000, [])


def test_share_cap_applies_from_enough_authors():
    config = AuthorCapConfig(max_tweets_per_author=0, max_author_share=0.1, min_authors_for_share=20)
    flood = [tweet(i, 1, i) for i in range(60)]
    crowd = [tweet(1000 + i, 100 + i, i) for i in range(40)]  # 41 authors, 100 tweets: limit 10
    _, dropped = cap_authors(flood + crowd, config)
    assert len(dropped) == 50 and all(t.author_id == 1 for t in dropped)
    _, dropped = cap_authors(flood + crowd[:18], config)  # 19 authors: no share cap
    assert dropped == []


def test_copies_of_one_id_share_a_fate():
    # The 3rd smallest key belongs to an id seen twice: both copies stay (4 kept for a cap of 3).
    tweets = [tweet(i, 5, i) for i in range(1, 9)]
    third = sorted(tweets, key=lambda t: cap_key(t.id))[2]
    tweets.append(tweet(third.id, 5, 99))
    kept, _ = cap_authors(tweets, COUNT_ONLY)
    assert len(kept) == 4 and [t.id for t in kept].count(third.id) == 2


def test_survivors_do_not_depend_on_input_order():
    tweets = corpus()
    config = AuthorCapConfig(max_tweets_per_author=100, max_author_share=0.05, min_authors_for_share=100)
    kept, dropped = cap_authors(tweets, config)
    assert dropped
    for seed in range(3):
        shuffled = tweets[:]
        random.Random(seed).shuffle(shuffled)
        again, _ = cap_authors(shuffled, config)
        assert ids(again) == ids(kept)


def test_vectorised_keys_match_cap_key():
    some = [0, 1, -1, -(2**63), 2**63 - 1, 1_234_567_890_123_456_789]
    fn = author_cap._AuthorIdsFn(partitions=4)
    fn.start_bundle()
    for i in some:
        list(fn.process(tweet(i, 9)))
    [packed] = fn._flush()
    [(author, (limit, keys))] = author_cap._keys_of_over_cap(packed, {9: len(some)}, (6, 1, 2))
    assert (author, limit) == (9, 2)
    assert np.frombuffer(keys, dtype="<u8").tolist() == [cap_key(i) for i in some]


def test_author_counts_travel_per_partition_not_per_author():
    """A bundle sends at most one element per author partition, and the partitions' groups sum to
    each author's count over all bundles."""
    rng = random.Random(5)
    bundles = [[tweet(rng.getrandbits(60), rng.randint(1, 300)) for _ in range(2_000)] for _ in range(3)]
    grouped: dict[int, list[bytes]] = {}
    for bundle in bundles:
        fn = author_cap._AuthorIdsFn(partitions=4)
        fn.start_bundle()
        list(fn.process(bundle))
        packed = list(fn._flush())
        assert len(packed) == len({q for q, _ in packed}) <= 4
        for q, payload in packed:
            grouped.setdefault(q, []).append(author_cap._author_counts((q, payload))[1])
    counted = {}
    for q, payloads in grouped.items():
        _, counts = author_cap._count_per_author((q, payloads))
        authors, totals = decode_arrays(counts)
        counted.update(zip(authors.tolist(), totals.tolist(), strict=True))
    assert counted == Counter(t.author_id for bundle in bundles for t in bundle)


def test_smallest_keys_combine_merges_and_encodes():
    rng = np.random.default_rng(3)
    keys = rng.integers(0, 2**64, size=200_000, dtype=np.uint64)
    fn, coder = author_cap._SmallestKeys(), author_cap._SmallestCoder()
    limit = 1000
    accs = []
    for part in np.array_split(keys, 7):
        acc = fn.create_accumulator()
        for chunk in np.array_split(part, 5):
            acc = fn.add_input(acc, (limit, chunk.astype("<u8").tobytes()))
        assert acc.size < 2 * limit + author_cap._FLUSH_KEYS + len(chunk)  # bounded, not all keys
        accs.append(coder.decode(coder.encode(acc)))
    assert fn.extract_output(fn.merge_accumulators(accs)) == int(np.sort(keys)[limit - 1])


# --- the Beam stage ------------------------------------------------------------------------------


def _check_stage(p, tweets, config, *, label, spill_dir=None):
    """The stage against ``cap_authors``; with ``spill_dir``, on batches parked in spill files."""
    kept, dropped = cap_authors(tweets, config)
    if spill_dir is None:
        out = p | f"Create{label}" >> beam.Create(tweets) | f"Cap{label}" >> CapAuthors(config)
        kept_ids = out.tweets | f"KeptIds{label}" >> beam.Map(lambda t: t.id)
    else:
        batches = [tweets[i : i + 97] for i in range(0, len(tweets), 97)]
        cap = CapAuthors(config, batched=True, spill_dir=spill_dir)
        out = p | f"Create{label}" >> beam.Create(batches) | f"Cap{label}" >> cap
        kept_ids = out.tweets | f"KeptIds{label}" >> beam.FlatMap(lambda b: [t.id for t in b])
    assert_that(kept_ids, equal_to([t.id for t in kept]), label=f"Kept{label}")
    drops = out[TAG_DROPPED] | f"SumDrops{label}" >> beam.CombinePerKey(sum)  # one count per bundle
    assert_that(drops, equal_to([(("author_cap", DROP_AUTHOR_CAP), len(dropped))]), label=f"Drops{label}")
    audited = [("author_cap", DROP_AUTHOR_CAP, t.id) for t in dropped]
    assert_that(out[TAG_DROPPED_TWEETS] | f"DroppedIds{label}" >> beam.Map(lambda d: (d[0], d[1], d[2].id)),
                equal_to(audited), label=f"Audit{label}")
    return out, kept, dropped


@pytest.mark.slow
def test_beam_stage_matches_the_reference(tmp_path):
    tweets = corpus()
    both = AuthorCapConfig(max_tweets_per_author=200, max_author_share=0.1, min_authors_for_share=100)
    count = AuthorCapConfig(max_tweets_per_author=30, max_author_share=0)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out, _, dropped = _check_stage(p, tweets, both, label="Both")
        _check_stage(p, tweets, count, label="Count")
        _check_stage(p, tweets, count, label="CountBatched", spill_dir=str(tmp_path / "spill"))
        authors = len({t.author_id for t in tweets} - {None})
        limit = cap_limit(both, len(tweets), authors)
        plan = (len(tweets), authors, limit)
        expected = author_cap.stats_dict(both, plan, [(1, 600), (2, 250)], 2, len(dropped))
        assert_that(out["stats"], equal_to([expected]), label="Stats")
        empty = p | "CreateEmpty" >> beam.Create([]).with_output_types(Tweet) | "CapEmpty" >> CapAuthors()
        assert_that(empty.tweets, equal_to([]), label="KeptEmpty")
        nothing = author_cap.stats_dict(AuthorCapConfig(), (0, 0, 0), [], 0, 0)
        assert_that(empty["stats"], equal_to([nothing]), label="StatsEmpty")
    assert limit == 151 and len(dropped) == (600 - limit) + (250 - limit)


@pytest.mark.slow
def test_beam_stage_on_two_worker_processes():
    tweets = corpus(seed=11)
    config = AuthorCapConfig(max_tweets_per_author=50, max_author_share=0)
    options = PipelineOptions(["--direct_num_workers=2", "--direct_running_mode=multi_processing"])
    with beam.Pipeline(runner=FnApiRunner(), options=options) as p:
        _check_stage(p, tweets, config, label="TwoWorkers")

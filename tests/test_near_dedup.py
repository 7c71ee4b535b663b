"""Near-dedup: datasketch-identical signatures, the cluster rule, and the Beam transform matching the
in-memory core whatever the worker count or input order."""

from __future__ import annotations

import itertools
import random

import apache_beam as beam
import numpy as np
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from conftest import SHARED_DATA
from datasketch import LeanMinHash, MinHash, MinHashLSH
from tweetmill.schemas.records import DROP_NEAR_DUPLICATE, Tweet
from tweetmill.transforms.common import TAG_DROPPED
from tweetmill.transforms.minhash import (
    band_keys,
    lsh_params,
    minhash_signatures,
    normalize_text,
    permutations,
    shingle_hash,
    shingle_strings,
    shingles,
)
from tweetmill.transforms.near_dedup import (
    STAGE,
    NearDedupConfig,
    RemoveNearDuplicates,
    near_dedup_report,
    near_duplicates,
)
from tweetmill.transforms.stage import TAG_DROPPED_TWEETS

EDGE_TEXTS = [
    "",
    " ",
    "a",
    "ok",
    "four",
    "exact",
    "Hello World",
    "RT @user: Hello   world",
    "rt @someone hello world",
    "hello world <URL>",
    "hello world https://t.co/abc123",
    "mail me at someone@example.com or <EMAIL>, call <PHONE>",
    "ÉCOLE ﬁne ＡＢＣ straße",  # NFKC + casefold
    "emoji 👩‍👩‍👧 zwj and 😀😀😀 astral",
    "tab\tand\nnewline   runs",
    "x" * 500,
    "nul\x00inside, the separator of texts in a batch",
]


def tweet(i: int, text: str, position: int = 0) -> Tweet:
    return Tweet(id=i, text=text, source_format="text", source_file="t", position=position)


def corpus_texts(k: int, seed: int = 3) -> list[str]:
    """Up to k texts of the bench corpus (random sample), or synthetic ones if it is absent."""
    files = sorted((SHARED_DATA / "bench").glob("*.txt"))
    lines = [ln.strip() for f in files for ln in f.read_text().splitlines() if ln.strip()]
    rng = random.Random(seed)
    if not lines:
        words = [f"word{i}" for i in range(30)] + ["#news", "lol", "@user", "<URL>"]
        lines = [" ".join(rng.choices(words, k=rng.randint(1, 20))) for _ in range(k)]
    return rng.sample(lines, min(k, len(lines)))


def datasketch_minhash(text: str, config: NearDedupConfig) -> MinHash:
    m = MinHash(num_perm=config.num_perm, seed=config.seed, hashfunc=shingle_hash)
    m.update_batch(shingle_strings(text, config.shingle_size))
    return m


# --- signatures ----------------------------------------------------------------------------------


@pytest.mark.parametrize(("num_perm", "seed"), [(128, 1), (64, 42), (200, 7)])
def test_permutations_are_datasketchs(num_perm: int, seed: int) -> None:
    a, b = permutations(num_perm, seed)
    ref = MinHash(num_perm=num_perm, seed=seed).permutations
    assert np.array_equal(a, ref[0]) and np.array_equal(b, ref[1])
    assert a.dtype == ref.dtype == np.uint32


@pytest.mark.parametrize(("n", "num_perm", "seed"), [(5, 128, 1), (3, 64, 42), (1, 32, 9), (8, 128, 3)])
def test_signatures_identical_to_datasketch(n: int, num_perm: int, seed: int) -> None:
    config = NearDedupConfig(shingle_size=n, num_perm=num_perm, seed=seed)
    texts = EDGE_TEXTS + corpus_texts(300)
    sigs = minhash_signatures(texts, config)
    assert sigs.shape == (len(texts), num_perm) and sigs.dtype == np.uint32
    for text, sig in zip(texts, sigs, strict=True):
        assert np.array_equal(sig, datasketch_minhash(text, config).hashvalues), text


def test_batch_composition_does_not_change_signatures() -> None:
    config = NearDedupConfig()
    texts = EDGE_TEXTS + corpus_texts(100)
    whole = minhash_signatures(texts, config)
    one_by_one = np.vstack([minhash_signatures([t], config) for t in texts])
    assert np.array_equal(whole, one_by_one)
    assert minhash_signatures([], config).shape == (0, config.num_perm)


def test_signatures_load_into_datasketch_lsh() -> None:
    config = NearDedupConfig(threshold=0.7)
    texts = ["the quick brown fox jumps over the lazy dog", "The quick brown fox jumps over the lazy dog!!"]
    sigs = minhash_signatures(texts, config)
    lean = [LeanMinHash(MinHash(hashvalues=s, seed=config.seed, scheme="affine32")) for s in sigs]
    assert lean[0].jaccard(lean[1]) == np.count_nonzero(sigs[0] == sigs[1]) / config.num_perm
    w = config.false_negative_weight
    index = MinHashLSH(threshold=config.threshold, num_perm=config.num_perm, weights=(1 - w, w))
    assert (index.b, index.r) == (config.bands, config.rows) == lsh_params(0.7, 128, w)
    index.insert("first", lean[0])
    assert index.query(lean[1]) == ["first"]


@pytest.mark.parametrize("num_perm", [1, 7, 16, 64, 128, 256])
def test_lsh_params_choose_as_datasketch(num_perm: int) -> None:
    """The numpy quadrature picks the (bands, rows) that datasketch's scipy one picks."""
    from datasketch.lsh import _optimal_param

    for threshold in (0.05, 0.3, 0.5, 0.7, 0.85, 0.99):
        for w in (0.1, 0.5, 0.9):
            chosen = lsh_params(threshold, num_perm, w)
            assert chosen == _optimal_param(threshold, num_perm, 1 - w, w), (threshold, w)
            assert chosen[0] * chosen[1] <= num_perm


def test_shingles_of_short_and_empty_texts() -> None:
    n = 5
    assert shingle_strings("", n) == [] and shingle_strings("   ", n) == []
    assert shingle_strings("Ok", n) == ["ok"]  # shorter than n: one shingle, the whole text
    assert shingle_strings("exact", n) == ["exact"]
    assert shingle_strings("sixsix", n) == ["sixsi", "ixsix"]
    sh = shingles(["", "ok", "sixsix", ""], n)
    assert sh.offsets.tolist() == [0, 0, 1, 3, 3]
    assert sh.of(1).tolist() == [shingle_hash("ok")]
    assert sh.of(2).tolist() == [shingle_hash("sixsi"), shingle_hash("ixsix")]
    sigs = minhash_signatures(["", "ok"], NearDedupConfig())
    assert np.all(sigs[0] == np.uint32(0xFFFFFFFF))  # datasketch's empty MinHash


def test_normalisation_folds_entities_case_space_and_retweet_marker() -> None:
    assert normalize_text("RT @user: Hello   WORLD") == normalize_text("hello world")
    assert normalize_text("hello <URL>") == normalize_text("Hello https://t.co/xyz") == "hello \ue000"
    assert normalize_text("hi @user") == normalize_text("hi @someone_else")
    assert normalize_text("mail a.b@c.org") == normalize_text("mail <EMAIL>")
    assert normalize_text("ＡＢＣ\tx\n y") == "abc x y"
    assert normalize_text("RT is a word") == "rt is a word"  # no marker without a mention


def test_band_keys_depend_on_band_and_rows() -> None:
    sig = np.zeros((1, 12), dtype=np.uint32)  # all bands equal values
    keys = band_keys(sig, 3, 4)
    assert keys.shape == (1, 3) and len(set(keys[0].tolist())) == 3
    other = sig.copy()
    other[0, 5] = 1
    changed = band_keys(other, 3, 4)
    assert changed[0, 0] == keys[0, 0] and changed[0, 1] != keys[0, 1] and changed[0, 2] == keys[0, 2]


def test_config_validation() -> None:
    for bad in (
        {"threshold": 0.0},
        {"threshold": 1.5},
        {"num_perm": 0},
        {"shingle_size": 0},
        {"max_samples": -1},
        {"false_negative_weight": 1.0},
    ):
        with pytest.raises(ValueError):
            NearDedupConfig(**bad)


# --- the rule (in-memory core) -------------------------------------------------------------------


def test_near_duplicates_keep_the_smallest_id() -> None:
    base = "Win a free iPhone today, just click the link and share with your friends"
    tweets = [
        tweet(30, base + " https://t.co/aaa"),
        tweet(10, base.upper() + " https://t.co/bbb"),
        tweet(20, "RT @spam: " + base),
        tweet(40, base + " #giveaway"),
        tweet(50, "Something else entirely, about the weather in Lisbon this week"),
        tweet(60, ""),
        tweet(70, ""),  # empty texts never match, not even each other
        tweet(80, "ok"),
    ]
    kept, removed = near_duplicates(tweets, NearDedupConfig())
    assert [t.id for t in kept] == [10, 50, 60, 70, 80]
    assert [t.id for t in removed] == [30, 20, 40]
    report = near_dedup_report(tweets, NearDedupConfig())
    assert {p.kept.id for p in report.removed} == {10}
    stage, stats = report.stats()
    assert stage == "near_dedup"
    assert (stats["duplicates_removed"], stats["clusters"], stats["largest_cluster"]) == (3, 1, 4)


def test_transitivity_rule_is_local() -> None:
    """A~B, B~C, not A~C: the rule drops a tweet iff a verified neighbour has a smaller id."""
    a = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"
    b = a.replace("alpha bravo", "zulu yankee")
    c = b.replace("kilo lima", "xray whiskey")
    config = NearDedupConfig(threshold=0.6, num_perm=256)
    sigs = minhash_signatures([a, b, c], config)

    def agreement(i: int, j: int) -> float:
        return np.count_nonzero(sigs[i] == sigs[j]) / config.num_perm

    assert agreement(0, 1) >= 0.6 and agreement(1, 2) >= 0.6 and agreement(0, 2) < 0.6
    # A < B < C: B goes (A), C goes too (B, itself removed): its anchor is B.
    report = near_dedup_report([tweet(1, a), tweet(2, b), tweet(3, c)], config)
    assert {p.removed.id: p.kept.id for p in report.removed} == {2: 1, 3: 2}
    # A < C < B: only B has a smaller verified neighbour; C survives.
    kept, _ = near_duplicates([tweet(1, a), tweet(3, b), tweet(2, c)], config)
    assert sorted(t.id for t in kept) == [1, 2]


@pytest.mark.slow
def test_a_failed_smallest_anchor_sends_the_tweet_on_to_its_other_anchors() -> None:
    """C shares a bucket with A (its smallest candidate) but is not similar to it; B, its other
    candidate, verifies: the second round of checks finds it, in the core and in Beam alike."""
    a = "alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima"
    b = a.replace("alpha bravo", "zulu yankee")
    c = b.replace("kilo lima", "xray whiskey")
    config = NearDedupConfig(threshold=0.6, num_perm=256)
    keys = band_keys(minhash_signatures([a, c], config), config.bands, config.rows)
    assert (keys[0] == keys[1]).any()  # A is among C's candidates
    tweets = [tweet(1, a), tweet(2, b), tweet(3, c)]
    report = near_dedup_report(tweets, config)
    assert {p.removed.id: p.kept.id for p in report.removed} == {2: 1, 3: 2}
    stats = report.stats()[1]
    assert (stats["candidate_pairs"], stats["verified_pairs"]) == (3, 2)  # B-A; C-A fails, then C-B
    run_stage(tweets, config, report, partitions=4)


# --- Beam ----------------------------------------------------------------------------------------


def mixed_tweets(n_originals: int = 600, seed: int = 5) -> list[Tweet]:
    """Corpus texts plus near-duplicates of a third of them, shuffled, random ids."""
    rng = random.Random(seed)
    texts = corpus_texts(n_originals, seed)
    for text in rng.sample(texts, len(texts) // 3):
        texts.append(rng.choice([text.upper(), "RT @x: " + text, text + " #tbt", text[:-2], text + " <URL>"]))
    texts += ["", "", "a", "a", "short"]
    rng.shuffle(texts)
    ids = rng.sample(range(1, 10**12), len(texts))
    return [tweet(i, t, p) for p, (i, t) in enumerate(zip(ids, texts, strict=True))]


def run_stage(
    tweets: list[Tweet],
    config: NearDedupConfig,
    expected,
    args: list[str] | None = None,
    parts: int = 1,
    **transform_args,
) -> None:
    """Run RemoveNearDuplicates on the FnApiRunner and check every output against ``expected``;
    ``parts`` > 1 (batched): the batches come as a tuple of that many PCollections."""
    report = expected
    kept_ids = sorted({t.id for t in tweets} - {p.removed.id for p in report.removed})
    batched = transform_args.get("batched", False)
    with beam.Pipeline(runner=FnApiRunner(), options=PipelineOptions(args or [])) as p:
        # batched: lists of tweets in and out (the pipeline's form), of uneven sizes
        cuts = [0, *range(1, len(tweets), 37), len(tweets)]
        source = [tweets[a:b] for a, b in itertools.pairwise(cuts)] if batched else tweets
        inputs = tuple(
            p | f"Create{i}" >> beam.Create(source[i::parts], reshuffle=False) for i in range(parts)
        )
        near_dedup = RemoveNearDuplicates(config, **transform_args)
        out = (inputs if parts > 1 else inputs[0]) | "NearDedup" >> near_dedup
        kept = out.tweets | "Flat" >> beam.FlatMap(lambda b: b) if batched else out.tweets
        assert_that(kept | "Ids" >> beam.Map(lambda t: t.id), equal_to(kept_ids), label="CheckKept")
        dropped = out[TAG_DROPPED] | "SumDrops" >> beam.CombinePerKey(sum)
        expected_drops = [((STAGE, DROP_NEAR_DUPLICATE), len(report.removed))] if report.removed else []
        assert_that(dropped, equal_to(expected_drops), label="CheckDropped")
        assert_that(out["stats"], equal_to([report.stats()]), label="CheckStats")
        assert_that(out["samples"], equal_to(report.samples()), label="CheckSamples")


@pytest.mark.slow
def test_beam_matches_core_and_is_deterministic() -> None:
    config = NearDedupConfig(max_samples=25)
    tweets = mixed_tweets()
    report = near_dedup_report(tweets, config)
    assert 150 < len(report.removed) < 400
    run_stage(tweets, config, report)
    # Input order, worker count, partitions and batch size change nothing (same expected values).
    assert near_dedup_report(list(reversed(tweets)), config).stats() == report.stats()
    run_stage(
        list(reversed(tweets)),
        config,
        report,
        ["--direct_num_workers", "2", "--direct_running_mode", "multi_threading"],
        partitions=3,
        batch_size=64,
    )


@pytest.mark.slow
def test_huge_bucket_is_linear() -> None:
    """20k copies of one spam text: 19,999 pairs (each with the smallest id), not 2 * 10**8."""
    rng = random.Random(1)
    spam = "FREE followers!!! get 1000 followers now at <URL> #followback"
    ids = rng.sample(range(1, 10**9), 20_000)
    tweets = [tweet(i, spam if k % 2 else spam.upper(), k) for k, i in enumerate(ids)]
    tweets.append(tweet(0, "an unrelated tweet about gardening and tomatoes"))
    config = NearDedupConfig(max_samples=5)
    report = near_dedup_report(tweets, config)
    stats = report.stats()[1]
    assert stats["duplicates_removed"] == 19_999 and stats["clusters"] == 1
    assert stats["largest_cluster"] == 20_000 and stats["candidate_pairs"] == 19_999
    run_stage(tweets, config, report)


@pytest.mark.slow
def test_empty_input() -> None:
    config = NearDedupConfig()
    report = near_dedup_report([], config)
    assert report.stats()[1]["duplicates_removed"] == 0
    run_stage([], config, report)


@pytest.mark.slow
def test_shared_ids_match_core() -> None:
    """Tweets sharing an id (which ``DeduplicateIds`` should have prevented) share a fate, and a
    removed tweet's anchor among several tweets with the smallest id is the one with the smallest
    text: same as the core."""
    base = "Win a free iPhone today, just click the link and share with your friends"
    tweets = [
        tweet(5, base + " #b"),
        tweet(5, base + " #a"),
        tweet(7, base),
        tweet(7, base.upper() + " now"),
        tweet(9, base + " !!"),
        tweet(3, "something else entirely, about the weather in Lisbon this week"),
    ]
    config = NearDedupConfig(max_samples=10)
    report = near_dedup_report(tweets, config)
    assert {p.removed.id for p in report.removed} == {7, 9}
    assert {p.kept.text for p in report.removed} == {base + " #a"}
    kept, _ = near_duplicates(tweets, config)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(tweets, reshuffle=False) | RemoveNearDuplicates(config, partitions=4)
        assert_that(out.tweets | beam.Map(lambda t: (t.id, t.text)), equal_to([(t.id, t.text) for t in kept]))
        assert_that(out["stats"], equal_to([report.stats()]), label="CheckStats")
        assert_that(out["samples"], equal_to(report.samples()), label="CheckSamples")


@pytest.mark.slow
@pytest.mark.parametrize("bundle_repeat", [0, 1])
def test_batches_in_batches_out_match_core(bundle_repeat: int) -> None:
    """The pipeline's form: lists of tweets in, the kept ones decided in their lists. With every
    bundle run twice by the same DoFn instances, Decide's side input (read once per instance)
    still drops exactly the removed tweets."""
    config = NearDedupConfig(max_samples=25)
    tweets = mixed_tweets(seed=8)
    report = near_dedup_report(tweets, config)
    assert len(report.removed) > 100
    args = [f"--direct_runner_bundle_repeat={bundle_repeat}"]
    run_stage(tweets, config, report, args, partitions=5, batch_size=100, batched=True)


@pytest.mark.slow
@pytest.mark.parametrize("spill", [False, True])
def test_batches_in_parts_match_core(tmp_path, spill: bool) -> None:
    """The kept batches and the survivors of exact dedup come as two PCollections, each signed and
    parked apart (through files with ``spill_dir``): the same decisions as one input."""
    config = NearDedupConfig(max_samples=25)
    tweets = mixed_tweets(seed=9)
    report = near_dedup_report(tweets, config)
    spill_dir = str(tmp_path / "spill") if spill else None
    run_stage(tweets, config, report, parts=2, partitions=5, batched=True, spill_dir=spill_dir)
    if spill:
        assert not list((tmp_path / "spill").iterdir())  # every spill file read and removed


@pytest.mark.slow
def test_tweets_sharing_an_id_can_part_ways() -> None:
    """Two tweets with one id, only one of them a near-duplicate of a smaller id: only that one
    goes, as in the core, although tweets are dropped in their batches against a side input of
    ids (the removed one's text tells them apart)."""
    base = "Win a free iPhone today, just click the link and share with your friends"
    other = "the weather in Lisbon was lovely all week long, sunny and warm"
    tweets = [tweet(1, base), tweet(5, base + " !!"), tweet(5, other), tweet(8, other + "."), tweet(9, "x")]
    config = NearDedupConfig(max_samples=10)
    report = near_dedup_report(tweets, config)
    assert sorted((p.removed.id, p.removed.text) for p in report.removed) == [
        (5, base + " !!"),
        (8, other + "."),
    ]
    kept, removed = near_duplicates(tweets, config)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        batches = p | beam.Create([tweets[:2], tweets[2:]], reshuffle=False)
        out = batches | RemoveNearDuplicates(config, partitions=3, batched=True)
        flat = out.tweets | "Flat" >> beam.FlatMap(lambda b: b)
        assert_that(flat | beam.Map(lambda t: (t.id, t.text)), equal_to([(t.id, t.text) for t in kept]))
        gone = out[TAG_DROPPED_TWEETS] | "Gone" >> beam.MapTuple(lambda stage, reason, t: (t.id, t.text))
        assert_that(gone, equal_to([(t.id, t.text) for t in removed]), label="CheckRemoved")
        drops = out[TAG_DROPPED] | "SumDrops" >> beam.CombinePerKey(sum)
        assert_that(drops, equal_to([((STAGE, DROP_NEAR_DUPLICATE), 2)]), label="CheckDropped")
        assert_that(out["stats"], equal_to([report.stats()]), label="CheckStats")
        assert_that(out["samples"], equal_to(report.samples()), label="CheckSamples")

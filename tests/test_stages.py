"""Pure cores of the filter, dedup, tokenize and write stages, without Beam."""

from __future__ import annotations

import dataclasses
import os
import random

import numpy as np
import pyarrow as pa
import pytest
from conftest import shared_data
from tweetmill.schemas.manifest import Counts
from tweetmill.schemas.records import (
    DROP_EMPTY,
    DROP_RETWEET,
    DROP_TOO_SHORT,
    Tweet,
    derived_tweet_id,
)
from tweetmill.schemas.shard import check_shard_schema, shard_schema
from tweetmill.transforms.dedup import (
    dedup_batch,
    id_survivor_order,
    normalized_text_key,
    text_survivor_order,
)
from tweetmill.transforms.filters.empty import EmptyText
from tweetmill.transforms.filters.length import Length, content_length, has_content
from tweetmill.transforms.filters.retweets import Retweets
from tweetmill.transforms.stage import drop_counts, run_stage
from tweetmill.transforms.tokenize import TokenizerSpec, encode_batch, load_tokenizer, train_bpe_tokenizer
from tweetmill.transforms.write import (
    AccountingError,
    check_balance,
    serialize_table,
    shard_of,
    tweets_to_table,
)


def tweet(i: int, text: str = "hello there world", **kw) -> Tweet:
    return Tweet(
        id=i,
        text=text,
        source_format="text",
        source_file=kw.pop("source_file", "f.txt"),
        position=kw.pop("position", i),
        **kw,
    )


def test_derived_ids_are_deterministic_and_in_int63():
    a = derived_tweet_id("gs://b/x.txt", 7, "some text")
    assert a == derived_tweet_id("gs://b/x.txt", 7, "some text")
    assert a != derived_tweet_id("gs://b/x.txt", 8, "some text")
    assert a != derived_tweet_id("gs://b/x.txt", 7, "other text")
    assert a != derived_tweet_id("gs://b/y.txt", 7, "some text")
    assert 0 <= a < 2**63


def test_derived_ids_do_not_depend_on_where_the_archive_is_stored():
    """The same file read from another folder or bucket keeps its ids, so dedup keeps the same tweets."""
    a = derived_tweet_id("gs://bucket/archive/2022-01/x.txt", 7, "some text")
    assert a == derived_tweet_id("/home/me/x.txt", 7, "some text") == derived_tweet_id(r"C:\data\x.txt", 7,
                                                                                        "some text")
    assert derived_tweet_id("x.txt", 0, "lone \ud800 surrogate") >= 0


def test_filter_counts_every_drop_by_reason():
    tweets = [
        tweet(1, "   "),
        tweet(2, "RT @someone: a retweeted text that is long"),
        tweet(3, "a native retweet text is long enough", is_retweet=True),
        tweet(4, "@user <URL> #hi"),
        tweet(5, "this one stays in the corpus"),
    ]

    def apply(stages, batch):
        drops = {}
        for stage in stages:
            batch, dropped = run_stage(stage, batch)
            drops.update(drop_counts(dropped))
        return batch, drops

    kept, drops = apply([EmptyText(), Retweets(), Length()], tweets)
    assert [t.id for t in kept] == [5]
    assert drops == {DROP_EMPTY: 1, DROP_RETWEET: 2, DROP_TOO_SHORT: 1}
    assert len(kept) + sum(drops.values()) == len(tweets)
    keep_retweets = Retweets(Retweets.Config(drop_retweets=False))
    assert not keep_retweets.enabled()  # build leaves a stage its options turn off out of the pipeline
    kept, _ = apply([EmptyText(), Length()], tweets)
    assert {t.id for t in kept} == {2, 3, 5}


def test_content_length_ignores_mentions_urls_placeholders():
    assert content_length("@a @b https://t.co/x <URL> #") == 0
    assert content_length("RT @x: hi there") == len("hithere")


@pytest.mark.parametrize("text", [
    "", "@a @b https://t.co/x <URL> #", "RT @x: hi there", "a_b_c_d_e_f_g", "_ _ _ __ 1 2 3 4 5 6 7",
    "ça été ß 日本語のテキスト", "١٢٣٤٥٦٧ digits", "e\u0301" * 5, "🙂" * 40 + "abc", "@user " * 30 + "word",
])
def test_has_content_agrees_with_content_length_at_every_threshold(text):
    for n in range(1, 12):
        assert has_content(text, n) == (content_length(text) >= n), (text, n)


def test_exact_dedup_keeps_smallest_id_whatever_the_order():
    texts = ["Same text here", "same   TEXT here", "other text entirely"]
    tweets = [tweet(i, texts[i % 3]) for i in range(30)]
    expected = None
    for seed in range(5):
        random.Random(seed).shuffle(tweets)
        survivors, removed = dedup_batch(tweets, lambda t: normalized_text_key(t.text), text_survivor_order)
        ids = sorted(t.id for t in survivors)
        assert removed == 30 - 2
        expected = expected or ids
        assert ids == expected == [0, 2]


def test_id_dedup_prefers_first_file_and_position():
    copies = [tweet(42, source_file="b.json", position=3), tweet(42, source_file="a.json", position=9)]
    survivors, removed = dedup_batch(copies, lambda t: t.id, id_survivor_order)
    assert removed == 1 and survivors[0].source_file == "a.json"


def test_shard_assignment_spreads_sequential_ids():
    counts = np.bincount([shard_of(1_000_000_000_000_000_000 + i, 8) for i in range(8000)], minlength=8)
    assert counts.min() > 800


@pytest.fixture(scope="module")
def tiny_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "tokenizer.json"
    texts = ["hello world", "the quick brown fox", "tweets are short"] * 50
    path.write_text(train_bpe_tokenizer(texts, 300, ["<URL>", "@user"]).to_str())
    return load_tokenizer(TokenizerSpec(source=str(path)))


def test_tokenize_appends_eos_and_placeholders_are_single_tokens(tiny_tokenizer):
    encoded = encode_batch(tiny_tokenizer, ["hello world", "<URL> @user"])
    ids = [np.frombuffer(b, dtype="<i4") for b in encoded]
    assert all(a[-1] == tiny_tokenizer.eos_id for a in ids)
    assert len(ids[1]) == 4  # <URL>, " ", @user, EOS
    decoded = tiny_tokenizer.tokenizer.decode(ids[0][:-1].tolist())
    assert decoded == "hello world"


def test_encode_batch_gives_each_texts_own_ids_and_eos():
    """``encode_batch`` (the batched, offset-free call) gives what ``encode`` gives one text at a time."""
    tok = load_tokenizer(TokenizerSpec())
    real = shared_data("bench", "tweeteval_sentiment__test_text.txt").read_text(encoding="utf-8")
    texts = real.splitlines()[:500]
    texts += ["", "<URL> @user", "héllo 👋🏽 世界"]
    expected = [[*tok.tokenizer.encode(t, add_special_tokens=False).ids, tok.eos_id] for t in texts]
    assert [np.frombuffer(b, dtype="<i4").tolist() for b in encode_batch(tok, texts)] == expected


def test_tokenizer_without_eos_is_refused(tmp_path):
    from tokenizers import Tokenizer, models

    path = tmp_path / "t.json"
    path.write_text(Tokenizer(models.BPE()).to_str())
    with pytest.raises(ValueError, match="end-of-document"):
        load_tokenizer(TokenizerSpec(source=str(path)))


def test_shard_table_roundtrips_and_is_byte_deterministic(tiny_tokenizer):
    tweets = [tweet(i, f"hello world {i}", created_at_ms=1_600_000_000_000 + i) for i in range(5)]
    encoded = encode_batch(tiny_tokenizer, [t.text for t in tweets])
    tweets = [t.replace(token_bytes=b) for t, b in zip(tweets, encoded, strict=True)]
    schema = shard_schema(
        tokenizer_sha256="abc", vocab_size=300, eos_id=0, run_fingerprint="f", shard_index=0, num_shards=1
    )
    data = serialize_table(tweets_to_table(tweets, schema))
    assert data == serialize_table(tweets_to_table(tweets, schema))
    table = pa.ipc.open_file(pa.py_buffer(data)).read_all()
    check_shard_schema(table.schema)
    assert table.column("tokens").to_pylist()[2] == np.frombuffer(encoded[2], "<i4").tolist()
    assert table.column("num_tokens").to_pylist() == [len(b) // 4 for b in encoded]


def test_unbalanced_counts_fail_loudly():
    check_balance(Counts(read=10, kept=5, dropped={"retweet": 3}, errors=2))
    with pytest.raises(AccountingError, match="does not balance"):
        check_balance(Counts(read=10, kept=5, dropped={"retweet": 3}, errors=1))


def test_tweet_replace_copies_and_refuses_unknown_fields():
    original = tweet(7, "some text here")
    changed = original.replace(text="other", lang="en")
    assert (changed.text, changed.lang, changed.id) == ("other", "en", 7)
    assert (original.text, original.lang) == ("some text here", "und")  # the original is untouched
    assert changed == dataclasses.replace(original, text="other", lang="en")
    with pytest.raises(TypeError, match="langauge"):
        original.replace(langauge="en")


def test_tokenize_workers_sharing_the_cores_turn_the_thread_pool_off_unless_told(monkeypatch):
    from tweetmill.transforms.tokenize import PARALLELISM_ENV, _TokenizeFn

    monkeypatch.delenv(PARALLELISM_ENV, raising=False)
    _TokenizeFn(TokenizerSpec(), threads=True).setup()
    assert PARALLELISM_ENV not in os.environ
    _TokenizeFn(TokenizerSpec(), threads=False).setup()
    assert os.environ[PARALLELISM_ENV] == "false"
    monkeypatch.setenv(PARALLELISM_ENV, "true")  # the user's choice stands
    _TokenizeFn(TokenizerSpec(), threads=False).setup()
    assert os.environ[PARALLELISM_ENV] == "true"

"""Threads and conversations as documents (issue #16): the rules (``documents_core``), the Beam
composite against them on the real runner, and real self-threads and reply chains of shared data
checked against the links in the source files."""

from __future__ import annotations

import itertools
import json
import random
import zipfile
from pathlib import Path

import apache_beam as beam
import pyarrow as pa
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from conftest import shared_data
from tweetmill.pipeline.verify import _members
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.documents import BuildDocuments, DocumentsConfig
from tweetmill.transforms.documents_core import (
    DOCUMENTS_CONVERSATIONS,
    DOCUMENTS_THREADS,
    SPEAKER_SUFFIX,
    TURN_SEPARATOR,
    build_documents,
    link_of,
    resolve_chains,
    rounds_needed,
    speaker_label,
    split_turns,
)
from tweetmill.transforms.read import ReadOptions, read_path
from tweetmill.transforms.tokenize import TokenizerSpec, encode_batch, load_tokenizer

ACCOUNT_ID = 1964312974236991488  # the milahu archive's account


def tweet(i: int, parent: int | None = None, author: int | None = 1, text: str | None = None) -> Tweet:
    return Tweet(
        id=i,
        text=text or f"tweet number {i}",
        source_format="v1",
        source_file="t.jsonl",
        position=i,
        author_id=author,
        reply_to_id=parent,
        reply_to_author_id=None,
        is_reply=parent is not None,
    )


def members(doc: Tweet) -> tuple[int, ...]:
    return doc.tweet_ids or (doc.id,)


def check_documents(tweets: list[Tweet], docs: list[Tweet], mode: str, max_chars: int) -> None:
    """Every tweet in exactly one document; a document's tweets each answer the one before; its turns
    are its tweets' texts; threads keep to one author; a context turn is the first tweet's parent."""
    by_id = {t.id: t for t in tweets}
    placed = [i for d in docs for i in members(d)]
    assert sorted(placed) == sorted(by_id)
    for d in docs:
        ids = members(d)
        for a, b in itertools.pairwise(ids):
            assert by_id[b].reply_to_id == a
            if mode == DOCUMENTS_THREADS:
                assert by_id[b].author_id == by_id[a].author_id is not None
        turns = split_turns(d.text)
        texts = ([by_id[d.context_id].text] if d.context_id is not None else []) + [
            by_id[i].text for i in ids
        ]
        if len(texts) == 1:
            assert turns == texts
        elif mode == DOCUMENTS_CONVERSATIONS:
            assert [t.split(SPEAKER_SUFFIX, 1)[1] for t in turns] == texts
        else:
            assert turns == texts
        if d.context_id is not None:
            assert by_id[ids[0]].reply_to_id == d.context_id
        if len(ids) > 1:
            assert len(d.text) <= max_chars + 4 * len(ids) + len(texts[0]) * (d.context_id is not None)


def random_forest(n: int, seed: int) -> list[Tweet]:
    """Threads, replies by others, branches, and parents missing from the corpus."""
    rng = random.Random(seed)
    tweets: list[Tweet] = []
    for i in range(1, n + 1):
        roll = rng.random()
        if tweets and roll < 0.6:
            parent = rng.choice(tweets[-20:])
            author = parent.author_id if rng.random() < 0.6 else rng.randrange(1, 6)
            tweets.append(tweet(i, parent.id, author))
        elif roll < 0.7:
            tweets.append(tweet(i, 10**9 + i, rng.randrange(1, 6)))  # its parent is not in the corpus
        else:
            tweets.append(tweet(i, None, rng.randrange(1, 6)))
    return tweets


# --- the rules ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [DOCUMENTS_THREADS, DOCUMENTS_CONVERSATIONS])
def test_documents_hold_every_tweet_once_along_reply_links(mode: str) -> None:
    tweets = random_forest(3000, seed=7)
    docs = build_documents(tweets, mode, max_chars=400)
    check_documents(tweets, docs, mode, 400)
    assert len({d.id for d in docs}) == len(docs)
    multi = [d for d in docs if len(members(d)) > 1]
    assert len(multi) > 100  # the forest has chains, so the check above checked something
    if mode == DOCUMENTS_CONVERSATIONS:
        assert any(d.context_id is not None for d in docs)
    # The same tweets in another order give the same documents.
    assert build_documents(list(reversed(tweets)), mode, max_chars=400) == docs


def test_pointer_jumping_finds_every_chain_start_and_place() -> None:
    tweets = random_forest(2000, seed=3)
    resolved, _ = resolve_chains([link_of(t, DOCUMENTS_CONVERSATIONS) for t in tweets])
    by_id = {t.id: t for t in tweets}
    answered = {t.reply_to_id for t in tweets}
    child = {}  # the first child continues the chain: answered replies first, then the earliest
    for t in sorted(tweets, key=lambda t: (t.id not in answered, t.id)):
        if t.reply_to_id in by_id:
            child.setdefault(t.reply_to_id, t.id)
    parent = {c: p for p, c in child.items()}
    for node, state in resolved.states.items():
        walk, dist = node, 0
        while walk in parent:
            walk, dist = parent[walk], dist + 1
        assert (state.target, state.dist) == (walk, dist)
    assert resolved.unresolved == 0
    assert resolved.rounds <= rounds_needed(max(s.dist for s in resolved.states.values()) + 1)


def test_a_deep_chain_resolves_in_log_rounds_and_splits_by_the_budget() -> None:
    chain = [tweet(1)] + [tweet(i, i - 1) for i in range(2, 10_001)]
    resolved, _ = resolve_chains([link_of(t, DOCUMENTS_THREADS) for t in chain])
    assert resolved.rounds == rounds_needed(10_000) == 14
    assert resolved.states[10_000].dist == 9_999 and resolved.states[10_000].target == 1
    docs = build_documents(chain, DOCUMENTS_THREADS, max_chars=2000)
    check_documents(chain, docs, DOCUMENTS_THREADS, 2000)
    assert all(len(d.text) <= 2000 for d in docs)
    sizes = [len(members(d)) for d in docs]
    assert min(sizes[:-1]) >= 0.7 * max(sizes)  # filled to 75-100 %: no stray tweet left alone


def test_chains_deeper_than_the_rounds_still_place_every_tweet() -> None:
    chain = [tweet(1)] + [tweet(i, i - 1) for i in range(2, 11)]
    resolved, _ = resolve_chains([link_of(t, DOCUMENTS_THREADS) for t in chain], max_rounds=2)
    assert resolved.unresolved == 10 - 4  # 2 rounds resolve the first 4 tweets
    docs = build_documents(chain, DOCUMENTS_THREADS, max_chars=4000, max_rounds=2)
    assert sorted(i for d in docs for i in members(d)) == list(range(1, 11))


def test_a_missing_middle_tweet_starts_a_new_document() -> None:
    kept = [tweet(1), tweet(3, 2), tweet(4, 3), tweet(5, 1, author=2)]  # 2 was dropped by a filter
    docs = build_documents(kept, DOCUMENTS_THREADS, 4000)
    assert [members(d) for d in docs] == [(1,), (3, 4), (5,)]
    conv = build_documents(kept, DOCUMENTS_CONVERSATIONS, 4000)
    assert [members(d) for d in conv] == [(1, 5), (3, 4)]
    assert conv[0].text == f"A{SPEAKER_SUFFIX}tweet number 1{TURN_SEPARATOR}B{SPEAKER_SUFFIX}tweet number 5"


def test_conversation_branches_get_their_parent_as_context_and_anonymous_speakers() -> None:
    tweets = [tweet(1, author=10), tweet(2, 1, author=20), tweet(3, 1, author=30), tweet(4, 3, author=10)]
    docs = build_documents(tweets, DOCUMENTS_CONVERSATIONS, 4000)
    # 3 is answered in turn, so the exchange 1-3-4 goes on in one document; 2 branches off it.
    assert [(members(d), d.context_id) for d in docs] == [((1, 3, 4), None), ((2,), 1)]
    assert split_turns(docs[0].text) == ["A: tweet number 1", "B: tweet number 3", "A: tweet number 4"]
    assert split_turns(docs[1].text) == ["A: tweet number 1", "B: tweet number 2"]
    assert "10" not in docs[0].text and "30" not in docs[0].text
    assert [speaker_label(i) for i in (0, 25, 26, 27)] == ["A", "Z", "AA", "AB"]


def test_the_turn_separator_is_plain_text_the_bundled_tokenizer_knows() -> None:
    tok = load_tokenizer(TokenizerSpec())
    newline = tok.tokenizer.token_to_id("Ċ")
    ids = tok.tokenizer.encode(TURN_SEPARATOR, add_special_tokens=False).ids
    assert ids == [newline] * 3
    text = TURN_SEPARATOR.join(["A: first turn @user", "B: second <URL>", "A: third"])
    (encoded,) = encode_batch(tok, [text])
    import numpy as np

    ids = np.frombuffer(encoded, dtype="<i4").tolist()
    assert ids[-1] == tok.eos_id and tok.eos_id not in ids[:-1]  # one document, one EOS
    assert tok.tokenizer.decode(ids[:-1], skip_special_tokens=False) == text


# --- the Beam composite, on the real runner ----------------------------------------------------------


@pytest.mark.parametrize("mode", [DOCUMENTS_THREADS, DOCUMENTS_CONVERSATIONS])
def test_the_beam_composite_builds_the_same_documents(mode: str) -> None:
    tweets = random_forest(600, seed=11)
    tweets += [tweet(5000)] + [tweet(5000 + i, 5000 + i - 1) for i in range(1, 300)]  # a deep chain
    tweets += [tweet(9000, author=3)] + [
        tweet(9000 + i, 9000, author=4 + i % 7) for i in range(1, 400)
    ]  # wide
    config = DocumentsConfig(mode, document_max_chars=600, document_rounds=10)
    expected = build_documents(tweets, mode, 600)
    with beam.Pipeline(runner=FnApiRunner()) as p:
        out = p | beam.Create(tweets) | BuildDocuments(config)
        assert_that(out["tweets"], equal_to(expected))
        stats = out["stats"] | beam.Map(
            lambda kv: (kv[0], kv[1]["documents"], kv[1]["unresolved_chain_tweets"])
        )
        assert_that(stats, equal_to([("documents", len(expected), 0)]), label="Stats")


# --- real threads and reply chains of shared data -----------------------------------------------------


def _source_links(path: Path) -> dict[int, tuple[int | None, int | None]]:
    """id -> (in_reply_to_status_id_str, in_reply_to_user_id_str), read from the file itself."""
    raw = path.read_text(encoding="utf-8-sig")
    entries = json.loads(raw[raw.index("=") + 1 :])
    out = {}
    for e in entries:
        t = e["tweet"]
        reply = t.get("in_reply_to_status_id_str")
        user = t.get("in_reply_to_user_id_str")
        out[int(t["id_str"])] = (int(reply) if reply else None, int(user) if user else None)
    return out


def _archive_tweets(tmp_path: Path) -> tuple[list[Tweet], Path]:
    """The milahu archive's tweets.js with its account.js, zipped as Twitter hands it out."""
    tweets_js = shared_data("archive", "milahu-twitter-milahu104", "tweets.js")
    account = shared_data("archive-layout", "milahu-twitter-milahu104", "data", "account.js")
    archive = tmp_path / "twitter-archive.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/tweets.js", tweets_js.read_bytes())
        zf.writestr("data/account.js", account.read_bytes())
    tweets = [r for f in read_path(str(archive), ReadOptions()) for r in f.records if type(r) is Tweet]
    return tweets, tweets_js


def test_real_self_threads_of_an_archive_follow_its_links(tmp_path: Path) -> None:
    tweets, source = _archive_tweets(tmp_path)
    assert {t.author_id for t in tweets} == {ACCOUNT_ID}
    links = _source_links(source)
    docs = build_documents(tweets, DOCUMENTS_THREADS, 4000)
    check_documents(tweets, docs, DOCUMENTS_THREADS, 4000)
    threads = [members(d) for d in docs if len(members(d)) > 1]
    for ids in threads:  # each tweet answers the one before, by the account itself: as the file says
        for a, b in itertools.pairwise(ids):
            assert links[b] == (a, ACCOUNT_ID)
        assert links[ids[0]][0] not in {t.id for t in tweets} or links[ids[0]][1] != ACCOUNT_ID
    # Independently of the rules: 41 self-replies answer a tweet of the file; one tweet has two of
    # them (the second starts a thread of its own), so 40 links join tweets into threads.
    own = {i: p for i, (p, user) in links.items() if user == ACCOUNT_ID and p in links}
    assert len(own) == 41 and len(set(own.values())) == 40
    assert sum(len(ids) - 1 for ids in threads) == 40
    assert max(len(ids) for ids in threads) == 12


def test_real_reply_chains_of_api_files_become_conversations() -> None:
    paths = [
        shared_data("v1", "tweepy_cassettes_v1.jsonl"),
        *sorted(shared_data("v1", "python-twitter").glob("*.json")),
    ]
    tweets = {}
    for path in paths:
        for f in read_path(str(path), ReadOptions()):
            for r in f.records:
                if type(r) is Tweet:
                    tweets.setdefault(r.id, r)
    tweets_list = list(tweets.values())
    docs = build_documents(tweets_list, DOCUMENTS_CONVERSATIONS, 4000)
    check_documents(tweets_list, docs, DOCUMENTS_CONVERSATIONS, 4000)
    conversations = [d for d in docs if len(members(d)) > 1 or d.context_id is not None]
    answered = [t for t in tweets_list if t.reply_to_id in tweets]
    assert conversations and sum(
        len(members(d)) - 1 + (d.context_id is not None) for d in conversations
    ) == len(answered)


def test_unknown_authors_are_told_apart_by_whom_the_replies_answer() -> None:
    # An archive read without its account.js: no author on its tweets, but each reply names whom it
    # answers. 1 (by 7) <- 2 (by ?) answering 7 <- 3 (by ?) answering 7: 2 and 3 are one speaker.
    tweets = [
        tweet(1, author=None),
        tweet(2, 1, author=None).replace(reply_to_author_id=7),
        tweet(3, 2, author=None).replace(reply_to_author_id=99),
        tweet(4, 3, author=None).replace(reply_to_author_id=7),
    ]
    (doc,) = build_documents(tweets, DOCUMENTS_CONVERSATIONS, 4000)
    # 1 is by 7 (2 answers 7), 2 by 99 (3 answers 99), 3 by 7 (4 answers 7), 4 unknown: its own speaker
    assert [t.split(SPEAKER_SUFFIX)[0] for t in split_turns(doc.text)] == ["A", "B", "A", "C"]


def test_verify_counts_the_tweets_of_documents_and_flags_rows_not_led_by_their_id():
    ids = pa.array([[5, 6], [8], []], pa.list_(pa.field("item", pa.int64(), nullable=False)))
    batch = pa.record_batch({"id": pa.array([5, 7, 9], pa.int64()), "tweet_ids": ids})
    assert _members(batch) == (3, 2)  # 7 is led by 8, and 9 holds no tweet
    assert _members(batch.slice(0, 1)) == (2, 0)
    assert _members(batch.slice(0, 0)) == (0, 0)
    assert _members(batch.drop_columns(["tweet_ids"])) == (3, 0)  # format 1: a tweet a row

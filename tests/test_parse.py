"""Tests of the parse stage: every file of the shared corpus, format rules, malformed input, Beam wiring."""

from __future__ import annotations

import bz2
import gzip
import io
import json
import re
import tracemalloc
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.testing.util import assert_that, equal_to
from conftest import shared_data
from tweetmill.schemas.records import (
    DROP_API_ERROR,
    DROP_COMPLIANCE_EVENT,
    DROP_DELETE_NOTICE,
    DROP_DELETED_BY_AUTHOR,
    DROP_NO_TEXT,
    DROP_STREAM_NOTICE,
    FORMAT_ARCHIVE,
    FORMAT_CSV,
    FORMAT_GRAILBIRD,
    FORMAT_TEXT,
    FORMAT_V1,
    FORMAT_V2,
    DeadLetter,
    Tweet,
    derived_tweet_id,
)
from tweetmill.transforms import json_values, streams
from tweetmill.transforms.common import TAG_DEAD_LETTERS, TAG_DROPPED
from tweetmill.transforms.parse import detect_format, iter_records, open_records
from tweetmill.transforms.read import ReadArchives
from tweetmill.transforms.tweet_fields import apply_display_text_range, parse_created_at

# ---------------------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------------------


def records_of(path: Path | str, fmt: str | None = None, **kw) -> list:
    with open(path, "rb") as f:
        return list(iter_records(str(path), f, fmt, **kw))


def records_from(name: str, data: bytes, fmt: str | None = None, **kw) -> list:
    return list(iter_records(name, io.BytesIO(data), fmt, **kw))


def tweets(records: list) -> list[Tweet]:
    return [r for r in records if type(r) is Tweet]


def dead(records: list) -> list[DeadLetter]:
    return [r for r in records if type(r) is DeadLetter]


def summary(records: list) -> dict[str, int]:
    """{'tweets': n, <drop reason>: n, 'dead:<reason>': n}: the per-file accounting."""
    c: Counter = Counter()
    for r in records:
        if type(r) is Tweet:
            c["tweets"] += 1
        elif type(r) is str:
            c[r] += 1
        else:
            c[f"dead:{r.reason}"] += 1
    return dict(c)


def one_tweet(path: Path) -> Tweet:
    (t,) = tweets(records_of(path))
    return t


def jsonl(*objs: object) -> bytes:
    return b"".join(json.dumps(o).encode() + b"\n" for o in objs)


def v1_tweet(i: int, text: str | None = None, **extra) -> dict:
    t = {"created_at": "Wed Aug 27 13:08:45 +0000 2008", "id": 1000 + i, "id_str": str(1000 + i),
         "text": f"tweet number {i}" if text is None else text, "user": {"id": 7, "id_str": "7"},
         "lang": "en"}
    t.update(extra)
    return t


# ---------------------------------------------------------------------------------------------------
# The shared corpus: per-file accounting (tweets / drops by reason / dead letters)
# ---------------------------------------------------------------------------------------------------

_TWEET_UPDATES_SINGLE = [
    "initial__compatibility_classic_hidden_13797.json", "initial__compatibility_extended_13996.json",
    "initial__compatibilityplus_classic_13994.json", "initial__compatibilityplus_classic_hidden_13797.json",
    "initial__compatibilityplus_extended_13997.json", "initial__extended_classic_14002.json",
    "initial__extended_classic_hidden_13761.json", "initial__extended_extended_14001.json",
    "original__classic_no_hidden___mention.json", "original__classic_no_hidden___quote.json",
    "original__classic_no_hidden___retweet.json",
    "original__gt140_characters_hidden_+_extended___attachment.json",
    "original__gt140_characters_hidden_+_extended___quoted_w_attachment.json",
    "original__gt140_characters_hidden_+_extended___quoted_w_replies+attachment.json",
    "original__gt140_characters_hidden_+_extended___replies+attachment.json",
    "original__gt140_characters_hidden_+_extended___replies.json",
    "original__gt140_characters_hidden_+_extended___retweet_w_replies+attachment.json",
    "original__lt_140_characters_hidden___attachment.json",
    "original__lt_140_characters_hidden___quoted_w_attachment.json",
    "original__lt_140_characters_hidden___quoted_w_replies.json",
    "original__lt_140_characters_hidden___quoted_w_reply+attachment+mention.json",
    "original__lt_140_characters_hidden___quoted_w_reply+attachment.json",
    "original__lt_140_characters_hidden___reply+attachment+mention.json",
    "original__lt_140_characters_hidden___reply+attachment.json",
    "original__lt_140_characters_hidden___reply.json",
    "original__lt_140_characters_hidden___retweet_w_attachment.json",
    "original__lt_140_characters_hidden___retweet_w_reply+attachment+mention.json",
    "original__lt_140_characters_hidden___retweet_w_reply+attachment.json",
    "original__lt_140_characters_hidden___retweet_w_reply.json",
]

# Grailbird monthly files: SOURCES.md's tweet counts.
_GRAILBIRD = {
    "2009_07": 6, "2009_08": 11, "2009_09": 43, "2009_10": 21, "2009_11": 78, "2009_12": 34, "2010_01": 30,
    "2010_02": 13, "2010_04": 12, "2010_05": 18, "2010_06": 11, "2010_07": 24, "2010_08": 12, "2010_09": 9,
    "2010_10": 15, "2010_11": 20, "2010_12": 20, "2011_01": 11, "2011_02": 3, "2011_03": 11, "2011_04": 11,
    "2011_05": 6, "2011_06": 12, "2011_07": 10, "2011_08": 11, "2011_09": 4, "2011_10": 3, "2011_11": 7,
    "2011_12": 43, "2012_01": 18, "2012_02": 55, "2012_03": 31, "2012_04": 50, "2012_05": 65,
    "2012_06": 79, "2012_07": 97, "2012_08": 90, "2012_09": 28, "2012_10": 42, "2012_11": 79,
    "2012_12": 116, "2013_01": 46, "2013_02": 19, "2013_03": 19, "2013_04": 14,
}

# (path under shared/data, detected format, accounting). Where it differs from SOURCES.md's raw record
# count, the comment says why (the format's rule).
EXPECTED: dict[str, tuple[str, dict[str, int]]] = {
    "v1/tweepy_cassettes_v1.jsonl": (FORMAT_V1, {"tweets": 111}),
    "v1/python-twitter/get_search_raw.json": (FORMAT_V1, {"tweets": 100}),
    "v1/python-twitter/get_home_timeline.json": (FORMAT_V1, {"tweets": 20}),
    "v1/python-twitter/get_user_timeline_count.json": (FORMAT_V1, {"tweets": 63}),
    "v1/python-twitter/get_statuses.1.json": (FORMAT_V1, {"tweets": 100}),
    "v1/python-twitter/get_list_timeline_id.json": (FORMAT_V1, {"tweets": 20}),
    "v1/python-twitter/get_mentions.json": (FORMAT_V1, {"tweets": 19}),
    "v1/python-twitter/public_timeline.json": (FORMAT_V1, {"tweets": 20}),
    "v1/python-twitter/friends_timeline-kesuke.json": (FORMAT_V1, {"tweets": 20}),
    "v1/python-twitter/models__status_quoted_tweet.json": (FORMAT_V1, {"tweets": 1}),
    "v1/python-twitter/models__status_quoted_tweet_with_media.json": (FORMAT_V1, {"tweets": 1}),
    "v1/python-twitter/3.2__extended_tweet_in_compat_mode.json": (FORMAT_V1, {"tweets": 1}),
    "v1/python-twitter/3.2__extended_tweet_in_extended_mode.json": (FORMAT_V1, {"tweets": 1}),
    "v1/python-twitter/streaming__lines.json": (FORMAT_V1, {"tweets": 72}),
    "v1/python-twitter/streaming__streaming_extended_tweet.json": (FORMAT_V1, {"tweets": 1}),
    **{f"v1/tweet-updates/{name}": (FORMAT_V1, {"tweets": 1}) for name in _TWEET_UPDATES_SINGLE},
    # two concatenated values: the same tweet twice (dedup's job, not parse's)
    "v1/tweet-updates/original__classic_no_hidden___tweet.json": (FORMAT_V1, {"tweets": 2}),
    # two values with a non-JSON line ("Classic Tweet, extended mode") between them
    "v1/tweet-updates/initial__compatibility_classic_13995.json": (
        FORMAT_V1, {"tweets": 2, "dead:invalid_json": 1}),
    "v1/att-ast/test.jsonl": (FORMAT_V1, {"tweets": 95, DROP_DELETE_NOTICE: 5}),
    "v1/att-ast/twit.jsonl": (FORMAT_V1, {"tweets": 94, DROP_DELETE_NOTICE: 6}),
    "v1/anaconda/search__tweets.json": (FORMAT_V1, {"tweets": 15}),
    "v1/anaconda/favorites__list.json": (FORMAT_V1, {"tweets": 20}),
    "v1/anaconda/statuses__show.json": (FORMAT_V1, {"tweets": 1}),
    # includes.tweets are context (59 here), not records
    "v2/twarc-csv/brexit.jsonl": (FORMAT_V2, {"tweets": 100}),
    "v2/twarc-csv/cashtags.jsonl": (FORMAT_V2, {"tweets": 1}),
    "v2/twarc-csv/cotweet.jsonl": (FORMAT_V2, {"tweets": 1}),
    "v2/twarc-csv/edited.jsonl": (FORMAT_V2, {"tweets": 1}),
    "v2/twarc-csv/edited_before.jsonl": (FORMAT_V2, {"tweets": 1}),
    "v2/twarc-csv/flat.jsonl": (FORMAT_V2, {"tweets": 100}),
    "v2/twarc-csv/geo_tweets.jsonl": (FORMAT_V2, {"tweets": 2}),
    # 100 data tweets; 1 `errors` entry (a suspended mentioned user)
    "v2/twarc-csv/kpop.jsonl": (FORMAT_V2, {"tweets": 100, DROP_API_ERROR: 1}),
    "v2/twarc-csv/many_urls.jsonl": (FORMAT_V2, {"tweets": 1}),
    "v2/twarc-csv/media_policy_violation_off.jsonl": (FORMAT_V2, {"tweets": 100}),
    # Same 100 tweets, but the account's own text is replaced by Twitter's "@x's account is temporarily
    # unavailable because it violates the Twitter Media Policy. Learn more." notice: the 42 retweets are
    # completed from includes.tweets; the other 58 have no text of their own left.
    "v2/twarc-csv/media_policy_violation_on.jsonl": (FORMAT_V2, {"tweets": 42, DROP_NO_TEXT: 58}),
    "v2/twarc-csv/media_tweet.jsonl": (FORMAT_V2, {"tweets": 1}),
    "v2/twarc-csv/mentions_tweet.jsonl": (FORMAT_V2, {"tweets": 1}),
    "v2/twarc-csv/quoted_edit.jsonl": (FORMAT_V2, {"tweets": 1}),
    # 7 stream lines and a last line cut mid-object (the file has no blank line)
    "v2/twarc-csv/streaming_output_with_error.jsonl": (
        FORMAT_V2, {"tweets": 7, "dead:unexpected_end_of_input": 1}),
    # a blank line between the two events is not a record
    "v2/twarc-csv/tweets_compliance.jsonl": (FORMAT_V2, {DROP_COMPLIANCE_EVENT: 2}),
    "v2/twarc-csv/two_tweets.jsonl": (FORMAT_V2, {"tweets": 1}),
    "v2/twarc-csv/verified_type.jsonl": (FORMAT_V2, {"tweets": 1}),
    # 215 data tweets: one is a withheld account's own tweet ("@x's account has been withheld in India
    # in response to a legal demand. Learn more."); its withheld retweets are completed from includes.
    # 5 `errors` entries.
    "v2/twarc-csv/withheld.jsonl": (FORMAT_V2, {"tweets": 214, DROP_NO_TEXT: 1, DROP_API_ERROR: 5}),
    "v2/tweepy_cassettes_v2.jsonl": (FORMAT_V2, {"tweets": 338}),
    "archive/milahu-twitter-milahu104/tweets.js": (FORMAT_ARCHIVE, {"tweets": 2045}),
    "archive/milahu-twitter-milahu104/deleted-tweets.js": (FORMAT_ARCHIVE, {DROP_DELETED_BY_AUTHOR: 47}),
    "archive/milahu-twitter-milahu104/community-tweet.js": (FORMAT_ARCHIVE, {"tweets": 3}),
    "archive/milahu-twitter-milahu104/note-tweet.js": (FORMAT_ARCHIVE, {}),
    **{f"archive/legacy-grailbird-NiciDieNase/{m}.js": (FORMAT_GRAILBIRD, {"tweets": n})
       for m, n in _GRAILBIRD.items()},
    "csv/legacy-archive-NiciDieNase_tweets.csv": (FORMAT_CSV, {"tweets": 1357}),
    "csv/fivethirtyeight_mayweather-mcgregor__tweets.csv": (FORMAT_CSV, {"tweets": 12118}),
    "csv/fivethirtyeight_twitter-ratio__BarackObama.csv": (FORMAT_CSV, {"tweets": 3207}),
    "csv/fivethirtyeight_trump-twitter__realDonaldTrump_poll_tweets.csv": (FORMAT_CSV, {"tweets": 448}),
}


@pytest.mark.parametrize("rel", sorted(EXPECTED))
def test_corpus_file_accounting(rel: str) -> None:
    path = shared_data(*rel.split("/"))
    fmt, expected = EXPECTED[rel]
    with open(path, "rb") as f:
        detected, records = open_records(str(path), f)
        records = list(records)
    assert detected == fmt
    assert summary(records) == expected
    positions = [r.position for r in records if type(r) is not str]
    assert len(set(positions)) == len(positions)  # every record has its own position


def test_every_corpus_file_is_accounted_for() -> None:
    root = shared_data()
    on_disk = {p.relative_to(root).as_posix() for d in ("v1", "v2", "archive", "csv")
               for p in (root / d).rglob("*") if p.is_file()}
    assert on_disk == set(EXPECTED)


_TEXT_FILES = ["bench/tweeteval_emoji__train_text.txt", "bench/tweeteval_emoji__val_text.txt",
               "bench/tweeteval_sentiment__test_text.txt",
               *(f"lang/xlm-t/{lang}/{split}_text.txt"
                 for lang in ("arabic", "english", "french", "german", "hindi", "italian", "portuguese",
                              "spanish")
                 for split in ("train", "val", "test"))]
_TEXT_COUNTS = {"bench/tweeteval_emoji__train_text.txt": 45000, "bench/tweeteval_emoji__val_text.txt": 5000,
                "bench/tweeteval_sentiment__test_text.txt": 12284, "train": 1839, "val": 324, "test": 870}


@pytest.mark.parametrize("rel", _TEXT_FILES)
def test_plain_text_corpus(rel: str) -> None:
    path = shared_data(*rel.split("/"))
    expected = _TEXT_COUNTS.get(rel) or _TEXT_COUNTS[rel.rsplit("/", 1)[1].split("_")[0]]
    with open(path, "rb") as f:
        assert detect_format(str(path), f.read(65536)) == FORMAT_TEXT
    records = records_of(path)
    assert summary(records) == {"tweets": expected}
    lines = [line for line in path.read_bytes().decode("utf-8").split("\n") if line.strip()]
    assert [t.text for t in tweets(records)] == lines
    t = records[-1]
    assert t.id_derived and t.id == derived_tweet_id(str(path), t.position, t.text)
    assert t.source_format == FORMAT_TEXT


# ---------------------------------------------------------------------------------------------------
# v1 text rules, on Twitter's own samples
# ---------------------------------------------------------------------------------------------------

TU = ("v1", "tweet-updates")


def test_extended_tweet_full_text_not_truncated() -> None:
    t = one_tweet(shared_data("v1", "python-twitter", "streaming__streaming_extended_tweet.json"))
    # HTML entities stay at this stage (the clean stage unescapes); the text is the extended one.
    assert t.text == ("HIV_AIDS_BiojQuery Mobile Web Development Essentials, Second Edition: "
                      "https://t.co/r78h6xfAby Quantum AI Big/Small/0 Data Cloud/Fog Computing OutLook from "
                      "ClouData &amp; Multiverse -  https://t.co/cnCBNJvu6T")
    # every streaming tweet's `text` is truncated ("…" + a link to itself): the full text is used
    path = shared_data("v1", "python-twitter", "streaming__lines.json")
    raw = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    stream = tweets(records_of(path))
    assert len(stream) == len(raw) == 72
    for r, t in zip(raw, stream, strict=True):
        own = r.get("retweeted_status", r)
        assert r["truncated"] and t.text != r["text"]
        visible = t.text.removeprefix(f"RT @{own['user']['screen_name']}: ")
        assert visible in own["extended_tweet"]["full_text"]
    assert sum(len(t.text) > 140 for t in stream) > 40


def test_display_text_range_hides_reply_prefix_and_attachment_url() -> None:
    assert one_tweet(shared_data(*TU, "original__lt_140_characters_hidden___reply.json")).text == "so cool!"
    assert one_tweet(shared_data(*TU, "original__lt_140_characters_hidden___reply+attachment.json")).text \
        == "spooky!"
    # 25 hidden mentions, a '&amp;' before the end index and a trailing photo URL.
    t = one_tweet(shared_data(*TU, "original__gt140_characters_hidden_+_extended___replies+attachment.json"))
    assert t.text == ("this is a reply to 25 people with 140 characters of text for me to say what I want to "
                      "say. &amp; I still have room to attach a photo of a puppy!")
    assert t.is_reply and not t.is_retweet
    # The range counts code points of the escaped text: "&lt;" is 4 of the 27.
    t = one_tweet(shared_data(*TU, "original__lt_140_characters_hidden___attachment.json"))
    assert t.text == "image tweet with &lt;140 ch"
    # A visible @mention after the hidden prefix stays.
    t = one_tweet(shared_data(*TU, "initial__extended_extended_14001.json"))
    assert t.text.startswith("@twitterdev has more details") and t.text.endswith("more expressive!")


def test_display_text_range_index_readings() -> None:
    text = "@bob Tom &amp; Jerry https://t.co/abcdefghij"
    assert apply_display_text_range(text, [5, 20]) == "Tom &amp; Jerry"  # escaped code points
    assert apply_display_text_range(text, ["5", "16"]) == "Tom &amp; Jerry"  # unescaped reading, as strings
    assert apply_display_text_range(text, [0, 44]) == text
    assert apply_display_text_range(text, None) == text
    # A range whose cut would drop real words (truncated compat text, foreign indices) is ignored.
    assert apply_display_text_range("Hello world, more words", [0, 5]) == "Hello world, more words"
    assert apply_display_text_range("not a mention prefix", [4, 20]) == "not a mention prefix"
    assert apply_display_text_range("😂😂 hi https://t.co/x", [0, 5]) == "😂😂 hi"  # code points, not UTF-16


def test_quote_text_is_own_text_and_retweet_text_is_full_original() -> None:
    t = one_tweet(shared_data(*TU, "original__lt_140_characters_hidden___quoted_w_attachment.json"))
    assert (t.text, t.is_quote, t.is_retweet) == ("this is a quote tweet of an image tweet", True, False)
    t = one_tweet(shared_data(
        *TU, "original__gt140_characters_hidden_+_extended___retweet_w_replies+attachment.json"))
    assert t.is_retweet
    assert t.text == ("RT @ygritteygritte: this is a reply to 25 people with 140 characters of text for "
                      "me to say what I want to say. &amp; I still have room to attach a photo of a puppy!")
    t = one_tweet(shared_data(*TU, "original__classic_no_hidden___retweet.json"))
    assert t.text == ("RT @joell: Twitter’s new video ad actually explains what Twitter is for "
                      "https://t.co/bjb5O9JW5L via @Recode")


def test_v1_fields_ids_dates_flags() -> None:
    path = shared_data("v1", "python-twitter", "get_home_timeline.json")
    raw = json.loads(path.read_bytes())
    parsed = tweets(records_of(path))
    assert [t.id for t in parsed] == [int(r["id_str"]) for r in raw]
    # ids exceed 2**53: a float on the way would change them
    assert any(int(float(r["id_str"])) != int(r["id_str"]) for r in raw)
    assert parsed[0].id == 674674925823787008 and parsed[0].created_at_ms == 1449690011000
    assert [t.author_id for t in parsed] == [int(r["user"]["id_str"]) for r in raw]
    assert [t.twitter_lang for t in parsed] == [r["lang"] for r in raw]
    assert [t.is_retweet for t in parsed] == [("retweeted_status" in r) for r in raw]
    # 2007-era tweets have no id_str: `id` is used
    public = tweets(records_of(shared_data("v1", "python-twitter", "public_timeline.json")))
    assert all(t.id > 0 and not t.id_derived for t in public)
    # streaming retweets carry the original's full text (not the truncated "RT @x: ...…")
    twit = tweets(records_of(shared_data("v1", "att-ast", "twit.jsonl")))
    assert sum(t.is_retweet for t in twit) >= 6
    assert all(t.created_at_ms is not None for t in twit)


def test_manual_retweets_and_replies() -> None:
    gb = [t for p in sorted(shared_data("archive", "legacy-grailbird-NiciDieNase").glob("*.js"))
          for t in tweets(records_of(p))]
    assert len(gb) == 1357
    assert sum(t.is_retweet for t in gb) == 572  # 496 native (retweeted_status) + 76 manual "RT @x"
    assert sum(t.is_reply for t in gb) == 253
    csv_tweets = tweets(records_of(shared_data("csv", "legacy-archive-NiciDieNase_tweets.csv")))
    assert sum(t.is_retweet for t in csv_tweets) == 572
    assert sum(t.is_reply for t in csv_tweets) == 253


# ---------------------------------------------------------------------------------------------------
# v2
# ---------------------------------------------------------------------------------------------------


def test_v2_retweet_text_completed_from_includes() -> None:
    path = shared_data("v2", "twarc-csv", "mentions_tweet.jsonl")
    response = json.loads(path.read_bytes())
    (data,) = response["data"]
    ref_id = data["referenced_tweets"][0]["id"]
    original = next(t for t in response["includes"]["tweets"] if t["id"] == ref_id)
    author = next(u for u in response["includes"]["users"] if u["id"] == original["author_id"])
    t = one_tweet(path)
    assert data["text"].endswith("…")  # v2 truncates a retweet's own text
    assert t.is_retweet and t.text == f"RT @{author['username']}: {original['text']}"
    assert t.id == int(data["id"]) and t.author_id == int(data["author_id"])
    assert t.created_at_ms == parse_created_at(data["created_at"])


def test_v2_flattened_lines_use_embedded_references() -> None:
    parsed = tweets(records_of(shared_data("v2", "twarc-csv", "flat.jsonl")))
    rt = next(t for t in parsed if t.is_retweet)
    assert rt.text.startswith("RT @williamserafino: De manera simultánea")
    assert rt.text.endswith("La pandilla del Partido Demócrata hace sentir su regreso.")
    assert sum(t.is_retweet for t in parsed) == 47 and sum(t.is_quote for t in parsed) == 8


def test_v2_includes_are_context_not_records() -> None:
    path = shared_data("v2", "twarc-csv", "brexit.jsonl")
    response = json.loads(path.read_bytes())
    ids = {t.id for t in tweets(records_of(path))}
    assert ids == {int(t["id"]) for t in response["data"]}
    assert not ids & {int(t["id"]) for t in response["includes"]["tweets"]} - {int(t["id"]) for t in
                                                                               response["data"]}


def test_v2_note_tweet_compliance_errors_and_shapes() -> None:
    long_text = "a long post " * 40
    lines = jsonl(
        {"data": {"id": "1", "text": "a long post a long…", "note_tweet": {"text": long_text},
                  "author_id": "9", "created_at": "2023-05-01T10:00:00.000Z", "lang": "en"}},
        {"data": [{"id": "2", "text": "RT @al: short…", "author_id": "8",
                   "referenced_tweets": [{"type": "retweeted", "id": "3"}]}],
         "includes": {"tweets": [{"id": "3", "text": "short…", "note_tweet": {"text": long_text},
                                  "author_id": "5"}],
                      "users": [{"id": "5", "username": "al"}]}},
        {"data": {"id": "4", "text": "@x hi", "in_reply_to_user_id": "5",
                  "referenced_tweets": [{"type": "quoted", "id": "3"}]}},
        {"data": {"delete": {"tweet": {"id": "6", "author_id": "5"}, "event_at": "2023-05-01T10:00:00Z"}}},
        {"errors": [{"title": "operational-disconnect", "type": "https://api.twitter.com/2/problems/x"}]},
        {"meta": {"result_count": 0}},
        {"data": [{"id": "7", "edit_history_tweet_ids": ["7"]}]},
    )
    records = records_from("resp.jsonl", lines)
    assert detect_format("resp.jsonl", lines) == FORMAT_V2
    assert summary(records) == {"tweets": 3, DROP_COMPLIANCE_EVENT: 1, DROP_API_ERROR: 1, DROP_NO_TEXT: 1}
    note, rt, reply = tweets(records)
    assert note.text == long_text and note.created_at_ms == 1682935200000 and note.author_id == 9
    assert rt.text == f"RT @al: {long_text}" and rt.is_retweet
    assert reply.is_reply and reply.is_quote and not reply.is_retweet


# ---------------------------------------------------------------------------------------------------
# Account archives
# ---------------------------------------------------------------------------------------------------


def test_archive_tweets_strings_and_flags() -> None:
    path = shared_data("archive", "milahu-twitter-milahu104", "tweets.js")
    text = path.read_text(encoding="utf-8")
    raw = [e["tweet"] for e in json.loads(text[text.index("=") + 1 :])]
    parsed = tweets(records_of(path))
    assert [t.id for t in parsed] == [int(r["id_str"]) for r in raw]
    assert all(t.source_format == FORMAT_ARCHIVE for t in parsed)
    assert [t.created_at_ms for t in parsed] == [parse_created_at(r["created_at"]) for r in raw]
    assert [t.twitter_lang for t in parsed] == [r["lang"] for r in raw]  # qme/qam/zxx kept as given
    assert sum(t.is_retweet for t in parsed) == 239  # archives keep retweets as "RT @x: ..." text
    assert [t.is_reply for t in parsed] == [bool(r.get("in_reply_to_status_id_str")) for r in raw]
    assert parsed[0].text == "@SamaHoole https://t.co/2UHqruPk7w"


def test_archive_note_tweets_deleted_and_other_datasets() -> None:
    notes = (b'window.YTD.note_tweet.part0 = [ {\n  "noteTweet" : {\n'
             b'    "noteTweetId" : "1650000000000000001",\n    "createdAt" : "2023-04-23T10:00:00.000Z",\n'
             b'    "core" : { "text" : "long &amp; full text", "urls" : [ ] }\n  }\n} ]')
    records = records_from("data/note-tweet.js", notes)
    (t,) = tweets(records)
    assert (t.id, t.text, t.created_at_ms) == (1650000000000000001, "long &amp; full text", 1682244000000)
    deleted = (b'window.YTD.deleted_tweets.part0 = [ { "tweet" : { "id_str" : "5", "full_text" : "x",'
               b' "deleted_at" : "Thu Mar 05 16:08:05 +0000 2026" } } ]')
    assert summary(records_from("data/deleted-tweets.js", deleted)) == {DROP_DELETED_BY_AUTHOR: 1}
    likes = b'window.YTD.like.part0 = [ { "like" : { "tweetId" : "1", "fullText" : "liked" } } ]'
    assert summary(records_from("data/like.js", likes)) == {"dead:unsupported_archive_file": 1}
    index = b'Grailbird.data.tweet_index = [ { "file_name" : "data/js/tweets/2013_04.js", "year" : 2013 } ]'
    assert summary(records_from("tweet_index.js", index)) == {"dead:unsupported_archive_file": 1}
    part1 = b'window.YTD.tweets.part1 = [ { "tweet" : { "id" : "12", "full_text" : "hi", "lang" : "de" } } ];'
    (t,) = tweets(records_from("data/tweets-part1.js", part1))
    assert (t.id, t.text, t.twitter_lang) == (12, "hi", "de")


def test_grailbird_and_legacy_csv_agree() -> None:
    gb_file = shared_data("archive", "legacy-grailbird-NiciDieNase", "2013_04.js")
    gb = {t.id: t for t in tweets(records_of(gb_file))}
    rows = {t.id: t for t in tweets(records_of(shared_data("csv", "legacy-archive-NiciDieNase_tweets.csv")))}
    t = gb[323114065855672321]
    assert t.created_at_ms == 1365871371000  # 2013-04-13 16:42:51 UTC
    assert t.source_format == FORMAT_GRAILBIRD and t.author_id == 22396883 and t.is_reply
    for tid, g in gb.items():
        c = rows[tid]
        assert (c.created_at_ms, c.is_reply) == (g.created_at_ms, g.is_reply)
        if not g.is_retweet:
            assert c.text == g.text


# ---------------------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------------------


def test_csv_dates_ids_and_flags() -> None:
    first = tweets(records_of(shared_data("csv", "fivethirtyeight_twitter-ratio__BarackObama.csv")))[0]
    assert (first.id, first.id_derived, first.created_at_ms) == (920061541986250758, False, 1508194740000)
    trump = tweets(records_of(shared_data("csv",
                                          "fivethirtyeight_trump-twitter__realDonaldTrump_poll_tweets.csv")))
    assert (trump[0].id, trump[0].created_at_ms) == (765629939811020802, 1471375377000)
    assert trump[2].text == "Great new poll - thank you!\n#MakeAmericaGreatAgain https://t.co/mXovx0TLPC"
    assert trump[1].text.startswith('"@LallyRay: Poll:')  # doubled quotes inside a quoted field
    may = tweets(records_of(shared_data("csv", "fivethirtyeight_mayweather-mcgregor__tweets.csv")))
    assert (may[0].id, may[0].created_at_ms) == (901656910939770881, 1503792334000)
    assert not any(t.is_retweet for t in may)  # "retweeted" (=retweeted by me) is not a retweet marker
    assert all(t.created_at_ms and not t.id_derived for t in may)
    legacy = tweets(records_of(shared_data("csv", "legacy-archive-NiciDieNase_tweets.csv")))
    assert all(t.created_at_ms for t in legacy)


def test_csv_non_utf8_file_reads_as_its_legacy_encoding() -> None:
    """BarackObama.csv is Mac Roman (0x9D bytes exist only there): every row kept, nothing replaced."""
    parsed = tweets(records_of(shared_data("csv", "fivethirtyeight_twitter-ratio__BarackObama.csv")))
    assert len(parsed) == 3207
    assert not any("\ufffd" in t.text for t in parsed)
    assert any("they‰Ûªve" in t.text for t in parsed)  # the file's (Excel-for-Mac) mojibake, read as is
    assert not any("äó" in t.text for t in parsed)  # what a cp1252 reading would give


def test_csv_generic_columns_and_options() -> None:
    data = (b"Content,Date,is_retweet,is_reply\n"
            b'"first, with comma",2020-01-02 03:04:05,True,False\n'
            b'"multi\nline",1/2/20 3:04,False,True\n'
            b"\n"
            b",2020-01-02 03:04:05,False,False\n"
            b"caf\xe9 cr\xe8me,not a date,False,False\n")
    records = records_from("export.csv", data)
    assert summary(records) == {"tweets": 3, DROP_NO_TEXT: 1}
    a, b, c = tweets(records)
    assert (a.text, a.is_retweet, a.is_reply) == ("first, with comma", True, False)
    assert a.created_at_ms == 1577934245000
    assert (b.text, b.is_reply, b.created_at_ms) == ("multi\nline", True, 1577934240000)
    assert (c.text, c.created_at_ms) == ("café crème", None)  # cp1252 line; bad date -> None
    assert all(t.id_derived and t.id == derived_tweet_id("export.csv", t.position, t.text) for t in (a, b, c))
    named = records_from("x.csv", b"id,body,note\n5,the body,the note\n1234567,b,n\n",
                         csv_text_column="note")
    # a bare "id" of 5 is a row number, not a tweet id
    assert [(t.text, t.id_derived) for t in tweets(named)] == [("the note", True), ("n", False)]
    assert tweets(named)[1].id == 1234567
    legacy = records_from("t.csv", b'"tweet_id","text"\n"5","hi"\n')
    assert [(t.id, t.id_derived) for t in tweets(legacy)] == [(5, False)]
    assert summary(records_from("x.csv", b"a,b\n1,2\n")) == {"dead:no_text_column": 1}
    # forcing a format: the same bytes as plain text lines
    assert [t.text for t in tweets(records_from("x.csv", b"a,b\n1,2\n", fmt=FORMAT_TEXT))] == ["a,b", "1,2"]


def test_csv_field_over_limit_is_a_dead_letter() -> None:
    data = b"text\nok one\n\"" + b"x" * 200_000 + b"\"\nok two\n"
    records = records_from("big.csv", data)
    assert summary(records) == {"tweets": 2, "dead:malformed_csv_row": 1}


# ---------------------------------------------------------------------------------------------------
# JSON shapes and malformed input
# ---------------------------------------------------------------------------------------------------


def test_v1_stream_notices_and_unknown_objects() -> None:
    lines = jsonl(
        v1_tweet(1),
        {"delete": {"status": {"id": 1, "id_str": "1", "user_id": 3}, "timestamp_ms": "1"}},
        {"limit": {"track": 5, "timestamp_ms": "1"}},
        {"warning": {"code": "FALLING_BEHIND", "message": "x", "percent_full": 60}},
        {"scrub_geo": {"user_id": 1, "up_to_status_id": 2}},
        {"status_withheld": {"id": 1, "user_id": 2, "withheld_in_countries": ["DE"]}},
        {"disconnect": {"code": 4, "stream_name": "x", "reason": "y"}},
        {"friends": [1, 2, 3]},
        {"something": "else"},
        {"id_str": "77", "created_at": "Wed Aug 27 13:08:45 +0000 2008", "user": {"id": 1}},  # no text
        [v1_tweet(2), v1_tweet(3)],
        {"statuses": [v1_tweet(4)], "search_metadata": {"count": 1}},
        42,
    )
    records = records_from("stream.jsonl", lines)
    assert summary(records) == {"tweets": 4, DROP_DELETE_NOTICE: 1, DROP_STREAM_NOTICE: 6, DROP_NO_TEXT: 1,
                                "dead:unrecognised_record": 2}
    assert [t.id for t in tweets(records)] == [1001, 1002, 1003, 1004]


def test_json_stream_shapes() -> None:
    a, b, c = (json.dumps(v1_tweet(i)) for i in range(3))
    pretty = json.dumps(v1_tweet(3), indent=2)
    data = f"{a}\r\n\r\n{b}{c}\n{pretty}{a}\n  \n[{b},\n {c}]\n".encode()
    records = records_from("mixed.json", data)
    assert summary(records) == {"tweets": 7}
    assert [t.id for t in tweets(records)] == [1000, 1001, 1002, 1003, 1000, 1001, 1002]


def test_invalid_json_line_among_good_ones() -> None:
    data = jsonl(v1_tweet(1), v1_tweet(2)) + b'{"text": "broken", "id_str": \n' + b"not json at all\n" + \
        jsonl(v1_tweet(3), v1_tweet(4))
    records = records_from("bad.jsonl", data)
    assert summary(records) == {"tweets": 4, "dead:invalid_json": 1}
    (d,) = dead(records)
    assert d.line == 3 and d.byte_offset == data.index(b'{"text": "broken"')
    assert d.raw.startswith('{"text": "broken"') and "not json at all" in d.raw
    assert [r.position for r in records] == list(range(5))


def test_bad_element_inside_pretty_array_is_skipped_alone() -> None:
    elements = [json.dumps(v1_tweet(i), indent=2) for i in range(4)]
    elements[1] = elements[1].replace('"text":', '"text" oops')
    indented = "[\n" + ",\n".join("  " + e.replace("\n", "\n  ") for e in elements) + "\n]\n"
    jackson = "[ " + ", ".join(elements) + " ]"  # Grailbird style: "}, {" between elements
    for name, doc in (("indented.json", indented), ("jackson.json", jackson)):
        records = records_from(name, doc.encode())
        assert summary(records) == {"tweets": 3, "dead:invalid_json": 1}, name
        assert [t.id for t in tweets(records)] == [1000, 1002, 1003]


def test_invalid_utf8_and_lone_surrogates_keep_the_record() -> None:
    line = json.dumps(v1_tweet(1, text="caf\u00e9")).encode().replace(b"\\u00e9", b"\xe9")
    half_emoji = b'{"id_str": "3", "text": "cut \\ud83d", "user": {"id": 1}}\n'  # Twitter cut a pair
    records = records_from("latin.jsonl", line + b"\n" + jsonl(v1_tweet(2)) + half_emoji)
    assert [t.text for t in tweets(records)] == ["caf\ufffd", "tweet number 2", "cut \ufffd"]
    for t in tweets(records):
        t.text.encode("utf-8")  # writable downstream


def test_empty_files() -> None:
    for name in ("e.json", "e.jsonl", "e.csv", "e.txt", "e.js", "noext"):
        assert records_from(name, b"") == []
        assert records_from(name, b"\n\n \r\n") == []
    assert records_from("e.jsonl.gz", gzip.compress(b"")) == []
    assert records_from("e.txt.bz2", bz2.compress(b"")) == []
    assert records_from("e.js", b"window.YTD.tweets.part0 = [ ]") == []


def test_ten_megabyte_lines() -> None:
    junk = b"x" * (10 << 20)
    records = records_from("big.jsonl", jsonl(v1_tweet(1)) + junk + b"\n" + jsonl(v1_tweet(2)))
    assert summary(records) == {"tweets": 2, "dead:invalid_json": 1}
    assert len(dead(records)[0].raw) <= DeadLetter.MAX_RAW_CHARS
    huge = v1_tweet(3, text="y" * (10 << 20))
    (t,) = tweets(records_from("big.jsonl", jsonl(huge)))
    assert len(t.text) == 10 << 20


def test_line_over_the_record_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(streams, "MAX_RECORD_BYTES", 1 << 20)
    monkeypatch.setattr(streams, "CHUNK_BYTES", 1 << 16)
    long_line = b'{"text": "' + b"z" * (3 << 20) + b'"}\n'
    for name in ("long.jsonl", "long.txt"):
        body = jsonl(v1_tweet(1)) + long_line + jsonl(v1_tweet(2))
        if name.endswith(".txt"):
            body = b"first\n" + b"z" * (3 << 20) + b"\nlast\n"
        records = records_from(name, body)
        assert summary(records) == {"tweets": 2, "dead:record_too_large": 1}, name
        (d,) = dead(records)
        assert d.line == 2 and len(d.raw) <= DeadLetter.MAX_RAW_CHARS


@pytest.mark.slow
def test_reader_memory_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    """JSON lines, a pretty-printed array and a long one-line array all parse in a window, not whole."""
    monkeypatch.setattr(streams, "CHUNK_BYTES", 1 << 14)
    monkeypatch.setattr(json_values, "_STREAM_ARRAY_BYTES", 1 << 16)
    monkeypatch.setattr(json_values, "_WINDOW_TRIM", 1 << 16)
    items = [v1_tweet(i, text="w" * 300) for i in range(8000)]
    docs = {"lines.jsonl": jsonl(*items), "pretty.json": json.dumps(items, indent=1).encode(),
            "one-line.json": json.dumps(items).encode() + b"\n" + jsonl(items[0])}
    for name, data in docs.items():
        assert len(data) > 3 << 20
        tracemalloc.start()
        try:
            n = sum(type(r) is Tweet for r in iter_records(name, io.BytesIO(data)))
            peak = tracemalloc.get_traced_memory()[1]
        finally:
            tracemalloc.stop()
        assert n == 8000 + (name == "one-line.json"), name
        assert peak < 1 << 20, (name, peak)


def test_compression_by_magic_bytes() -> None:
    path = shared_data("v1", "att-ast", "test.jsonl")
    plain = path.read_bytes()
    expected = summary(records_of(path))
    for name, data in (("a.jsonl.gz", gzip.compress(plain)), ("a.jsonl.bz2", bz2.compress(plain)),
                       ("no-extension", gzip.compress(plain)), ("misnamed.jsonl", bz2.compress(plain))):
        with io.BytesIO(data) as f:
            fmt, records = open_records(name, f)
            assert (fmt, summary(list(records))) == (FORMAT_V1, expected), name
    assert detect_format("a.csv.gz", gzip.compress(b"id,text\n1,hello\n")) == FORMAT_CSV


@pytest.mark.parametrize("compress", [lambda b: gzip.compress(b), lambda b: bz2.compress(b, compresslevel=1)],
                         ids=["gzip", "bz2"])
def test_truncated_stream_keeps_records_then_one_dead_letter(compress) -> None:
    path = shared_data("v1", "tweepy_cassettes_v1.jsonl")
    plain = path.read_bytes()
    full = tweets(records_of(path))
    packed = compress(plain)
    records = records_from("cut.jsonl.gz", packed[: int(len(packed) * 0.6)])
    kept = tweets(records)
    assert 0 < len(kept) < len(full)
    assert [(t.id, t.text) for t in kept] == [(t.id, t.text) for t in full[: len(kept)]]  # unchanged
    (d,) = dead(records)
    assert records[-1] is d and d.reason == "truncated_stream" and d.byte_offset > 0
    assert len(records) == len(kept) + 1
    # text and pretty-printed JSON: the unfinished record at the break is part of the one dead letter
    lines = [f"line {i} of some plain text tweets" for i in range(20000)]
    packed = gzip.compress("\n".join(lines).encode())
    records = records_from("cut.txt.gz", packed[: len(packed) // 2])
    assert [t.text for t in tweets(records)] == lines[: len(records) - 1]
    assert [d.reason for d in dead(records)] == ["truncated_stream"]
    doc = json.dumps([v1_tweet(i) for i in range(3000)], indent=2).encode()
    packed = gzip.compress(doc)
    records = records_from("cut.json.gz", packed[: len(packed) // 2])
    assert 0 < len(tweets(records)) < 3000 and [d.reason for d in dead(records)] == ["truncated_stream"]


def test_corrupt_stream_is_a_dead_letter() -> None:
    data = gzip.compress(jsonl(v1_tweet(1))) + b"\x1f\x8b garbage after the member"
    records = records_from("c.jsonl.gz", data)
    assert summary(records) == {"tweets": 1, "dead:corrupt_stream": 1}


def test_plain_text_rules() -> None:
    data = b"\xef\xbb\xbfone\r\n\r\n   \ntwo \xe2\x80\xa8 still two\nthree"
    records = records_from("t.txt", data)
    assert [t.text for t in records] == ["one", "two \u2028 still two", "three"]  # only \n splits
    assert [t.position for t in records] == [0, 1, 2]
    assert records == records_from("t.txt", data)  # derived ids are deterministic
    assert all(t.id_derived and t.id == derived_tweet_id("t.txt", t.position, t.text) for t in records)
    latin = records_from("l.txt", "ça va\nnaïve\n".encode("latin-1"))
    assert [t.text for t in latin] == ["ça va", "naïve"]


# ---------------------------------------------------------------------------------------------------
# Small parsers
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("Wed Aug 27 13:08:45 +0000 2008", 1219842525000),
    ("Sat Apr 13 16:42:51 +0200 2013", 1365864171000),
    ("2013-04-13 16:42:51 +0000", 1365871371000),
    ("2022-01-01T00:00:00.000Z", 1640995200000),
    ("2022-01-01T00:00:00.123+01:00", 1640991600123),
    ("2017-08-27 00:05:34", 1503792334000),
    ("10/16/17 22:59", 1508194740000),
    ("8/16/2016 19:22:57", 1471375377000),
    ("1520690595660", 1520690595660),
    ("2021-02-30 00:00:00", None),
    ("Wed Aug 27 25:08:45 +0000 2008", None),
    ("yesterday", None),
    ("", None),
    (None, None),
    (1234, None),
])
def test_parse_created_at(value, expected) -> None:
    assert parse_created_at(value) == expected


def test_detect_format_heads() -> None:
    assert detect_format("x.js", b"window.YTD.tweets.part0 = [") == FORMAT_ARCHIVE
    assert detect_format("x.js", b"\xef\xbb\xbfGrailbird.data.tweets_2013_04 = \n[") == FORMAT_GRAILBIRD
    assert detect_format("x.json", b'[ {\n "tweet" : {') == FORMAT_ARCHIVE
    assert detect_format("x", b'{"id":"1","action":"delete","created_at":"x","reason":"y"}') == FORMAT_V2
    assert detect_format("x", b'{"data":{"id":"1","text":"hi","author_id":"2"}}') == FORMAT_V2
    assert detect_format("x.txt", b'{"created_at":"x","id":1,"id_str":"1","text":"hi"}') == FORMAT_V1
    assert detect_format("x.jsonl", b"Classic Tweet\n{") == FORMAT_V1
    assert detect_format("x.tsv", b"id\ttext\n") == FORMAT_CSV
    assert detect_format("noext", b"tweet_id,timestamp,text\n1,2,3\n") == FORMAT_CSV
    assert detect_format("noext", b"just words, and more\n") == FORMAT_TEXT
    assert detect_format("noext", b"I love text, really\n") == FORMAT_TEXT
    with pytest.raises(ValueError, match="unknown format"):
        iter_records("x", io.BytesIO(b""), "xml")


# ---------------------------------------------------------------------------------------------------
# Beam
# ---------------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_read_archives_pipeline(tmp_path: Path) -> None:
    v1_dir = shared_data("v1", "att-ast")
    mixed = shared_data("v1", "tweet-updates", "initial__compatibility_classic_13995.json")
    csv_file = shared_data("csv", "fivethirtyeight_trump-twitter__realDonaldTrump_poll_tweets.csv")
    gz = tmp_path / "stream.jsonl.gz"
    gz.write_bytes(gzip.compress(jsonl(v1_tweet(1), {"limit": {"track": 1}})))
    p = beam.Pipeline()
    patterns = [str(v1_dir / "*.jsonl"), str(mixed), str(csv_file), str(gz)]
    out = p | "Read" >> ReadArchives(patterns, batch_size=50)
    assert isinstance(out, beam.pvalue.DoOutputsTuple)
    assert_that(out.tweets | beam.Map(len) | beam.CombineGlobally(sum), equal_to([95 + 94 + 2 + 448 + 1]))
    assert_that(out.tweets | beam.Map(lambda b: len(b) <= 50), equal_to([True] * 15), label="Batches")
    assert_that(out[TAG_DROPPED] | beam.CombinePerKey(sum),
                equal_to([(("parse", DROP_DELETE_NOTICE), 11), (("parse", DROP_STREAM_NOTICE), 1)]),
                label="Drops")
    assert_that(out[TAG_DEAD_LETTERS] | beam.Map(lambda d: (re.sub(r".*/", "", d.source_file), d.reason)),
                equal_to([(mixed.name, "invalid_json")]), label="DeadLetters")
    result = p.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query()["counters"]}
    assert counters["parse_records_read_v1"] == 200 + 3 + 2
    assert counters["parse_records_read_csv"] == 448
    assert counters["dropped_parse_delete_notice"] == 11

    with pytest.raises(Exception, match=r"Empty match for pattern .*no-such-dir"), beam.Pipeline() as p2:
        _ = p2 | ReadArchives([str(tmp_path / "no-such-dir" / "*.json")])


# ---------------------------------------------------------------------------------------------------
# links between tweets (issue #16): reply-to id and author, conversation id, quoted id
# ---------------------------------------------------------------------------------------------------


def _js_array(path: Path) -> list:
    """The JSON array of an archive / Grailbird ``.js`` file, read independently of the parser."""
    raw = path.read_text(encoding="utf-8-sig")
    return json.loads(raw[raw.index("=") + 1:])


def _source_id(value) -> int | None:
    return int(value) if value not in (None, "", 0) else None


def _by_id(parsed: list[Tweet]) -> dict[int, Tweet]:
    return {t.id: t for t in parsed}


def test_links_of_v1_tweets_match_the_source() -> None:
    path = shared_data("v1", "tweepy_cassettes_v1.jsonl")
    parsed = _by_id(tweets(records_of(path)))
    sources = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    replies = 0
    for obj in sources:
        t = parsed[int(obj["id_str"])]
        assert t.reply_to_id == _source_id(obj.get("in_reply_to_status_id_str"))
        assert t.reply_to_author_id == _source_id(obj.get("in_reply_to_user_id_str"))
        assert t.conversation_id is None  # v1 has none
        replies += t.reply_to_id is not None
    assert replies == 23
    quoted_file = shared_data(*TU, "original__lt_140_characters_hidden___quoted_w_attachment.json")
    quote = one_tweet(quoted_file)
    raw = json.loads(quoted_file.read_text())
    assert quote.quoted_id == int(raw["quoted_status_id_str"]) and quote.is_quote


def test_links_of_archive_tweets_match_the_source() -> None:
    path = shared_data("archive", "milahu-twitter-milahu104", "tweets.js")
    parsed = _by_id(tweets(records_of(path)))
    entries = [e["tweet"] for e in _js_array(path)]
    for obj in entries:
        t = parsed[int(obj["id_str"])]
        assert t.reply_to_id == _source_id(obj.get("in_reply_to_status_id_str"))
        assert t.reply_to_author_id == (
            _source_id(obj.get("in_reply_to_user_id_str")) if t.reply_to_id is not None else None)
    # 41 replies answer a tweet of the same archive, all by its own account: self-threads.
    own = [t for t in parsed.values() if t.reply_to_id in parsed]
    assert len(own) == 41 and {t.reply_to_author_id for t in own} == {1964312974236991488}


def test_links_of_grailbird_and_legacy_csv_agree() -> None:
    folder = shared_data("archive", "legacy-grailbird-NiciDieNase")
    grail = _by_id([t for p in sorted(folder.glob("*.js")) for t in tweets(records_of(p))])
    for p in sorted(folder.glob("*.js")):
        for obj in _js_array(p):
            t = grail[int(obj["id_str"])]
            assert t.reply_to_id == _source_id(obj.get("in_reply_to_status_id_str"))
    csv_tweets = _by_id(tweets(records_of(shared_data("csv", "legacy-archive-NiciDieNase_tweets.csv"))))
    replies = {i: (t.reply_to_id, t.reply_to_author_id) for i, t in csv_tweets.items() if t.reply_to_id}
    assert len(replies) == 253
    assert replies == {i: (t.reply_to_id, t.reply_to_author_id) for i, t in grail.items() if t.reply_to_id}


def test_links_of_v2_tweets_match_the_source() -> None:
    folder = shared_data("v2", "twarc-csv")
    checked = quoted = 0
    for path in sorted(folder.glob("*.jsonl")):
        parsed = _by_id(tweets(records_of(path)))
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                doc = json.loads(line)
            except ValueError:  # the broken lines of streaming_output_with_error.jsonl
                continue
            data = doc.get("data", doc if "text" in doc else [])
            for obj in data if isinstance(data, list) else [data]:
                t = parsed.get(int(obj["id"])) if "id" in obj else None
                if t is None or t.is_retweet:
                    continue
                refs = {r["type"]: int(r["id"]) for r in obj.get("referenced_tweets", [])}
                assert t.conversation_id == _source_id(obj.get("conversation_id"))
                assert t.reply_to_id == refs.get("replied_to")
                assert t.quoted_id == refs.get("quoted")
                if t.reply_to_id is not None:
                    assert t.reply_to_author_id == _source_id(obj.get("in_reply_to_user_id"))
                checked += 1
                quoted += t.quoted_id is not None
    assert checked > 300 and quoted > 10

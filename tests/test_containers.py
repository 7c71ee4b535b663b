"""Containers and compression by content: archives packed as people hold them read like plain files.

Every container here is built from the real files in ``../shared/data`` and compared with the same
files read plain: the same tweets (ids, texts, fields), and every record accounted for.
"""

from __future__ import annotations

import bz2
import gzip
import io
import json
import lzma
import shutil
import tarfile
import zipfile
from collections import Counter
from pathlib import Path

import apache_beam as beam
import pytest
import zstandard
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from conftest import shared_data
from tweetmill.schemas.records import DROP_NOTE_MERGED, DeadLetter, Tweet
from tweetmill.transforms.account_archive import SKIP_DELETED, SKIP_PRIVATE
from tweetmill.transforms.common import TAG_DEAD_LETTERS
from tweetmill.transforms.containers import SKIP_ARCHIVE_VIEWER, SKIP_HIDDEN, sniff
from tweetmill.transforms.read import TAG_FILES, ReadArchives, ReadOptions, read_path

ARCHIVE = "archive/milahu-twitter-milahu104"
LAYOUT = "archive-layout/milahu-twitter-milahu104/data"
STREAM_FILES = ("v1/att-ast/test.jsonl", "v1/att-ast/twit.jsonl", "v1/python-twitter/streaming__lines.json")
ACCOUNT_ID = 1964312974236991488


def read_all(path: Path | str, **options) -> dict[str, dict]:
    """Each file of an input -> its tweets, drops, dead letters, skip reason, notes."""
    out = {}
    for parsed in read_path(str(path), ReadOptions(**options)):
        records = list(parsed.records)
        out[parsed.name] = {
            "tweets": [r for r in records if type(r) is Tweet],
            "drops": Counter(r for r in records if type(r) is str),
            "dead": [r for r in records if type(r) is DeadLetter],
            "records": len(records),
            "skipped": parsed.skipped,
            "fmt": parsed.fmt,
            "notes": dict(parsed.notes),
        }
    return out


def rows(tweets: list[Tweet]) -> list[tuple]:
    """A tweet as the shards see it, without where it came from."""
    return sorted((t.id, t.text, t.created_at_ms, t.author_id, t.twitter_lang, t.is_retweet, t.is_reply,
                   t.is_quote, t.id_derived) for t in tweets)


def all_tweets(result: dict[str, dict]) -> list[Tweet]:
    return [t for f in result.values() for t in f["tweets"]]


def tar_bytes(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def extract(members: dict[str, bytes], folder: Path) -> Path:
    """The members written out as the folder an unzip would leave."""
    for name, data in members.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    return folder


def zip_bytes(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


# A note for a real tweet of the archive: created with it, its visible text continued.
def _long_post_for(tweet: dict) -> dict:
    import html
    import re
    from datetime import datetime

    created = datetime.strptime(tweet["created_at"], "%a %b %d %H:%M:%S %z %Y")
    visible = re.sub(r"https?://\S+", "", html.unescape(tweet["full_text"])).strip()
    return {"noteTweet": {"noteTweetId": "1900000000000000001",
                          "createdAt": created.strftime("%Y-%m-%dT%H:%M:%S.000Z"),
                          "core": {"text": visible + " and the rest of a long post that tweets.js cut off."}}}


@pytest.fixture(scope="module")
def account_archive() -> dict[str, bytes]:
    """The members of Twitter's archive download, rebuilt from the real files of one account."""
    members = {}
    for name in ("tweets.js", "deleted-tweets.js", "community-tweet.js"):
        members[f"data/{name}"] = shared_data(ARCHIVE, name).read_bytes()
    for path in sorted(shared_data(LAYOUT).rglob("*")):
        if path.is_file():
            members[f"data/{path.relative_to(shared_data(LAYOUT)).as_posix()}"] = path.read_bytes()
    body = members["data/tweets.js"].split(b"=", 1)[1]
    long_tweet = next(e["tweet"] for e in json.loads(body) if len(e["tweet"]["full_text"]) > 120
                      and not e["tweet"]["full_text"].startswith("RT @"))
    notes = [_long_post_for(long_tweet),
             {"noteTweet": {"noteTweetId": "1900000000000000002", "createdAt": "2024-01-01T00:00:00.000Z",
                            "core": {"text": "A long post whose tweet is not in this archive at all."}}}]
    members["data/note-tweet.js"] = b"window.YTD.note_tweet.part0 = " + json.dumps(notes, indent=2).encode()
    members["data/direct-messages.js"] = (b'window.YTD.direct_messages.part0 = [{"dmConversation": '
                                          b'{"messages": [{"messageCreate": {"text": "PRIVATE secret"}}]}}]')
    members["Your archive.html"] = b"<!DOCTYPE html><html><body>Your archive</body></html>"
    members["assets/js/main.js"] = b"function render(tweets) { return tweets.map(t => t.text); }\n"
    members["__MACOSX/data/._tweets.js"] = b"\x00\x05\x16\x07 apple double"
    return members


def test_sniff_by_content_not_name() -> None:
    plain = b'{"text": "hi"}\n'
    assert sniff(gzip.compress(plain)) == "gzip"
    assert sniff(bz2.compress(plain)) == "bz2"
    assert sniff(lzma.compress(plain)) == "xz"
    assert sniff(zstandard.ZstdCompressor().compress(plain)) == "zstd"
    assert sniff(zip_bytes({"a": plain})) == "zip"
    assert sniff(tar_bytes({"a": plain})) == "tar"
    assert sniff(plain) == sniff(b"BZh no digit") == sniff(b"PK but not a zip") == "raw"


def test_account_archive_zip_reads_as_a_whole(tmp_path: Path, account_archive: dict[str, bytes]) -> None:
    archive = tmp_path / "twitter-2026-03-06-a1b2c3.zip"
    archive.write_bytes(zip_bytes(account_archive))
    result = read_all(archive)
    name = f"{archive}!data/"
    # The tweet datasets are read; every other file is skipped with its reason, DMs never opened.
    assert result[name + "direct-messages.js"]["skipped"] == SKIP_PRIVATE
    assert result[name + "deleted-tweets.js"]["skipped"] == SKIP_DELETED
    assert "holds no tweets" in result[name + "like.js"]["skipped"]
    assert "holds no tweets" in result[name + "account.js"]["skipped"]
    assert result[f"{archive}!Your archive.html"]["skipped"] == SKIP_ARCHIVE_VIEWER
    assert result[f"{archive}!assets/js/main.js"]["skipped"] == SKIP_ARCHIVE_VIEWER
    assert result[name + "README.txt"]["skipped"] == SKIP_ARCHIVE_VIEWER or "README" in name + "README.txt"
    assert result[f"{archive}!__MACOSX/data/._tweets.js"]["skipped"] == SKIP_HIDDEN
    assert all(f["skipped"] for n, f in result.items() if "tweets_media" in n)
    assert not any("PRIVATE" in t.text for t in all_tweets(result))
    # Tweets: the same as the plain files, with the author from account.js.
    plain = read_all(shared_data(ARCHIVE, "tweets.js"))
    plain_tweets = all_tweets(plain)
    zipped = result[name + "tweets.js"]
    assert len(zipped["tweets"]) == len(plain_tweets) > 1000
    assert {t.author_id for t in zipped["tweets"]} == {ACCOUNT_ID}
    assert {t.author_id for t in plain_tweets} == {None}  # a loose tweets.js has no account.js beside it
    # The long post: its tweets.js entry takes the note's full text; the note counts as merged.
    merged = [t for t in zipped["tweets"] if t.text.endswith("tweets.js cut off.")]
    assert len(merged) == 1 and zipped["notes"] == {"text_from_note_tweet": 1}
    notes = result[name + "note-tweet.js"]
    assert notes["drops"] == {DROP_NOTE_MERGED: 1}
    assert [t.text for t in notes["tweets"]] == ["A long post whose tweet is not in this archive at all."]
    by_id = {t.id: t for t in plain_tweets}
    for t in zipped["tweets"]:
        if t is not merged[0]:
            assert t.text == by_id[t.id].text
    community = result[name + "community-tweet.js"]
    assert community["tweets"] and {t.author_id for t in community["tweets"]} == {ACCOUNT_ID}
    # Asked for, the deleted tweets are read (and kept).
    with_deleted = read_all(archive, include_deleted=True)[name + "deleted-tweets.js"]
    assert len(with_deleted["tweets"]) == with_deleted["records"] > 10


def test_extracted_archive_folder_equals_the_zip(tmp_path: Path, account_archive: dict[str, bytes]) -> None:
    archive = tmp_path / "a.zip"
    archive.write_bytes(zip_bytes(account_archive))
    folder = extract(account_archive, tmp_path / "extracted")
    from_zip = read_all(archive)
    loose = {}
    for name in ("tweets.js", "note-tweet.js", "community-tweet.js"):
        loose.update(read_all(folder / "data" / name))
    assert rows(all_tweets(loose)) == rows(all_tweets(from_zip))
    assert sum((f["drops"] for f in loose.values()), Counter()) == {DROP_NOTE_MERGED: 1}


def test_stream_grab_tar_of_bz2_minutes(tmp_path: Path) -> None:
    """The Archive Team layout: a .tar of YYYY/MM/DD/HH/MM.json.bz2, each member an input of its own."""
    members = {f"2022/01/01/00/{i:02d}.json.bz2": bz2.compress(shared_data(*rel.split("/")).read_bytes())
               for i, rel in enumerate(STREAM_FILES)}
    grab = tmp_path / "archiveteam-twitter-stream-2022-01.tar"
    grab.write_bytes(tar_bytes(members))
    result = read_all(grab)
    assert sorted(result) == sorted(f"{grab}!{m}" for m in members)
    plain = {}
    for rel in STREAM_FILES:
        plain.update(read_all(shared_data(*rel.split("/"))))
    assert rows(all_tweets(result)) == rows(all_tweets(plain))
    assert sum(f["records"] for f in result.values()) == sum(f["records"] for f in plain.values())
    # packed again as .tar.gz (one unit, read in order) and .tar.zst: the same tweets
    for suffix, pack in (("tar.gz", gzip.compress), ("tar.zst", zstandard.ZstdCompressor().compress),
                         ("tar.xz", lzma.compress)):
        packed = tmp_path / f"grab.{suffix}"
        packed.write_bytes(pack(grab.read_bytes()))
        again = read_all(packed)
        assert sorted(again) == sorted(f"{packed}!{m}" for m in members), suffix
        assert rows(all_tweets(again)) == rows(all_tweets(plain)), suffix


def test_grailbird_tar_gz_zst_and_suffixless_gzip(tmp_path: Path) -> None:
    months = sorted(shared_data("archive", "legacy-grailbird-NiciDieNase").glob("*.js"))[:6]
    plain = {}
    for m in months:
        plain.update(read_all(m))
    backup = tmp_path / "backup.tgz"
    backup.write_bytes(gzip.compress(tar_bytes({f"data/js/tweets/{m.name}": m.read_bytes() for m in months})))
    assert rows(all_tweets(read_all(backup))) == rows(all_tweets(plain))
    one = tmp_path / "tweets_no_suffix"
    one.write_bytes(gzip.compress(months[0].read_bytes()))
    zst = tmp_path / "month.js.zst"
    zst.write_bytes(zstandard.ZstdCompressor().compress(months[0].read_bytes()))
    for packed in (one, zst):
        assert rows(all_tweets(read_all(packed))) == rows(all_tweets(read_all(months[0])))


def test_nested_and_plain_text_members_keep_their_ids(tmp_path: Path) -> None:
    """A zip in a tar, text in a zip: derived ids depend on the file's own name, not its packing."""
    text = Path(__file__).resolve().parents[1] / "examples" / "sample" / "data" / "xlmt_german_test.txt"
    inner = zip_bytes({"notes/german.txt": text.read_bytes()}, zipfile.ZIP_STORED)
    outer = tmp_path / "outer.tar"
    outer.write_bytes(tar_bytes({"inner.zip": inner}))
    loose = tmp_path / "german.txt"
    shutil.copy(text, loose)
    nested = read_all(outer)
    assert list(nested) == [f"{outer}!inner.zip!notes/german.txt"]
    assert rows(all_tweets(nested)) == rows(all_tweets(read_all(loose)))


def test_broken_containers_are_dead_letters_after_what_they_held(tmp_path: Path) -> None:
    members = {f"m/{i}.jsonl": shared_data("v1", "att-ast", "test.jsonl").read_bytes() for i in range(4)}
    whole = tar_bytes(members)
    cut = tmp_path / "cut.tar"
    cut.write_bytes(whole[: int(len(whole) * 0.6)])
    result = read_all(cut)
    dead = [d for f in result.values() for d in f["dead"]]
    assert 1 <= len(dead) <= 2 and len(all_tweets(result)) >= 95  # whole members before the break
    assert all(d.reason in ("truncated_stream", "corrupt_container", "unexpected_end_of_input") for d in dead)
    for f in result.values():  # every record of every file is accounted for
        assert f["records"] == len(f["tweets"]) + sum(f["drops"].values()) + len(f["dead"])
    bad_zip = tmp_path / "bad.zip"
    data = bytearray(zip_bytes({"a.jsonl": members["m/0.jsonl"]}))
    data[len(data) // 2] ^= 0xFF  # a flipped byte in the deflate data: CRC or stream error
    bad_zip.write_bytes(bytes(data))
    result = read_all(bad_zip)
    assert [d.reason for f in result.values() for d in f["dead"]] in (["corrupt_stream"], ["invalid_json"],
                                                                      ["corrupt_stream", "invalid_json"])


@pytest.mark.slow
def test_read_archives_fans_members_out_with_one_summary_each(tmp_path: Path,
                                                              account_archive: dict[str, bytes]) -> None:
    grab = tmp_path / "grab.tar"
    grab.write_bytes(tar_bytes({f"2022/01/01/00/{i:02d}.json.bz2": bz2.compress(
        shared_data(*rel.split("/")).read_bytes()) for i, rel in enumerate(STREAM_FILES)}))
    archive_dir = tmp_path / "in"
    archive_dir.mkdir()
    (archive_dir / "twitter-archive.zip").write_bytes(zip_bytes(account_archive))
    (archive_dir / ".hidden.jsonl").write_bytes(b"not read\n")
    expected = {**read_all(grab), **read_all(archive_dir / "twitter-archive.zip")}
    p = beam.Pipeline(runner=FnApiRunner())
    out = p | ReadArchives([str(grab), str(archive_dir)], batch_size=100)
    files = out[TAG_FILES] | beam.Map(lambda f: (f["file"], f["records"], f["tweets"], f.get("skipped", "")))
    want = [(n, f["records"], len(f["tweets"]), f["skipped"]) for n, f in expected.items()]
    assert_that(files, equal_to(want), label="Files")
    assert_that(out.tweets | beam.Map(len) | beam.CombineGlobally(sum),
                equal_to([len(all_tweets(expected))]), label="Tweets")
    assert_that(out[TAG_DEAD_LETTERS] | beam.combiners.Count.Globally(),
                equal_to([sum(len(f["dead"]) for f in expected.values())]), label="Dead")
    p.run().wait_until_finish()


@pytest.mark.slow
def test_shards_do_not_depend_on_the_packing(tmp_path: Path, account_archive: dict[str, bytes]) -> None:
    """The whole pipeline on the archive zip and on its extracted folder: the same rows, in the same
    order, where only ``source_file`` differs."""
    import pyarrow as pa
    from tweetmill.pipeline.build import run
    from tweetmill.pipeline.options import RunConfig

    archive = tmp_path / "twitter-archive.zip"
    archive.write_bytes(zip_bytes(account_archive))
    folder = extract(account_archive, tmp_path / "extracted")
    tables = []
    for source in (archive, folder):
        out = tmp_path / f"out-{source.name}"
        manifest = run(RunConfig(inputs=(str(source),), output=str(out)))
        assert manifest.counts.balanced and manifest.counts.errors == 0
        tables.append(pa.concat_tables(
            pa.ipc.open_file(pa.memory_map(str(out / s.file))).read_all() for s in manifest.shards
        ).drop_columns(["source_file"]))
    assert tables[0].num_rows > 1000 and tables[0].equals(tables[1])

"""``tweetmill run --documents``: whole pipeline runs on real archives (slow), the shards they write
read by ``verify``, ``stats``, ``sample`` and the trainer, and shards of format 1 still read."""

from __future__ import annotations

import hashlib
import itertools
import json
import shutil
import zipfile
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import shared_data
from rich.console import Console
from test_runner_independence import MULTI_PROCESS
from tweetmill.gpu_train.data import open_shards, split_documents
from tweetmill.pipeline.build import run
from tweetmill.pipeline.options import RunConfig
from tweetmill.pipeline.sample import print_samples, sample
from tweetmill.pipeline.stats import compute_stats
from tweetmill.pipeline.verify import verify
from tweetmill.schemas.manifest import MANIFEST_NAME
from tweetmill.schemas.shard import LINK_FIELDS, META_FORMAT_VERSION, schema_metadata
from tweetmill.transforms.documents import DocumentsConfig
from tweetmill.transforms.documents_core import TURN_SEPARATOR

pytestmark = pytest.mark.slow


def archive_zip(tmp_path: Path) -> Path:
    """The milahu account archive (its tweets and account.js) as the zip Twitter hands out."""
    path = tmp_path / "twitter-archive.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.write(shared_data("archive", "milahu-twitter-milahu104", "tweets.js"), "data/tweets.js")
        zf.write(
            shared_data("archive-layout", "milahu-twitter-milahu104", "data", "account.js"), "data/account.js"
        )
    return path


def config(inputs: list[Path], output: Path, mode: str) -> RunConfig:
    return RunConfig(
        inputs=tuple(map(str, inputs)),
        output=str(output),
        stages={"documents": DocumentsConfig(documents=mode)},
        rows_per_shard=600,
    )


def table(out: Path) -> pa.Table:
    tables = [
        pa.ipc.open_file(pa.memory_map(str(p))).read_all() for p in sorted((out / "data").glob("*.arrow"))
    ]
    return pa.concat_tables(tables)


def test_threads_of_a_real_archive_on_one_and_two_workers(tmp_path: Path) -> None:
    archive = archive_zip(tmp_path)
    one = run(config([archive], tmp_path / "one", "threads"))
    two = run(config([archive], tmp_path / "two", "threads"), MULTI_PROCESS)
    assert one.counts.balanced and one.counts == two.counts
    assert one.shards == two.shards and len(one.shards) == 3
    for shard in one.shards:  # byte-identical whatever the workers
        assert (tmp_path / "one" / shard.file).read_bytes() == (tmp_path / "two" / shard.file).read_bytes()

    docs = one.stages["documents"]
    rows = table(tmp_path / "one")
    assert (
        one.counts.kept
        == sum(s.kept for s in one.shards)
        == sum(len(t) for t in rows.column("tweet_ids").to_pylist())
    )
    assert rows.num_rows == docs["documents"] < one.counts.kept
    assert docs["most_tweets_in_a_document"] == 12 and docs["multi_tweet_documents"] > 10
    by_id = {}  # every member's own link, from the shards of a --documents tweets run below
    threads = [r for r in rows.to_pylist() if len(r["tweet_ids"]) > 1]
    assert all(r["text"].count(TURN_SEPARATOR) == len(r["tweet_ids"]) - 1 for r in threads)
    eos = one.tokenizer.eos_id  # one EOS per document, at its end: the trainer's document mask
    assert all(r["tokens"].count(eos) == 1 and r["tokens"][-1] == eos for r in threads)

    tweets = run(config([archive], tmp_path / "tweets", "tweets"))
    assert tweets.counts == one.counts  # the same tweets kept: documents are built after every decision
    for r in table(tmp_path / "tweets").to_pylist():
        assert r["tweet_ids"] == [r["id"]] and r["context_id"] is None
        by_id[r["id"]] = r
    for r in threads:
        ids = r["tweet_ids"]
        assert all(by_id[b]["reply_to_id"] == a for a, b in itertools.pairwise(ids))
        assert TURN_SEPARATOR.join(by_id[i]["text"] for i in ids) == r["text"]

    report = verify(str(tmp_path / "one"))
    assert report.ok, report.problems + [p for s in report.shards for p in s.problems]
    stats = compute_stats(str(tmp_path / "one"))
    assert stats["funnel"]["balanced"] and stats["matches_manifest"]
    assert stats["documents"]["tweets"] == one.counts.kept
    assert stats["documents"]["tweets_per_document"]["max"] == 12
    picked = [s for s in sample(str(tmp_path / "one"), n=rows.num_rows) if s["turns"]]
    assert len(picked) == docs["multi_tweet_documents"] and all(s["round_trip"] for s in picked)
    # --min-turns 2 draws from exactly those documents; deeper thresholds from fewer of them
    assert sample(str(tmp_path / "one"), n=rows.num_rows, min_turns=2) == picked
    deep = sample(str(tmp_path / "one"), n=rows.num_rows, min_turns=5)
    assert deep and len(deep) < len(picked) and all(len(s["tweet_ids"]) >= 5 for s in deep)
    assert sample(str(tmp_path / "one"), n=3, min_turns=13) == []  # the longest thread has 12 tweets
    console = Console(record=True, width=100)
    print_samples(console, picked[:1])
    printed = console.export_text()
    assert "1. tweet " in printed and "2. tweet " in printed

    data = open_shards(tmp_path / "one", verify=True)  # the trainer: one document per row, one EOS each
    assert data.num_docs == rows.num_rows
    train, val = split_documents(data, 0.2)
    assert len(train) + len(val) == rows.num_rows  # a thread is held out or trained on whole


def test_conversations_of_api_files(tmp_path: Path) -> None:
    inputs = [
        shared_data("v1", "tweepy_cassettes_v1.jsonl"),
        shared_data("v1", "python-twitter"),
        shared_data("v2", "twarc-csv"),
    ]
    manifest = run(config(inputs, tmp_path / "out", "conversations"))
    assert manifest.counts.balanced
    rows = table(tmp_path / "out").to_pylist()
    assert sum(len(r["tweet_ids"]) for r in rows) == manifest.counts.kept
    conversations = [r for r in rows if len(r["tweet_ids"]) > 1 or r["context_id"] is not None]
    assert conversations and all(r["text"].startswith("A: ") for r in conversations)
    assert verify(str(tmp_path / "out")).ok


def _as_format_1(src: Path, dst: Path) -> None:
    """A shard directory as tweetmill wrote it before format 2: no link or document columns."""
    shutil.copytree(src, dst)
    manifest = json.loads((dst / MANIFEST_NAME).read_text())
    for entry in manifest["shards"]:
        path = dst / entry["file"]
        t = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
        meta = schema_metadata(t.schema) | {META_FORMAT_VERSION: "1"}
        t = t.drop_columns([f.name for f in LINK_FIELDS]).replace_schema_metadata(meta)
        sink = pa.BufferOutputStream()
        with pa.ipc.new_file(sink, t.schema) as writer:
            writer.write_table(t)
        data = sink.getvalue().to_pybytes()
        path.write_bytes(data)
        entry.update(bytes=len(data), sha256=hashlib.sha256(data).hexdigest())
    manifest["shard_format_version"] = 1
    manifest["totals"]["bytes"] = sum(e["bytes"] for e in manifest["shards"])
    (dst / MANIFEST_NAME).write_text(json.dumps(manifest, indent=2))


def test_shards_of_format_1_still_read(tmp_path: Path) -> None:
    run(config([shared_data("v1", "tweepy_cassettes_v1.jsonl")], tmp_path / "v2", "tweets"))
    _as_format_1(tmp_path / "v2", tmp_path / "v1")
    assert verify(str(tmp_path / "v1")).ok
    new, old = compute_stats(str(tmp_path / "v2")), compute_stats(str(tmp_path / "v1"))
    assert old["documents"] == new["documents"] and old["rows"] == new["rows"] > 20
    assert all(s["turns"] is None for s in sample(str(tmp_path / "v1"), n=5))
    assert sample(str(tmp_path / "v1"), n=5, min_turns=2) == []  # one tweet a row
    assert open_shards(tmp_path / "v1", verify=True).num_docs == old["rows"]

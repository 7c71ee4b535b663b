"""The real pipeline, end to end, on Beam's embedded runner: accounting, shards, determinism, bad input."""

from __future__ import annotations

import bz2
import gzip
import hashlib
import json
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REPO_ROOT
from tweetmill.pipeline.build import OutputExistsError, run
from tweetmill.pipeline.cli import main as cli_main
from tweetmill.pipeline.options import RunConfig
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest
from tweetmill.schemas.shard import check_shard_schema, schema_metadata

SAMPLE = REPO_ROOT / "examples" / "sample" / "data"


def read_shards(out: Path, manifest: Manifest) -> pa.Table:
    tables = []
    for shard in manifest.shards:
        data = (out / shard.file).read_bytes()
        assert hashlib.sha256(data).hexdigest() == shard.sha256
        assert len(data) == shard.bytes
        table = pa.ipc.open_file(pa.memory_map(str(out / shard.file))).read_all()
        check_shard_schema(table.schema)
        assert table.num_rows == shard.rows
        meta = schema_metadata(table.schema)
        assert meta["tweetmill.run_fingerprint"] == manifest.run_fingerprint
        assert meta["tweetmill.tokenizer_sha256"] == manifest.tokenizer.sha256
        tables.append(table)
    return pa.concat_tables(tables)


def assert_accounting(out: Path, manifest: Manifest) -> None:
    counts = manifest.counts
    assert counts.balanced
    assert counts.read == counts.kept + sum(counts.dropped.values()) + counts.errors
    assert counts.kept == manifest.total_rows
    on_disk = json.loads((out / MANIFEST_NAME).read_text())
    assert on_disk["counts"]["balanced"] is True
    letters = [
        json.loads(line) for name in manifest.error_files for line in (out / name).read_text().splitlines()
    ]
    assert len(letters) == counts.errors


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("sample") / "out"
    manifest = run(RunConfig(inputs=(str(SAMPLE / "*"),), output=str(out), rows_per_shard=1000))
    return out, manifest


@pytest.mark.slow
def test_sample_run_balances_and_shards_match_manifest(sample_run):
    out, manifest = sample_run
    assert_accounting(out, manifest)
    table = read_shards(out, manifest)
    assert len(manifest.shards) == 3  # ~2.9k kept tweets at 1000 rows per shard
    ids = table.column("id").to_pylist()
    assert len(set(ids)) == len(ids)
    tokens = table.column("tokens")
    eos = manifest.tokenizer.eos_id
    assert all(row[-1] == eos for row in tokens.to_pylist())
    assert table.column("num_tokens").to_pylist() == [len(r) for r in tokens.to_pylist()]
    assert set(table.column("source_format").to_pylist()) == {"v1", "v2", "archive", "csv", "text"}
    assert manifest.counts.dropped["retweet"] > 0


@pytest.mark.slow
def test_rerun_is_byte_identical(sample_run, tmp_path, capsys):
    """Again, from the CLI, with near dedup's shuffles split otherwise: the same bytes."""
    out, manifest = sample_run
    args = ["run", str(SAMPLE / "*"), "--output", str(tmp_path / "again"), "--rows-per-shard", "1000"]
    assert cli_main([*args, "--near-dup-partitions", "5"]) == 0
    capsys.readouterr()
    again = Manifest.from_json((tmp_path / "again" / MANIFEST_NAME).read_text())
    assert again.config["near_dup_partitions"] == 5 and manifest.config["near_dup_partitions"] == 64
    assert again.run_fingerprint == manifest.run_fingerprint
    assert again.counts == manifest.counts
    assert [s.sha256 for s in again.shards] == [s.sha256 for s in manifest.shards]
    for shard in manifest.shards:
        assert (out / shard.file).read_bytes() == (tmp_path / "again" / shard.file).read_bytes()


@pytest.mark.slow
def test_existing_run_is_not_overwritten_silently(sample_run):
    out, _ = sample_run
    with pytest.raises(OutputExistsError):
        run(RunConfig(inputs=(str(SAMPLE / "*.csv"),), output=str(out)))


@pytest.mark.slow
def test_overwrite_replaces_the_whole_shard_set(tmp_path):
    out = tmp_path / "out"
    first = run(RunConfig(inputs=(str(SAMPLE / "*"),), output=str(out), num_shards=4))
    assert len(first.shards) == 4
    second = run(RunConfig(inputs=(str(SAMPLE / "*.csv"),), output=str(out), num_shards=2), overwrite=True)
    assert sorted(f"data/{p.name}" for p in out.glob("data/*")) == [s.file for s in second.shards]
    assert not list(out.glob("*.arrow"))
    assert_accounting(out, second)


@pytest.mark.slow
def test_cli_passes_beam_options_through(tmp_path, capsys):
    out = tmp_path / "out"
    code = cli_main(
        [
            "run",
            str(SAMPLE / "*.csv"),
            "--runner",
            "DirectRunner",
            "--output",
            str(out),
            "--direct_num_workers",
            "1",
            "--languages",
            "en",
        ]
    )
    assert code == 0
    manifest = Manifest.from_json((out / MANIFEST_NAME).read_text())
    assert manifest.config["stages"]["language"]["languages"] == ["en"]
    assert "balanced" in capsys.readouterr().out


def _write_malformed_inputs(root: Path) -> None:
    good = json.dumps(
        {
            "id_str": "20",
            "id": 20,
            "text": "a perfectly good tweet about the weather today",
            "created_at": "Wed Aug 27 13:08:45 +0000 2008",
            "user": {"id_str": "1"},
        }
    )
    (root / "mixed.jsonl").write_text(good + "\n{not json at all\n" + good.replace('"20"', '"21"') + "\n")
    blob = gzip.compress(
        b"".join(
            (json.dumps({"id_str": str(100 + i), "text": f"tweet number {i} is a fine one"}) + "\n").encode()
            for i in range(200)
        )
    )
    (root / "truncated.jsonl.gz").write_bytes(blob[: len(blob) // 2])
    (root / "empty.json").write_bytes(b"")
    (root / "latin1.csv").write_bytes("id,text\n1,caf\xe9 au lait is good today\n".encode("latin-1"))
    (root / "huge.jsonl").write_text("x" * (10 * 1024 * 1024) + "\n" + good.replace('"20"', '"22"') + "\n")
    (root / "ok.txt.bz2").write_bytes(bz2.compress(b"plain text tweet one here\nplain text tweet two here\n"))


@pytest.mark.slow
def test_malformed_input_yields_dead_letters_and_a_finished_run(tmp_path):
    inputs = tmp_path / "in"
    inputs.mkdir()
    _write_malformed_inputs(inputs)
    out = tmp_path / "out"
    manifest = run(RunConfig(inputs=(str(inputs / "*"),), output=str(out)))
    assert_accounting(out, manifest)
    letters = [
        json.loads(line) for name in manifest.error_files for line in (out / name).read_text().splitlines()
    ]
    by_file = {Path(d["source_file"]).name: d for d in letters}
    assert set(by_file) == {"mixed.jsonl", "truncated.jsonl.gz", "huge.jsonl"}
    assert len(by_file["huge.jsonl"]["raw"]) <= 2000
    texts = read_shards(out, manifest).column("text").to_pylist()
    assert "café au lait is good today" in texts
    assert sum(t.startswith("tweet number") for t in texts) > 0  # records before the break are kept
    assert "plain text tweet two here" in texts


@pytest.mark.slow
def test_unbalanced_run_fails_loudly_and_publishes_nothing(tmp_path, monkeypatch):
    import tweetmill.transforms.stage as stage_contract

    def lossy(stage, tweets):
        kept, dropped = stage.process_batch(tweets)
        return kept[1:], dropped  # loses one tweet per batch without counting it

    monkeypatch.setattr(stage_contract, "run_stage", lossy)
    out = tmp_path / "out"
    with pytest.raises(Exception, match="does not balance"):
        run(RunConfig(inputs=(str(SAMPLE / "*.csv"),), output=str(out)))
    assert not (out / MANIFEST_NAME).exists()
    assert not list(out.glob("shard-*"))


# --- the whole shared corpus, every format --------------------------------------------------------

# (records, tweets, dropped by reason, dead letters) per file, by the formats' rules; see
# ../shared/data/SOURCES.md and tests/test_parse.py for why a few differ from the stated counts.
EXPECTED_FILES = {
    "v1/tweepy_cassettes_v1.jsonl": (111, 111, {}, 0),
    "v1/att-ast/test.jsonl": (100, 95, {"delete_notice": 5}, 0),
    "v1/att-ast/twit.jsonl": (100, 94, {"delete_notice": 6}, 0),
    "v1/python-twitter/get_search_raw.json": (100, 100, {}, 0),
    "v1/python-twitter/streaming__lines.json": (72, 72, {}, 0),
    "v1/anaconda/search__tweets.json": (15, 15, {}, 0),
    "v1/tweet-updates/original__classic_no_hidden___tweet.json": (2, 2, {}, 0),
    "v1/tweet-updates/initial__compatibility_classic_13995.json": (3, 2, {}, 1),
    "v2/twarc-csv/brexit.jsonl": (100, 100, {}, 0),
    "v2/twarc-csv/flat.jsonl": (100, 100, {}, 0),
    "v2/twarc-csv/kpop.jsonl": (101, 100, {"api_error": 1}, 0),
    "v2/twarc-csv/media_policy_violation_on.jsonl": (100, 42, {"no_text": 58}, 0),
    "v2/twarc-csv/withheld.jsonl": (220, 214, {"no_text": 1, "api_error": 5}, 0),
    "v2/twarc-csv/streaming_output_with_error.jsonl": (8, 7, {}, 1),
    "v2/twarc-csv/tweets_compliance.jsonl": (2, 0, {"compliance_event": 2}, 0),
    "v2/tweepy_cassettes_v2.jsonl": (338, 338, {}, 0),
    "archive/milahu-twitter-milahu104/tweets.js": (2045, 2045, {}, 0),
    # read only on request (--include-deleted-tweets): skipped, with the reason in its manifest entry
    "archive/milahu-twitter-milahu104/deleted-tweets.js": (0, 0, {}, 0),
    "archive/milahu-twitter-milahu104/community-tweet.js": (3, 3, {}, 0),
    "archive/milahu-twitter-milahu104/note-tweet.js": (0, 0, {}, 0),
    "csv/legacy-archive-NiciDieNase_tweets.csv": (1357, 1357, {}, 0),
    "csv/fivethirtyeight_mayweather-mcgregor__tweets.csv": (12118, 12118, {}, 0),
    "csv/fivethirtyeight_twitter-ratio__BarackObama.csv": (3207, 3207, {}, 0),
    "csv/fivethirtyeight_trump-twitter__realDonaldTrump_poll_tweets.csv": (448, 448, {}, 0),
}


@pytest.fixture(scope="module")
def corpus_run(tmp_path_factory):
    from conftest import shared_data

    root = shared_data()
    patterns = [str(root / d / "**") for d in ("v1", "v2", "archive", "csv")]
    out = tmp_path_factory.mktemp("corpus") / "out"
    manifest = run(RunConfig(inputs=tuple(patterns), output=str(out)))
    return root, out, manifest


@pytest.mark.slow
def test_every_shared_file_is_read_and_accounted_for(corpus_run):
    root, out, manifest = corpus_run
    assert_accounting(out, manifest)
    files = {str(Path(f["file"]).relative_to(root)): f for f in manifest.inputs}
    on_disk = {
        str(p.relative_to(root))
        for d in ("v1", "v2", "archive", "csv")
        for p in (root / d).rglob("*")
        if p.is_file()
    }
    assert set(files) == on_disk
    for name, (records, tweets, dropped, errors) in EXPECTED_FILES.items():
        got = files[name]
        assert (got["records"], got["tweets"], got["dropped"], got["errors"]) == (
            records,
            tweets,
            dropped,
            errors,
        ), name
    for name, got in files.items():
        assert got["records"] == got["tweets"] + sum(got["dropped"].values()) + got["errors"], name
    skipped = [n for n, f in files.items() if f.get("skipped")]
    assert skipped == ["archive/milahu-twitter-milahu104/deleted-tweets.js"]
    grailbird = [f for n, f in files.items() if "grailbird" in n]
    assert len(grailbird) == 45 and sum(f["tweets"] for f in grailbird) == 1357
    assert all(f["format"] == "grailbird" for f in grailbird)
    assert manifest.counts.read == sum(f["records"] for f in files.values())


@pytest.mark.slow
def test_shared_corpus_texts_are_clean_full_and_exact(corpus_run):
    _, out, manifest = corpus_run
    rows = {r["id"]: r for r in read_shards(out, manifest).to_pylist()}
    # entities unescaped, hidden reply prefix (25 mentions) and trailing photo URL removed
    reply = rows[758839565989720065]
    assert reply["text"] == (
        "this is a reply to 25 people with 140 characters of text for me to say what I want to say. "
        "& I still have room to attach a photo of a puppy!"
    )
    assert reply["is_reply"]
    # the extended tweet's full text, not the truncated "…" version
    full = rows[971726741583605760]["text"]
    assert full.endswith("OutLook from ClouData & Multiverse - <URL>") and len(full) > 140
    # a visible @mention typed after the hidden prefix stays (as a placeholder)
    assert rows[743496707711733760]["text"].startswith("@user has more details about these changes")
    # ids beyond 2**53 survive exactly
    assert rows[759227111810985984]["text"] == "Watch LIVE <URL>"
    assert not any("&amp;" in r["text"] or "&gt;" in r["text"] for r in rows.values())
    assert not any(r["is_retweet"] for r in rows.values())
    created = rows[759227111810985984]["created_at"]
    assert (created.year, created.month, created.day, created.hour, created.minute) == (2016, 7, 30, 3, 20)

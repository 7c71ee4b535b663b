"""Batches parked in spill files on the local runner, and shards written from sorted parts
(transforms/spill.py, transforms/shard_parts.py, issue #15): the same data comes out, the files go."""

from __future__ import annotations

import io
import os
import random

import apache_beam as beam
import numpy as np
import pyarrow as pa
import pytest
from apache_beam.runners.portability.fn_api_runner import FnApiRunner
from apache_beam.testing.util import assert_that, equal_to
from tweetmill.schemas.manifest import TokenizerInfo
from tweetmill.schemas.records import Tweet
from tweetmill.transforms import shard_parts
from tweetmill.transforms.shard_parts import WriteShards, merge_parts, shard_indices
from tweetmill.transforms.spill import co_group_by_key, group_by_key, parked, read_frames, write_frame
from tweetmill.transforms.write import OutputSpec, shard_of, shard_schema_for, tweets_to_table, write_shard


def tweet(i: int, tokens: int = 3) -> Tweet:
    return Tweet(
        id=i,
        text=f"tweet {i} " + "é" * (i % 7),
        source_format="v1",
        source_file="f.jsonl",
        position=i,
        author_id=None if i % 5 == 0 else i % 11,
        reply_to_id=i - 1 if i % 13 == 0 else None,
        token_bytes=np.arange(tokens + i % 4, dtype="<i4").tobytes(),
    )


def spec_for(out: str) -> OutputSpec:
    return OutputSpec(
        output=out,
        run_fingerprint="f" * 64,
        tokenizer=TokenizerInfo(sha256="a" * 64, vocab_size=100, eos_id=0, eos_token="<eos>", source="x"),
        rows_per_shard=700,
    )


def test_frames_round_trip_and_a_cut_frame_raises():
    f = io.BytesIO()
    batches = [[tweet(1), tweet(2)], [tweet(3)]]
    for b in batches:
        write_frame(f, b)
    f.seek(0)
    assert list(read_frames(f, "x")) == batches
    cut = io.BytesIO(f.getvalue()[:-5])
    with pytest.raises(OSError, match="cut short"):
        list(read_frames(cut, "x"))


def test_parked_batches_come_back_whole_after_the_side_input_and_their_files_go(tmp_path):
    spill = tmp_path / "spill"
    batches = [[tweet(i * 10 + j) for j in range(10)] for i in range(50)]
    with beam.Pipeline(runner=FnApiRunner()) as p:
        pcoll = p | beam.Create(batches)
        gate = pcoll | beam.Map(len) | beam.CombineGlobally(sum)
        waited = parked(pcoll, "Park", str(spill), after=gate)
        out = waited | beam.Map(lambda b, n: (len(b), n), n=beam.pvalue.AsSingleton(gate))
        ids = waited | beam.FlatMap(lambda b: [t.id for t in b])
        assert_that(out, equal_to([(10, 500)] * 50), label="Batches")
        assert_that(ids, equal_to(list(range(500))), label="Ids")
    assert spill.is_dir() and not os.listdir(spill)  # every spill file read and deleted


def test_shard_indices_are_shard_of():
    batch = [tweet(i) for i in (0, 1, 2**40, 2**63 - 1, 123456789012345678)]
    assert shard_indices(batch, 7) == [shard_of(t.id, 7) for t in batch]


def one_part(tweets: list[Tweet], spec: OutputSpec, index: int, num_shards: int, rows: int = 50):
    """``tweets`` as a part: sorted by id, in record batches of ``rows``."""
    table = tweets_to_table(sorted(tweets, key=lambda t: t.id), shard_schema_for(spec, index, num_shards))
    return table.to_batches(max_chunksize=rows)


def test_a_shard_merged_from_parts_holds_the_sorted_tweets_in_full_record_batches(tmp_path, monkeypatch):
    monkeypatch.setattr("tweetmill.transforms.shard_parts.RECORD_BATCH_ROWS", 64)
    spec = spec_for(str(tmp_path))
    tweets = [tweet(i) for i in range(0, 3000, 3)]
    rng = random.Random(5)
    owners = [rng.randrange(4) for _ in tweets]  # four parts of uneven size, ids interleaved
    parts = [one_part([t for t, o in zip(tweets, owners, strict=True) if o == k], spec, 0, 1,
                      rows=rng.choice([1, 7, 50])) for k in range(4)]  # fmt: skip
    written = write_shard(spec, 0, 1, merge_parts(parts))
    reader = pa.ipc.open_file(written.temp_path)
    assert [reader.get_batch(i).num_rows for i in range(reader.num_record_batches)] == [64] * 15 + [40]
    expected = tweets_to_table(tweets, shard_schema_for(spec, 0, 1))
    assert reader.read_all().equals(expected, check_metadata=True)
    assert written.entry.rows == len(tweets) and written.entry.bytes == os.path.getsize(written.temp_path)
    alone = write_shard(spec_for(str(tmp_path / "alone")), 0, 1, merge_parts([one_part(tweets, spec, 0, 1)]))
    assert alone.entry.sha256 == written.entry.sha256  # the same bytes however the rows were parted
    with pytest.raises(ValueError, match="id twice"):
        twice = [one_part([tweet(5)], spec, 0, 1), one_part([tweet(5)], spec, 0, 1)]
        write_shard(spec, 0, 1, merge_parts(twice))
    empty = write_shard(spec, 1, 2, merge_parts([]))
    assert pa.ipc.open_file(empty.temp_path).read_all().num_rows == 0


@pytest.mark.parametrize("spilled", [False, True])
def test_shards_from_many_parts_equal_shards_from_one(tmp_path, monkeypatch, spilled):
    """Small parts (many per shard, from many flushes) and one sorted pass give the same files."""
    monkeypatch.setattr(shard_parts, "PART_FLUSH_TWEETS", 100)
    monkeypatch.setattr(shard_parts, "PART_BATCH_ROWS", 7)
    tweets = [tweet(i) for i in random.Random(3).sample(range(10**6), 2000)]
    batches = [tweets[i : i + 64] for i in range(0, len(tweets), 64)]
    spec = spec_for(str(tmp_path / "out"))
    spill = str(tmp_path / "spill") if spilled else None
    with beam.Pipeline(runner=FnApiRunner()) as p:
        shards = p | beam.Create(batches) | WriteShards(spec, spill)
        files = shards["written"] | beam.Map(lambda w: (w.entry.file, w.entry.sha256, w.entry.rows))
        assert_that(shards["num_shards"], equal_to([3]), label="NumShards")
        expected_spec = spec_for(str(tmp_path / "expected"))
        expected = []
        for index in range(3):
            mine = [t for t in tweets if shard_of(t.id, 3) == index]
            part = one_part(mine, expected_spec, index, 3, rows=4096)
            w = write_shard(expected_spec, index, 3, merge_parts([part]))
            expected.append((w.entry.file, w.entry.sha256, w.entry.rows))
        assert_that(files, equal_to(expected), label="Files")
    if spilled:  # parts live beside the spill files on a local run, and go once their shard is written
        assert not [f for _, _, fs in os.walk(spill) for f in fs]


def test_groups_through_files_equal_beams_groups(tmp_path, monkeypatch):
    monkeypatch.setattr("tweetmill.transforms.spill._KEY_FLUSH_BYTES", 64)  # many appends per file
    spill = tmp_path / "spill"
    pairs = [(i % 5, (f"v{i}", b"x" * (i % 9))) for i in range(300)]
    other = [(i % 7, i) for i in range(40)]

    def normalised(element):
        key, value = element
        if isinstance(value, dict):
            return key, {tag: sorted(values) for tag, values in value.items()}
        return key, sorted(value)

    with beam.Pipeline(runner=FnApiRunner()) as p:
        a = p | "A" >> beam.Create(pairs)
        b = p | "B" >> beam.Create(other)
        for label, directory in (("Files", str(spill)), ("Beam", None)):
            grouped = group_by_key(a, f"Group{label}", directory) | f"Norm{label}" >> beam.Map(normalised)
            joined = co_group_by_key(
                {"a": a, "b": b}, f"Join{label}", directory
            ) | f"NormJoin{label}" >> beam.Map(normalised)
            assert_that(
                grouped, equal_to([normalised(kv) for kv in _grouped(pairs).items()]), label=f"G{label}"
            )
            expected = {k: {"a": [], "b": []} for k in range(7)}
            for k, v in pairs:
                expected[k]["a"].append(v)
            for k, v in other:
                expected[k]["b"].append(v)
            assert_that(joined, equal_to([normalised(kv) for kv in expected.items()]), label=f"J{label}")
    assert not os.listdir(spill)  # every file read and deleted


def _grouped(pairs):
    out = {}
    for k, v in pairs:
        out.setdefault(k, []).append(v)
    return out

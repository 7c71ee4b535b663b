"""The local runner's default worker count (pipeline/local_workers.py)."""

from __future__ import annotations

import gzip
import os

import pytest
from tweetmill.pipeline import local_workers
from tweetmill.pipeline.local_workers import (
    COMPRESSION_RATIO,
    MAX_WORKERS,
    MIN_INPUT_BYTES,
    WORKER_MEMORY_BYTES,
    default_workers,
    estimated_input_bytes,
    with_default_workers,
)

GIB = 1 << 30


def test_one_worker_below_the_threshold_then_one_per_core_as_memory_allows():
    assert default_workers(MIN_INPUT_BYTES - 1, cores=8, memory_bytes=64 * GIB) == 1
    assert default_workers(MIN_INPUT_BYTES, cores=2, memory_bytes=64 * GIB) == 2
    assert default_workers(10 * GIB, cores=16, memory_bytes=6 * WORKER_MEMORY_BYTES) == 6
    assert default_workers(10 * GIB, cores=64, memory_bytes=None) == MAX_WORKERS
    assert default_workers(10 * GIB, cores=4, memory_bytes=None) == 4
    assert default_workers(10 * GIB, cores=4, memory_bytes=GIB) == 1  # too little memory for two
    assert default_workers(10 * GIB, cores=1, memory_bytes=64 * GIB) == 1


def test_compressed_files_count_by_their_content_not_their_name(tmp_path):
    plain = os.urandom(50_000)  # incompressible: gzip keeps its size
    (tmp_path / "a.json").write_bytes(b"x" + plain)  # not gzip, whatever the name says
    (tmp_path / "b.txt").write_bytes(gzip.compress(plain))  # gzip, named .txt
    sizes = {p.name: p.stat().st_size for p in tmp_path.iterdir()}
    expected = sizes["a.json"] + sizes["b.txt"] * COMPRESSION_RATIO
    assert estimated_input_bytes([str(tmp_path)]) == pytest.approx(expected, rel=1e-6)
    assert estimated_input_bytes([str(tmp_path / "a.json")]) == sizes["a.json"]


def test_the_users_choice_stands_and_small_inputs_keep_one_worker(tmp_path, monkeypatch):
    (tmp_path / "t.jsonl").write_text('{"id": 1, "text": "hello"}\n')
    inputs = [str(tmp_path)]
    assert with_default_workers([], inputs) == []  # a few bytes
    monkeypatch.setattr(local_workers, "MIN_INPUT_BYTES", 0)
    monkeypatch.setattr(local_workers, "_cores", lambda: 3)
    monkeypatch.setattr(local_workers, "_memory_bytes", lambda: 64 * GIB)
    assert with_default_workers(["--runner", "DirectRunner"], inputs) == [
        "--runner", "DirectRunner", "--direct_num_workers", "3", "--direct_running_mode", "multi_processing"
    ]
    chosen_by_user = (
        ["--direct_num_workers=1"], ["--direct_num_workers", "1"], ["--direct_running_mode", "in_memory"]
    )
    for chosen in chosen_by_user:
        assert with_default_workers(chosen, inputs) == chosen

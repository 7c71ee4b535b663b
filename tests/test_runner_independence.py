"""The output does not depend on how the runner spreads the work: two SDK worker processes
(``--direct_num_workers 2 --direct_running_mode multi_processing``) write the same bytes and counts
as one in-process worker."""

from __future__ import annotations

import json
import threading

import pytest
from apache_beam.runners.portability import local_job_service
from conftest import REPO_ROOT
from tweetmill.pipeline.build import run
from tweetmill.pipeline.options import RunConfig
from tweetmill.schemas.manifest import MANIFEST_NAME

SAMPLE = REPO_ROOT / "examples" / "sample" / "data"
MULTI_PROCESS = ["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"]


@pytest.fixture
def worker_processes(monkeypatch):
    """Counts the SDK worker subprocesses the embedded runner starts."""
    started: list[str] = []
    lock = threading.Lock()
    original = local_job_service.SubprocessSdkWorker.run

    def counting_run(self):
        with lock:
            started.append(self._worker_id)
        return original(self)

    monkeypatch.setattr(local_job_service.SubprocessSdkWorker, "run", counting_run)
    return started


def _manifest_without_output(path) -> str:
    """The manifest's text, key order included, with the output directory it names left out."""
    doc = json.loads(path.read_text())
    doc["config"].pop("output")
    return json.dumps(doc, indent=2, ensure_ascii=False)


@pytest.mark.slow
def test_two_worker_processes_write_the_same_shards_as_one_worker(tmp_path, worker_processes):
    config = RunConfig(inputs=(str(SAMPLE / "*"),), output=str(tmp_path / "one"), rows_per_shard=1000)
    one = run(config)
    assert worker_processes == []  # one worker, in this process
    two_workers = RunConfig(inputs=config.inputs, output=str(tmp_path / "two"), rows_per_shard=1000)
    two = run(two_workers, MULTI_PROCESS)
    assert len(worker_processes) == 2  # the work really went to two SDK worker processes

    assert two.counts == one.counts and one.counts.balanced
    assert two.inputs == one.inputs
    assert len(one.shards) == 3
    assert two.shards == one.shards  # names, rows, tokens, bytes, sha256
    for shard in one.shards:
        assert (tmp_path / "two" / shard.file).read_bytes() == (tmp_path / "one" / shard.file).read_bytes()
    assert two.error_files == one.error_files
    for name in one.error_files:
        assert (tmp_path / "two" / name).read_bytes() == (tmp_path / "one" / name).read_bytes()
    # The manifests differ only in the output directory they name.
    assert _manifest_without_output(tmp_path / "two" / MANIFEST_NAME) == _manifest_without_output(
        tmp_path / "one" / MANIFEST_NAME)


@pytest.mark.slow
def test_a_large_input_gets_a_worker_process_per_core(tmp_path, worker_processes, monkeypatch):
    """Without --direct_num_workers, a local run of a large input uses the cores (the threshold is
    lowered here); the shards are those of one worker."""
    from tweetmill.pipeline import local_workers

    config = RunConfig(inputs=(str(SAMPLE / "*"),), output=str(tmp_path / "one"), rows_per_shard=1000)
    one = run(config)
    monkeypatch.setattr(local_workers, "MIN_INPUT_BYTES", 0)
    monkeypatch.setattr(local_workers, "_cores", lambda: 2)
    auto = run(RunConfig(inputs=config.inputs, output=str(tmp_path / "auto"), rows_per_shard=1000))
    assert len(worker_processes) == 2
    assert auto.counts == one.counts and auto.counts.balanced
    assert auto.shards == one.shards

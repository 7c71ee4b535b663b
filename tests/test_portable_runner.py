"""The pipeline through Beam's portable runner: its own job service and an external worker pool, both
shipped in the apache-beam wheel, offline. The job goes through the same Job API, artifact staging and
worker protocol as on Dataflow, Flink or Spark, and must write the same shards as the default runner.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tweetmill.pipeline.cli import main as cli_main

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample" / "data"
BIN = Path(sys.executable).parent
# Without the venv's python on PATH the pool starts workers with another Python and the job hangs
# without an error: every wait below is bounded.
ENV = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args} exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("localhost", port)) == 0:
                return
        time.sleep(0.2)
    raise TimeoutError(f"nothing listens on port {port} after {timeout} s")


def _start(module: str, *args: str, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(
            [sys.executable, "-m", module, *args], stdout=out, stderr=subprocess.STDOUT, env=ENV,
            start_new_session=True,  # stopped as a group: the pool's worker processes too
        )  # fmt: skip


def _stop(process: subprocess.Popen) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=20)


@pytest.mark.slow
def test_portable_runner_with_an_external_worker_pool_writes_the_same_shards(tmp_path, capsys):
    args = ["run", str(SAMPLE / "*"), "--rows-per-shard", "1000"]
    assert cli_main([*args, "--output", str(tmp_path / "default")]) == 0
    capsys.readouterr()

    job_port, pool_port = _free_port(), _free_port()
    job_service = _start("apache_beam.runners.portability.local_job_service_main", "--port", str(job_port),
                         log=tmp_path / "job_service.log")  # fmt: skip
    pool = _start("apache_beam.runners.worker.worker_pool_main", "--service_port", str(pool_port),
                  log=tmp_path / "worker_pool.log")  # fmt: skip
    try:
        _wait_for_port(job_port, job_service)
        _wait_for_port(pool_port, pool)
        portable = [
            "--runner", "PortableRunner", "--job_endpoint", f"localhost:{job_port}",
            "--environment_type", "EXTERNAL", "--environment_config", f"localhost:{pool_port}",
        ]  # fmt: skip
        done = subprocess.run(
            [str(BIN / "tweetmill"), *args, "--output", str(tmp_path / "portable"), *portable],
            capture_output=True, text=True, env=ENV, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr[-3000:] + (tmp_path / "worker_pool.log").read_text()[-3000:]
    finally:
        _stop(pool)
        _stop(job_service)

    default = json.loads((tmp_path / "default" / "manifest.json").read_text())
    portable_manifest = json.loads((tmp_path / "portable" / "manifest.json").read_text())
    assert portable_manifest["counts"] == default["counts"]
    assert portable_manifest["pipeline"] == default["pipeline"]
    assert [s["sha256"] for s in portable_manifest["shards"]] == [s["sha256"] for s in default["shards"]]
    assert pool.returncode is not None and job_service.returncode is not None

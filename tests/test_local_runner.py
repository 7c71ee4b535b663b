"""A local run's worker processes start from tweetmill's entry point (pipeline/local_runner.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import apache_beam as beam
import pytest
from apache_beam.options.pipeline_options import PipelineOptions
from tweetmill.pipeline.interrupt import ENV_WORKER_PIDS, WorkerProcesses
from tweetmill.pipeline.local_runner import LocalRunner


def test_worker_processes_run_the_tweetmill_entry_point_and_finish_the_run(tmp_path):
    folder = str(tmp_path)

    # Nested, so it is pickled by value: the test module is not on the workers' path.
    def record_worker(element: int) -> int:
        import sys

        spec = sys.modules["__main__"].__spec__
        with open(os.path.join(folder, f"{element}.txt"), "w") as f:
            f.write(f"{os.getpid()} {spec.name if spec else None}")
        return element

    options = PipelineOptions(["--direct_num_workers", "2", "--direct_running_mode", "multi_processing"])
    with beam.Pipeline(runner=LocalRunner(), options=options) as p:
        _ = p | beam.Create(range(8)) | beam.Map(record_worker)
    seen = [(tmp_path / f"{i}.txt").read_text().split() for i in range(8)]
    assert {module for _, module in seen} == {"tweetmill.pipeline.local_worker"}
    assert all(int(pid) != os.getpid() for pid, _ in seen)


def test_the_entry_point_joins_the_run_before_beam_starts(tmp_path):
    """Started with the run's pid folder (and here no runner to talk to), a worker leaves its pid for
    the run before Beam's harness starts; the harness then fails, with its traceback and status 1."""
    env = {**os.environ, ENV_WORKER_PIDS: str(tmp_path)}
    env.pop("CONTROL_API_SERVICE_DESCRIPTOR", None)
    found = subprocess.run(
        [sys.executable, "-m", "tweetmill.pipeline.local_worker"], env=env, capture_output=True, text=True,
        timeout=120,
    )
    assert found.returncode == 1 and "CONTROL_API_SERVICE_DESCRIPTOR" in found.stderr
    assert len(WorkerProcesses(str(tmp_path)).pids()) == 1


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs the virtualenv the tests run in")
def test_workers_start_from_an_interpreter_whose_path_has_spaces(tmp_path):
    """Beam runs the worker command through a shell: an unquoted interpreter path with a space in it
    started ``/tmp/a`` instead (``/bin/sh: /tmp/a: not found``), and the run waited for workers that
    never came."""
    venv = tmp_path / "a venv"
    venv.symlink_to(sys.prefix, target_is_directory=True)
    python = venv / Path(sys.executable).relative_to(sys.prefix)
    program = (
        "import apache_beam as beam\n"
        "from apache_beam.options.pipeline_options import PipelineOptions\n"
        "from tweetmill.pipeline.local_runner import LocalRunner\n"
        "options = PipelineOptions(['--direct_num_workers=2', '--direct_running_mode=multi_processing'])\n"
        "with beam.Pipeline(runner=LocalRunner(), options=options) as p:\n"
        "    _ = p | beam.Create(range(4)) | beam.Map(abs)\n"
        "print('done')\n"
    )
    found = subprocess.run([str(python), "-c", program], capture_output=True, text=True, timeout=120)
    assert found.returncode == 0 and found.stdout.strip() == "done", found.stderr[-2000:]

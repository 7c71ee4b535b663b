"""A local run's worker processes start from tweetmill's entry point (pipeline/local_runner.py)."""

from __future__ import annotations

import os

import apache_beam as beam
from apache_beam.options.pipeline_options import PipelineOptions
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

"""The embedded runner of a local run: Beam's ``FnApiRunner``, with tweetmill's worker processes.

With ``--direct_running_mode multi_processing`` ``FnApiRunner`` starts each worker as
``python -m apache_beam.runners.worker.sdk_worker_main``; ``LocalRunner`` starts it from
``tweetmill.pipeline.local_worker`` instead, which runs the same harness (what it adds, and why:
that module's docstring).
"""

from __future__ import annotations

import shlex
import sys

from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

# Run by a shell (Beam starts workers with ``shell=True``): quoted, for an interpreter path with spaces.
WORKER_COMMAND = f"{shlex.quote(sys.executable)} -m tweetmill.pipeline.local_worker"


class LocalRunner(FnApiRunner):
    """``FnApiRunner`` whose worker processes (``multi_processing``) start from ``local_worker.py``."""

    def run_via_runner_api(self, pipeline_proto, options):
        for environment in pipeline_proto.components.environments.values():
            if environment.urn == python_urns.SUBPROCESS_SDK:
                environment.payload = WORKER_COMMAND.encode()
        return super().run_via_runner_api(pipeline_proto, options)

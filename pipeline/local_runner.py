"""The embedded runner of a local run, and the entry point of its worker processes.

With ``--direct_running_mode multi_processing`` Beam's ``FnApiRunner`` starts each worker as
``python -m apache_beam.runners.worker.sdk_worker_main`` and, at the end of the run, waits for the
workers to exit one after another. A worker that exits the usual way frees its heap object by
object (the tokenizer's and the language detector's tables, the caches): ~0.5 s a worker of a large
run, all of it on the run's wall clock. tweetmill's workers run the same harness from
``python -m tweetmill.pipeline.local_runner``, which ends the process once the harness has
returned: every bundle is finished and every DoFn torn down by then, and the logs are flushed.
"""

from __future__ import annotations

import logging
import os
import sys

from apache_beam.portability import python_urns
from apache_beam.runners.portability.fn_api_runner import FnApiRunner

WORKER_COMMAND = f"{sys.executable} -m tweetmill.pipeline.local_runner"


class LocalRunner(FnApiRunner):
    """``FnApiRunner`` whose worker processes (``multi_processing``) start from ``main`` below."""

    def run_via_runner_api(self, pipeline_proto, options):
        for environment in pipeline_proto.components.environments.values():
            if environment.urn == python_urns.SUBPROCESS_SDK:
                environment.payload = WORKER_COMMAND.encode()
        return super().run_via_runner_api(pipeline_proto, options)


def main() -> None:
    """A worker process: Beam's SDK harness until the runner closes it, then exit without teardown."""
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)  # raises (a traceback, exit 1) when the harness failed
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

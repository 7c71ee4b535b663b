"""The entry point of a local run's worker processes: ``python -m tweetmill.pipeline.local_worker``.

``LocalRunner`` (``local_runner.py``) has Beam start each worker process with this command. A worker
of a ``tweetmill run`` first joins the run (``interrupt.join_run``: Ctrl-C is left to the run's
process, which stops its workers itself; ``docs/progress.md``), and every worker logs only
warnings and errors (``logs.setup_worker``), both before Beam loads. Then it runs Beam's SDK harness
until the runner closes it, and exits without the interpreter's teardown: the runner waits for its
workers one after another, and a worker of a large run took ~0.5 s to free its heap object by
object. By then the harness has finished every bundle, torn down every DoFn and flushed its logs.
"""

from __future__ import annotations

import logging
import os
import sys

from tweetmill.pipeline.interrupt import ENV_WORKER_PIDS, join_run
from tweetmill.pipeline.logs import setup_worker


def main() -> None:
    folder = os.environ.pop(ENV_WORKER_PIDS, None)  # popped: what the worker starts is not the run's
    if folder:
        join_run(folder)
    setup_worker()
    from apache_beam.runners.worker import sdk_worker_main

    sdk_worker_main.main(sys.argv)  # raises (a traceback, exit 1) when the harness failed
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    main()

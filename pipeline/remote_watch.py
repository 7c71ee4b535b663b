"""Watching a remote job (Dataflow) from ``tweetmill run``: the workers are elsewhere, so no side
channel and no Ctrl-C handling of the workers. ``watch_remote`` prints the job id and its console URL
after submission, then each state change and tweetmill's counters as they grow
(``result.metrics().query()``, which Dataflow answers while the job runs), until the job ends.
Ctrl-C stops waiting; the job goes on and its temporary directory stays (``RemoteDetached``).
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from typing import Any

from tweetmill.pipeline.progress import ProgressOptions, clock

log = logging.getLogger(__name__)


class RemoteDetached(KeyboardInterrupt):
    """Ctrl-C while waiting for a remote job: this command stops waiting, the job goes on."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


def _job_location(options: Any) -> tuple[str | None, str | None]:
    from apache_beam.options.pipeline_options import GoogleCloudOptions

    gcp = options.view_as(GoogleCloudOptions)
    return gcp.region, gcp.project


def detached_line(result: Any, options: Any) -> str:
    job_id = result.job_id()
    region, _ = _job_location(options)
    return (
        f"interrupted: stopped waiting; job {job_id} goes on and publishes when it ends "
        f"(to stop it: gcloud dataflow jobs cancel {job_id} --region {region})"
    )


def counters(result: Any) -> dict[str, int]:
    """tweetmill's counters of a running job (empty when the runner cannot say yet)."""
    from tweetmill.transforms.common import METRICS_NAMESPACE

    try:
        found = result.metrics().query()
    except Exception:  # the service may not answer yet; the next poll asks again
        log.debug("metrics query failed", exc_info=True)
        return {}
    out: dict[str, int] = {}
    for item in found.get("counters", []):
        if item.key.metric.namespace != METRICS_NAMESPACE:
            continue
        value = item.committed if item.committed is not None else item.attempted
        if isinstance(value, int):
            out[item.key.metric.name] = out.get(item.key.metric.name, 0) + value
    return out


def counters_line(now: dict[str, int], before: dict[str, int]) -> str | None:
    """The counters that grew since ``before``, one line (None: none grew)."""
    grown = {k: v for k, v in sorted(now.items()) if v != before.get(k)}
    if not grown:
        return None
    return "counters: " + ", ".join(f"{k} {v:,}" for k, v in grown.items())


def watch_remote(
    result: Any,
    options: Any,
    progress: ProgressOptions,
    *,
    sleep: Callable[[float], None] = time.sleep,
    now: Callable[[], float] = time.monotonic,
) -> Any:
    """Print the job, then its state changes and growing counters until it ends; its final state
    (``wait_until_finish``, which raises as Beam does when the job failed)."""
    from apache_beam.runners.runner import PipelineState
    from tweetmill.pipeline.dataflow import console_url

    stream = progress.stream or sys.stderr

    def say(line: str) -> None:
        if progress.show:
            stream.write(line + "\n")
            stream.flush()

    job_id = result.job_id()
    region, project = _job_location(options)
    say(f"submitted job {job_id}")
    if region and project:
        say(f"console: {console_url(project, region, job_id)}")
    started, last_state, last_counters = now(), None, {}
    while True:
        state = result.state
        if state != last_state:
            say(f"[{clock(now() - started)}] job {job_id}: {state}")
            last_state = state
        grown = counters(result)
        line = counters_line(grown, last_counters)
        if line:
            say(f"[{clock(now() - started)}] {line}")
            last_counters = grown
        if PipelineState.is_terminal(state):
            break
        sleep(max(1.0, progress.interval))
    return result.wait_until_finish()

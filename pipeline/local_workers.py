"""How many worker processes a local run uses when the user does not say (issue #15).

A second worker pays only on a large input: every worker process starts Beam, tweetmill and the
tokenizer, and part of a run is serial. Measured with ``bench/bench_peers.py`` (``docs/benchmarks.md``):
at 200k bench tweets (~0.5 GB of JSON) two workers were 1.14× as fast as one for 36 % more CPU; at
400k (~1 GB) 1.57× for 6 % more; at 1M 1.61× for 8 % more. So from ``MIN_INPUT_BYTES`` of
(estimated, decompressed) input a local run uses one worker process per core, as many as memory
allows (``WORKER_MEMORY_BYTES`` each) and at most ``MAX_WORKERS``; below it, or when the user passes
``--direct_num_workers`` or ``--direct_running_mode``, Beam's own default (one worker, in process)
stands.

The input's decompressed size is estimated from its files' sizes: a file whose first bytes are a
compressed format's magic (gzip, bzip2, xz, zstd, zip) counts ``COMPRESSION_RATIO`` times its size
(what gzip makes of tweet JSON: 2,552 bytes a tweet in 375 MiB for 1M tweets, ~6.5×).
"""

from __future__ import annotations

import logging
import os

from apache_beam.io.filesystems import FileSystems
from tweetmill.pipeline.preflight import expand_input, is_local
from tweetmill.transforms.containers import COMPRESSIONS, ZIP, sniff

__all__ = ["default_workers", "estimated_input_bytes", "with_default_workers"]

log = logging.getLogger(__name__)

MIN_INPUT_BYTES = 768 << 20
WORKER_MEMORY_BYTES = 3 << 29  # 1.5 GiB: a worker's peak was ~0.75 GB at 1M tweets; room to spare
MAX_WORKERS = 8  # measured up to 2 (the development machine's cores); more is the user's call
COMPRESSION_RATIO = 6
MAGIC_FILES = 64  # files whose first bytes are read; the others count as the same share compressed
WORKER_FLAGS = ("--direct_num_workers", "--direct_running_mode")
_COMPRESSED = (*COMPRESSIONS, ZIP)


def _is_compressed(path: str) -> bool:
    """By content, as the read stage decides (``containers.sniff``)."""
    with FileSystems.open(path, compression_type="uncompressed") as f:
        return sniff(f.read(8)) in _COMPRESSED


def _size(path: str) -> int:
    if is_local(path):
        return os.path.getsize(path)
    found = FileSystems.match([path])[0].metadata_list
    return found[0].size_in_bytes if found else 0


def estimated_input_bytes(patterns: list[str]) -> int:
    """The inputs' size once decompressed, estimated (see the module docstring). Remote files are
    sampled (``MAGIC_FILES`` of them, evenly spread): a lookup each is slow on an object store."""
    every = [path for pattern in patterns for path in expand_input(pattern)]
    if not every:
        return 0
    files = every
    if not all(is_local(path) for path in every):
        files = every[:: max(1, len(every) // MAGIC_FILES)][:MAGIC_FILES]
    scale = len(every) / len(files)
    sizes = {path: _size(path) for path in files}
    largest = sorted(sizes, key=sizes.__getitem__, reverse=True)[:MAGIC_FILES]
    sampled = sum(sizes[p] for p in largest)
    compressed = sum(sizes[p] for p in largest if _is_compressed(p))
    total = sum(sizes.values()) * scale
    share = compressed / sampled if sampled else 0.0
    return round(total * (1 - share) + total * share * COMPRESSION_RATIO)


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def _memory_bytes() -> int | None:
    try:
        return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


def default_workers(input_bytes: int, cores: int, memory_bytes: int | None) -> int:
    """Worker processes for a local run of ``input_bytes`` (decompressed) on this machine."""
    if input_bytes < MIN_INPUT_BYTES:
        return 1
    workers = cores if memory_bytes is None else min(cores, memory_bytes // WORKER_MEMORY_BYTES)
    return max(1, min(workers, MAX_WORKERS))


def _given(beam_args: list[str], flags: tuple[str, ...]) -> bool:
    return any(arg.split("=", 1)[0] in flags for arg in beam_args)


def with_default_workers(beam_args: list[str], patterns: list[str]) -> list[str]:
    """``beam_args``, with worker processes added where the user set none and the input is large
    enough (a local runner only: the caller checks)."""
    if _given(beam_args, WORKER_FLAGS):
        return beam_args
    try:
        input_bytes = estimated_input_bytes(patterns)
    except (OSError, ValueError) as exc:  # the run reports unreadable inputs itself
        log.debug("input size not estimated (%s): one worker", exc)
        return beam_args
    workers = default_workers(input_bytes, _cores(), _memory_bytes())
    if workers == 1:
        return beam_args
    gigabytes = input_bytes / 1e9
    log.info("%d worker processes for ~%.1f GB of input (--direct_num_workers 1 for one)", workers, gigabytes)
    return [*beam_args, "--direct_num_workers", str(workers), "--direct_running_mode", "multi_processing"]

"""What the stages after parsing removed, read from the run's audit files: examples per drop reason,
per-file drop counts (``dropped/`` or ``dropped.sample.jsonl``) and near-duplicate pairs."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from apache_beam.io.filesystems import FileSystems
from tweetmill.pipeline.shard_io import open_file
from tweetmill.schemas.manifest import Manifest
from tweetmill.schemas.shard_dir import DROPPED_SAMPLE_NAME, NEAR_DUP_SAMPLE_NAME
from tweetmill.transforms.stage import sample_key

log = logging.getLogger(__name__)

try:
    from orjson import loads as _json_loads
except ImportError:  # pragma: no cover - orjson is a dependency; json is the fallback
    from json import loads as _json_loads


class _Id:
    """Just what ``sample_key`` reads of a tweet."""

    __slots__ = ("id",)

    def __init__(self, tweet_id: int) -> None:
        self.id = tweet_id


def _jsonl(path: str) -> Iterator[dict[str, Any]]:
    """The records of a JSON-lines file on any Beam filesystem, streamed line by line."""
    with open_file(path) as f:
        for line in f:
            if line.strip():
                yield _json_loads(line)


@dataclass
class Removed:
    """What the stages after parsing removed, as the run's audit files tell it (``read_removed``)."""

    source: str | None = None  # "dropped/" (--write-dropped), DROPPED_SAMPLE_NAME, or None
    # (stage, reason) -> at most ``per_reason`` dropped tweets: those with the smallest ``sample_key``
    # (the audit sample's own order: dropped.sample.jsonl and dropped/ give the same ones), in order
    examples: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    # (source_file, stage, reason) -> dropped tweets: only from dropped/ (every one), else None
    by_file: Counter | None = None
    near_pairs: list[dict[str, Any]] = field(default_factory=list)  # the first of the near-dup sample
    near_sampled: int = 0  # pairs in near_duplicates.sample.jsonl


def read_removed(shard_dir: str, manifest: Manifest, per_reason: int, pairs: int) -> Removed:
    """Examples per drop reason and per-file drop counts from ``dropped/`` (every dropped tweet,
    ``--write-dropped``) or else ``dropped.sample.jsonl``; the first ``pairs`` near-duplicate pairs."""
    ranked: dict[tuple[str, str], list[tuple[int, dict[str, Any]]]] = {}
    by_file: Counter | None = None
    source = None
    if manifest.dropped_files:
        source, by_file = "dropped/", Counter()
        paths = [FileSystems.join(shard_dir, *name.split("/")) for name in manifest.dropped_files]
    elif DROPPED_SAMPLE_NAME in manifest.side_files:
        source, paths = DROPPED_SAMPLE_NAME, [FileSystems.join(shard_dir, DROPPED_SAMPLE_NAME)]
    else:
        paths = []
    try:
        for path in paths:
            for record in _jsonl(path):
                key = (record["stage"], record["reason"])
                if by_file is not None:
                    by_file[(record["source_file"], *key)] += 1
                best = ranked.setdefault(key, [])
                best.append((sample_key(_Id(record["id"])), record))
                if len(best) > 4 * per_reason:  # keep the list short: the smallest ``per_reason`` survive
                    best.sort(key=lambda kr: kr[0])
                    del best[per_reason:]
    except (OSError, ValueError, KeyError) as exc:  # a file listed but gone or broken: no partial figures
        log.warning("dropped tweets not read (%s): %s", source, exc)
        source, by_file, ranked = None, None, {}
    examples = {k: [r for _, r in sorted(v, key=lambda kr: kr[0])[:per_reason]] for k, v in ranked.items()}
    near_pairs: list[dict[str, Any]] = []
    near_sampled = 0
    if NEAR_DUP_SAMPLE_NAME in manifest.side_files:
        try:
            for record in _jsonl(FileSystems.join(shard_dir, NEAR_DUP_SAMPLE_NAME)):
                near_sampled += 1
                if len(near_pairs) < pairs:
                    near_pairs.append(record)
        except (OSError, ValueError) as exc:
            log.warning("%s not read: %s", NEAR_DUP_SAMPLE_NAME, exc)
            near_pairs, near_sampled = [], 0
    return Removed(source, examples, by_file, near_pairs, near_sampled)

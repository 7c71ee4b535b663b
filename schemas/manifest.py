"""``manifest.json``: the last file a run writes, and the index of what it wrote.

A shard directory is complete exactly when its manifest exists. The manifest lists every shard with
its rows, tokens, bytes and sha256, the run's configuration, the tokenizer's identity, and the
accounting of every input record: ``read = kept + sum(dropped.values()) + errors``.

Format version 2 added ``pipeline``: the stages that ran, in order, each with every drop reason it
declares and how many records it dropped for each. Version 1 manifests (no ``pipeline``) still read.

Format version 3 moved the shards into their own folder: a shard's ``file`` is its path relative to
the directory, ``data/shard-00000-of-00004.arrow`` (``schemas/shard_dir.py``). Versions 1 and 2 list
them at the top level (``shard-00000-of-00004.arrow``); readers join whatever path is listed, so
both layouts read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from typing import Any

MANIFEST_NAME = "manifest.json"
MANIFEST_FORMAT = "tweetmill.manifest"
MANIFEST_VERSION = 3
READABLE_VERSIONS = (1, 2, 3)


@dataclass
class ShardEntry:
    file: str  # path relative to the output directory, '/'-separated (v3: data/shard-...; v1, v2: shard-...)
    rows: int
    tokens: int
    bytes: int
    sha256: str
    # The tweets in the shard's rows, where a row is a document of several tweets (``--documents
    # threads|conversations``); None when every row is one tweet (then it is ``rows``, left out of JSON).
    tweets: int | None = None

    @property
    def kept(self) -> int:
        """The kept tweets this shard holds: what the accounting counts."""
        return self.rows if self.tweets is None else self.tweets


def _shard_json(shard: ShardEntry) -> dict[str, Any]:
    doc = asdict(shard)
    if shard.tweets is None:  # one tweet per row: the manifest reads as before documents existed
        del doc["tweets"]
    return doc


@dataclass
class Counts:
    read: int = 0
    kept: int = 0
    dropped: dict[str, int] = field(default_factory=dict)
    errors: int = 0

    @property
    def accounted(self) -> int:
        return self.kept + sum(self.dropped.values()) + self.errors

    @property
    def balanced(self) -> bool:
        return self.read == self.accounted


@dataclass
class StageRecord:
    """One stage that ran: its name, what kind of stage it is, and its drops by declared reason."""

    name: str
    kind: str  # "source", "map", "filter", "shuffle" or "user" (a filter from the user's own module)
    dropped: dict[str, int] = field(default_factory=dict)  # every declared reason, 0 included, in order
    description: str = ""

    @property
    def total(self) -> int:
        return sum(self.dropped.values())


@dataclass
class TokenizerInfo:
    sha256: str
    vocab_size: int
    eos_id: int
    eos_token: str
    source: str  # where the tokenizer was loaded from (path, or "bundled:<name>")


@dataclass
class Manifest:
    run_fingerprint: str
    shard_format_version: int
    tokenizer: TokenizerInfo
    counts: Counts
    shards: list[ShardEntry]
    config: dict[str, Any] = field(default_factory=dict)
    error_files: list[str] = field(default_factory=list)
    # With --write-dropped: the files holding every tweet dropped after parsing (audit, not training).
    dropped_files: list[str] = field(default_factory=list)
    # Other files of the run beside the shards (the tokenizer's copy, samples for inspection).
    side_files: list[str] = field(default_factory=list)
    stages: dict[str, Any] = field(default_factory=dict)  # per-stage extras (e.g. near-dup clusters)
    pipeline: list[StageRecord] = field(default_factory=list)  # the stages that ran, in order
    # One entry per input file: file, format, records, tweets, dropped (reason -> n), errors.
    inputs: list[dict[str, Any]] = field(default_factory=list)
    created_by: str = ""

    @property
    def total_rows(self) -> int:
        return sum(s.rows for s in self.shards)

    @property
    def dropped_after_source(self) -> int:
        """The tweets dropped by the stages after parsing: what ``--write-dropped`` writes."""
        return sum(stage.total for stage in self.pipeline if stage.kind != "source")

    @property
    def total_tweets(self) -> int:
        """The kept tweets in the shards (``total_rows`` unless rows are multi-tweet documents)."""
        return sum(s.kept for s in self.shards)

    @property
    def total_tokens(self) -> int:
        return sum(s.tokens for s in self.shards)

    def to_json(self) -> str:
        doc = {
            "format": MANIFEST_FORMAT,
            "format_version": MANIFEST_VERSION,
            "created_by": self.created_by,
            "run_fingerprint": self.run_fingerprint,
            "shard_format_version": self.shard_format_version,
            "tokenizer": asdict(self.tokenizer),
            "counts": {
                "read": self.counts.read,
                "kept": self.counts.kept,
                "dropped": dict(sorted(self.counts.dropped.items())),
                "errors": self.counts.errors,
                "balanced": self.counts.balanced,
            },
            "totals": {
                "shards": len(self.shards),
                "rows": self.total_rows,
                "tokens": self.total_tokens,
                "bytes": sum(s.bytes for s in self.shards),
            },
            "shards": [_shard_json(s) for s in self.shards],
            "error_files": self.error_files,
            "dropped_files": self.dropped_files,
            "side_files": self.side_files,
            "pipeline": [asdict(stage) for stage in self.pipeline],
            "stages": self.stages,
            "inputs": self.inputs,
            "config": self.config,
        }
        return json.dumps(doc, indent=2, sort_keys=False, ensure_ascii=False) + "\n"

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        doc = json.loads(text)
        if doc.get("format") != MANIFEST_FORMAT:
            raise ValueError("not a tweetmill manifest (missing or wrong 'format')")
        if doc.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(
                f"manifest format version {doc.get('format_version')} is not supported "
                f"(this tweetmill reads {', '.join(map(str, READABLE_VERSIONS))})"
            )
        counts = doc["counts"]
        return cls(
            run_fingerprint=doc["run_fingerprint"],
            shard_format_version=doc["shard_format_version"],
            tokenizer=TokenizerInfo(**doc["tokenizer"]),
            counts=Counts(
                read=counts["read"],
                kept=counts["kept"],
                dropped=dict(counts["dropped"]),
                errors=counts["errors"],
            ),
            shards=[ShardEntry(**s) for s in doc["shards"]],
            config=doc.get("config", {}),
            error_files=doc.get("error_files", []),
            dropped_files=doc.get("dropped_files", []),
            side_files=doc.get("side_files", []),
            stages=doc.get("stages", {}),
            pipeline=[StageRecord(**stage) for stage in doc.get("pipeline", [])],
            inputs=doc.get("inputs", []),
            created_by=doc.get("created_by", ""),
        )

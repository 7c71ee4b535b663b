"""``tweetmill verify``: every shard against the manifest, before anyone trains on it.

Per shard: the file exists, its size and sha256 are the manifest's, it parses as an Arrow IPC file
with the tweetmill schema (``check_shard_schema``), its schema metadata names the manifest's run
fingerprint, tokenizer, vocabulary, EOS id and its own place in the set, and its rows and tokens are
the manifest's (tokens counted from the list offsets, checked against ``num_tokens``; every id inside
the vocabulary, every tweet ending with EOS, ids ascending). Per directory: no shard or dead-letter
file the manifest does not list, ``tokenizer.json`` is the run's, the accounting balances (also
per input file), no ``_tmp-*`` directory of an unfinished run is left.

Every problem is collected (not just the first), so one run says everything that is wrong. Reads go
through Beam's FileSystems (local files are memory-mapped for parsing), batch by batch: memory does
not grow with the shard set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from rich.console import Console
from rich.table import Table
from tweetmill.pipeline.stats import list_layout, open_shard, read_bytes
from tweetmill.pipeline.terminal import safe
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest, ShardEntry
from tweetmill.schemas.shard import (
    META_EOS_ID,
    META_NUM_SHARDS,
    META_RUN_FINGERPRINT,
    META_SHARD_INDEX,
    META_TOKENIZER_SHA256,
    META_VOCAB_SIZE,
    SHARD_PREFIX,
    SHARD_SUFFIX,
    check_shard_schema,
    schema_metadata,
    shard_file_name,
)
from tweetmill.transforms.write import TOKENIZER_NAME, temp_dirs

log = logging.getLogger(__name__)

_CHUNK = 8 << 20
_SHARD_NAME = re.compile(r"shard-(\d+)-of-(\d+)\.arrow$")
ERRORS_GLOB = "errors/errors-*"


@dataclass
class ShardCheck:
    """What verify found for one shard listed in the manifest."""

    file: str
    rows: int | None = None
    tokens: int | None = None
    bytes: int | None = None
    sha256_ok: bool | None = None
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


@dataclass
class VerifyReport:
    shard_dir: str
    shards: list[ShardCheck] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # about the directory, not one listed shard

    @property
    def ok(self) -> bool:
        return not self.problems and all(s.ok for s in self.shards)

    @property
    def problem_count(self) -> int:
        return len(self.problems) + sum(len(s.problems) for s in self.shards)

    def to_dict(self) -> dict[str, Any]:
        return {
            "shard_dir": self.shard_dir,
            "ok": self.ok,
            "problems": self.problems,
            "shards": [asdict(s) | {"ok": s.ok} for s in self.shards],
        }


def _size(path: str) -> int:
    return FileSystems.match([path])[0].metadata_list[0].size_in_bytes


def _sha256(path: str) -> str:
    digest = hashlib.sha256()
    with FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED) as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _listed(shard_dir: str, pattern: str) -> list[str]:
    """Names (relative to ``shard_dir``) of the files matching ``pattern`` inside it."""
    prefix = FileSystems.join(shard_dir, "")
    result = FileSystems.match([FileSystems.join(shard_dir, pattern)])[0]
    return sorted(
        m.path[len(prefix) :] if m.path.startswith(prefix) else m.path for m in result.metadata_list
    )


def verify_shard(shard_dir: str, entry: ShardEntry, manifest: Manifest) -> ShardCheck:
    """All checks of one shard listed in the manifest."""
    check = ShardCheck(entry.file)
    path = FileSystems.join(shard_dir, entry.file)
    if not FileSystems.exists(path):
        check.problems.append("missing: listed in the manifest but not in the directory")
        return check
    check.bytes = _size(path)
    if check.bytes != entry.bytes:
        check.problems.append(f"size {check.bytes:,} bytes, the manifest says {entry.bytes:,}")
    check.sha256_ok = _sha256(path) == entry.sha256
    if not check.sha256_ok:
        check.problems.append("sha256 differs from the manifest's (corrupt or replaced file)")
    try:
        with open_shard(path) as reader:
            _check_metadata(check, reader.schema, entry, manifest)
            _check_rows(check, reader, entry, manifest)
    except (pa.ArrowInvalid, pa.ArrowException, OSError) as exc:
        check.problems.append(f"unreadable as an Arrow IPC file: {exc}")
    return check


def _short(value: str | None) -> str | None:
    return value[:16] + "…" if value and len(value) > 20 else value


def _check_metadata(check: ShardCheck, schema: pa.Schema, entry: ShardEntry, manifest: Manifest) -> None:
    try:
        check_shard_schema(schema)
    except ValueError as exc:
        check.problems.append(f"schema: {exc}")
    meta = schema_metadata(schema)
    num_shards = len(manifest.shards)
    m = _SHARD_NAME.search(entry.file)
    index = str(int(m.group(1))) if m else None
    expected = {
        META_RUN_FINGERPRINT: (manifest.run_fingerprint, "run fingerprint"),
        META_TOKENIZER_SHA256: (manifest.tokenizer.sha256, "tokenizer sha256"),
        META_VOCAB_SIZE: (str(manifest.tokenizer.vocab_size), "vocabulary size"),
        META_EOS_ID: (str(manifest.tokenizer.eos_id), "EOS id"),
        META_NUM_SHARDS: (str(num_shards), "shard count"),
        META_SHARD_INDEX: (index, "shard index (from the file name)"),
    }
    for key, (want, label) in expected.items():
        got = meta.get(key)
        if want is not None and got != want:
            check.problems.append(
                f"{label} in the schema metadata is {_short(got)!r}, expected {_short(want)!r}"
                + (" (a shard of another run?)" if key == META_RUN_FINGERPRINT else "")
            )


def _check_rows(
    check: ShardCheck, reader: pa.ipc.RecordBatchFileReader, entry: ShardEntry, manifest: Manifest
) -> None:
    vocab, eos = manifest.tokenizer.vocab_size, manifest.tokenizer.eos_id
    rows = tokens = 0
    bad_lengths = out_of_vocab = no_eos = unsorted = 0
    last_id: int | None = None
    for i in range(reader.num_record_batches):
        batch = reader.get_batch(i)
        rows += batch.num_rows
        if not batch.num_rows or batch.schema.get_field_index("tokens") < 0:
            continue
        offsets, values = list_layout(batch.column("tokens"))
        lengths = np.diff(offsets)
        tokens += int(offsets[-1])
        if batch.schema.get_field_index("num_tokens") >= 0:
            bad_lengths += int(np.count_nonzero(batch.column("num_tokens").to_numpy() != lengths))
        if len(values):
            out_of_vocab += int(np.count_nonzero(values.view(np.uint32) >= vocab))
            ends = offsets[1:][lengths > 0] - 1
            no_eos += int(np.count_nonzero(values[ends] != eos)) + int(np.count_nonzero(lengths == 0))
        if batch.schema.get_field_index("id") >= 0:
            ids = batch.column("id").to_numpy()
            unsorted += int(np.count_nonzero(np.diff(ids) <= 0))
            if last_id is not None and ids[0] <= last_id:
                unsorted += 1
            last_id = int(ids[-1])
    check.rows, check.tokens = rows, tokens
    if rows != entry.rows:
        check.problems.append(f"{rows:,} rows, the manifest says {entry.rows:,}")
    if tokens != entry.tokens:
        check.problems.append(f"{tokens:,} tokens, the manifest says {entry.tokens:,}")
    for n, what in (
        (bad_lengths, "rows whose num_tokens disagrees with their tokens"),
        (out_of_vocab, f"token ids outside the vocabulary (>= {vocab:,} or negative)"),
        (no_eos, f"rows not ending with EOS (id {eos})"),
        (unsorted, "places where ids are not strictly ascending"),
    ):
        if n:
            check.problems.append(f"{n:,} {what}")


def verify(shard_dir: str) -> VerifyReport:
    """Check ``shard_dir`` against its manifest; ``report.ok`` says whether it may be trained on."""
    report = VerifyReport(shard_dir)
    manifest_path = FileSystems.join(shard_dir, MANIFEST_NAME)
    if not FileSystems.exists(manifest_path):
        report.problems.append(f"no {MANIFEST_NAME}: not a finished tweetmill run")
        _check_temp_dirs(report, shard_dir)
        return report
    try:
        raw = read_bytes(manifest_path).decode("utf-8")
        manifest = Manifest.from_json(raw)
        doc = json.loads(raw)
    except (ValueError, KeyError, TypeError) as exc:
        report.problems.append(f"{MANIFEST_NAME} is unreadable: {exc}")
        return report

    for entry in manifest.shards:
        check = verify_shard(shard_dir, entry, manifest)
        report.shards.append(check)
        log.info("%s: %s", entry.file, "ok" if check.ok else "; ".join(check.problems))

    listed = [s.file for s in manifest.shards]
    n = len(listed)
    if sorted(listed) != [shard_file_name(i, n) for i in range(n)]:
        report.problems.append(f"the manifest's shard files are not exactly {shard_file_name(0, n)} … of {n}")
    for name in _listed(shard_dir, f"{SHARD_PREFIX}*{SHARD_SUFFIX}"):
        if name not in listed:
            report.problems.append(f"{name}: shard file not in the manifest (from another run?)")
    _check_directory(report, shard_dir, manifest, doc)
    _check_temp_dirs(report, shard_dir)
    return report


def _check_temp_dirs(report: VerifyReport, shard_dir: str) -> None:
    """A ``_tmp-*`` directory means a run is writing here right now, or one crashed and left it."""
    prefix = FileSystems.join(shard_dir, "")
    for temp in temp_dirs(shard_dir):
        name = temp.path[len(prefix) :] if temp.path.startswith(prefix) else temp.path
        report.problems.append(
            f"{name}/: temporary directory of a run that did not finish ({temp.files} file(s)): another "
            "run is writing here, or one crashed (then delete it; the next successful run also does)"
        )


def _check_directory(report: VerifyReport, shard_dir: str, manifest: Manifest, doc: dict[str, Any]) -> None:
    counts = manifest.counts
    if not counts.balanced:
        report.problems.append(
            f"accounting does not balance: read {counts.read:,} != kept {counts.kept:,} + dropped "
            f"{sum(counts.dropped.values()):,} + errors {counts.errors:,}"
        )
    if counts.kept != manifest.total_rows:
        report.problems.append(
            f"counts.kept is {counts.kept:,} but the shards listed hold {manifest.total_rows:,} rows"
        )
    if "inputs" in doc:  # per input file, since the manifest had them
        try:
            records = sum(int(f["records"]) for f in manifest.inputs)
        except (KeyError, TypeError, ValueError):
            report.problems.append("inputs[]: an entry without a numeric 'records'")
        else:
            if records != counts.read:
                report.problems.append(
                    f"the inputs' records sum to {records:,} but counts.read is {counts.read:,} "
                    "(an input file counted twice, or one missing from inputs)"
                )
    totals = doc.get("totals") or {}
    for key, value in (
        ("shards", len(manifest.shards)),
        ("rows", manifest.total_rows),
        ("tokens", manifest.total_tokens),
        ("bytes", sum(s.bytes for s in manifest.shards)),
    ):
        if key in totals and totals[key] != value:
            report.problems.append(f"totals.{key} is {totals[key]:,} but the shard entries sum to {value:,}")

    tokenizer = FileSystems.join(shard_dir, TOKENIZER_NAME)
    if not FileSystems.exists(tokenizer):
        report.problems.append(f"{TOKENIZER_NAME} missing (the shards cannot be decoded on their own)")
    elif hashlib.sha256(read_bytes(tokenizer)).hexdigest() != manifest.tokenizer.sha256:
        report.problems.append(
            f"{TOKENIZER_NAME} is not the run's tokenizer (sha256 differs from the manifest's)"
        )

    letters = 0
    for name in manifest.error_files:
        path = FileSystems.join(shard_dir, name)
        if not FileSystems.exists(path):
            report.problems.append(f"{name}: dead-letter file listed in the manifest is missing")
            continue
        letters += read_bytes(path).count(b"\n")
    if letters != counts.errors and all(
        FileSystems.exists(FileSystems.join(shard_dir, n)) for n in manifest.error_files
    ):
        report.problems.append(
            f"dead-letter files hold {letters:,} records, the manifest counts {counts.errors:,}"
        )
    for name in _listed(shard_dir, ERRORS_GLOB):
        if name not in manifest.error_files:
            report.problems.append(f"{name}: dead-letter file not in the manifest")


def print_report(console: Console, report: VerifyReport) -> None:
    """One row per shard (OK or FAIL), then every problem on its own line, then a verdict; names and
    messages escaped (``terminal.safe``), since they come from the directory's files."""

    table = Table(title=f"verify {safe(report.shard_dir)}", title_justify="left")
    table.add_column("shard")
    table.add_column("rows", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("size", justify="right")
    table.add_column("sha256")
    table.add_column("result")
    for s in report.shards:
        table.add_row(
            safe(s.file),
            "-" if s.rows is None else f"{s.rows:,}",
            "-" if s.tokens is None else f"{s.tokens:,}",
            "-" if s.bytes is None else f"{s.bytes:,} B",
            {True: "ok", False: "[red]MISMATCH[/red]", None: "-"}[s.sha256_ok],
            "[green]OK[/green]" if s.ok else f"[red]FAIL[/red] ({len(s.problems)})",
        )
    console.print(table)
    for s in report.shards:
        for problem in s.problems:
            console.print(f"[red]{safe(s.file)}:[/red] {safe(problem)}")
    for problem in report.problems:
        console.print(f"[red]directory:[/red] {safe(problem)}")
    failed = sum(not s.ok for s in report.shards)
    if report.ok:
        console.print(f"[green]OK[/green]: {len(report.shards)} shard(s) match the manifest")
    else:
        console.print(
            f"[red]FAILED[/red]: {report.problem_count} problem(s); {failed} of {len(report.shards)} "
            "shard(s) do not match the manifest"
        )

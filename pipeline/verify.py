"""``tweetmill verify``: every shard against the manifest, before anyone trains on it.

Per shard: the file exists, its size and sha256 are the manifest's, it parses as an Arrow IPC file
with the tweetmill schema (``check_shard_schema``), its schema metadata names the manifest's run
fingerprint, tokenizer, vocabulary, EOS id and its own place in the set, and its rows and tokens are
the manifest's (tokens counted from the list offsets, checked against ``num_tokens``; every id inside
the vocabulary, every tweet ending with EOS, ids ascending). Per directory: no shard or dead-letter
file the manifest does not list (nothing in ``data/`` but the listed shards), ``tokenizer.json`` is
the run's, the accounting balances (also per input file), no ``_tmp-*`` directory of an unfinished
run is left.

Every problem is collected (not just the first), so one run says everything that is wrong. Reads go
through Beam's FileSystems (local files are memory-mapped for parsing), batch by batch: memory does
not grow with the shard set.
"""

from __future__ import annotations

import hashlib
import json
import logging
import posixpath
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
from apache_beam.io.filesystems import FileSystems
from rich.console import Console
from rich.table import Table
from tweetmill.pipeline.shard_io import open_file, open_shard, read_bytes
from tweetmill.pipeline.terminal import safe
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest, ShardEntry
from tweetmill.schemas.shard import META_RUN_FINGERPRINT, check_shard_schema
from tweetmill.schemas.shard_dir import (
    DROPPED_GLOB,
    ERRORS_GLOB,
    SHARD_LISTING_GLOBS,
    TOKENIZER_NAME,
    ShardDirError,
    check_shard_format,
    list_layout,
    metadata_mismatches,
    parse_manifest,
    shard_paths_problem,
    tokenizer_matches,
    unlisted_shard_files,
)
from tweetmill.transforms.write import temp_dirs

log = logging.getLogger(__name__)

_CHUNK = 8 << 20


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
    with open_file(path) as f:
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
    for m in metadata_mismatches(schema, manifest, entry.file):
        check.problems.append(
            f"{m.label} in the schema metadata is {_short(m.got)!r}, expected {_short(m.want)!r}"
            + (" (a shard of another run?)" if m.key == META_RUN_FINGERPRINT else "")
        )


def _check_rows(
    check: ShardCheck, reader: pa.ipc.RecordBatchFileReader, entry: ShardEntry, manifest: Manifest
) -> None:
    vocab, eos = manifest.tokenizer.vocab_size, manifest.tokenizer.eos_id
    rows = tokens = members = 0
    bad_lengths = out_of_vocab = no_eos = unsorted = bad_members = 0
    last_id: int | None = None
    for i in range(reader.num_record_batches):
        batch = reader.get_batch(i)
        rows += batch.num_rows
        held, bad = _members(batch)
        members, bad_members = members + held, bad_members + bad
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
    if members != entry.kept:
        check.problems.append(f"{members:,} tweets in the rows' tweet_ids, the manifest says {entry.kept:,}")
    for n, what in (
        (bad_lengths, "rows whose num_tokens disagrees with their tokens"),
        (out_of_vocab, f"token ids outside the vocabulary (>= {vocab:,} or negative)"),
        (no_eos, f"rows not ending with EOS (id {eos})"),
        (unsorted, "places where ids are not strictly ascending"),
        (bad_members, "rows whose tweet_ids do not start with their id"),
    ):
        if n:
            check.problems.append(f"{n:,} {what}")


def _members(batch: pa.RecordBatch) -> tuple[int, int]:
    """The tweets a batch's rows hold (``tweet_ids``, shard format 2; else one per row), and the rows
    whose ``tweet_ids`` is empty or does not start with the row's id (a document's id is its first
    tweet's)."""
    if batch.schema.get_field_index("tweet_ids") < 0:
        return batch.num_rows, 0
    if not batch.num_rows:
        return 0, 0
    offsets, values = list_layout(batch.column("tweet_ids"))
    lengths = np.diff(offsets)
    firsts = values[offsets[:-1][lengths > 0]]
    bad = int(np.count_nonzero(lengths == 0)) + int(
        np.count_nonzero(firsts != batch.column("id").to_numpy()[lengths > 0])
    )
    return int(offsets[-1]), bad


def verify(shard_dir: str) -> VerifyReport:
    """Check ``shard_dir`` against its manifest; ``report.ok`` says whether it may be trained on."""
    report = VerifyReport(shard_dir)
    manifest_path = FileSystems.join(shard_dir, MANIFEST_NAME)
    try:
        raw = read_bytes(manifest_path)
    except FileNotFoundError:
        report.problems.append(f"no {MANIFEST_NAME}: not a finished tweetmill run")
        _check_temp_dirs(report, shard_dir)
        return report
    try:
        manifest = parse_manifest(raw, manifest_path)
    except ShardDirError as exc:
        report.problems.append(f"{MANIFEST_NAME} is unreadable: {exc.__cause__ or exc}")
        return report
    doc = json.loads(raw)  # parsed already: what the Manifest does not keep (totals, inputs given)

    for entry in manifest.shards:
        check = verify_shard(shard_dir, entry, manifest)
        report.shards.append(check)
        log.info("%s: %s", entry.file, "ok" if check.ok else "; ".join(check.problems))

    problem = shard_paths_problem([s.file for s in manifest.shards])
    if problem:
        report.problems.append(problem)
    found = [name for pattern in SHARD_LISTING_GLOBS for name in _listed(shard_dir, pattern)]
    for name in unlisted_shard_files(manifest, found):
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
    try:
        check_shard_format(manifest, MANIFEST_NAME)
    except ShardDirError as exc:
        report.problems.append(str(exc))
    counts = manifest.counts
    if not counts.balanced:
        report.problems.append(
            f"accounting does not balance: read {counts.read:,} != kept {counts.kept:,} + dropped "
            f"{sum(counts.dropped.values()):,} + errors {counts.errors:,}"
        )
    if counts.kept != manifest.total_tweets:  # rows, unless rows are documents of several tweets
        report.problems.append(
            f"counts.kept is {counts.kept:,} but the shards listed hold {manifest.total_tweets:,} tweets"
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

    try:
        if not tokenizer_matches(read_bytes(FileSystems.join(shard_dir, TOKENIZER_NAME)), manifest):
            report.problems.append(
                f"{TOKENIZER_NAME} is not the run's tokenizer (sha256 differs from the manifest's)"
            )
    except FileNotFoundError:
        report.problems.append(f"{TOKENIZER_NAME} missing (the shards cannot be decoded on their own)")

    letters = _count_lines(shard_dir, manifest.error_files, "dead-letter", report)
    if letters is not None and letters != counts.errors:
        report.problems.append(
            f"dead-letter files hold {letters:,} records, the manifest counts {counts.errors:,}"
        )
    _unlisted_files(shard_dir, ERRORS_GLOB, manifest.error_files, "dead-letter", report)
    _check_stages(shard_dir, manifest, report)


def _check_stages(shard_dir: str, manifest: Manifest, report: VerifyReport) -> None:
    """The stages' drops sum to the counts; with --write-dropped, the dropped files hold every one."""
    if not manifest.pipeline:  # a format-1 manifest: no stages recorded
        return
    by_reason: dict[str, int] = {}
    for stage in manifest.pipeline:
        for reason, n in stage.dropped.items():
            by_reason[reason] = by_reason.get(reason, 0) + n
    if {r: n for r, n in by_reason.items() if n} != manifest.counts.dropped:
        report.problems.append("the stages' drops in pipeline[] do not sum to counts.dropped")
    audited = manifest.dropped_after_source
    written = _count_lines(shard_dir, manifest.dropped_files, "dropped-tweets", report)
    if manifest.config.get("write_dropped") and written is not None and written != audited:
        report.problems.append(
            f"dropped-tweets files hold {written:,} tweets, the stages after parsing dropped {audited:,}"
        )
    _unlisted_files(shard_dir, DROPPED_GLOB, manifest.dropped_files, "dropped-tweets", report)


def _count_lines(shard_dir: str, names: list[str], what: str, report: VerifyReport) -> int | None:
    """The lines of the JSON-lines files the manifest lists; None, and a problem, when one is missing."""
    lines: int | None = 0
    for name in names:
        try:
            data = read_bytes(FileSystems.join(shard_dir, name))
        except FileNotFoundError:
            report.problems.append(f"{name}: {what} file listed in the manifest is missing")
            lines = None
            continue
        if lines is not None:
            lines += data.count(b"\n")
    return lines


def _unlisted_files(shard_dir: str, glob: str, names: list[str], what: str, report: VerifyReport) -> None:
    for name in _listed(shard_dir, glob):
        if name not in names:
            report.problems.append(f"{name}: {what} file not in the manifest")


def print_report(console: Console, report: VerifyReport) -> None:
    """One row per shard (OK or FAIL), then every problem on its own line, then a verdict; names and
    messages escaped (``terminal.safe``), since they come from the directory's files."""

    table = Table(title=f"verify {safe(report.shard_dir)}", title_justify="left")
    # Shards by name, their folder (data/, or none in the earlier layout) in the header: 80 columns fit.
    folders = {posixpath.dirname(s.file) for s in report.shards}
    folder = folders.pop() if len(folders) == 1 else ""
    table.add_column(f"shard ({safe(folder)}/)" if folder else "shard")
    table.add_column("rows", justify="right")
    table.add_column("tokens", justify="right")
    table.add_column("size", justify="right")
    table.add_column("sha256")
    table.add_column("result")
    for s in report.shards:
        table.add_row(
            safe(posixpath.relpath(s.file, folder) if folder else s.file),
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

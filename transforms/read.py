"""Read stage: input patterns -> batches of ``Tweet``, drop counts, dead letters, one summary per file.

Matched files are split into units of work (``containers.list_units``: a whole file, or one member of
a zip or an uncompressed tar), the units are spread over the workers, and each unit is expanded
(compressed and nested containers) and parsed by ``parse.open_records``. Every file parsed, inside a
container or not, gets its own summary in the manifest (``archive.zip!data/tweets.js``); a file
that is skipped (another archive dataset, a hidden file, the archive's viewer) gets one too, with
``records: 0`` and the reason, so the run says what it did not read.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterator
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tweetmill.schemas.records import DROP_NOTE_MERGED, SOURCE_FORMATS, DeadLetter, Tweet
from tweetmill.transforms import account_archive as archive
from tweetmill.transforms.common import (
    METRICS_NAMESPACE,
    TAG_DEAD_LETTERS,
    TAG_DROPPED,
    DropCounter,
    TweetCoder,
)
from tweetmill.transforms.containers import (
    ARCHIVE_SIBLING,
    SNIFF_BYTES,
    Leaf,
    Replay,
    Unit,
    leaves,
    list_units,
    open_member,
    read_head,
)
from tweetmill.transforms.parse import open_records

logger = logging.getLogger(__name__)

TAG_FILES = "files"  # one summary per input file: where its records went

_KIND_TWEETS = 0
_KIND_DROPS = 1
_KIND_DEAD = 2
_KIND_FILE = 3

# Tweet batches cross the Reshuffle as bytes: the payload is mixed (tweets, counts, dead letters),
# so Beam would pickle every Tweet; this coder is ~3x cheaper.
_BATCH_CODER = beam.coders.ListCoder(TweetCoder())


def open_input(path: str) -> BinaryIO:
    """A seekable raw byte stream of any Beam path; decompression is ours (by content)."""
    return FileSystems.open(path, compression_type=CompressionTypes.UNCOMPRESSED)


def is_hidden_below(path: str, directory: str) -> bool:
    """Whether a file found under ``directory`` is hidden there (a dot-name file or folder)."""
    rest = path[len(directory):] if path.startswith(directory) else path.rsplit("/", 1)[-1]
    return any(part.startswith(".") for part in rest.replace("\\", "/").split("/") if part)


def directory_of(pattern: str) -> str | None:
    """``pattern`` as a directory to read recursively, or None when it is a file or a glob."""
    if any(c in pattern for c in "*?["):
        return None
    fs = FileSystems.get_filesystem(pattern)
    if fs.has_dirs():
        import os

        return pattern if os.path.isdir(pattern) else None
    return pattern if pattern.endswith("/") else None


def summary(name: str, fmt: str | None, records: int = 0, tweets: int = 0, dropped: Counter | None = None,
            errors: int = 0, skipped: str = "", notes: Counter | None = None) -> dict[str, Any]:
    """One input file's line in the manifest: where its records went."""
    out: dict[str, Any] = {"file": name, "format": fmt, "records": records, "tweets": tweets,
                           "dropped": dict(sorted((dropped or {}).items())), "errors": errors}
    if skipped:
        out["skipped"] = skipped
    if notes:
        out["notes"] = dict(sorted(notes.items()))
    return out


class _ListUnitsFn(beam.DoFn):
    """A matched file -> its units: members of a zip / uncompressed tar, else the file itself."""

    def setup(self) -> None:
        self._files = Metrics.counter(METRICS_NAMESPACE, "parse_files_read")
        self._members = Metrics.counter(METRICS_NAMESPACE, "parse_container_members")

    def process(self, path: str) -> Iterator[Unit]:
        self._files.inc()
        with open_input(path) as f:
            for unit in list_units(path, f):
                if unit.locator is not None:
                    self._members.inc()
                yield unit


class _ParseUnitsFn(beam.DoFn):
    """Parses one unit into batches of tweets, drop counts, dead letters and file summaries."""

    def __init__(self, fmt: str | None, csv_text_column: str | None, batch_size: int, include_deleted: bool):
        self._fmt = fmt
        self._csv_text_column = csv_text_column
        self._batch_size = batch_size
        self._include_deleted = include_deleted

    def setup(self) -> None:
        self._read = {f: Metrics.counter(METRICS_NAMESPACE, f"parse_records_read_{f}")
                      for f in SOURCE_FORMATS}
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "parse_files_skipped")

    def process(self, unit: Unit) -> Iterator[tuple[int, Any]]:
        for leaf in leaves(unit, open_input):
            yield from self._leaf(unit, leaf)

    def _leaf(self, unit: Unit, leaf: Leaf) -> Iterator[tuple[int, Any]]:
        if leaf.skip:
            self._skipped.inc()
            yield _KIND_FILE, summary(leaf.name, None, skipped=leaf.skip)
            return
        if leaf.error is not None:
            reason, detail, offset = leaf.error
            yield _KIND_DEAD, DeadLetter(leaf.name, 0, reason, detail, None, offset, "")
            yield _KIND_FILE, summary(leaf.name, None, records=1, errors=1)
            return
        head = read_head(leaf.stream, SNIFF_BYTES)
        stream = Replay(head, leaf.stream)
        dataset = archive.ytd_dataset(head) if self._fmt is None else None
        skip = archive.skip_reason(dataset, self._include_deleted)
        if skip:
            self._skipped.inc()
            yield _KIND_FILE, summary(leaf.name, None, skipped=skip)
            return
        notes: Counter = Counter()
        fmt, records = open_records(leaf.name, stream, self._fmt, csv_text_column=self._csv_text_column,
                                    notes=notes, keep_deleted=self._include_deleted)
        if dataset in archive.TWEET_DATASETS:
            folder = archive.load_folder(_siblings(unit, leaf), dataset)
            records = (folder.complete(r, notes) if type(r) is Tweet else r for r in records)
        elif dataset in archive.NOTE_DATASETS:
            records = _merge_notes(list(records), _siblings(unit, leaf))
        yield from self._emit(leaf.name, fmt, records, notes)

    def _emit(self, name: str, fmt: str, records: Any, notes: Counter) -> Iterator[tuple[int, Any]]:
        batch: list[Tweet] = []
        drops: Counter = Counter()
        n = dead = tweets = 0
        for record in records:
            n += 1
            if type(record) is Tweet:
                tweets += 1
                batch.append(record)
                if len(batch) >= self._batch_size:
                    yield _KIND_TWEETS, _BATCH_CODER.encode(batch)
                    batch = []
            elif type(record) is str:
                drops[record] += 1
            else:
                dead += 1
                yield _KIND_DEAD, record
        if batch:
            yield _KIND_TWEETS, _BATCH_CODER.encode(batch)
        if drops:
            yield _KIND_DROPS, drops
        yield _KIND_FILE, summary(name, fmt, n, tweets, drops, dead, notes=notes)
        self._read[fmt].inc(n)
        logger.info("parsed %s (%s): %d records, %d dropped, %d dead letters", name, fmt, n,
                    sum(drops.values()), dead)


def _merge_notes(records: list, siblings: list) -> Iterator[Any]:
    """A note-tweet file's records, with the notes that a tweet of the folder takes counted as merged."""
    notes = [r for r in records if type(r) is Tweet]
    taken = archive.merged_notes(notes, siblings) if notes else set()
    for r in records:
        yield DROP_NOTE_MERGED if type(r) is Tweet and r.id in taken else r


def _siblings(unit: Unit, leaf: Leaf) -> list[tuple[str, archive.Opener]]:
    """The account-archive files beside ``leaf``: in its container, or in its folder on disk."""
    if leaf.name != unit.name:  # inside a compressed or nested container: read alone
        return []
    if unit.locator is not None:
        return [(f"{unit.path}!{loc.member}", lambda loc=loc: open_member(open_input(unit.path), loc))
                for loc in unit.siblings]
    folder = unit.path.rsplit("/", 1)[0]
    found = FileSystems.match([FileSystems.join(folder, "*.js")])[0].metadata_list
    return [(m.path, lambda p=m.path: open_input(p)) for m in sorted(found, key=lambda m: m.path)
            if m.path != unit.path and ARCHIVE_SIBLING.fullmatch(m.path.rsplit("/", 1)[-1])]


class _RouteFn(beam.DoFn):
    """Splits parsed output into the stage's tagged outputs (after the Reshuffle spread it out)."""

    def setup(self) -> None:
        self._drops = DropCounter("parse")

    def process(self, item: tuple[int, Any]) -> Iterator[Any]:
        kind, payload = item
        if kind == _KIND_TWEETS:
            yield _BATCH_CODER.decode(payload)
        elif kind == _KIND_DROPS:
            yield from self._drops.emit(payload)
        elif kind == _KIND_FILE:
            yield beam.pvalue.TaggedOutput(TAG_FILES, payload)
        else:
            yield beam.pvalue.TaggedOutput(TAG_DEAD_LETTERS, payload)


class _MatchInputs(beam.PTransform):
    """Patterns -> the paths of the files they name; a directory is read recursively, hidden skipped."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = patterns

    def expand(self, pbegin):
        matched = []
        for i, pattern in enumerate(self._patterns):
            directory = directory_of(pattern)
            if directory is None:
                files = pbegin | f"MatchFiles[{i}]" >> fileio.MatchFiles(
                    pattern, empty_match_treatment=fileio.EmptyMatchTreatment.DISALLOW)
            else:
                files = (
                    pbegin
                    | f"MatchDirectory[{i}]" >> fileio.MatchFiles(
                        FileSystems.join(directory, "**"),
                        empty_match_treatment=fileio.EmptyMatchTreatment.ALLOW,
                    )
                    | f"SkipHidden[{i}]" >> beam.Filter(lambda m, d=directory: not is_hidden_below(m.path, d))
                )
            matched.append(files | f"Paths[{i}]" >> beam.Map(lambda m: m.path).with_output_types(str))
        return (
            tuple(matched)
            | "FlattenMatches" >> beam.Flatten()
            | "NotFolders" >> beam.Filter(lambda path: not path.endswith("/"))  # object-store placeholders
        )


class ReadArchives(beam.PTransform):
    """Files matching ``patterns`` -> batches of ``Tweet`` (main), drop counts, dead letters.

    Apply to a pipeline: ``p | ReadArchives([...])``. Returns the ``DoOutputsTuple`` of the final
    ParDo: main ``'tweets'`` = lists of up to ``batch_size`` tweets; ``TAG_DROPPED`` = ``(reason, n)``;
    ``TAG_DEAD_LETTERS`` = ``DeadLetter``; ``TAG_FILES`` = one summary dict per file parsed or skipped
    (format, records, tweets, dropped by reason, errors, skipped, notes). A pattern that matches no
    file fails the pipeline (the CLI checks the inputs before it starts).
    """

    def __init__(self, patterns: list[str], fmt: str | None = None, csv_text_column: str | None = None,
                 batch_size: int = 1000, include_deleted: bool = False):
        super().__init__()
        if isinstance(patterns, str):
            patterns = [patterns]
        if not patterns:
            raise ValueError("ReadArchives needs at least one file pattern")
        if fmt is not None and fmt not in SOURCE_FORMATS:
            raise ValueError(f"unknown format {fmt!r}; expected one of {SOURCE_FORMATS}")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self._patterns = list(patterns)
        self._parse = _ParseUnitsFn(fmt, csv_text_column, batch_size, include_deleted)

    def expand(self, pbegin: beam.pvalue.PBegin):  # -> DoOutputsTuple (Beam warns on that hint)
        return (
            pbegin
            | "MatchInputs" >> _MatchInputs(self._patterns)
            # Matching yields all files in one bundle: spread them so containers list on many workers.
            | "ReshuffleFiles" >> beam.Reshuffle()
            | "ListUnits" >> beam.ParDo(_ListUnitsFn()).with_output_types(Unit)
            # A big container lists on one worker: spread its members so every worker parses.
            | "ReshuffleUnits" >> beam.Reshuffle()
            | "ParseUnits" >> beam.ParDo(self._parse)
            # One file parses on one worker: spread its batches so downstream stages run wide.
            | "ReshuffleParsed" >> beam.Reshuffle()
            | "RouteOutputs"
            >> beam.ParDo(_RouteFn())
            .with_output_types(list[Tweet])
            .with_outputs(TAG_DROPPED, TAG_DEAD_LETTERS, TAG_FILES, main="tweets")
        )

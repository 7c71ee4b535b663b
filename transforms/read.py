"""Read stage: input patterns -> batches of ``Tweet``, drop counts, dead letters, one summary per file.

Matched files are split into units of work (``containers.list_units``: a whole file, or one member of
a zip or an uncompressed tar), the units are spread over the workers, and each unit is expanded
(compressed and nested containers) and parsed by ``parse.open_records``. Every file parsed, inside a
container or not, gets its own summary in the manifest (``archive.zip!data/tweets.js``); a file
that is skipped (another archive dataset, a hidden file, the archive's viewer) gets one too, with
``records: 0`` and the reason, so the run says what it did not read.
"""

from __future__ import annotations

import functools
import logging
import os
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any, BinaryIO

import apache_beam as beam
from apache_beam.io import fileio
from apache_beam.io.filesystem import CompressionTypes
from apache_beam.io.filesystems import FileSystems
from apache_beam.metrics import Metrics
from tweetmill.schemas.records import (
    DROP_API_ERROR,
    DROP_COMPLIANCE_EVENT,
    DROP_DELETE_NOTICE,
    DROP_DELETED_BY_AUTHOR,
    DROP_NO_TEXT,
    DROP_NOTE_MERGED,
    DROP_STREAM_NOTICE,
    SOURCE_FORMATS,
    DeadLetter,
    Tweet,
)
from tweetmill.transforms import account_archive as archive
from tweetmill.transforms.common import (
    METRICS_NAMESPACE,
    TAG_DEAD_LETTERS,
    TAG_DROPPED,
    DropCounter,
    TweetCoder,
    relax_collector,
)
from tweetmill.transforms.containers import (
    ARCHIVE_SIBLING,
    FILE,
    Locator,
    Unit,
    leaves,
    list_units,
    open_member,
    plan_files,
)
from tweetmill.transforms.parse import open_records
from tweetmill.transforms.progress import listed, reporter, unit_meter
from tweetmill.transforms.spill import read_spill_file, write_spill_file

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


SKIP_NOT_A_DATASET = "account archive: not a dataset file"


def directory_units(directory: str) -> Iterator[Unit]:
    """The units of a folder, read recursively: hidden files and folders are left out, the
    account-archive layout rules apply as in a zip, and each file may itself be a container."""
    base = directory.rstrip("/") + "/"
    found = FileSystems.match([FileSystems.join(directory, "**")])[0].metadata_list
    paths = {m.path[len(base):]: m.path for m in found if not m.path.endswith("/")}
    names = sorted(n for n in paths if not any(part.startswith(".") for part in n.split("/")))
    for planned in plan_files(names):
        path = paths[planned.name]
        if planned.skip:
            yield Unit(path, skip=planned.skip)
        elif planned.in_archive:
            siblings = tuple(Locator(paths[s], FILE, 0, -1) for s in planned.siblings)
            yield Unit(path, siblings=siblings, in_archive=True)
        else:
            with open_input(path) as f:
                yield from list_units(path, f)


def directory_of(pattern: str) -> str | None:
    """``pattern`` as a directory to read recursively, or None when it is a file or a glob.

    A local directory, or on an object store a prefix: a path that is not an object itself.
    """
    if any(c in pattern for c in "*?["):
        return None
    if FileSystems.get_scheme(pattern) is None:
        return pattern if os.path.isdir(pattern) else None
    return pattern if pattern.endswith("/") or not FileSystems.exists(pattern) else None


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
        self._progress = reporter()  # None unless a local run is watched (transforms/progress.py)

    def process(self, item: tuple[str, str]) -> Iterator[Unit]:
        kind, path = item
        if kind == _DIRECTORY:
            units = directory_units(path)
        else:
            f = open_input(path)
            units = _closing(listed(self._progress, list_units(path, f), f), f)
        for unit in units:
            self._files.inc(unit.locator is None)
            self._members.inc(unit.locator is not None)
            yield unit


def _closing(items: Iterator[Unit], f: BinaryIO) -> Iterator[Unit]:
    try:
        yield from items
    finally:
        f.close()


@dataclass
class ParsedFile:
    """One file of an input (the input itself, or a member): its records, or why it has none."""

    name: str
    fmt: str | None = None
    records: Iterable[Any] = ()  # Tweet | drop reason | DeadLetter, each input record once
    notes: Counter = field(default_factory=Counter)  # changes made to kept records, by name
    skipped: str = ""


@dataclass(frozen=True)
class ReadOptions:
    fmt: str | None = None  # force a format (default: detected per file)
    csv_text_column: str | None = None
    include_deleted: bool = False  # read an account archive's deleted tweets
    csv_delimiter: str | None = None  # default: sniffed per file


def parse_unit(unit: Unit, options: ReadOptions = ReadOptions(),
               open_file: Callable[[str], BinaryIO] = open_input) -> Iterator[ParsedFile]:
    """The pure core of the stage: the files of one unit, each with its records (consume in order);
    ``open_file`` opens the unit's input file (the stage's opener measures progress)."""
    for leaf in leaves(unit, open_file):
        if leaf.skip:
            yield ParsedFile(leaf.name, skipped=leaf.skip)
            continue
        if leaf.error is not None:
            reason, detail, offset = leaf.error
            yield ParsedFile(leaf.name, records=[DeadLetter(leaf.name, 0, reason, detail, None, offset, "")])
            continue
        stream = leaf.stream
        dataset = archive.ytd_dataset(leaf.decoded) if options.fmt is None else None
        skip = archive.skip_reason(dataset, options.include_deleted)
        if leaf.in_archive and dataset is None:
            skip = SKIP_NOT_A_DATASET
        if skip:
            yield ParsedFile(leaf.name, skipped=skip)
            continue
        notes: Counter = Counter()
        fmt, records = open_records(leaf.name, stream, options.fmt, csv_text_column=options.csv_text_column,
                                    notes=notes, keep_deleted=options.include_deleted,
                                    csv_delimiter=options.csv_delimiter)
        if dataset in archive.TWEET_DATASETS:
            folder = archive.load_folder(_siblings(unit, leaf), dataset)
            records = (folder.complete(r, notes) if type(r) is Tweet else r for r in records)
        elif dataset in archive.NOTE_DATASETS:
            records = _merge_notes(list(records), _siblings(unit, leaf))
        yield ParsedFile(leaf.name, fmt, records, notes)


def read_path(path: str, options: ReadOptions = ReadOptions()) -> Iterator[ParsedFile]:
    """Every file of one input path, in order, in this process (tests, tools; Beam spreads the units)."""
    with open_input(path) as f:
        units = list(list_units(path, f))
    for unit in units:
        yield from parse_unit(unit, options)


class _ParseUnitsFn(beam.DoFn):
    """Parses one unit into batches of tweets, drop counts, dead letters and file summaries.

    Batches that will cross a shuffle are encoded here, with the fast tweet coder, so the shuffle
    moves bytes; where nothing is shuffled they stay lists."""

    def __init__(self, options: ReadOptions, batch_size: int, encode: bool = True,
                 spill_dir: str | None = None):
        self._options = options
        self._batch_size = batch_size
        self._spill_dir = spill_dir
        if not encode:
            self._pack = list
        elif spill_dir is None:
            self._pack = _BATCH_CODER.encode
        else:  # the shuffle moves the path of a spill file, not the tweets (spill.py)
            self._pack = functools.partial(write_spill_file, spill_dir)

    def setup(self) -> None:
        relax_collector()
        if self._spill_dir is not None:
            os.makedirs(self._spill_dir, exist_ok=True)
        self._read = {f: Metrics.counter(METRICS_NAMESPACE, f"parse_records_read_{f}")
                      for f in SOURCE_FORMATS}
        self._skipped = Metrics.counter(METRICS_NAMESPACE, "parse_files_skipped")
        self._progress = reporter()

    def process(self, unit: Unit) -> Iterator[tuple[int, Any]]:
        meter = unit_meter(self._progress, unit, open_input)  # bytes and records, per batch
        for parsed in parse_unit(unit, self._options, meter.open):
            if parsed.skipped:
                self._skipped.inc()
                yield _KIND_FILE, summary(parsed.name, None, skipped=parsed.skipped)
            else:
                meter.file_started()
                yield from self._emit(parsed, meter)
        meter.finish()

    def _emit(self, parsed: ParsedFile, meter) -> Iterator[tuple[int, Any]]:
        batch: list[Tweet] = []
        drops: Counter = Counter()
        n = dead = tweets = 0
        for record in parsed.records:
            n += 1
            if type(record) is Tweet:
                tweets += 1
                batch.append(record)
                if len(batch) >= self._batch_size:
                    meter.update(n, tweets, n - tweets - dead, dead)
                    yield _KIND_TWEETS, self._pack(batch)
                    batch = []
            elif type(record) is str:
                drops[record] += 1
            else:
                dead += 1
                yield _KIND_DEAD, record
        meter.update(n, tweets, n - tweets - dead, dead)
        if batch:
            yield _KIND_TWEETS, self._pack(batch)
        if drops:
            yield _KIND_DROPS, drops
        yield _KIND_FILE, summary(parsed.name, parsed.fmt, n, tweets, drops, dead, notes=parsed.notes)
        if parsed.fmt is not None:
            self._read[parsed.fmt].inc(n)
        logger.info("parsed %s (%s): %d records, %d dropped, %d dead letters", parsed.name, parsed.fmt, n,
                    sum(drops.values()), dead)


def _merge_notes(records: list, siblings: list) -> Iterator[Any]:
    """A note-tweet file's records, with the notes that a tweet of the folder takes counted as merged."""
    notes = [r for r in records if type(r) is Tweet]
    taken = archive.merged_notes(notes, siblings) if notes else set()
    for r in records:
        yield DROP_NOTE_MERGED if type(r) is Tweet and r.id in taken else r


def _siblings(unit: Unit, leaf: Any) -> list[tuple[str, archive.Opener]]:
    """The account-archive files beside ``leaf``: in its container, or in its folder on disk."""
    if leaf.name != unit.name:  # inside a compressed or nested container: read alone
        return []
    if unit.siblings:
        return [(loc.member, lambda loc=loc: open_input(loc.member)) if loc.kind == FILE else
                (f"{unit.path}!{loc.member}", lambda loc=loc: open_member(open_input(unit.path), loc))
                for loc in unit.siblings]
    if unit.locator is not None:
        return []
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
            if type(payload) is list:
                yield payload
            elif type(payload) is str:
                yield from read_spill_file(payload)
            else:
                yield _BATCH_CODER.decode(payload)
        elif kind == _KIND_DROPS:
            yield from self._drops.emit(payload)
        elif kind == _KIND_FILE:
            yield beam.pvalue.TaggedOutput(TAG_FILES, payload)
        else:
            yield beam.pvalue.TaggedOutput(TAG_DEAD_LETTERS, payload)


_DIRECTORY, _FILE = "directory", "file"
_DISALLOW = fileio.EmptyMatchTreatment.DISALLOW


class _MatchInputs(beam.PTransform):
    """Patterns -> ``(kind, path)``: each file a glob matches, and each directory given (listed later)."""

    def __init__(self, patterns: list[str]):
        super().__init__()
        self._patterns = patterns
        self.directories = [p for p in patterns if directory_of(p) is not None]

    def expand(self, pbegin):
        directories = self.directories
        matched = [
            pbegin
            | f"MatchFiles[{i}]" >> fileio.MatchFiles(pattern, empty_match_treatment=_DISALLOW)
            | f"Paths[{i}]" >> beam.Map(lambda m: (_FILE, m.path)).with_output_types(tuple[str, str])
            for i, pattern in enumerate(self._patterns)
            if pattern not in directories
        ]
        if directories:
            matched.append(pbegin | "Directories" >> beam.Create([(_DIRECTORY, d) for d in directories]))
        return (
            tuple(matched)
            | "FlattenMatches" >> beam.Flatten()
            | "NotFolders" >> beam.Filter(lambda item: not item[1].endswith("/") or item[0] == _DIRECTORY)
        )


class ReadArchives(beam.PTransform):
    """Files matching ``patterns`` -> batches of ``Tweet`` (main), drop counts, dead letters.

    Apply to a pipeline: ``p | ReadArchives([...])``. Returns the ``DoOutputsTuple`` of the final
    ParDo: main ``'tweets'`` = lists of up to ``batch_size`` tweets; ``TAG_DROPPED`` =
    ``(("parse", reason), n)``; ``TAG_DEAD_LETTERS`` = ``DeadLetter``; ``TAG_FILES`` = one summary dict
    per file parsed or skipped (format, records, tweets, dropped by reason, errors, skipped, notes). A
    pattern that matches no file fails the pipeline (the CLI checks the inputs before it starts).

    ``spread``: reshuffle files, container members and parsed batches so every worker takes part; on
    one local worker these shuffles only copy the data, and ``spread=False`` leaves them out.
    ``spill_dir`` (local runs): the parsed batches cross their reshuffle as spill files (``spill.py``).
    """

    name = "parse"
    kind = "source"
    # Records that are not tweets, or tweets the archive says not to keep (schemas/records.py).
    reasons = (DROP_DELETE_NOTICE, DROP_STREAM_NOTICE, DROP_COMPLIANCE_EVENT, DROP_API_ERROR, DROP_NO_TEXT,
               DROP_DELETED_BY_AUTHOR, DROP_NOTE_MERGED)
    description = "reads every input record: tweets, notices, dead letters"

    def __init__(self, patterns: list[str], fmt: str | None = None, csv_text_column: str | None = None,
                 batch_size: int = 1000, include_deleted: bool = False, csv_delimiter: str | None = None,
                 spread: bool = True, spill_dir: str | None = None):
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
        options = ReadOptions(fmt, csv_text_column, include_deleted, csv_delimiter)
        self._parse = _ParseUnitsFn(options, batch_size, encode=spread, spill_dir=spill_dir)
        self._spread = spread

    def expand(self, pbegin: beam.pvalue.PBegin):  # -> DoOutputsTuple (Beam warns on that hint)
        def spread(pcoll, label: str):
            return pcoll | label >> beam.Reshuffle() if self._spread else pcoll

        match = _MatchInputs(self._patterns)
        files = pbegin | "MatchInputs" >> match
        # Matching yields all files in one bundle: spread them so containers list on many workers
        # (a directory is listed whole by one worker, so directories alone have nothing to spread).
        if len(match.directories) < len(self._patterns):
            files = spread(files, "ReshuffleFiles")
        units = files | "ListUnits" >> beam.ParDo(_ListUnitsFn()).with_output_types(Unit)
        # A big container lists on one worker: spread its members so every worker parses.
        units = spread(units, "ReshuffleUnits")
        parsed = units | "ParseUnits" >> beam.ParDo(self._parse)
        # One file parses on one worker: spread its batches so downstream stages run wide.
        parsed = spread(parsed, "ReshuffleParsed")
        return (
            parsed
            | "RouteOutputs"
            >> beam.ParDo(_RouteFn())
            .with_output_types(list[Tweet])
            .with_outputs(TAG_DROPPED, TAG_DEAD_LETTERS, TAG_FILES, main="tweets")
        )

"""Tweet batches parked in files while the local runner waits, so its memory does not grow with the
corpus (issue #15, ``docs/memory.md``).

Beam's embedded FnApiRunner keeps in memory every PCollection that crosses one of its stage
boundaries, whole: a step that waits for a side input (the ids dedup removes, the author-cap
thresholds, the shard count) cannot start before that side input is complete, so all of its input
waits in a buffer first. On the local runner those batches are written to spill files as they are
produced, and only the files' paths wait; the step after the wait reads them back one batch at a
time and deletes each file once read. A remote runner's shuffle and side-input waits keep their
data off the heap already: there (``directory=None``) the helpers below add no step to the graph.

The same holds for the shuffles of keys and texts whose size grows with the corpus (exact dedup's
keys, and every shuffle of near dedup: band keys, texts, candidates): ``GroupByKeyInFiles`` and
``CoGroupByKeyInFiles`` write each bundle's values to a file per key and group only the paths.

A spill file is a sequence of frames: an 8-byte little-endian length, then one pickle (of a batch's
``pack_tweets`` field tuples, or of a grouped value).
"""

from __future__ import annotations

import os
import pickle
import uuid
from collections import defaultdict
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

import apache_beam as beam
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.dedup_batches import TweetBatch, windowed
from tweetmill.transforms.near_dedup_encoding import pack_tweets, unpack_tweets
from tweetmill.transforms.write import errors_named

__all__ = [
    "CoGroupByKeyInFiles",
    "GroupByKeyInFiles",
    "ReadSpilled",
    "SpillBatches",
    "co_group_by_key",
    "group_by_key",
    "parked",
    "read_frames",
    "read_spill_file",
    "write_frame",
    "write_spill_file",
]

# Tweets per spill file: a few MB, and enough files for the runner to share among its workers.
SPILL_FILE_TWEETS = 16_384
_LENGTH_BYTES = 8


def _write_blob(f: BinaryIO, blob: bytes) -> None:
    f.write(len(blob).to_bytes(_LENGTH_BYTES, "little"))
    f.write(blob)


def _blobs(f: BinaryIO, name: str) -> Iterator[bytes]:
    """The frames of a file, one at a time. A frame cut short (a disk that filled up under a
    crashed writer) raises instead of passing as the end of the file."""
    while header := f.read(_LENGTH_BYTES):
        size = int.from_bytes(header, "little")
        blob = f.read(size)
        if len(header) != _LENGTH_BYTES or len(blob) != size:
            raise OSError(f"{name}: spilled data cut short ({len(blob)} of {size} bytes)")
        yield blob


def _new_path(directory: str, suffix: str = ".spill") -> str:
    return os.path.join(directory, f"{uuid.uuid4().hex}{suffix}")


def write_frame(f: BinaryIO, tweets: list[Tweet]) -> None:
    _write_blob(f, pack_tweets(tweets))


def read_frames(f: BinaryIO, name: str) -> Iterator[list[Tweet]]:
    """The batches of a file of frames, one at a time."""
    return map(unpack_tweets, _blobs(f, name))


class _SpillFn(beam.DoFn):
    """Batches → paths of the spill files that hold them, a file per ``SPILL_FILE_TWEETS`` tweets."""

    def __init__(self, directory: str):
        self._directory = directory

    def setup(self) -> None:
        os.makedirs(self._directory, exist_ok=True)

    def start_bundle(self) -> None:
        self._file: BinaryIO | None = None
        self._path, self._tweets = "", 0

    def process(self, batch: list[Tweet]) -> Iterator[str]:
        if not batch:
            return
        if self._file is None:
            self._path = _new_path(self._directory)
            self._file = open(self._path, "wb")  # noqa: SIM115 (closed by _close, across calls)
        with errors_named(self._path):
            write_frame(self._file, batch)
        self._tweets += len(batch)
        if self._tweets >= SPILL_FILE_TWEETS:
            yield self._close()

    def finish_bundle(self) -> Iterator:
        if self._file is not None:
            yield windowed(self._close())

    def _close(self) -> str:
        assert self._file is not None
        with errors_named(self._path):
            self._file.close()
        self._file, self._tweets = None, 0
        return self._path


class _ReadSpilledFn(beam.DoFn):
    """A spill file's path → its batches; the file is deleted once read whole (the local runner
    does not retry a bundle: it fails the run). Extra side inputs are never read."""

    def process(self, path: str, *after) -> Iterator[list[Tweet]]:
        yield from read_spill_file(path)


def read_spill_file(path: str) -> Iterator[list[Tweet]]:
    """The batches of a spill file, one at a time; the file is deleted once read whole."""
    with open(path, "rb") as f:
        yield from read_frames(f, path)
    os.remove(path)


def write_spill_file(directory: str, batch: list[Tweet]) -> str:
    """A new spill file in ``directory`` (which exists) holding ``batch``; its path."""
    path = _new_path(directory)
    with errors_named(path), open(path, "wb") as f:
        write_frame(f, batch)
    return path


class SpillBatches(beam.PTransform):
    """Batches of tweets → paths of local spill files that hold them."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, batches):
        if not batches.windowing.is_default():
            raise ValueError("SpillBatches runs on globally windowed (batch) input")
        return batches | "Spill" >> beam.ParDo(_SpillFn(self._directory)).with_output_types(str)


class ReadSpilled(beam.PTransform):
    """``SpillBatches``' output → the batches again, each spill file read once and then deleted.

    ``after``: a PCollection the next step reads as a side input. Reading it here too (it is never
    iterated) makes the runner start this step only once ``after`` is complete, in the stage of the
    step that waits for it, so that what waits is the paths, not the batches."""

    def __init__(self, after: beam.PCollection | None = None):
        super().__init__()
        self._after = after

    def expand(self, paths):
        sides = () if self._after is None else (beam.pvalue.AsIter(self._after),)
        return paths | "ReadSpilled" >> beam.ParDo(_ReadSpilledFn(), *sides).with_output_types(TweetBatch)


def parked(batches, label: str, directory: str | None, after: beam.PCollection | None):
    """The batches, parked in spill files until ``after`` is complete (where ``directory`` is set).
    ``batches`` may be a tuple of PCollections: each is spilled where it is made, and they come out
    as one."""
    if directory is None:
        return _flat(batches, f"{label}All")
    parts = _parts_of(batches)
    paths = tuple(part | f"{label}Spill{i or ''}" >> SpillBatches(directory) for i, part in enumerate(parts))
    return _flat(paths, f"{label}All") | f"{label}Read" >> ReadSpilled(after)


# --- GroupByKey and CoGroupByKey through files -----------------------------------------------------

# A bundle's values buffered before they are appended to their keys' files.
_KEY_FLUSH_BYTES = 32 << 20


class _SpillByKeyFn(beam.DoFn):
    """``(key, value)`` → ``(key, (tag, path))``: the bundle's values of each key pickled into one
    spill file of that key (``tag`` names the input of a co-group)."""

    def __init__(self, directory: str, tag: str = ""):
        self._directory, self._tag = directory, tag

    def setup(self) -> None:
        os.makedirs(self._directory, exist_ok=True)

    def start_bundle(self) -> None:
        self._values: dict[Any, list[bytes]] = defaultdict(list)
        self._paths: dict[Any, str] = {}
        self._buffered = 0

    def process(self, element: tuple[Any, Any]):
        key, value = element
        blob = pickle.dumps(value, protocol=pickle.HIGHEST_PROTOCOL)
        self._values[key].append(blob)
        self._buffered += len(blob)
        if self._buffered >= _KEY_FLUSH_BYTES:
            self._flush()

    def finish_bundle(self) -> Iterator:
        self._flush()
        for key, path in self._paths.items():
            yield windowed((key, (self._tag, path)))

    def _flush(self) -> None:
        values, self._values, self._buffered = self._values, defaultdict(list), 0
        for key, blobs in values.items():
            path = self._paths.get(key)
            if path is None:
                path = self._paths[key] = _new_path(self._directory, ".group")
            with errors_named(path), open(path, "ab") as f:
                for blob in blobs:
                    _write_blob(f, blob)


def _read_group(element: tuple[Any, Iterable[tuple[str, str]]], tags: tuple[str, ...]) -> tuple[Any, Any]:
    """``(key, [(tag, path)])`` → ``(key, values)`` (``tags`` empty) or ``(key, {tag: values})``,
    each file read whole and deleted."""
    key, files = element
    grouped: dict[str, list] = {tag: [] for tag in tags or ("",)}
    for tag, path in sorted(files):
        with open(path, "rb") as f:
            grouped[tag].extend(pickle.loads(blob) for blob in _blobs(f, path))
        os.remove(path)
    return key, grouped if tags else grouped[""]


class GroupByKeyInFiles(beam.PTransform):
    """``GroupByKey`` for a few keys with large values, on the local runner: the values go to
    spill files per key and bundle, and only ``(key, path)`` pairs are grouped; each group is read
    back whole (so a key's values must fit in memory: the shuffles that use it route to partitions).
    The input may be a tuple of PCollections: each is spilled where it is made (a ``Flatten``
    before would hold its values in the runner's memory)."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, pairs):
        return (
            _flat(_spilled_by_key(pairs, "", self._directory, "SpillByKey"), "FlattenPaths")
            | "GroupPaths" >> beam.GroupByKey()
            | "ReadGroup" >> beam.Map(_read_group, tags=())
        )


class CoGroupByKeyInFiles(beam.PTransform):
    """``CoGroupByKey`` of a dict of ``(key, value)`` PCollections (or tuples of them), through
    files like ``GroupByKeyInFiles``: ``(key, {tag: [values]})``, every tag present."""

    def __init__(self, directory: str):
        super().__init__()
        self._directory = directory

    def expand(self, inputs):  # a dict of PCollections (no hint: Beam warns on it)
        spilled_paths = tuple(
            path
            for tag, pcolls in inputs.items()
            for path in _spilled_by_key(pcolls, tag, self._directory, f"SpillByKey[{tag}]")
        )
        return (
            spilled_paths
            | "FlattenPaths" >> beam.Flatten()
            | "GroupPaths" >> beam.GroupByKey()
            | "ReadGroups" >> beam.Map(_read_group, tags=tuple(inputs))
        )


def _parts_of(pcolls) -> tuple:
    """A PCollection, or a tuple of them, as a tuple."""
    return pcolls if isinstance(pcolls, tuple) else (pcolls,)


def _spilled_by_key(pairs, tag: str, directory: str, label: str) -> tuple:
    """``(key, (tag, path))`` of each part of ``pairs``, spilled where it is made."""
    return tuple(
        part | f"{label}{i or ''}" >> beam.ParDo(_SpillByKeyFn(directory, tag))
        for i, part in enumerate(_parts_of(pairs))
    )


def _flat(pcolls, label: str):
    """A PCollection, or a tuple of them flattened into one (``label``)."""
    parts = _parts_of(pcolls)
    return parts[0] if len(parts) == 1 else parts | label >> beam.Flatten()


def group_by_key(pairs, label: str, directory: str | None):
    """``pairs | label >> GroupByKeyInFiles(directory)``, or Beam's ``GroupByKey`` where
    ``directory`` is None. ``pairs``: a PCollection or a tuple of them."""
    if directory is None:
        return _flat(pairs, f"{label}Inputs") | label >> beam.GroupByKey()
    return pairs | label >> GroupByKeyInFiles(directory)


def co_group_by_key(inputs: dict, label: str, directory: str | None):
    """``inputs | label >> CoGroupByKeyInFiles(directory)``, or Beam's ``CoGroupByKey`` where
    ``directory`` is None. ``inputs``: tag → a PCollection or a tuple of them."""
    if directory is None:
        flat = {tag: _flat(pcolls, f"{label}Inputs[{tag}]") for tag, pcolls in inputs.items()}
        return flat | label >> beam.CoGroupByKey()
    return inputs | label >> CoGroupByKeyInFiles(directory)

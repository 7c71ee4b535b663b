"""Tweet batches parked in files while the local runner waits, so its memory does not grow with the
corpus (issue #15, ``docs/memory.md``).

Beam's embedded FnApiRunner keeps in memory every PCollection that crosses one of its stage
boundaries, whole: a step that waits for a side input (the ids dedup removes, the author-cap
thresholds, the shard count) cannot start before that side input is complete, so all of its input
waits in a buffer first. On the local runner those batches are written to spill files as they are
produced, and only the files' paths wait; the step after the wait reads them back one batch at a
time and deletes each file once read. A remote runner's shuffle and side-input waits keep their
data off the heap already: there (``directory=None``) the helpers below add no step to the graph.

A spill file is a sequence of frames: an 8-byte little-endian length, then one ``pack_tweets``
pickle of a batch. The same frames hold the sorted parts of a shard (``shard_parts.py``).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import BinaryIO

import apache_beam as beam
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.dedup_batches import TweetBatch, windowed
from tweetmill.transforms.near_dedup_encoding import pack_tweets, unpack_tweets
from tweetmill.transforms.write import errors_named

__all__ = ["ReadSpilled", "SpillBatches", "parked", "read_frames", "read_spilled", "spilled", "write_frame"]

# Tweets per spill file: a few MB, and enough files for the runner to share among its workers.
SPILL_FILE_TWEETS = 16_384
_LENGTH_BYTES = 8


def write_frame(f: BinaryIO, tweets: list[Tweet]) -> None:
    blob = pack_tweets(tweets)
    f.write(len(blob).to_bytes(_LENGTH_BYTES, "little"))
    f.write(blob)


def read_frames(f: BinaryIO, name: str) -> Iterator[list[Tweet]]:
    """The batches of a file of frames, one at a time. A frame cut short (a disk that filled up
    under a crashed writer) raises instead of passing as the end of the file."""
    while header := f.read(_LENGTH_BYTES):
        size = int.from_bytes(header, "little")
        blob = f.read(size)
        if len(header) != _LENGTH_BYTES or len(blob) != size:
            raise OSError(f"{name}: spilled data cut short ({len(blob)} of {size} bytes)")
        yield unpack_tweets(blob)


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
            self._path = os.path.join(self._directory, f"{uuid.uuid4().hex}.spill")
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
        with open(path, "rb") as f:
            yield from read_frames(f, path)
        os.remove(path)


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


def spilled(batches, label: str, directory: str | None):
    """``batches | label >> SpillBatches(directory)``, or ``batches`` where ``directory`` is None."""
    return batches if directory is None else batches | label >> SpillBatches(directory)


def read_spilled(paths, label: str, directory: str | None, after: beam.PCollection | None = None):
    """``paths | label >> ReadSpilled(after)``, or ``paths`` (the batches) where ``directory`` is None."""
    return paths if directory is None else paths | label >> ReadSpilled(after)


def parked(batches, label: str, directory: str | None, after: beam.PCollection):
    """The batches, parked in spill files until ``after`` is complete (where ``directory`` is set)."""
    if directory is None:
        return batches
    return batches | f"{label}Spill" >> SpillBatches(directory) | f"{label}Read" >> ReadSpilled(after)

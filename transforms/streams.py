"""Byte streams of the parse stage: decompression, truncation, chunks and lines.

Every reader (JSON, archive, text, CSV) sees its file through this layer, so it is one module that
knows nothing of JSON, CSV or tweets. The input is decompressed by magic bytes (a file name can lie)
and read in ``CHUNK_BYTES`` chunks; a compressed stream that breaks ends cleanly with the reason kept
(``SafeStream.error``), so the records before the break are kept and the break is one dead letter.
Lines are split on ``b"\\n"`` only, with memory bounded by ``MAX_RECORD_BYTES`` per line.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from typing import Any, BinaryIO

from tweetmill.schemas.records import DeadLetter
from tweetmill.transforms.containers import COMPRESSIONS, STREAM_ERRORS, Replay, open_decompressor, sniff

# Dead-letter reasons of this layer.
REASON_RECORD_TOO_LARGE = "record_too_large"
REASON_TRUNCATED_STREAM = "truncated_stream"
REASON_CORRUPT_STREAM = "corrupt_stream"

CHUNK_BYTES = 1 << 20  # read size from the (decompressed) stream
# Longest line / JSON value held in memory; longer -> dead letter. The JSON reader reads it from this
# module at call time (``streams.MAX_RECORD_BYTES``), so one setting bounds both.
MAX_RECORD_BYTES = 64 << 20

UTF8_BOM = b"\xef\xbb\xbf"


class SafeStream:
    """Decompressed input that ends cleanly where the compressed stream breaks, remembering why.

    A truncated gzip/bz2 raises on read; the records before the break are worth keeping, so the break
    becomes EOF here and ``error`` tells ``iter_records`` to emit one dead letter for it.
    """

    def __init__(self, stream: Any, compression: str | None):
        self._stream = stream
        self.compression = compression
        self.offset = 0  # decompressed bytes delivered
        self.error: tuple[str, str] | None = None
        self.partial = b""  # the unfinished line at the break

    def read(self, size: int) -> bytes:
        if self.error is not None:
            return b""
        try:
            # read1: one decompressor step. A buffered read(size) would lose the data it had already
            # decompressed in this call when the stream breaks.
            data = self._stream.read1(size)
        except EOFError as e:
            kind = self.compression or "compressed"
            self.error = (REASON_TRUNCATED_STREAM, f"{kind} stream ended early: {e}")
            return b""
        except STREAM_ERRORS as e:
            self.error = (REASON_CORRUPT_STREAM, f"{self.compression or 'compressed'} stream is corrupt: {e}")
            return b""
        self.offset += len(data)
        return data


def open_decompressed(fileobj: BinaryIO) -> SafeStream:
    """Wrap ``fileobj`` in a decompressor chosen by magic bytes (not by the file name, which can lie)."""
    try:
        magic = fileobj.read(6) or b""
    except STREAM_ERRORS as e:  # a stream already known broken (containers.expand decoded its head)
        broken = SafeStream(io.BytesIO(b""), None)
        broken.error = (REASON_TRUNCATED_STREAM if isinstance(e, EOFError) else REASON_CORRUPT_STREAM,
                        f"compressed stream breaks before any record: {e}")
        return broken
    raw = Replay(magic, fileobj)
    kind = sniff(magic)
    if kind in COMPRESSIONS:
        return SafeStream(open_decompressor(kind, raw), kind)
    return SafeStream(raw, None)


class TooLong:
    """Stands for a line longer than ``MAX_RECORD_BYTES``: its first bytes, for the dead letter."""

    __slots__ = ("head", "length")

    def __init__(self, head: bytes, length: int):
        self.head = head
        self.length = length


# A line: (bytes without the b"\n" | TooLong, byte offset of its start, 1-based line number).
Line = tuple[Any, int, int]


def iter_lines(chunks: Iterable[bytes], stream: SafeStream | None = None) -> Iterator[Line]:
    """Split a byte stream on ``b"\\n"`` only (never on U+2028/U+0085, which may sit inside tweets).

    Memory stays bounded: a line longer than ``MAX_RECORD_BYTES`` is yielded as ``TooLong`` and
    skipped. When ``stream`` broke (truncated archive), its unfinished last line is kept back in
    ``stream.partial``: it is part of the one ``truncated_stream`` dead letter, not a record of its own.
    """
    limit = MAX_RECORD_BYTES
    carry: list[bytes] = []  # pieces of the line in progress, joined once its end is seen
    carry_len = 0
    offset = 0
    lineno = 1
    skipping: TooLong | None = None  # the over-long line being skipped
    first = True
    for chunk in chunks:
        if first:
            first = False
            if chunk.startswith(UTF8_BOM):
                chunk = chunk[3:]
                offset = 3
        start = 0
        if skipping is not None:
            nl = chunk.find(b"\n")
            if nl < 0:
                skipping.length += len(chunk)
                continue
            skipping.length += nl
            yield skipping, offset, lineno
            offset += skipping.length + 1
            lineno += 1
            skipping = None
            start = nl + 1
        if chunk.find(b"\n", start) < 0:
            carry.append(chunk[start:])
            carry_len += len(chunk) - start
            if carry_len > limit:
                skipping = TooLong(b"".join(carry)[: DeadLetter.MAX_RAW_CHARS], carry_len)
                carry, carry_len = [], 0
            continue
        parts = chunk[start:].split(b"\n")
        if carry:
            parts[0] = b"".join(carry) + parts[0]
        last = parts.pop()
        carry, carry_len = ([last], len(last)) if last else ([], 0)
        for line in parts:
            yield line, offset, lineno
            offset += len(line) + 1
            lineno += 1
    rest = b"".join(carry)
    if stream is not None and stream.error is not None:
        stream.partial = skipping.head if skipping is not None else rest
    elif skipping is not None:
        yield skipping, offset, lineno
    elif rest:
        yield rest, offset, lineno


def read_chunks(stream: SafeStream, first: bytes = b"") -> Iterator[bytes]:
    """``first`` (the head already read from ``stream``), then the rest in ``CHUNK_BYTES`` reads."""
    if first:
        yield first
    while True:
        data = stream.read(CHUNK_BYTES)
        if not data:
            return
        yield data


def without_bom(chunks: Iterator[bytes]) -> Iterator[bytes]:
    """The chunks with a leading UTF-8 byte-order mark removed (the first non-empty chunk's)."""
    for chunk in chunks:
        if chunk:
            yield chunk[3:] if chunk.startswith(UTF8_BOM) else chunk
            break
    yield from chunks

"""Parse stage: every tweet archive format users have -> canonical ``Tweet`` records.

Each input record ends in exactly one of: a ``Tweet``, a drop reason (a ``DROP_*`` string), or a
``DeadLetter``. Nothing is skipped silently, so the manifest's ``read = kept + dropped + errors``
accounting holds from the first stage on.

Formats are auto-detected per file (content first, extension second) and can be forced with ``fmt``:

* Twitter API v1.1 (``v1``): arrays, single objects, ``{"statuses": [...]}`` search envelopes,
  streaming JSON lines with stream notices, concatenated / back-to-back / pretty-printed values.
* Twitter API v2 (``v2``): responses (``data``/``includes``/``errors``), filtered-stream lines, twarc2
  "flattened" lines, compliance events.
* Account archives (``archive``): ``window.YTD.<name>.partN = [...]``; legacy ``grailbird``.
* CSV exports (``csv``) and plain text, one tweet per line (``text``).

Readers are incremental (bounded memory per record, never the whole file), decompress ``.gz``/``.bz2``
/``.xz`` by magic bytes, and turn a truncated stream into one ``truncated_stream`` dead letter after
the records read before the break.
"""

from __future__ import annotations

import calendar
import codecs
import csv
import io
import itertools
import json
import logging
import re
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator
from datetime import datetime, timedelta, timezone
from typing import Any, BinaryIO

from tweetmill.schemas.records import (
    DROP_API_ERROR,
    DROP_COMPLIANCE_EVENT,
    DROP_DELETE_NOTICE,
    DROP_DELETED_BY_AUTHOR,
    DROP_NO_TEXT,
    DROP_STREAM_NOTICE,
    FORMAT_ARCHIVE,
    FORMAT_CSV,
    FORMAT_GRAILBIRD,
    FORMAT_TEXT,
    FORMAT_V1,
    FORMAT_V2,
    SOURCE_FORMATS,
    DeadLetter,
    Tweet,
    derived_tweet_id,
    source_file_name,
)
from tweetmill.transforms.containers import (
    COMPRESSIONS,
    STREAM_ERRORS,
    Replay,
    decompress_head,
    open_decompressor,
    sniff,
)

try:  # orjson decodes v1 JSON lines ~2x faster than the stdlib (measured); the stdlib is the fallback.
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only where orjson is not installed
    _loads = json.loads

logger = logging.getLogger(__name__)

Record = Tweet | DeadLetter | str

# Dead-letter reasons of this stage.
REASON_INVALID_JSON = "invalid_json"
REASON_UNEXPECTED_EOF = "unexpected_end_of_input"  # the input ends inside a JSON value
REASON_RECORD_TOO_LARGE = "record_too_large"
REASON_UNRECOGNISED = "unrecognised_record"
REASON_TRUNCATED_STREAM = "truncated_stream"
REASON_CORRUPT_STREAM = "corrupt_stream"
REASON_MALFORMED_ROW = "malformed_csv_row"
REASON_NO_TEXT_COLUMN = "no_text_column"
REASON_UNSUPPORTED_ARCHIVE = "unsupported_archive_file"

CHUNK_BYTES = 1 << 20  # read size from the (decompressed) stream
MAX_RECORD_BYTES = 64 << 20  # longest line / JSON value we hold in memory; longer -> dead letter
HEAD_BYTES = 64 << 10  # how much of a file format detection looks at
_WINDOW_TRIM = 1 << 20  # the multi-line JSON decoder drops decoded text once it is this far in
_STREAM_ARRAY_BYTES = 4 << 20  # a one-line JSON array longer than this is decoded element by element
_LEGACY_LOOKAHEAD_BYTES = 8 << 20  # lines examined to choose a non-UTF-8 file's legacy encoding

_UTF8_BOM = b"\xef\xbb\xbf"
_INT63 = (1 << 63) - 1

_JSON_DECODER = json.JSONDecoder()
_JSON_ERRORS = (ValueError, RecursionError)  # orjson / json decode errors and deep nesting


# ---------------------------------------------------------------------------------------------------
# Small field parsers
# ---------------------------------------------------------------------------------------------------

_MONTHS = {m: i for i, m in enumerate(("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct",
                                       "Nov", "Dec"), start=1)}
# v1 / archives: "Wed Aug 27 13:08:45 +0000 2008"
_V1_DATE = re.compile(r"[A-Za-z]{3} ([A-Za-z]{3}) +(\d{1,2}) (\d\d):(\d\d):(\d\d) ([+-]\d{4}) (\d{4})")
# ISO 8601 / v2 / Grailbird / CSV: "2022-01-01T00:00:00.000Z", "2013-04-13 16:42:51 +0000",
# "2017-08-27 00:05:34"
_ISO_DATE = re.compile(
    r"(\d{4})-(\d\d)-(\d\d)[T ](\d\d):(\d\d)(?::(\d\d)(?:[.,](\d{1,9}))?)?\s*(Z|[+-]\d\d:?\d\d)?",
    re.IGNORECASE,
)
# US spreadsheet style: "10/16/17 22:59", "8/16/2016 19:22:57"
_US_DATE = re.compile(r"(\d{1,2})/(\d{1,2})/(\d{4}|\d\d)[ T](\d{1,2}):(\d\d)(?::(\d\d))?")


def _offset_seconds(tz: str | None) -> int:
    if not tz or tz in ("Z", "z"):
        return 0
    sign = -1 if tz[0] == "-" else 1
    digits = tz[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:4]) * 60)


def _epoch_ms(year: int, month: int, day: int, hour: int, minute: int, second: int, frac_ms: int = 0,
              tz_seconds: int = 0) -> int | None:
    # datetime validates the fields (Feb 30 -> None) that timegm would silently roll over.
    try:
        datetime(year, month, day, hour, minute, second)
    except ValueError:
        return None
    return (calendar.timegm((year, month, day, hour, minute, second)) - tz_seconds) * 1000 + frac_ms


_EPOCH = datetime(1970, 1, 1, tzinfo=timezone.utc)
_ONE_MS = timedelta(milliseconds=1)
_MONTH_DIGITS = {m: f"{i:02d}" for m, i in _MONTHS.items()}


def _datetime_ms(dt: datetime) -> int:
    if dt.tzinfo is None:  # naive times are UTC
        dt = dt.replace(tzinfo=timezone.utc)
    return (dt - _EPOCH) // _ONE_MS  # exact: no float on the way


def _v1_fixed_width(s: str) -> int | None:
    """ "Wed Aug 27 13:08:45 +0000 2008", rearranged for the C ``fromisoformat`` (2.5x the regex's speed)."""
    month = _MONTH_DIGITS.get(s[4:7])
    if month is None or s[20] not in "+-":
        return None
    try:
        iso = f"{s[26:30]}-{month}-{s[8:10]}T{s[11:19]}{s[20:23]}:{s[23:25]}"
        return _datetime_ms(datetime.fromisoformat(iso))
    except ValueError:
        return None


def parse_created_at(value: Any) -> int | None:
    """``created_at`` in any format of the supported sources -> UTC ms since the epoch, else None.

    Naive times are UTC. An unparseable date is not an error: the tweet is still worth keeping.
    """
    if not isinstance(value, str):
        return None
    s = value.strip()
    if not s:
        return None
    if s[0].isdigit():
        try:
            return _datetime_ms(datetime.fromisoformat(s))
        except ValueError:
            pass
        m = _ISO_DATE.fullmatch(s)
        if m:
            y, mo, d, h, mi, sec, frac, tz = m.groups()
            frac_ms = int((frac + "00")[:3]) if frac else 0
            return _epoch_ms(int(y), int(mo), int(d), int(h), int(mi), int(sec or 0), frac_ms,
                             _offset_seconds(tz))
        m = _US_DATE.fullmatch(s)
        if m:
            mo, d, y, h, mi, sec = m.groups()
            year = int(y)
            if len(y) == 2:  # POSIX pivot: 69-99 -> 19xx, 00-68 -> 20xx
                year += 1900 if year >= 69 else 2000
            return _epoch_ms(year, int(mo), int(d), int(h), int(mi), int(sec or 0))
        if s.isdigit() and len(s) in (10, 13):  # epoch seconds / milliseconds (v1 timestamp_ms)
            return int(s) * 1000 if len(s) == 10 else int(s)
        return None
    if len(s) == 30:  # the fixed-width v1 form, parsed without a regex: it is on every v1 tweet
        ms = _v1_fixed_width(s)
        if ms is not None:
            return ms
    m = _V1_DATE.fullmatch(s)
    if m:
        mon, d, h, mi, sec, tz, y = m.groups()
        month = _MONTHS.get(mon.title())
        if month is None:
            return None
        return _epoch_ms(int(y), month, int(d), int(h), int(mi), int(sec), 0, _offset_seconds(tz))
    return None


def _parse_id(value: Any) -> int | None:
    """A tweet / user id from an int or a decimal string; floats are refused (ids exceed 2**53)."""
    if type(value) is int:
        return value if 0 < value <= _INT63 else None
    if isinstance(value, str) and value.isascii() and value.isdigit():
        n = int(value)
        return n if 0 < n <= _INT63 else None
    return None


def _has_value(*values: Any) -> bool:
    """Whether a record holds any of these fields with a value (an empty string or null is no value)."""
    return any(v is not None and not (isinstance(v, str) and not v.strip()) for v in values)


def _truthy(value: Any) -> bool:
    """JSON booleans, archive strings ("true") and CSV spellings (Python-style "True", "1")."""
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes", "t", "y")
    return bool(value)


_SURROGATES = re.compile("[\ud800-\udfff]")
_ESCAPED_BYTES = re.compile("[\udc80-\udcff]")  # invalid UTF-8 bytes, as "surrogateescape" decodes them


def _no_surrogates(s: str) -> str:
    """Lone surrogates -> U+FFFD: they cannot be written as UTF-8 downstream.

    They come from invalid UTF-8 bytes (escaped while decoding a JSON window) and from JSON escapes
    of half an emoji (``"\\ud83d"``, where Twitter cut a text in the middle of a surrogate pair).
    """
    if s.isascii() or _SURROGATES.search(s) is None:
        return s
    return _SURROGATES.sub("\ufffd", s)


def _safe_raw(s: str) -> str:
    return _no_surrogates(s[: DeadLetter.MAX_RAW_CHARS])


# ---------------------------------------------------------------------------------------------------
# Tweet text rules
# ---------------------------------------------------------------------------------------------------

# A hidden reply prefix holds only @mentions; a hidden suffix only the attachment / quote URL(s).
_MENTION_PREFIX = re.compile(r"(?:\s*[@＠]\w{1,50})+\s*")
_URL_SUFFIX = re.compile(r"(?:\s+https?://\S+)*\s*")
_HTML_ENTITY = re.compile(r"&(?:amp|lt|gt|quot|apos|#\d{1,7}|#[xX][0-9a-fA-F]{1,6});")
# A manual retweet: "RT @user: text" and the 2009 convention "RT @user text".
_MANUAL_RT = re.compile(r"\s*RT @(\w{1,50})(?::|\s)")
# Twitter's replacement for the text of an unavailable account's tweets (withheld / media policy).
_UNAVAILABLE_NOTICE = re.compile(
    r"@\w{1,50}['’]s account (?:has been withheld in .{1,200} in response to a legal demand"
    r"|is temporarily unavailable because it violates the Twitter .{1,80}?)\. Learn more\.",
    re.DOTALL,
)


def _escaped_index(text: str, unescaped_index: int) -> int:
    """Map an index counted in the HTML-unescaped text to the same place in ``text`` (escaped)."""
    shift = 0
    for m in _HTML_ENTITY.finditer(text):
        if m.start() - shift >= unescaped_index:
            break
        shift += len(m.group()) - 1
    return unescaped_index + shift


def apply_display_text_range(text: str, display_range: Any) -> str:
    """The visible part of a tweet: hidden leading reply @mentions and trailing attachment URL cut off.

    Twitter's indices count code points of the text *as sent*, i.e. HTML-escaped (measured on every
    v1/archive file in shared/data: all ranges land on the escaped text). Some re-serialisations unescape
    the text but keep the indices, so an end that does not fit the escaped text is tried as an index into
    the unescaped text. A cut is only made where what it removes is what Twitter hides (mentions, URLs):
    a range that does not fit either reading (e.g. compat-mode truncated text) leaves the text whole.
    """
    if not display_range or not isinstance(display_range, (list, tuple)) or len(display_range) != 2:
        return text
    try:
        start, end = int(display_range[0]), int(display_range[1])
    except (TypeError, ValueError):
        return text
    n = len(text)
    if start <= 0 and end >= n:
        return text
    cut_start = start if 0 < start <= n and _MENTION_PREFIX.fullmatch(text, 0, start) else 0
    cut_end = n
    if cut_start <= end < n:
        if _URL_SUFFIX.fullmatch(text, end):
            cut_end = end
        elif "&" in text:
            alt = _escaped_index(text, end)
            if cut_start <= alt < n and _URL_SUFFIX.fullmatch(text, alt):
                cut_end = alt
    return text[cut_start:cut_end]


def _v1_visible_text(obj: dict) -> str | None:
    """Full, visible text of a v1 tweet: extended_tweet / full_text over truncated text, range applied."""
    ext = obj.get("extended_tweet")
    if isinstance(ext, dict) and isinstance(ext.get("full_text"), str):
        return apply_display_text_range(ext["full_text"], ext.get("display_text_range"))
    text = obj.get("full_text")
    if not isinstance(text, str):
        text = obj.get("text")
        if not isinstance(text, str):
            return None
    return apply_display_text_range(text, obj.get("display_text_range"))


def _has_text(text: str | None) -> bool:
    return bool(text) and not text.isspace() and _UNAVAILABLE_NOTICE.fullmatch(text) is None


# ---------------------------------------------------------------------------------------------------
# Byte streams: decompression, truncation, lines
# ---------------------------------------------------------------------------------------------------


class _SafeStream:
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


def _open_decompressed(fileobj: BinaryIO) -> _SafeStream:
    """Wrap ``fileobj`` in a decompressor chosen by magic bytes (not by the file name, which can lie)."""
    try:
        magic = fileobj.read(6) or b""
    except STREAM_ERRORS as e:  # a stream already known broken (containers.expand decoded its head)
        broken = _SafeStream(io.BytesIO(b""), None)
        broken.error = (REASON_TRUNCATED_STREAM if isinstance(e, EOFError) else REASON_CORRUPT_STREAM,
                        f"compressed stream breaks before any record: {e}")
        return broken
    raw = Replay(magic, fileobj)
    kind = sniff(magic)
    if kind in COMPRESSIONS:
        return _SafeStream(open_decompressor(kind, raw), kind)
    return _SafeStream(raw, None)


class _TooLong:
    """Stands for a line longer than ``MAX_RECORD_BYTES``: its first bytes, for the dead letter."""

    __slots__ = ("head", "length")

    def __init__(self, head: bytes, length: int):
        self.head = head
        self.length = length


# A line: (bytes without the b"\n" | _TooLong, byte offset of its start, 1-based line number).
Line = tuple[Any, int, int]


def _iter_lines(chunks: Iterable[bytes], stream: _SafeStream | None = None) -> Iterator[Line]:
    """Split a byte stream on ``b"\\n"`` only (never on U+2028/U+0085, which may sit inside tweets).

    Memory stays bounded: a line longer than ``MAX_RECORD_BYTES`` is yielded as ``_TooLong`` and
    skipped. When ``stream`` broke (truncated archive), its unfinished last line is kept back in
    ``stream.partial``: it is part of the one ``truncated_stream`` dead letter, not a record of its own.
    """
    limit = MAX_RECORD_BYTES
    carry: list[bytes] = []  # pieces of the line in progress, joined once its end is seen
    carry_len = 0
    offset = 0
    lineno = 1
    skipping: _TooLong | None = None  # the over-long line being skipped
    first = True
    for chunk in chunks:
        if first:
            first = False
            if chunk.startswith(_UTF8_BOM):
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
                skipping = _TooLong(b"".join(carry)[: DeadLetter.MAX_RAW_CHARS], carry_len)
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


def _chunks(stream: _SafeStream, first: bytes = b"") -> Iterator[bytes]:
    if first:
        yield first
    while True:
        data = stream.read(CHUNK_BYTES)
        if not data:
            return
        yield data


# ---------------------------------------------------------------------------------------------------
# Incremental JSON values
# ---------------------------------------------------------------------------------------------------


class _Bad:
    """Input the JSON reader could not decode: becomes a ``DeadLetter``."""

    __slots__ = ("byte_offset", "detail", "line", "raw", "reason")

    def __init__(self, reason: str, detail: str, line: int | None, byte_offset: int | None, raw: str):
        self.reason = reason
        self.detail = detail
        self.line = line
        self.byte_offset = byte_offset
        self.raw = raw


_WS = " \t\r\n\ufeff"
_TOP_LEVEL_START = re.compile(r"\n[\{\[]")  # a line starting a value in column 0
_FAILED = object()


def _without_bom(chunks: Iterator[bytes]) -> Iterator[bytes]:
    for chunk in chunks:
        if chunk:
            yield chunk[3:] if chunk.startswith(_UTF8_BOM) else chunk
            break
    yield from chunks


class _Window:
    """Decoded text held while JSON values span lines (pretty-printed, arrays, junk), fed by chunks.

    Knows the byte offset and line number of its first char, so errors can be located exactly.
    """

    def __init__(self, chunks: Iterator[bytes], first: bytes, offset: int, lineno: int, eof: bool):
        self._chunks = chunks
        self._decoder = codecs.getincrementaldecoder("utf-8")("surrogateescape")
        self.text = ""
        self.offset = offset  # byte offset of text[0]
        self.lineno = lineno  # line number of text[0]
        self.eof = False
        self._feed(first)
        if eof:
            self.pull()  # flushes the decoder and marks the end

    def _feed(self, data: bytes) -> None:
        self.text += self._decoder.decode(data)

    def pull(self) -> bool:
        """Append the next chunk; False at the end of input."""
        if self.eof:
            return False
        for chunk in self._chunks:
            if chunk:
                self._feed(chunk)
                return True
        self.eof = True
        rest = self._decoder.decode(b"", final=True)  # an incomplete char at the very end
        self.text += rest
        return bool(rest)

    def locate(self, pos: int) -> tuple[int, int]:
        """(1-based line, byte offset) of char ``pos``."""
        return (self.lineno + self.text.count("\n", 0, pos),
                self.offset + len(self.text[:pos].encode("utf-8", "surrogateescape")))

    def trim(self, pos: int) -> None:
        """Forget the text before ``pos`` (already decoded)."""
        self.lineno, self.offset = self.locate(pos)
        self.text = self.text[pos:]

    def leftover(self, pos: int) -> tuple[bytes, int, int]:
        """Bytes not consumed from ``pos`` on (plus a pending partial char), with offset and line."""
        lineno, offset = self.locate(pos)
        pending = self._decoder.getstate()[0]
        return self.text[pos:].encode("utf-8", "surrogateescape") + pending, offset, lineno


class _JsonValues:
    """Top-level JSON values of a byte stream, and the elements of top-level arrays, one at a time.

    JSON lines take a fast path (one ``loads`` per line). Anything else (pretty-printed values,
    back-to-back ``}{``, whole-document arrays streamed element by element so a multi-GB
    archive never sits in memory, junk between values) goes through ``_Window`` and
    ``JSONDecoder.raw_decode``. Yields decoded values and ``_Bad`` items; memory is bounded
    by ``MAX_RECORD_BYTES`` per value.
    """

    def __init__(self, chunks: Iterable[bytes], broken: Callable[[], bool] = lambda: False, offset: int = 0):
        self._chunks = _without_bom(iter(chunks))
        self._broken = broken  # the stream ended early: its unfinished last line is not a record
        self._offset = offset  # byte offset of the first chunk in the file
        self.partial = b""

    def _next_chunk(self) -> bytes:
        for chunk in self._chunks:
            if chunk:
                return chunk
        return b""

    def __iter__(self) -> Iterator[Any]:
        loads = _loads
        buf = self._next_chunk()
        pos = 0
        offset = self._offset  # byte offset of buf[0]
        lineno = 1
        eof = not buf
        while True:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                pending = len(buf) - pos
                array = buf[pos : pos + 64].lstrip()[:1] == b"["
                if array and pending > _STREAM_ARRAY_BYTES:
                    # a long one-line array (a compact dump): decoded element by element, not whole
                    buf, pos, offset, lineno, eof = yield from self._slow_from(buf, pos, offset, lineno, eof)
                    continue
                if pending > MAX_RECORD_BYTES:
                    bad, buf, pos, offset, lineno, eof = self._skip_long_line(buf, pos, offset, lineno)
                    yield bad
                    continue
                if not eof:  # gather chunks up to the next newline, joined once (long lines stay linear)
                    limit = _STREAM_ARRAY_BYTES if array else MAX_RECORD_BYTES
                    parts = [buf[pos:]]
                    size = len(parts[0])
                    while size <= limit:
                        chunk = self._next_chunk()
                        if not chunk:
                            eof = True
                            break
                        parts.append(chunk)
                        size += len(chunk)
                        if b"\n" in chunk:
                            break
                    offset += pos
                    buf = b"".join(parts)
                    pos = 0
                    continue
                if pos >= len(buf):
                    return
                if self._broken():
                    self.partial = buf[pos:]
                    return
                nl = len(buf)
            line = buf[pos:nl].strip()
            if line:
                try:
                    value = loads(line)
                except _JSON_ERRORS:
                    value = _FAILED
                if value is _FAILED:
                    buf, pos, offset, lineno, eof = yield from self._slow_from(buf, pos, offset, lineno, eof)
                    continue
                yield value
            pos = nl + 1
            lineno += 1

    def _slow_from(self, buf: bytes, pos: int, offset: int, lineno: int,
                   eof: bool) -> Generator[Any, None, tuple[bytes, int, int, int, bool]]:
        """Decode through a ``_Window`` from ``buf[pos:]``; returns the fast path's new state."""
        win = _Window(self._chunks, buf[pos:], offset + pos, lineno, eof)
        stop = yield from self._slow(win)
        buf, offset, lineno = win.leftover(stop)
        return buf, 0, offset, lineno, win.eof

    def _skip_long_line(self, buf: bytes, pos: int, offset: int, lineno: int) -> tuple:
        """An over-long line: a dead letter with its head; reading resumes after its newline."""
        head = buf[pos : pos + DeadLetter.MAX_RAW_CHARS]
        length = len(buf) - pos
        start = offset + pos
        eof = False
        while True:
            chunk = self._next_chunk()
            if not chunk:
                eof = True
                buf, nl = b"", -1
                break
            nl = chunk.find(b"\n")
            if nl >= 0:
                length += nl
                buf = chunk[nl + 1 :]
                break
            length += len(chunk)
        detail = f"line of {length} bytes exceeds {MAX_RECORD_BYTES}"
        bad = _Bad(REASON_RECORD_TOO_LARGE, detail, lineno, start, head.decode("utf-8", "replace"))
        return bad, buf, 0, start + length + 1, lineno + 1, eof

    def _slow(self, win: _Window) -> Generator[Any, None, int]:
        """Decode values from the window; returns where line-by-line decoding can take over again.

        That is a line start whose line is not fully read yet (or the end of input): the fast path
        resumes there, so one bad line in a JSON-lines file costs at most a chunk of slow decoding.
        """
        k = 0
        in_array = False
        element: re.Pattern | None = None  # resync pattern for the current array's elements
        first_element = False
        while True:
            text = win.text
            n = len(text)
            while k < n and (text[k] in _WS or (text[k] == ";" and not in_array)):
                k += 1
            if not in_array and k > 0 and text[k - 1] == "\n" and text.find("\n", k) < 0 and not win.eof:
                return k
            if k >= n:
                if in_array and win.pull():
                    continue
                if in_array:
                    line, offset = win.locate(n)
                    yield _Bad(REASON_UNEXPECTED_EOF, "array not closed at end of input", line, offset, "")
                return n
            c = text[k]
            if in_array:
                if c == "]":
                    in_array = False
                    k += 1
                    continue
                if c == ",":
                    k += 1
                    continue
                if first_element:
                    first_element = False
                    element = self._element_pattern(text, k)
            elif c == "[":
                in_array = first_element = True
                element = None
                k += 1
                continue
            try:
                value, j = _JSON_DECODER.raw_decode(text, k)
            except json.JSONDecodeError as e:
                # No newline after the error: the value may just go on past what is held.
                may_go_on = text.find("\n", e.pos) < 0
                if may_go_on and n - k < MAX_RECORD_BYTES and win.pull():
                    continue
                reason = REASON_UNEXPECTED_EOF if may_go_on and win.eof else REASON_INVALID_JSON
                r, in_array = self._resync(win, k, in_array, element)
                yield self._bad(win, k, r, e.msg, reason)
                k = r
                continue
            except RecursionError:
                r, in_array = self._resync(win, k, in_array, element)
                yield self._bad(win, k, r, "JSON nested too deeply", REASON_INVALID_JSON)
                k = r
                continue
            yield value
            k = j
            if k > _WINDOW_TRIM:
                win.trim(k)
                k = 0

    @staticmethod
    def _bad(win: _Window, k: int, r: int, detail: str, reason: str) -> _Bad:
        line, offset = win.locate(k)
        return _Bad(reason, detail, line, offset, _safe_raw(win.text[k:r]))

    @staticmethod
    def _element_pattern(text: str, k: int) -> re.Pattern:
        """Lines where this array's elements start: at the first element's indentation, as ``}, {``,
        the closing ``]``; a value in column 0 ends the array (used to resync after bad input)."""
        line_start = text.rfind("\n", 0, k) + 1
        indent = text[line_start:k]
        elem = rf"(?P<elem>{re.escape(indent)})(?=[\{{\[])|" if not indent or indent.isspace() else ""
        rest = r"(?P<next>\s*\}\s*,\s*)(?=\{)|(?P<close>)(?=\])|(?P<top>)(?=[\{\[])"
        return re.compile(rf"\n(?:{elem}{rest})")

    @staticmethod
    def _resync(win: _Window, k: int, in_array: bool, element: re.Pattern | None) -> tuple[int, bool]:
        """Where decoding starts again after bad input at ``k``: the next line that starts a value.

        Top level: a line starting with ``{`` or ``[`` in column 0 (JSON lines, concatenated values).
        In an array: a line starting an element like the first one did, ``}, {``, or the closing ``]``.
        Returns (char position, still in the array).
        """
        pattern = element if in_array and element is not None else _TOP_LEVEL_START
        search_from = k
        while True:
            m = pattern.search(win.text, search_from)
            if m is not None:
                if pattern is _TOP_LEVEL_START:
                    return m.start() + 1, False
                return m.end(), m.lastgroup != "top"
            search_from = max(k, len(win.text) - 1)
            if len(win.text) - k > MAX_RECORD_BYTES or not win.pull():
                return len(win.text), False


# ---------------------------------------------------------------------------------------------------
# JSON records -> Tweets (v1, v2, archives)
# ---------------------------------------------------------------------------------------------------

_V1_NOTICE_KEYS = frozenset((
    "scrub_geo", "limit", "status_withheld", "user_withheld", "disconnect", "warning", "friends",
    "friends_str", "event", "for_user", "control", "direct_message", "user_update",
))
_V2_COMPLIANCE_KEYS = frozenset((
    "delete", "withheld", "drop", "undrop", "scrub_geo", "user_delete", "user_undelete", "user_withheld",
    "user_suspend", "user_unsuspend", "user_protect", "user_unprotect", "user_profile_modification",
))
_V2_TWEET_KEYS = ("author_id", "edit_history_tweet_ids", "referenced_tweets", "conversation_id", "author",
                  "__twarc", "note_tweet")
_TWEET_HINT_KEYS = ("created_at", "user", "author_id", "edit_history_tweet_ids", "entities", "source", "lang")

# Account-archive YTD datasets this stage reads (``window.YTD.<name>.partN``).
_YTD_TWEETS = frozenset(("tweets", "tweet", "community_tweet", "community_tweets"))
_YTD_DELETED = frozenset(("deleted_tweets", "deleted_tweet"))
_YTD_NOTES = frozenset(("note_tweet", "note_tweets"))


class _Context:
    """Per-file state: the path, the format, the next record position."""

    __slots__ = ("fmt", "keep_deleted", "notes", "path", "position", "ytd")

    def __init__(self, path: str, fmt: str, notes: Counter | None = None):
        self.path = path
        self.fmt = fmt
        self.position = 0
        self.ytd: str | None = None  # archive dataset name, e.g. "tweets" / "deleted_tweets"
        self.keep_deleted = False  # keep deleted-tweets.js entries as tweets (asked for by the user)
        # Silent-looking changes made to records that were kept (e.g. invalid UTF-8 repaired), by
        # name: reported per input file in the manifest, so nothing changes without a count.
        self.notes: Counter = notes if notes is not None else Counter()

    def take(self) -> int:
        p = self.position
        self.position = p + 1
        return p

    def dead(self, reason: str, detail: str = "", raw: Any = "", line: int | None = None,
             byte_offset: int | None = None) -> DeadLetter:
        if not isinstance(raw, str):
            try:
                raw = json.dumps(raw, ensure_ascii=False)[: DeadLetter.MAX_RAW_CHARS]
            except (TypeError, ValueError):
                raw = repr(raw)[: DeadLetter.MAX_RAW_CHARS]
        return DeadLetter(self.path, self.take(), reason, _no_surrogates(detail), line, byte_offset,
                          _safe_raw(raw))


class _TweetBuilder:
    """Builds ``Tweet`` records from v1 / archive / v2 tweet objects of one file."""

    def __init__(self, ctx: _Context):
        self._ctx = ctx

    def make(self, tid: int | None, text: str, fmt: str, created: Any, author: Any, lang: Any,
             is_retweet: bool, is_reply: bool, is_quote: bool, invalid_id: bool = False) -> Tweet:
        """``invalid_id``: the record has an id that is not one (``"abc"``, Excel's ``1.23457E+18``); the
        derived id that replaces it is counted in ``notes["invalid_id_replaced"]``."""
        ctx = self._ctx
        position = ctx.take()
        if not text.isascii() and _SURROGATES.search(text) is not None:
            # Escaped invalid UTF-8 bytes (U+DC80-U+DCFF, from the JSON window) or JSON escapes of half
            # a surrogate pair: both become U+FFFD, counted.
            ctx.notes[NOTE_INVALID_UTF8 if _ESCAPED_BYTES.search(text) else "lone_surrogate_repaired"] += 1
            text = _SURROGATES.sub("\ufffd", text)
        derived = tid is None
        if derived:
            tid = derived_tweet_id(ctx.path, position, text)
            if invalid_id:
                ctx.notes["invalid_id_replaced"] += 1
        return Tweet(
            id=tid,
            text=text,
            source_format=fmt,
            source_file=ctx.path,
            position=position,
            id_derived=derived,
            created_at_ms=parse_created_at(created),
            author_id=_parse_id(author),
            twitter_lang=_no_surrogates(lang) if isinstance(lang, str) else None,
            is_retweet=is_retweet,
            is_reply=is_reply,
            is_quote=is_quote,
        )

    def v1(self, obj: dict, fmt: str) -> Tweet | str:
        """A v1.1 tweet object (also archive / Grailbird tweets, whose numbers may be strings)."""
        tid = _parse_id(obj.get("id_str")) or _parse_id(obj.get("id"))
        original = obj.get("retweeted_status")
        is_retweet = isinstance(original, dict)
        text = None
        if is_retweet:
            original_text = _v1_visible_text(original)
            user = original.get("user")
            name = user.get("screen_name") if isinstance(user, dict) else None
            if not name:
                m = _MANUAL_RT.match(obj.get("full_text") or obj.get("text") or "")
                name = m.group(1) if m else None
            if original_text and name:
                text = f"RT @{name}: {original_text}"
        if text is None:
            text = _v1_visible_text(obj)
            if not is_retweet and text is not None:
                is_retweet = _MANUAL_RT.match(text) is not None
        if not _has_text(text):
            self._ctx.take()
            return DROP_NO_TEXT
        user = obj.get("user")
        author = (user.get("id_str") or user.get("id")) if isinstance(user, dict) else None
        is_reply = bool(obj.get("in_reply_to_status_id_str") or obj.get("in_reply_to_status_id"))
        is_quote = (_truthy(obj.get("is_quote_status")) or isinstance(obj.get("quoted_status"), dict)
                    or bool(obj.get("quoted_status_id_str")))
        tweet = self.make(tid, text, fmt, obj.get("created_at"), author, obj.get("lang"), is_retweet,
                          is_reply, is_quote, tid is None and _has_value(obj.get("id_str"), obj.get("id")))
        # Where the payload says which part is displayed, the hidden reply prefix is already gone.
        ext = obj.get("extended_tweet")
        tweet.display_range_applied = "display_text_range" in obj or (
            isinstance(ext, dict) and "display_text_range" in ext
        )
        return tweet

    def v2(self, obj: dict, tweets: dict[str, dict], users: dict[str, dict]) -> Tweet | str:
        """A v2 tweet; ``tweets``/``users`` are the response's ``includes`` by id (context only)."""
        note = obj.get("note_tweet")
        text = note.get("text") if isinstance(note, dict) else None
        if not isinstance(text, str):
            text = obj.get("text")
        if isinstance(text, str):
            text = apply_display_text_range(text, obj.get("display_text_range"))
        is_retweet = is_reply = is_quote = False
        refs = obj.get("referenced_tweets")
        if isinstance(refs, list):
            for ref in refs:
                if not isinstance(ref, dict):
                    continue
                kind = ref.get("type")
                if kind == "retweeted":
                    is_retweet = True
                    completed = self._v2_retweet_text(obj, ref, tweets, users)
                    if completed is not None:
                        text = completed
                elif kind == "replied_to":
                    is_reply = True
                elif kind == "quoted":
                    is_quote = True
        if obj.get("in_reply_to_user_id"):
            is_reply = True
        if not is_retweet and isinstance(text, str):
            is_retweet = _MANUAL_RT.match(text) is not None
        if not _has_text(text):
            self._ctx.take()
            return DROP_NO_TEXT
        author = obj.get("author_id")
        if author is None and isinstance(obj.get("author"), dict):
            author = obj["author"].get("id")
        tid = _parse_id(obj.get("id"))
        return self.make(tid, text, FORMAT_V2, obj.get("created_at"), author, obj.get("lang"), is_retweet,
                         is_reply, is_quote, tid is None and _has_value(obj.get("id")))

    @staticmethod
    def _v2_retweet_text(obj: dict, ref: dict, tweets: dict[str, dict], users: dict[str, dict]) -> str | None:
        """v2 truncates a retweet's own text: "RT @user: " + the original's full text, when known."""
        original = ref if isinstance(ref.get("text"), str) else tweets.get(str(ref.get("id")))
        if not isinstance(original, dict):
            return None
        note = original.get("note_tweet")
        text = note.get("text") if isinstance(note, dict) else None
        if not isinstance(text, str):
            text = original.get("text")
        if not isinstance(text, str) or not text:
            return None
        author = original.get("author")
        name = author.get("username") if isinstance(author, dict) else None
        if not name:
            user = users.get(str(original.get("author_id")))
            name = user.get("username") if user else None
        if not name:
            m = _MANUAL_RT.match(obj.get("text") or "")
            name = m.group(1) if m else None
        return f"RT @{name}: {text}" if name else None


class _JsonRecords:
    """Routes each decoded JSON value of a file to a Tweet, a drop reason or a dead letter."""

    def __init__(self, ctx: _Context):
        self._ctx = ctx
        self._build = _TweetBuilder(ctx)
        self._tweet_fmt = ctx.fmt if ctx.fmt in (FORMAT_ARCHIVE, FORMAT_GRAILBIRD) else FORMAT_V1

    def value(self, value: Any) -> Iterator[Record]:
        if isinstance(value, dict):
            yield from self.object(value)
        elif isinstance(value, list):
            for element in value:
                if isinstance(element, dict):
                    yield from self.object(element)
                else:
                    yield self._ctx.dead(REASON_UNRECOGNISED, "array element is not an object", element)
        else:
            yield self._ctx.dead(REASON_UNRECOGNISED, f"top-level JSON {type(value).__name__}", value)

    def object(self, obj: dict) -> Iterator[Record]:
        ctx = self._ctx
        if "text" in obj or "full_text" in obj or "extended_tweet" in obj:
            yield self._tweet(obj)
        elif "data" in obj or "errors" in obj or "includes" in obj or isinstance(obj.get("meta"), dict):
            yield from self._v2_response(obj)  # a meta-only page (no results) holds no records
        elif isinstance(obj.get("statuses"), list):
            yield from self.value(obj["statuses"])
        elif isinstance(obj.get("tweet"), dict):
            yield from self._archive_entry(obj["tweet"])
        elif isinstance(obj.get("noteTweet"), dict):
            yield self._note_tweet(obj["noteTweet"])
        elif "delete" in obj and not ("id" in obj or "id_str" in obj):
            ctx.take()
            yield DROP_DELETE_NOTICE
        elif not _V1_NOTICE_KEYS.isdisjoint(obj) and not ("id" in obj or "id_str" in obj):
            ctx.take()
            yield DROP_STREAM_NOTICE
        elif "action" in obj and "id" in obj:  # v2 batch compliance result
            ctx.take()
            yield DROP_COMPLIANCE_EVENT
        elif "title" in obj and ("type" in obj or "detail" in obj) and "id" not in obj:  # v2 problem
            ctx.take()
            yield DROP_API_ERROR
        elif ("id" in obj or "id_str" in obj) and any(k in obj for k in _TWEET_HINT_KEYS):
            ctx.take()
            yield DROP_NO_TEXT  # a tweet object without any text (withheld, media-only)
        else:
            yield ctx.dead(REASON_UNRECOGNISED, "JSON object is neither a tweet nor a known notice", obj)

    def _tweet(self, obj: dict) -> Tweet | str:
        if "user" not in obj and "id_str" not in obj and "full_text" not in obj and (
            isinstance(obj.get("id"), str) or any(k in obj for k in _V2_TWEET_KEYS)
        ):
            return self._build.v2(obj, {}, {})
        if self._deleted(obj):
            self._ctx.take()
            return DROP_DELETED_BY_AUTHOR
        return self._build.v1(obj, self._tweet_fmt)

    def _deleted(self, obj: dict) -> bool:
        """A tweet its author deleted: dropped, unless the user asked for deleted tweets."""
        return not self._ctx.keep_deleted and (self._ctx.ytd in _YTD_DELETED or "deleted_at" in obj)

    def _v2_response(self, obj: dict) -> Iterator[Record]:
        ctx = self._ctx
        data = obj.get("data")
        includes = obj.get("includes") if isinstance(obj.get("includes"), dict) else {}
        tweets = _index_by_id(includes.get("tweets"))
        users = _index_by_id(includes.get("users"))
        if isinstance(data, dict):
            if "id" not in data and not _V2_COMPLIANCE_KEYS.isdisjoint(data):  # compliance stream event
                ctx.take()
                yield DROP_COMPLIANCE_EVENT
            else:
                data = [data]
        if isinstance(data, list):
            for t in data:
                if not isinstance(t, dict):
                    yield ctx.dead(REASON_UNRECOGNISED, "v2 data entry is not an object", t)
                elif "text" in t or "note_tweet" in t:
                    yield self._build.v2(t, tweets, users)
                elif "id" in t:
                    ctx.take()
                    yield DROP_NO_TEXT
                else:
                    yield ctx.dead(REASON_UNRECOGNISED, "v2 data entry is not a tweet", t)
        elif data is not None and not isinstance(data, dict):
            yield ctx.dead(REASON_UNRECOGNISED, "v2 data is neither an object nor a list", data)
        errors = obj.get("errors")
        if isinstance(errors, list):
            for _ in errors:
                ctx.take()
                yield DROP_API_ERROR

    def _archive_entry(self, tweet: dict) -> Iterator[Record]:
        if self._deleted(tweet):
            self._ctx.take()
            yield DROP_DELETED_BY_AUTHOR
        elif "full_text" in tweet or "text" in tweet:
            yield self._build.v1(tweet, FORMAT_ARCHIVE)
        else:
            yield from self.object(tweet)

    def _note_tweet(self, note: dict) -> Tweet | str:
        """An archive ``noteTweet`` (long post): ``core.text``; ``noteTweetId`` when no ``tweetId``."""
        text = None
        for holder in (note.get("core"), note.get("noteTweetResults"), note.get("noteTweetContents"), note):
            if isinstance(holder, dict) and isinstance(holder.get("text"), str):
                text = holder["text"]
                break
        if not _has_text(text):
            self._ctx.take()
            return DROP_NO_TEXT
        tid = _parse_id(note.get("tweetId")) or _parse_id(note.get("noteTweetId"))
        return self._build.make(tid, text, FORMAT_ARCHIVE, note.get("createdAt"), None, None,
                                _MANUAL_RT.match(text) is not None, False, False,
                                tid is None and _has_value(note.get("tweetId"), note.get("noteTweetId")))


def _index_by_id(items: Any) -> dict[str, dict]:
    if not isinstance(items, list):
        return {}
    return {str(x["id"]): x for x in items if isinstance(x, dict) and "id" in x}


# ---------------------------------------------------------------------------------------------------
# Format readers
# ---------------------------------------------------------------------------------------------------


def _bad_to_dead(ctx: _Context, bad: _Bad) -> DeadLetter:
    return ctx.dead(bad.reason, bad.detail, bad.raw, bad.line, bad.byte_offset)


def _read_json(ctx: _Context, chunks: Iterable[bytes], stream: _SafeStream | None = None,
               offset: int = 0) -> Iterator[Record]:
    records = _JsonRecords(ctx)
    broken = (lambda: stream.error is not None) if stream is not None else (lambda: False)
    values = _JsonValues(chunks, broken, offset)
    for item in values:
        if type(item) is _Bad:
            yield _bad_to_dead(ctx, item)
        else:
            yield from records.value(item)
    if stream is not None and values.partial:
        stream.partial = values.partial


# Archive prefixes, in the spellings real archives use (any case, spaces around the dots).
YTD_PREFIX = re.compile(rb"\s*window\s*\.\s*YTD\s*\.\s*(\w+)\s*\.\s*part\d+\s*=", re.IGNORECASE)
_GRAILBIRD_PREFIX = re.compile(rb"\s*Grailbird\s*\.\s*data\s*\.\s*(\w+)\s*=", re.IGNORECASE)
# Any other JavaScript assignment of a JSON value: ``var tweets = [``, ``window.YTD_tweets.part0 = [``.
_JS_ASSIGNMENT = re.compile(
    rb"\s*(?:(?:var|let|const)\s+)?([A-Za-z_$][\w$]*(?:\s*\.\s*[A-Za-z_$][\w$]*)*)\s*=\s*(?=[\[{])")
# The value of an unknown assignment is read only when it is an array of tweets: archive entries
# (``{"tweet": ...}``) or objects that start with a tweet's key.
_TWEET_ARRAY = re.compile(rb'\[\s*\{\s*"(?:tweet|noteTweet|id|id_str|created_at|full_text|text)"\s*:')
REASON_UNKNOWN_JS_PREFIX = "unknown_js_prefix"
NOTE_UNKNOWN_PREFIX_READ = "unknown_js_prefix_read_as_json"


def _strip_assignment(chunks: Iterable[bytes], pattern: re.Pattern) -> tuple[re.Match | None, Iterator[bytes],
                                                                                 int]:
    """Consume ``window.YTD.x.part0 =`` / ``Grailbird.data.x =`` (in the first chunk, the 64 KiB head), or
    any other JavaScript assignment (then the match is ``_JS_ASSIGNMENT``'s)."""
    it = _without_bom(iter(chunks))
    first = next(it, b"")
    m = pattern.match(first) or _JS_ASSIGNMENT.match(first)
    if m is None:
        return None, itertools.chain([first], it), 0
    return m, itertools.chain([first[m.end() :]], it), m.end()


def _read_unknown_assignment(ctx: _Context, m: re.Match, chunks: Iterator[bytes], stream: _SafeStream,
                             offset: int) -> Iterator[Record]:
    """An assignment that names no known archive dataset (never read as text): its value is read as JSON
    when it is an array of tweets, counted in ``notes``; else the file is one dead letter naming it."""
    name = re.sub(rb"\s+", b"", m.group(1)).decode("ascii", "replace")
    first = next(chunks, b"")
    if _TWEET_ARRAY.match(first):
        ctx.notes[NOTE_UNKNOWN_PREFIX_READ] += 1
        logger.warning("%s: unknown prefix %r, read as a JSON array of tweets", ctx.path, name)
        yield from _read_json(ctx, itertools.chain([first], chunks), stream, offset)
        return
    yield ctx.dead(REASON_UNKNOWN_JS_PREFIX,
                   f"unknown JavaScript assignment {name!r}: not a tweet archive dataset nor a tweet array",
                   (m.group(0) + first[:200]).decode("utf-8", "replace"), 1, 0)


def _read_archive(ctx: _Context, chunks: Iterable[bytes], stream: _SafeStream) -> Iterator[Record]:
    m, chunks, offset = _strip_assignment(chunks, YTD_PREFIX)
    if m is not None and m.re is not YTD_PREFIX:
        yield from _read_unknown_assignment(ctx, m, chunks, stream, offset)
        return
    if m is not None:
        ctx.ytd = m.group(1).decode("ascii").lower()
        if ctx.ytd not in _YTD_TWEETS | _YTD_DELETED | _YTD_NOTES:
            # likes, followers, DMs, ...: not this account's tweets. One dead letter says so.
            yield ctx.dead(REASON_UNSUPPORTED_ARCHIVE, f"archive dataset {ctx.ytd!r} holds no tweets")
            return
    yield from _read_json(ctx, chunks, stream, offset)


def _read_grailbird(ctx: _Context, chunks: Iterable[bytes], stream: _SafeStream) -> Iterator[Record]:
    m, chunks, offset = _strip_assignment(chunks, _GRAILBIRD_PREFIX)
    if m is not None and m.re is not _GRAILBIRD_PREFIX:
        yield from _read_unknown_assignment(ctx, m, chunks, stream, offset)
        return
    if m is not None and not m.group(1).lower().startswith(b"tweets_"):
        # tweet_index, user_details, ...: the monthly tweets_YYYY_MM files hold the tweets
        name = m.group(1).decode("ascii")
        yield ctx.dead(REASON_UNSUPPORTED_ARCHIVE, f"Grailbird dataset {name!r} holds no tweets")
        return
    yield from _read_json(ctx, chunks, stream, offset)


# Bytes that cp1252 leaves undefined: their presence in a non-UTF-8 file means Mac Roman (old Excel for
# Mac saves; measured on BarackObama.csv, whose 0x9D bytes decode only there and whose "‰Û"-style
# mojibake only appears when read as Mac Roman).
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")


# Dead-letter reasons of the text and CSV readers' content checks, and the notes they count.
REASON_BINARY = "binary_content"  # not text: a known binary format, NUL / control bytes
REASON_ENCODING = "unsupported_encoding"  # text, but neither UTF-8 nor Latin 8-bit text (UTF-16, ...)
NOTE_INVALID_UTF8 = "invalid_utf8_repaired"  # a kept line / text with bytes that were not valid UTF-8

# C0 controls no text line holds (tab, LF, VT, FF and CR are text), and DEL.
_CTRL_BYTES = bytes((*range(0x09), *range(0x0E, 0x20), 0x7F))
_HIGH_BYTES = bytes(range(0x80, 0x100))
# A non-UTF-8 line is kept (repaired) only when at most this share of its bytes needed repair: Latin
# legacy text is accented letters among ASCII (at most 10% of a line in BarackObama.csv); bytes of
# binary data are about half high bytes.
_MAX_REPAIRED_SHARE = 0.3
_MIN_JUDGED_BYTES = 8  # shorter lines are too short to tell text from junk by that share
# Consecutive lines that are not text are one dead letter. The stretch ends at a good line at least this
# long: a short line among binary ones is as likely junk that happens to decode as it is a tweet.
_STRETCH_END_BYTES = 16
_SNIFF_BYTES = 64 << 10  # the head that decides whether a whole file is text
_BATCH_BYTES = 64 << 10  # lines are checked and decoded in runs of about this size
_BINARY_SHARE = 0.5  # a head with at least this share of its bytes in bad lines: the file is not text

# Formats that are not text, by their first bytes. Signatures that are ASCII letters also need the
# binary bytes that follow them in the real format, so a text line starting with those letters is text.
_SIGNATURES = tuple((re.compile(pattern, re.DOTALL), what) for pattern, what in (
    (rb"\x89PNG\r\n\x1a\n", "a PNG image"),
    (rb"\xff\xd8\xff", "a JPEG image"),
    (rb"GIF8[79]a.{0,6}[\x00-\x08\x0e-\x1f\x7f-\xff]", "a GIF image"),  # its width / height bytes
    (rb"RIFF....(?:WEBP|WAVE|AVI )", "RIFF media (WebP / WAV / AVI)"),
    (rb"\x00\x00\x00.ftyp", "MP4 / QuickTime / HEIC media"),
    (rb"II\*\x00|MM\x00\*", "a TIFF image"),
    (rb"%PDF-\d\.\d[\r\n]", "a PDF document"),
    (rb"PK(?:\x03\x04|\x05\x06|\x07\x08)", "a ZIP archive (or .docx / .xlsx / .jar)"),
    (rb"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", "a legacy Office document (.doc / .xls)"),
    (rb"\x7fELF", "an ELF executable"),
    (rb"MZ.\x00", "a Windows executable"),
    (rb"\xca\xfe\xba\xbe|\xcf\xfa\xed\xfe|\xce\xfa\xed\xfe|\xfe\xed\xfa[\xce\xcf]", "a Mach-O / Java binary"),
    (rb"SQLite format 3\x00", "an SQLite database"),
    (rb"7z\xbc\xaf\x27\x1c", "a 7-Zip archive"),
    (rb"Rar!\x1a\x07", "a RAR archive"),
    (rb"\x28\xb5\x2f\xfd", "a zstd stream"),
    (rb"\x1f\x8b\x08|BZh[1-9]1AY&SY|\xfd7zXZ\x00", "a compressed stream"),
    (rb"PAR1[\x00-\x1f]", "a Parquet file"),
    (rb"ARROW1\x00", "an Arrow file"),
    (rb"\x89HDF\r\n\x1a\n", "an HDF5 file"),
    (rb"\x93NUMPY", "a NumPy array"),
    (rb"OggS\x00|ID3[\x02-\x04]\x00|fLaC\x00|\x1a\x45\xdf\xa3", "audio / video"),
    (rb"wOF[F2](?:\x00\x01\x00\x00|OTTO|true)\x00", "a web font"),
    (rb"\x00asm", "WebAssembly"),
))
_UTF16_BOMS = ((b"\xff\xfe\x00\x00", "UTF-32LE"), (b"\x00\x00\xfe\xff", "UTF-32BE"),
               (b"\xff\xfe", "UTF-16LE"), (b"\xfe\xff", "UTF-16BE"))


def _escaped(data: bytes) -> str:
    """Bytes that are not text, readable in a dead letter (``\\x89PNG\\r\\n``)."""
    return data[: DeadLetter.MAX_RAW_CHARS // 4].decode("latin-1").encode("unicode_escape").decode("ascii")


def _control_fault(line: bytes, utf8: bool) -> bool:
    """Control bytes that make ``line`` binary: any NUL; in valid UTF-8 more than one per 32 bytes (a
    stray control in a tweet is tolerated); in non-UTF-8 any (legacy text has none)."""
    if 0 in line:  # NUL (an int needle: a plain memchr)
        return True
    n = len(line) - len(line.translate(None, _CTRL_BYTES))
    return n * 32 > len(line) if utf8 else n > 0


def _repair(line: bytes, encoding: str) -> str | None:
    """A non-UTF-8 line decoded as ``encoding`` (``utf-8``: its invalid bytes as U+FFFD), or None when
    too much of it needed repair for it to be text."""
    if encoding == "utf-8":
        text = line.decode("utf-8", "replace")
        repaired = text.count("\ufffd")
    else:
        text = line.decode(encoding, "replace")
        repaired = len(line) - len(line.translate(None, _HIGH_BYTES))
    if len(line) >= _MIN_JUDGED_BYTES and repaired > _MAX_REPAIRED_SHARE * len(line):
        return None
    return text


def _line_fault(line: bytes) -> str | None:
    """The reason a line is not text, whichever encoding its file turns out to have; None if it is."""
    if _utf8(line):
        return REASON_BINARY if _control_fault(line, True) else None
    if _control_fault(line, False):
        return REASON_BINARY
    if _repair(line, "utf-8") is None and _repair(line, "cp1252") is None:
        return REASON_ENCODING
    return None


def _utf16(sample: bytes) -> str | None:
    """UTF-16 / UTF-32 text, by its byte-order mark or by NULs in every other byte (ASCII in UTF-16)."""
    for bom, name in _UTF16_BOMS:
        if sample.startswith(bom):
            return f"{name} text (byte-order mark)"
    probe = sample[:4096]
    half = len(probe) // 2
    if half >= 4:
        even, odd = probe[0::2].count(0), probe[1::2].count(0)
        if odd > 0.4 * half and even < 0.05 * half:
            return "UTF-16LE text (no byte-order mark)"
        if even > 0.4 * half and odd < 0.05 * half:
            return "UTF-16BE text (no byte-order mark)"
    return None


def _not_text(head: list[Line]) -> tuple[str, str] | None:
    """(reason, detail) when a file is not text at all, judged from its head: a binary signature,
    UTF-16/32, or most of the head's bytes in lines that are not text. None for a text file."""
    parts = [line[:_SNIFF_BYTES] if type(line) is bytes else line.head for line, _, _ in head]
    sample = b"\n".join(parts)
    if not sample.strip():
        return None
    for signature, what in _SIGNATURES:
        if signature.match(sample):
            return REASON_BINARY, f"{what}, not text"
    utf16 = _utf16(sample)
    if utf16 is not None:
        return REASON_ENCODING, f"{utf16}: only UTF-8 and Latin 8-bit text are read; convert it to UTF-8"
    if b"\x00" in sample[:32]:  # a binary header (.pyc, fonts, ...): text never starts with NUL
        return REASON_BINARY, "binary data, not text: NUL bytes in its first 32 bytes"
    if len(sample.translate(None, _CTRL_BYTES)) == len(sample) and _utf8(sample):
        return None  # clean UTF-8 text (the common case, without a look at each line)
    bad = {REASON_BINARY: 0, REASON_ENCODING: 0}
    for part in parts:
        fault = _line_fault(part)
        if fault is not None:
            bad[fault] += len(part) + 1
    total = bad[REASON_BINARY] + bad[REASON_ENCODING]
    if total < _BINARY_SHARE * (len(sample) + 1):
        return None
    share = f"{100 * total // (len(sample) + 1)}% of the first {len(sample)} bytes"
    if bad[REASON_BINARY]:
        return REASON_BINARY, f"binary data, not text: {share} are in lines with NUL / control bytes"
    return REASON_ENCODING, f"neither UTF-8 nor Latin 8-bit text: {share} are undecodable"


class _Stretch:
    """Consecutive lines that are not text (with the short lines among them): one dead letter."""

    __slots__ = ("binary", "first", "last", "nbytes", "offset", "raw")

    def __init__(self, item: Line, reason: str):
        line, self.offset, self.first = item
        self.last = self.first
        self.nbytes = len(line)
        self.raw = line[: DeadLetter.MAX_RAW_CHARS]
        self.binary = reason == REASON_BINARY

    def add(self, item: Line, reason: str | None) -> None:
        self.last = item[2]
        self.nbytes += len(item[0]) + 1
        self.binary = self.binary or reason == REASON_BINARY

    def dead(self, ctx: _Context) -> DeadLetter:
        lines = f"line {self.first}" if self.first == self.last else f"lines {self.first}-{self.last}"
        if self.binary:
            reason, what = REASON_BINARY, "binary data (NUL / control bytes)"
        else:
            reason, what = REASON_ENCODING, "undecodable text (neither UTF-8 nor Latin 8-bit text)"
        return ctx.dead(reason, f"{what} in {lines} ({self.nbytes} bytes)", _escaped(self.raw), self.first,
                        self.offset)


class _LineDecoder:
    """Bytes -> str per line for the text and CSV readers; what is not text becomes dead letters.

    Yields per text line ``(text, byte offset, line number)`` (or, with ``runs``, lists of texts: the
    text reader needs no positions), and ``DeadLetter`` items, in file order:

    * A file whose head (64 KiB) is not text (``_not_text``: a binary signature, UTF-16, mostly bad
      lines) is one dead letter at offset 0, and nothing else is read from it.
    * A line is not text when it holds a NUL, control bytes (see ``_control_fault``), or, not being
      UTF-8, needs more than 30% of its bytes repaired. Consecutive such lines, and the short lines
      among them, are one dead letter naming the lines (``_Stretch``).
    * Other non-UTF-8 lines are repaired, each counted in ``notes["invalid_utf8_repaired"]``: with U+FFFD
      when the file is UTF-8 (more valid non-ASCII UTF-8 lines than invalid ones in its head and the
      look-ahead), else as the file's legacy 8-bit encoding, chosen once from a bounded look-ahead: Mac
      Roman when some non-UTF-8 line holds a byte cp1252 does not define, cp1252 otherwise (which also
      reads Latin-1 right).

    Lines are checked and decoded in runs of ``_BATCH_BYTES`` (one C call each, not one per line); a run
    with a control byte or invalid UTF-8 is gone through line by line.
    """

    def __init__(self, lines: Iterator[Line], ctx: _Context, runs: bool = False):
        self._lines = iter(lines)
        self._ctx = ctx
        self._runs = runs
        self.encoding: str | None = None  # for the non-UTF-8 lines, chosen at the first one
        self._utf8_lines = 0  # valid UTF-8 lines with non-ASCII text in the head

    def __iter__(self) -> Iterator[tuple[str, int, int] | list[str] | DeadLetter]:
        ctx = self._ctx
        runs = self._runs
        head = self._head()
        verdict = _not_text(head)
        if verdict is not None:
            start = b"\n".join(line if type(line) is bytes else line.head for line, _, _ in head[:16])
            yield ctx.dead(*verdict, _escaped(start[:256]), head[0][2], 0)
            return
        stretch: _Stretch | None = None
        for batch in self._batches():
            if type(batch[0][0]) is not bytes:  # a _TooLong line, alone
                if stretch is not None:
                    yield stretch.dead(ctx)
                    stretch = None
                line, offset, lineno = batch[0]
                yield ctx.dead(REASON_RECORD_TOO_LARGE, f"line of {line.length} bytes",
                               line.head.decode("utf-8", "replace"), lineno, offset)
                continue
            clean = False  # the run has no control bytes: its UTF-8 lines are text
            if stretch is None:
                parts = [item[0] for item in batch]
                joined = parts[0] if len(parts) == 1 else b"\n".join(parts)
                clean = len(joined.translate(None, _CTRL_BYTES)) == len(joined)
                if clean:  # the hot path: all lines decoded at once, or one decode for an ASCII run
                    try:
                        if joined.isascii():
                            texts = joined.decode("ascii").split("\n")
                        else:
                            texts = list(map(bytes.decode, parts))  # UTF-8, strict
                    except UnicodeDecodeError:  # some line is not UTF-8: line by line below
                        pass
                    else:
                        if runs:
                            yield texts
                        else:
                            for text, item in zip(texts, batch, strict=True):
                                yield text, item[1], item[2]
                        continue
            for item in batch:
                line = item[0]
                try:
                    text = line.decode("utf-8")
                except UnicodeDecodeError:
                    text = None
                if clean and text is not None and stretch is None:
                    yield [text] if runs else (text, item[1], item[2])
                    continue
                repaired = text is None
                text, fault = self._judge(item, text, clean)
                if fault is None and (stretch is None or len(line) >= _STRETCH_END_BYTES):
                    if stretch is not None:
                        yield stretch.dead(ctx)
                        stretch = None
                    if repaired:
                        ctx.notes[NOTE_INVALID_UTF8] += 1
                    yield [text] if runs else (text, item[1], item[2])
                elif stretch is None:
                    stretch = _Stretch(item, fault)
                else:
                    stretch.add(item, fault)
        if stretch is not None:
            yield stretch.dead(ctx)

    def _head(self) -> list[Line]:
        """The first lines, up to ``_SNIFF_BYTES`` (they are replayed)."""
        ahead: list[Line] = []
        size = 0
        for item in self._lines:
            ahead.append(item)
            line = item[0]
            if type(line) is bytes:
                size += len(line) + 1
                if not line.isascii() and _utf8(line):
                    self._utf8_lines += 1
            else:
                size += len(line.head) + 1
            if size >= _SNIFF_BYTES:
                break
        self._lines = itertools.chain(ahead, self._lines)
        return ahead

    def _batches(self) -> Iterator[list[Line]]:
        """The lines in runs of up to ``_BATCH_BYTES``; a ``_TooLong`` line comes alone."""
        while True:
            batch: list[Line] = []
            size = 0
            for item in self._lines:  # read again per run: _choose replaces self._lines
                line = item[0]
                if type(line) is not bytes:
                    if batch:
                        yield batch
                    batch = [item]
                    break
                batch.append(item)
                size += len(line)
                if size >= _BATCH_BYTES:
                    break
            if not batch:
                return
            yield batch

    def _judge(self, item: Line, text: str | None, clean: bool) -> tuple[str | None, str | None]:
        """(text, None) for a line kept as text, (None, reason) for one that is not; ``text`` is the
        line's UTF-8 decoding when it has one, ``clean`` that it has no control bytes."""
        line = item[0]
        if text is not None:
            return (None, REASON_BINARY) if not clean and _control_fault(line, True) else (text, None)
        if not clean and _control_fault(line, False):
            return None, REASON_BINARY
        if self.encoding is None:
            self.encoding = self._choose(item)
            logger.info("%s is not UTF-8: reading its non-UTF-8 lines as %s", self._ctx.path, self.encoding)
        text = _repair(line, self.encoding)
        return (None, REASON_ENCODING) if text is None else (text, None)

    def _choose(self, first_bad: Line) -> str:
        """Look ahead (bounded, then replayed) to pick the encoding of the non-UTF-8 lines."""
        ahead: list[Line] = []
        size = 0
        for item in self._lines:
            ahead.append(item)
            size += len(item[0]) if type(item[0]) is bytes else 0
            if size >= _LEGACY_LOOKAHEAD_BYTES:
                break
        self._lines = itertools.chain(ahead, self._lines)
        utf8 = self._utf8_lines
        invalid: list[bytes] = []
        for line, _, _ in (first_bad, *ahead):
            if type(line) is not bytes or line.isascii():
                continue
            if _utf8(line):
                utf8 += 1
            else:
                invalid.append(line)
        if utf8 > len(invalid):
            return "utf-8"
        if any(_CP1252_UNDEFINED.search(line) and not _control_fault(line, False) for line in invalid):
            return "mac_roman"
        return "cp1252"


def _utf8(line: bytes) -> bool:
    """Whether ``line`` is valid UTF-8, without raising (an exception costs more than the decoding)."""
    return len(line.decode("utf-8", "ignore").encode("utf-8")) == len(line)


def _read_text(ctx: _Context, lines: Iterator[Line]) -> Iterator[Record]:
    """Plain text, one tweet per line; blank lines are not records. Ids are derived (``derived_tweet_id``).

    What is not text comes as dead letters (``_LineDecoder``), never as rows.
    """
    path = ctx.path
    for run in _LineDecoder(lines, ctx, runs=True):
        if type(run) is not list:
            yield run  # a DeadLetter
            continue
        for line in run:
            if line.endswith("\r"):
                line = line[:-1]
            if not line or line.isspace():
                continue
            position = ctx.position  # ctx.take(), inlined: this loop is the text reader's hot path
            ctx.position = position + 1
            yield Tweet(id=derived_tweet_id(path, position, line), text=line, source_format=FORMAT_TEXT,
                        source_file=path, position=position, id_derived=True)


_CSV_TEXT_COLUMNS = ("text", "full_text", "tweet_text", "tweet", "content", "body", "message", "status",
                     "tweet_content")
_CSV_ID_COLUMNS = ("tweet_id", "id_str", "status_id", "tweetid", "tweet id", "id")
# A bare "id" column is often a row number (1, 2, 3, ...): taken as a tweet id only from this size on,
# else rows of different files would collide in dedup. (Tweet ids passed 10**7 in early 2007.)
_MIN_BARE_CSV_ID = 10**6
_CSV_URL_COLUMNS = ("url", "link", "permalink", "tweet_url", "status_url")
_CSV_DATE_COLUMNS = ("created_at", "timestamp", "date", "datetime", "time", "created", "tweet_created_at")
_CSV_LANG_COLUMNS = ("lang", "language")
_CSV_AUTHOR_COLUMNS = ("author_id", "user_id", "user_id_str")
_STATUS_URL = re.compile(r"/status(?:es)?/(\d{1,19})")


class _CsvColumns:
    """Column indexes of a CSV header, by the names tweet exports use."""

    def __init__(self, header: list[str], text_column: str | None):
        names = [h.strip().lstrip("\ufeff").lower() for h in header]

        def find(candidates: Iterable[str]) -> int | None:
            for c in candidates:
                if c in names:
                    return names.index(c)
            return None

        self.text = find([text_column.strip().lower()] if text_column else _CSV_TEXT_COLUMNS)
        self.id = find(_CSV_ID_COLUMNS)
        self.bare_id = self.id is not None and names[self.id] == "id"
        self.url = find(_CSV_URL_COLUMNS)
        self.date = find(_CSV_DATE_COLUMNS)
        self.lang = find(_CSV_LANG_COLUMNS)
        self.author = find(_CSV_AUTHOR_COLUMNS)
        self.retweet_of = find(("retweeted_status_id",))
        self.is_retweet = find(("is_retweet",))
        self.reply_to = find(("in_reply_to_status_id", "in_reply_to_tweet_id"))
        self.is_reply = find(("is_reply",))
        self.quote_of = find(("quoted_status_id", "quoted_tweet_id"))
        self.is_quote = find(("is_quote", "is_quote_status"))
        self.width = len(names)
        # Twitter's legacy tweets.csv leaves its last column out when it is empty and repeats it per URL.
        self.url_tail = names[-1] == "expanded_urls"

    def fits(self, row: list[str]) -> bool:
        """Whether ``row`` has the header's fields: an unquoted delimiter in a text adds one, a newline in
        an unquoted text splits a row in two short ones (legacy ``expanded_urls`` rows: see above)."""
        n = len(row)
        if n == self.width:
            return True
        if not self.url_tail:
            return False
        return n == self.width - 1 or (n > self.width and all(_URL_FIELD.match(f) for f in row[self.width:]))


_URL_FIELD = re.compile(r"https?://\S*\Z")


def _cell(row: list[str], index: int | None) -> str:
    return row[index] if index is not None and index < len(row) else ""


def _flag(row: list[str], value: int | None, truthy: int | None) -> bool:
    """A retweet / reply / quote flag: an id in column ``value`` or a true column ``truthy`` (either may
    be absent)."""
    return ((value is not None and bool(_cell(row, value).strip()))
            or (truthy is not None and _truthy(_cell(row, truthy))))


_CSV_DELIMITERS = (",", ";", "\t")
_CSV_DELIMITER_NAMES = {"comma": ",", "semicolon": ";", "tab": "\t", "\\t": "\t", "pipe": "|"}
_CSV_SNIFF_CHARS = 64 << 10  # the head the delimiter is sniffed from ...
_CSV_SNIFF_ROWS = 50  # ... at most this many rows of it
# A record whose quoted field is still open after this many characters is a runaway (unterminated)
# quote. The longest real text, a note tweet, is 25,000 characters; a tweet may be all newlines, so
# there is no bound on lines.
_CSV_MAX_RECORD_CHARS = 64 << 10


def parse_csv_delimiter(value: str) -> str:
    """A ``--csv-delimiter`` value -> the delimiter: one character, or comma / semicolon / tab / pipe /
    ``\\t``. Raises ValueError otherwise."""
    delimiter = _CSV_DELIMITER_NAMES.get(value.strip().lower(), value) if value.strip() else value
    if len(delimiter) != 1 or delimiter in "\"\r\n":
        raise ValueError(f"a CSV delimiter is one character (or comma, semicolon, tab, pipe), not {value!r}")
    return delimiter


def _sample_rows(lines: list[str], delimiter: str, quoting: int) -> tuple[list[list[str]], int]:
    """The first non-blank rows of ``lines`` read with this dialect, and how many failed to parse (not
    counting a record cut off by the end of the sample)."""
    ended: list[bool] = []

    def feed() -> Iterator[str]:
        for line in lines:
            yield line + "\n"
        ended.append(True)

    reader = csv.reader(feed(), delimiter=delimiter, quoting=quoting, strict=True)
    rows: list[list[str]] = []
    errors = 0
    while len(rows) < _CSV_SNIFF_ROWS:
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error:
            if ended:  # the sample ended inside the record
                break
            errors += 1
            continue
        if row and (len(row) > 1 or row[0].strip()):
            rows.append(row)
    return rows, errors


def _sniff_dialect(lines: list[str], delimiter: str | None, hint: str,
                   text_column: str | None) -> tuple[str, int]:
    """(delimiter, quoting) of a CSV file from its first lines: content decides, the name is a hint.

    Each candidate (comma, semicolon, tab; or the delimiter given) reads the first rows. The best splits
    the header into 2+ fields, then gives the most rows of the header's width less rows that fail to
    parse, then names a text column, then is the hint. Tab is also tried without quoting: TSV files
    often hold texts that start with a quote unescaped.
    """
    names = {text_column.strip().lower()} if text_column else set(_CSV_TEXT_COLUMNS)
    choice = (delimiter or hint, csv.QUOTE_MINIMAL)
    best: tuple | None = None
    for candidate in (delimiter,) if delimiter else _CSV_DELIMITERS:
        for quoting in (csv.QUOTE_MINIMAL, csv.QUOTE_NONE) if candidate == "\t" else (csv.QUOTE_MINIMAL,):
            rows, errors = _sample_rows(lines, candidate, quoting)
            if not rows or len(rows[0]) < 2:
                continue
            width = len(rows[0])
            header = {h.strip().lstrip("\ufeff").lower() for h in rows[0]}
            score = (sum(len(r) == width for r in rows[1:]) - errors, bool(header & names), candidate == hint,
                     quoting == csv.QUOTE_MINIMAL)
            if best is None or score > best:
                best, choice = score, (candidate, quoting)
    return choice


class _RunawayQuote(Exception):
    """A quoted field still open after ``_CSV_MAX_RECORD_CHARS``."""


class _CsvSource:
    """The physical lines under ``csv.reader``, keeping those of the record being read in ``pending``.

    So a record that fails is one dead letter for its first line, and its other lines are read again
    (``skip_first``); a quoted field running on past ``_CSV_MAX_RECORD_CHARS`` raises ``_RunawayQuote``
    out of the reader. The decoder's dead letters go to ``side``, in file order.
    """

    def __init__(self, decoded: Iterator[tuple[str, int, int] | DeadLetter], side: list[DeadLetter]):
        self._decoded = iter(decoded)
        self._side = side
        self._queue: list[tuple[str, int, int]] = []  # lines to read again, the next one last
        self.pending: list[tuple[str, int, int]] = []

    def _pull(self) -> tuple[str, int, int] | None:
        for item in self._decoded:
            if type(item) is not DeadLetter:
                return item
            self._side.append(item)
        return None

    def peek(self, max_chars: int) -> list[str]:
        """The text of the next lines, up to ``max_chars`` (they are still read after)."""
        ahead: list[tuple[str, int, int]] = []
        size = 0
        while size < max_chars:
            item = self._pull()
            if item is None:
                break
            ahead.append(item)
            size += len(item[0]) + 1
        self._queue.extend(reversed(ahead))
        return [item[0] for item in ahead]

    def lines(self) -> Iterator[str]:
        """The lines for one ``csv.reader`` (a new one after each failed record)."""
        pending, queue, decoded, side = self.pending, self._queue, self._decoded, self._side
        chars = 0
        while True:
            if not pending:
                chars = 0
            elif chars > _CSV_MAX_RECORD_CHARS:
                raise _RunawayQuote
            item = queue.pop() if queue else next(decoded, None)
            if item is None:
                return
            if type(item) is DeadLetter:
                side.append(item)
                continue
            pending.append(item)
            chars += len(item[0])
            yield item[0] + "\n"

    def skip_first(self) -> tuple[str, int, int] | None:
        """Drop the failed record's first line; its other lines are read again."""
        if not self.pending:
            return None
        first = self.pending[0]
        self._queue.extend(reversed(self.pending[1:]))
        self.pending.clear()
        return first


class _CsvReader:
    """Legacy ``tweets.csv`` and generic CSV exports: one record per row, multi-line quoted fields.

    Nothing is cut or swallowed silently. A row whose field count is not its header's (an unquoted
    delimiter in a text, a newline that split a row) is one ``malformed_csv_row`` dead letter. A record
    csv cannot read (a quote still open at the end of input or after ``_CSV_MAX_RECORD_CHARS``, a stray
    character after a closing quote, a field over csv's limit) is one dead letter for its first line,
    and reading resumes at the line after it: an unterminated quote costs its row, not the rows after.
    The delimiter is sniffed (``_sniff_dialect``) unless ``csv_delimiter`` names it.
    """

    def __init__(self, ctx: _Context, text_column: str | None, csv_delimiter: str | None = None):
        self._ctx = ctx
        self._text_column = text_column
        self._delimiter = parse_csv_delimiter(csv_delimiter) if csv_delimiter else None
        self._tweets = _TweetBuilder(ctx)

    def read(self, lines: Iterator[Line]) -> Iterator[Record]:
        ctx = self._ctx
        side: list[DeadLetter] = []
        source = _CsvSource(_LineDecoder(lines, ctx), side)
        hint = "\t" if source_file_name(ctx.path).lower().endswith((".tsv", ".tab")) else ","
        delimiter, quoting = _sniff_dialect(source.peek(_CSV_SNIFF_CHARS), self._delimiter, hint,
                                            self._text_column)
        reader = csv.reader(source.lines(), delimiter=delimiter, quoting=quoting, strict=True)
        pending = source.pending
        cols: _CsvColumns | None = None
        while True:
            failure = None
            try:
                row = next(reader)
            except StopIteration:
                row = None
            except csv.Error as e:
                failure = str(e)
            except _RunawayQuote:
                failure = f"quoted field still open after {_CSV_MAX_RECORD_CHARS} characters"
            if side:
                yield from side
                side.clear()
            if failure is not None:
                first = source.skip_first()
                text, offset, lineno = first if first is not None else ("", None, None)
                yield ctx.dead(REASON_MALFORMED_ROW, f"{failure}; reading resumes at the next line", text,
                               lineno, offset)
                reader = csv.reader(source.lines(), delimiter=delimiter, quoting=quoting, strict=True)
                continue
            if row is None:
                break
            _, offset, lineno = pending[0]
            if not row or (len(row) == 1 and not row[0].strip()):
                pending.clear()
                continue
            if cols is None:
                pending.clear()
                cols = _CsvColumns(row, self._text_column)
                if cols.text is None:
                    wanted = self._text_column or "/".join(_CSV_TEXT_COLUMNS)
                    yield ctx.dead(REASON_NO_TEXT_COLUMN, f"no text column ({wanted}) in header",
                                   delimiter.join(row), lineno, offset)
                    return
                continue
            if len(row) != cols.width and not cols.fits(row):
                raw = "\n".join(line for line, _, _ in pending)
                pending.clear()
                yield ctx.dead(REASON_MALFORMED_ROW, f"row has {len(row)} fields, its header {cols.width}",
                               raw, lineno, offset)
                continue
            pending.clear()
            yield self._row(row, cols, lineno)

    def _row(self, row: list[str], cols: _CsvColumns, line_num: int) -> Record:
        ctx = self._ctx
        if cols.text >= len(row):
            return ctx.dead(REASON_MALFORMED_ROW, f"row has {len(row)} fields, text is field {cols.text + 1}",
                            ",".join(row), line_num)
        text = row[cols.text]
        if not _has_text(text):
            ctx.take()
            return DROP_NO_TEXT
        raw_id = _cell(row, cols.id).strip()
        tid = _parse_id(raw_id)
        invalid_id = tid is None and raw_id != ""
        if tid is not None and cols.bare_id and tid < _MIN_BARE_CSV_ID:
            tid = None  # a row number, not an invalid id
        if tid is None and cols.url is not None:
            m = _STATUS_URL.search(_cell(row, cols.url))
            tid = _parse_id(m.group(1)) if m else None
        return self._tweets.make(
            tid, text, FORMAT_CSV,
            created=_cell(row, cols.date),
            author=_cell(row, cols.author).strip(),
            lang=_cell(row, cols.lang).strip() or None,
            is_retweet=_flag(row, cols.retweet_of, cols.is_retweet) or _MANUAL_RT.match(text) is not None,
            is_reply=_flag(row, cols.reply_to, cols.is_reply),
            is_quote=_flag(row, cols.quote_of, cols.is_quote),
            invalid_id=invalid_id,
        )


# ---------------------------------------------------------------------------------------------------
# Format detection and the public core API
# ---------------------------------------------------------------------------------------------------

_JSON_KEY = re.compile(rb'"([A-Za-z_]\w*)"\s*:')
_V2_MARKERS = frozenset((b"edit_history_tweet_ids", b"author_id", b"conversation_id", b"referenced_tweets",
                         b"__twarc", b"matching_rules", b"includes", b"public_metrics", b"reply_settings",
                         b"note_tweet", b"redacted_at"))
_V1_MARKERS = frozenset((b"id_str", b"screen_name", b"in_reply_to_status_id", b"retweeted_status",
                         b"full_text", b"statuses", b"extended_tweet", b"favorited", b"truncated", b"user"))
_ARCHIVE_ARRAY = re.compile(rb'\[\s*\{\s*"(?:tweet|noteTweet)"\s*:')


def _decompress_head(head: bytes) -> bytes:
    """Best-effort decompression of the first bytes of a compressed file, for sniffing only."""
    return decompress_head(head, HEAD_BYTES)


# A JavaScript assignment of a JSON array / object at the start of a file (``var tweets = [{``).
_JS_HEAD = re.compile(rb"(?:(?:var|let|const)\s+)?([A-Za-z_$][\w$]*(?:\s*\.\s*[A-Za-z_$][\w$]*)*)\s*=\s*"
                      rb"(?:\[\s*(?:[\[{\]\"]|\Z)|\{\s*(?:[\"}]|\Z))")


def detect_format(path: str, head: bytes) -> str:
    """The source format of a file from its first bytes (content first, then the file extension).

    ``head`` may be compressed: it is decompressed as far as it goes. Returns one of SOURCE_FORMATS.
    """
    head = _decompress_head(head).lstrip(b" \t\r\n")
    if head.startswith(_UTF8_BOM):
        head = head[3:].lstrip(b" \t\r\n")
    name = source_file_name(path).lower()
    if head.startswith(b"window.YTD."):
        return FORMAT_ARCHIVE
    if head.startswith(b"Grailbird.data."):
        return FORMAT_GRAILBIRD
    if head[:1] in (b"{", b"["):
        if _ARCHIVE_ARRAY.match(head):
            return FORMAT_ARCHIVE
        keys = set(_JSON_KEY.findall(head[:HEAD_BYTES]))
        if len(keys & _V2_MARKERS) > len(keys & _V1_MARKERS):
            return FORMAT_V2
        if not keys & _V1_MARKERS and {b"action", b"id"} <= keys:  # v2 batch compliance lines
            return FORMAT_V2
        return FORMAT_V1
    js = _JS_HEAD.match(head)
    if js is not None:  # ``xxx = [{...``: never text, whatever the name; the archive reader judges the prefix
        return FORMAT_GRAILBIRD if js.group(1).lower().startswith(b"grailbird") else FORMAT_ARCHIVE
    if name.endswith((".csv", ".tsv")):
        return FORMAT_CSV
    if any(signature.match(head) for signature, _ in _SIGNATURES):
        return FORMAT_TEXT  # an image, a zip, ...: the text reader makes it one binary_content dead letter
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return FORMAT_V1  # junk before the first value: the JSON reader dead-letters it and goes on
    if name.endswith((".txt", ".text")):
        return FORMAT_TEXT
    header = {f.strip().strip(b'"').decode("utf-8", "replace") for f in
              re.split(rb"[,;\t]", head.split(b"\n", 1)[0].strip().lower())}
    if len(header) > 1 and header & set(_CSV_TEXT_COLUMNS):  # a header row naming a text column
        return FORMAT_CSV
    return FORMAT_TEXT


def _records(path: str, stream: _SafeStream, fmt: str, csv_text_column: str | None, head: bytes,
             notes: Counter | None, keep_deleted: bool = False, csv_delimiter: str | None = None
             ) -> Iterator[Record]:
    ctx = _Context(path, fmt, notes)
    ctx.keep_deleted = keep_deleted
    chunks = _chunks(stream, head)
    if fmt in (FORMAT_V1, FORMAT_V2):
        records = _read_json(ctx, chunks, stream)
    elif fmt == FORMAT_ARCHIVE:
        records = _read_archive(ctx, chunks, stream)
    elif fmt == FORMAT_GRAILBIRD:
        records = _read_grailbird(ctx, chunks, stream)
    elif fmt == FORMAT_CSV:
        records = _CsvReader(ctx, csv_text_column, csv_delimiter).read(_iter_lines(chunks, stream))
    else:
        records = _read_text(ctx, _iter_lines(chunks, stream))
    # A value cut off by the end of input is held back one step: if the stream broke, that is the
    # record at the break, and the one truncated_stream dead letter stands for it.
    held: DeadLetter | None = None
    for record in records:
        if held is not None:
            yield held
            held = None
        if type(record) is DeadLetter and record.reason == REASON_UNEXPECTED_EOF:
            held = record
        else:
            yield record
    if stream.error is not None:
        reason, detail = stream.error
        raw = held.raw if held is not None else stream.partial.decode("utf-8", "replace")
        yield ctx.dead(reason, f"{detail} (records before the break were kept)", raw, None, stream.offset)
    elif held is not None:
        yield held


def open_records(path: str, fileobj: BinaryIO, fmt: str | None = None, *, csv_text_column: str | None = None,
                 notes: Counter | None = None, keep_deleted: bool = False, csv_delimiter: str | None = None
                 ) -> tuple[str, Iterator[Record]]:
    """Like ``iter_records``, also returning the format used (detected unless ``fmt`` is given).

    ``notes``, when given, counts the changes made to kept records (see ``_Context.notes``);
    ``keep_deleted`` keeps the tweets of an archive's ``deleted-tweets.js`` instead of dropping them.
    """
    if fmt is not None and fmt not in SOURCE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {SOURCE_FORMATS}")
    stream = _open_decompressed(fileobj)
    head = b""
    while len(head) < HEAD_BYTES:  # decompressors may return less than asked
        data = stream.read(HEAD_BYTES - len(head))
        if not data:
            break
        head += data
    used = fmt or detect_format(path, head)
    return used, _records(path, stream, used, csv_text_column, head, notes, keep_deleted, csv_delimiter)


def iter_records(path: str, fileobj: BinaryIO, fmt: str | None = None, *, csv_text_column: str | None = None,
                 csv_delimiter: str | None = None) -> Iterator[Tweet | DeadLetter | str]:
    """Parse one file: each input record -> a ``Tweet``, a ``DROP_*`` reason, or a ``DeadLetter``.

    ``fileobj`` is the raw (possibly compressed) binary stream of ``path``; it is read incrementally.
    ``fmt`` forces a format (default: ``detect_format``); ``csv_text_column`` names the CSV text column
    and ``csv_delimiter`` its delimiter (default: sniffed).
    """
    return open_records(path, fileobj, fmt, csv_text_column=csv_text_column, csv_delimiter=csv_delimiter)[1]

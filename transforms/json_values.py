"""Incremental JSON values: the top-level values of a byte stream and the elements of top-level
arrays, one at a time, in bounded memory.

This layer only answers "which JSON values does this file hold, and where is the input that is
none?", so the tweet rules (``tweet_objects``) never see bytes. JSON lines take a fast path (one
``loads`` per line); anything else (pretty-printed values, back-to-back ``}{``, multi-GB arrays, junk
between values) is decoded through a window, resynchronising at the next line that starts a value
after bad input. What cannot be decoded comes out as ``BadValue`` items, located by line and byte
offset, for the caller to turn into dead letters.
"""

from __future__ import annotations

import codecs
import json
import re
from collections.abc import Callable, Generator, Iterable, Iterator
from typing import Any

from tweetmill.schemas.records import DeadLetter
from tweetmill.transforms import streams
from tweetmill.transforms.streams import REASON_RECORD_TOO_LARGE, without_bom

try:  # orjson decodes v1 JSON lines ~2x faster than the stdlib (measured); the stdlib is the fallback.
    import orjson

    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - exercised only where orjson is not installed
    _loads = json.loads

# Dead-letter reasons of this layer.
REASON_INVALID_JSON = "invalid_json"
REASON_UNEXPECTED_EOF = "unexpected_end_of_input"  # the input ends inside a JSON value

_WINDOW_TRIM = 1 << 20  # the multi-line JSON decoder drops decoded text once it is this far in
_STREAM_ARRAY_BYTES = 4 << 20  # a one-line JSON array longer than this is decoded element by element

_JSON_DECODER = json.JSONDecoder()
_JSON_ERRORS = (ValueError, RecursionError)  # orjson / json decode errors and deep nesting

# Lone surrogates: invalid UTF-8 bytes escaped by the window's "surrogateescape" decoding, and JSON
# escapes of half a surrogate pair. Every text and dead letter leaving the parser is rid of them.
SURROGATES = re.compile("[\ud800-\udfff]")
ESCAPED_BYTES = re.compile("[\udc80-\udcff]")  # invalid UTF-8 bytes, as "surrogateescape" decodes them


def no_surrogates(s: str) -> str:
    """Lone surrogates -> U+FFFD: they cannot be written as UTF-8 downstream.

    They come from invalid UTF-8 bytes (escaped while decoding a JSON window) and from JSON escapes
    of half an emoji (``"\\ud83d"``, where Twitter cut a text in the middle of a surrogate pair).
    """
    if s.isascii() or SURROGATES.search(s) is None:
        return s
    return SURROGATES.sub("\ufffd", s)


def safe_raw(s: str) -> str:
    """``s`` as a dead letter's ``raw``: cut to ``DeadLetter.MAX_RAW_CHARS``, without lone surrogates."""
    return no_surrogates(s[: DeadLetter.MAX_RAW_CHARS])


class BadValue:
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


class JsonValues:
    """Top-level JSON values of a byte stream, and the elements of top-level arrays, one at a time.

    JSON lines take a fast path (one ``loads`` per line). Anything else (pretty-printed values,
    back-to-back ``}{``, whole-document arrays streamed element by element so a multi-GB
    archive never sits in memory, junk between values) goes through ``_Window`` and
    ``JSONDecoder.raw_decode``. Yields decoded values and ``BadValue`` items; memory is bounded
    by ``MAX_RECORD_BYTES`` per value.
    """

    def __init__(self, chunks: Iterable[bytes], broken: Callable[[], bool] = lambda: False, offset: int = 0):
        self._chunks = without_bom(iter(chunks))
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
                if pending > streams.MAX_RECORD_BYTES:
                    bad, buf, pos, offset, lineno, eof = self._skip_long_line(buf, pos, offset, lineno)
                    yield bad
                    continue
                if not eof:  # gather chunks up to the next newline, joined once (long lines stay linear)
                    limit = _STREAM_ARRAY_BYTES if array else streams.MAX_RECORD_BYTES
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
        detail = f"line of {length} bytes exceeds {streams.MAX_RECORD_BYTES}"
        bad = BadValue(REASON_RECORD_TOO_LARGE, detail, lineno, start, head.decode("utf-8", "replace"))
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
                    detail = "array not closed at end of input"
                    yield BadValue(REASON_UNEXPECTED_EOF, detail, line, offset, "")
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
                if may_go_on and n - k < streams.MAX_RECORD_BYTES and win.pull():
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
    def _bad(win: _Window, k: int, r: int, detail: str, reason: str) -> BadValue:
        line, offset = win.locate(k)
        return BadValue(reason, detail, line, offset, safe_raw(win.text[k:r]))

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
            if len(win.text) - k > streams.MAX_RECORD_BYTES or not win.pull():
                return len(win.text), False

"""Text lines: bytes -> str per line for the text and CSV readers, and what is not text.

One question, asked of every line of a text or CSV file: is this text, and in which encoding? A file
whose head is not text (a known binary signature, UTF-16/32, mostly bad lines) is one dead letter; a
stretch of binary lines inside a text file is one dead letter; non-UTF-8 lines are repaired, as UTF-8
or as the file's legacy 8-bit encoding, and counted. ``SIGNATURES`` also serves format detection. The
plain-text reader (one tweet per line) lives here: it is this decoder and little else.
"""

from __future__ import annotations

import itertools
import logging
import re
from collections.abc import Iterator

from tweetmill.schemas.records import FORMAT_TEXT, DeadLetter, Tweet, derived_tweet_id
from tweetmill.transforms.streams import REASON_RECORD_TOO_LARGE, Line
from tweetmill.transforms.tweet_objects import NOTE_INVALID_UTF8, FileContext, Record

logger = logging.getLogger(__name__)

# Dead-letter reasons of the text and CSV readers' content checks.
REASON_BINARY = "binary_content"  # not text: a known binary format, NUL / control bytes
REASON_ENCODING = "unsupported_encoding"  # text, but neither UTF-8 nor Latin 8-bit text (UTF-16, ...)

_LEGACY_LOOKAHEAD_BYTES = 8 << 20  # lines examined to choose a non-UTF-8 file's legacy encoding
# Bytes that cp1252 leaves undefined: their presence in a non-UTF-8 file means Mac Roman (old Excel for
# Mac saves; measured on BarackObama.csv, whose 0x9D bytes decode only there and whose "‰Û"-style
# mojibake only appears when read as Mac Roman).
_CP1252_UNDEFINED = re.compile(rb"[\x81\x8d\x8f\x90\x9d]")

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
SIGNATURES = tuple((re.compile(pattern, re.DOTALL), what) for pattern, what in (
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
    for signature, what in SIGNATURES:
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

    def dead(self, ctx: FileContext) -> DeadLetter:
        lines = f"line {self.first}" if self.first == self.last else f"lines {self.first}-{self.last}"
        if self.binary:
            reason, what = REASON_BINARY, "binary data (NUL / control bytes)"
        else:
            reason, what = REASON_ENCODING, "undecodable text (neither UTF-8 nor Latin 8-bit text)"
        return ctx.dead(reason, f"{what} in {lines} ({self.nbytes} bytes)", _escaped(self.raw), self.first,
                        self.offset)


class LineDecoder:
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

    def __init__(self, lines: Iterator[Line], ctx: FileContext, runs: bool = False):
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
            if type(batch[0][0]) is not bytes:  # a TooLong line, alone
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
        """The lines in runs of up to ``_BATCH_BYTES``; a ``TooLong`` line comes alone."""
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


def read_text(ctx: FileContext, lines: Iterator[Line]) -> Iterator[Record]:
    """Plain text, one tweet per line; blank lines are not records. Ids are derived (``derived_tweet_id``).

    What is not text comes as dead letters (``LineDecoder``), never as rows.
    """
    path = ctx.path
    for run in LineDecoder(lines, ctx, runs=True):
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

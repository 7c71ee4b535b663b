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

This module detects the format and runs the reader; the layers live in their own modules:
``streams`` (bytes: decompression, truncation, lines), ``json_values`` (incremental JSON values),
``tweet_fields`` (dates, ids, visible text), ``tweet_objects`` (JSON records -> Tweets, archive and
Grailbird readers), ``text_lines`` (text decoding, binary sniffing, the text reader) and
``csv_records`` (the CSV reader). Tweet text patterns are shared with the other stages in
``twitter_text``.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator
from typing import BinaryIO

from tweetmill.schemas.records import (
    FORMAT_ARCHIVE,
    FORMAT_CSV,
    FORMAT_GRAILBIRD,
    FORMAT_TEXT,
    FORMAT_V1,
    FORMAT_V2,
    SOURCE_FORMATS,
    DeadLetter,
    Tweet,
    source_file_name,
)
from tweetmill.transforms.containers import decompress_head
from tweetmill.transforms.csv_records import CSV_TEXT_COLUMNS, CsvReader
from tweetmill.transforms.json_values import REASON_UNEXPECTED_EOF
from tweetmill.transforms.streams import UTF8_BOM, SafeStream, iter_lines, open_decompressed, read_chunks
from tweetmill.transforms.text_lines import SIGNATURES, read_text
from tweetmill.transforms.tweet_objects import FileContext, Record, read_archive, read_grailbird, read_json

HEAD_BYTES = 64 << 10  # how much of a file format detection looks at


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
    if head.startswith(UTF8_BOM):
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
    if any(signature.match(head) for signature, _ in SIGNATURES):
        return FORMAT_TEXT  # an image, a zip, ...: the text reader makes it one binary_content dead letter
    if name.endswith((".json", ".jsonl", ".ndjson")):
        return FORMAT_V1  # junk before the first value: the JSON reader dead-letters it and goes on
    if name.endswith((".txt", ".text")):
        return FORMAT_TEXT
    header = {f.strip().strip(b'"').decode("utf-8", "replace") for f in
              re.split(rb"[,;\t]", head.split(b"\n", 1)[0].strip().lower())}
    if len(header) > 1 and header & set(CSV_TEXT_COLUMNS):  # a header row naming a text column
        return FORMAT_CSV
    return FORMAT_TEXT


def _records(path: str, stream: SafeStream, fmt: str, csv_text_column: str | None, head: bytes,
             notes: Counter | None, keep_deleted: bool = False, csv_delimiter: str | None = None
             ) -> Iterator[Record]:
    ctx = FileContext(path, fmt, notes)
    ctx.keep_deleted = keep_deleted
    chunks = read_chunks(stream, head)
    if fmt in (FORMAT_V1, FORMAT_V2):
        records = read_json(ctx, chunks, stream)
    elif fmt == FORMAT_ARCHIVE:
        records = read_archive(ctx, chunks, stream)
    elif fmt == FORMAT_GRAILBIRD:
        records = read_grailbird(ctx, chunks, stream)
    elif fmt == FORMAT_CSV:
        records = CsvReader(ctx, csv_text_column, csv_delimiter).read(iter_lines(chunks, stream))
    else:
        records = read_text(ctx, iter_lines(chunks, stream))
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

    ``notes``, when given, counts the changes made to kept records (see ``FileContext.notes``);
    ``keep_deleted`` keeps the tweets of an archive's ``deleted-tweets.js`` instead of dropping them.
    """
    if fmt is not None and fmt not in SOURCE_FORMATS:
        raise ValueError(f"unknown format {fmt!r}; expected one of {SOURCE_FORMATS}")
    stream = open_decompressed(fileobj)
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

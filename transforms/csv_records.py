"""CSV records: Twitter's legacy ``tweets.csv`` and generic CSV / TSV exports -> Tweets.

CSV has failure modes of its own, hence a module of its own: the delimiter and quoting are sniffed
from the content (the file name is a hint), columns are found by the names tweet exports use, and a
row that does not fit its header or a runaway quote costs one dead letter and that row only. Lines
come through ``text_lines.LineDecoder`` (binary junk and legacy encodings handled as for text), Tweets
through ``tweet_objects.TweetBuilder``.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Iterator

from tweetmill.schemas.records import DROP_NO_TEXT, FORMAT_CSV, DeadLetter, source_file_name
from tweetmill.transforms.streams import Line
from tweetmill.transforms.text_lines import LineDecoder
from tweetmill.transforms.tweet_fields import RT_PREFIX, has_text, parse_bool, parse_id
from tweetmill.transforms.tweet_objects import FileContext, Links, Record, TweetBuilder

# Dead-letter reasons of this layer.
REASON_MALFORMED_ROW = "malformed_csv_row"
REASON_NO_TEXT_COLUMN = "no_text_column"

CSV_TEXT_COLUMNS = ("text", "full_text", "tweet_text", "tweet", "content", "body", "message", "status",
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

        self.text = find([text_column.strip().lower()] if text_column else CSV_TEXT_COLUMNS)
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
        self.reply_to_user = find(("in_reply_to_user_id", "in_reply_to_user_id_str"))
        self.conversation = find(("conversation_id",))
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


def _links(row: list[str], cols: _CsvColumns) -> Links:
    """The reply, conversation and quote ids a row's columns hold (legacy tweets.csv, twarc-csv)."""
    reply_to = parse_id(_cell(row, cols.reply_to).strip())
    author = parse_id(_cell(row, cols.reply_to_user).strip()) if reply_to is not None else None
    return Links(reply_to, author, parse_id(_cell(row, cols.conversation).strip()),
                 parse_id(_cell(row, cols.quote_of).strip()))


def _flag(row: list[str], value: int | None, truthy: int | None) -> bool:
    """A retweet / reply / quote flag: an id in column ``value`` or a true column ``truthy`` (either may
    be absent)."""
    return ((value is not None and bool(_cell(row, value).strip()))
            or (truthy is not None and parse_bool(_cell(row, truthy))))


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
    names = {text_column.strip().lower()} if text_column else set(CSV_TEXT_COLUMNS)
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


class CsvReader:
    """Legacy ``tweets.csv`` and generic CSV exports: one record per row, multi-line quoted fields.

    Nothing is cut or swallowed silently. A row whose field count is not its header's (an unquoted
    delimiter in a text, a newline that split a row) is one ``malformed_csv_row`` dead letter. A record
    csv cannot read (a quote still open at the end of input or after ``_CSV_MAX_RECORD_CHARS``, a stray
    character after a closing quote, a field over csv's limit) is one dead letter for its first line,
    and reading resumes at the line after it: an unterminated quote costs its row, not the rows after.
    The delimiter is sniffed (``_sniff_dialect``) unless ``csv_delimiter`` names it.
    """

    def __init__(self, ctx: FileContext, text_column: str | None, csv_delimiter: str | None = None):
        self._ctx = ctx
        self._text_column = text_column
        self._delimiter = parse_csv_delimiter(csv_delimiter) if csv_delimiter else None
        self._tweets = TweetBuilder(ctx)

    def read(self, lines: Iterator[Line]) -> Iterator[Record]:
        ctx = self._ctx
        side: list[DeadLetter] = []
        source = _CsvSource(LineDecoder(lines, ctx), side)
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
                    wanted = self._text_column or "/".join(CSV_TEXT_COLUMNS)
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
        if not has_text(text):
            ctx.take()
            return DROP_NO_TEXT
        raw_id = _cell(row, cols.id).strip()
        tid = parse_id(raw_id)
        invalid_id = tid is None and raw_id != ""
        if tid is not None and cols.bare_id and tid < _MIN_BARE_CSV_ID:
            tid = None  # a row number, not an invalid id
        if tid is None and cols.url is not None:
            m = _STATUS_URL.search(_cell(row, cols.url))
            tid = parse_id(m.group(1)) if m else None
        return self._tweets.make(
            tid, text, FORMAT_CSV,
            created=_cell(row, cols.date),
            author=_cell(row, cols.author).strip(),
            lang=_cell(row, cols.lang).strip() or None,
            is_retweet=_flag(row, cols.retweet_of, cols.is_retweet) or RT_PREFIX.match(text) is not None,
            is_reply=_flag(row, cols.reply_to, cols.is_reply),
            is_quote=_flag(row, cols.quote_of, cols.is_quote),
            invalid_id=invalid_id,
            links=_links(row, cols),
        )

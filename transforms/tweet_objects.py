"""JSON records -> Tweets: v1.1, v2 and account-archive (YTD / Grailbird) objects.

The tweet layer of the parse stage. Each decoded JSON value of a file (``json_values``) becomes
Tweets, drop reasons or dead letters (``_JsonRecords``); Tweets are built in one place
(``TweetBuilder``, which the CSV reader uses too), and ``FileContext`` carries a file's state (path,
format, next record position, notes) through every reader. The archive and Grailbird readers strip
the JavaScript assignment such a file starts with and read the rest as JSON.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

from tweetmill.schemas.records import (
    DROP_API_ERROR,
    DROP_COMPLIANCE_EVENT,
    DROP_DELETE_NOTICE,
    DROP_DELETED_BY_AUTHOR,
    DROP_NO_TEXT,
    DROP_STREAM_NOTICE,
    FORMAT_ARCHIVE,
    FORMAT_GRAILBIRD,
    FORMAT_V1,
    FORMAT_V2,
    DeadLetter,
    Tweet,
    derived_tweet_id,
)
from tweetmill.transforms.json_values import (
    ESCAPED_BYTES,
    SURROGATES,
    BadValue,
    JsonValues,
    no_surrogates,
    safe_raw,
)
from tweetmill.transforms.streams import SafeStream, without_bom
from tweetmill.transforms.tweet_fields import (
    RT_PREFIX,
    apply_display_text_range,
    has_text,
    has_value,
    parse_bool,
    parse_created_at,
    parse_id,
    v1_visible_text,
)

logger = logging.getLogger(__name__)

Record = Tweet | DeadLetter | str

# Dead-letter reasons of this layer.
REASON_UNRECOGNISED = "unrecognised_record"
REASON_UNSUPPORTED_ARCHIVE = "unsupported_archive_file"
# A note (``FileContext.notes``): a kept line / text with bytes that were not valid UTF-8, repaired.
NOTE_INVALID_UTF8 = "invalid_utf8_repaired"

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


class FileContext:
    """Per-file state of every reader: the path, the format, the next record position, the notes."""

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
        return DeadLetter(self.path, self.take(), reason, no_surrogates(detail), line, byte_offset,
                          safe_raw(raw))


class Links(NamedTuple):
    """A tweet's links to other tweets (``Tweet.reply_to_id`` ...): None where the source has none."""

    reply_to_id: int | None = None
    reply_to_author_id: int | None = None
    conversation_id: int | None = None
    quoted_id: int | None = None


NO_LINKS = Links()


def v1_links(obj: dict) -> Links:
    """The links of a v1.1 / archive / Grailbird tweet object: ``in_reply_to_status_id(_str)``,
    ``in_reply_to_user_id(_str)``, ``quoted_status_id(_str)`` or ``quoted_status``; v1 has no
    conversation id. A retweet's links are the retweeted tweet's, not its own: it has none."""
    reply_to = parse_id(obj.get("in_reply_to_status_id_str")) or parse_id(obj.get("in_reply_to_status_id"))
    author = None
    if reply_to is not None:
        author = parse_id(obj.get("in_reply_to_user_id_str")) or parse_id(obj.get("in_reply_to_user_id"))
    quoted = parse_id(obj.get("quoted_status_id_str")) or parse_id(obj.get("quoted_status_id"))
    if quoted is None and isinstance(obj.get("quoted_status"), dict):
        q = obj["quoted_status"]
        quoted = parse_id(q.get("id_str")) or parse_id(q.get("id"))
    return Links(reply_to, author, None, quoted)


class TweetBuilder:
    """Builds the ``Tweet`` records of one file: from v1 / archive / v2 tweet objects, and (``make``)
    from the fields of any record, such as a CSV row."""

    def __init__(self, ctx: FileContext):
        self._ctx = ctx

    def make(self, tid: int | None, text: str, fmt: str, created: Any, author: Any, lang: Any,
             is_retweet: bool, is_reply: bool, is_quote: bool, invalid_id: bool = False, *,
             links: Links = NO_LINKS) -> Tweet:
        """``invalid_id``: the record has an id that is not one (``"abc"``, Excel's ``1.23457E+18``); the
        derived id that replaces it is counted in ``notes["invalid_id_replaced"]``."""
        ctx = self._ctx
        position = ctx.take()
        if not text.isascii() and SURROGATES.search(text) is not None:
            # Escaped invalid UTF-8 bytes (U+DC80-U+DCFF, from the JSON window) or JSON escapes of half
            # a surrogate pair: both become U+FFFD, counted.
            ctx.notes[NOTE_INVALID_UTF8 if ESCAPED_BYTES.search(text) else "lone_surrogate_repaired"] += 1
            text = SURROGATES.sub("\ufffd", text)
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
            author_id=parse_id(author),
            twitter_lang=no_surrogates(lang) if isinstance(lang, str) else None,
            is_retweet=is_retweet,
            is_reply=is_reply,
            is_quote=is_quote,
            reply_to_id=links.reply_to_id,
            reply_to_author_id=links.reply_to_author_id,
            conversation_id=links.conversation_id,
            quoted_id=links.quoted_id,
        )

    def v1(self, obj: dict, fmt: str) -> Tweet | str:
        """A v1.1 tweet object (also archive / Grailbird tweets, whose numbers may be strings)."""
        tid = parse_id(obj.get("id_str")) or parse_id(obj.get("id"))
        original = obj.get("retweeted_status")
        is_retweet = isinstance(original, dict)
        text = None
        if is_retweet:
            original_text = v1_visible_text(original)
            user = original.get("user")
            name = user.get("screen_name") if isinstance(user, dict) else None
            if not name:
                m = RT_PREFIX.match(obj.get("full_text") or obj.get("text") or "")
                name = m.group(1) if m else None
            if original_text and name:
                text = f"RT @{name}: {original_text}"
        if text is None:
            text = v1_visible_text(obj)
            if not is_retweet and text is not None:
                is_retweet = RT_PREFIX.match(text) is not None
        if not has_text(text):
            self._ctx.take()
            return DROP_NO_TEXT
        user = obj.get("user")
        author = (user.get("id_str") or user.get("id")) if isinstance(user, dict) else None
        is_reply = bool(obj.get("in_reply_to_status_id_str") or obj.get("in_reply_to_status_id"))
        is_quote = (parse_bool(obj.get("is_quote_status")) or isinstance(obj.get("quoted_status"), dict)
                    or bool(obj.get("quoted_status_id_str")))
        tweet = self.make(tid, text, fmt, obj.get("created_at"), author, obj.get("lang"), is_retweet,
                          is_reply, is_quote, tid is None and has_value(obj.get("id_str"), obj.get("id")),
                          links=v1_links(obj))
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
        reply_to = quoted = None
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
                    reply_to = reply_to or parse_id(ref.get("id"))
                elif kind == "quoted":
                    is_quote = True
                    quoted = quoted or parse_id(ref.get("id"))
        if obj.get("in_reply_to_user_id"):
            is_reply = True
        if not is_retweet and isinstance(text, str):
            is_retweet = RT_PREFIX.match(text) is not None
        if not has_text(text):
            self._ctx.take()
            return DROP_NO_TEXT
        author = obj.get("author_id")
        if author is None and isinstance(obj.get("author"), dict):
            author = obj["author"].get("id")
        tid = parse_id(obj.get("id"))
        links = Links(reply_to, parse_id(obj.get("in_reply_to_user_id")) if reply_to else None,
                      parse_id(obj.get("conversation_id")), quoted)
        return self.make(tid, text, FORMAT_V2, obj.get("created_at"), author, obj.get("lang"), is_retweet,
                         is_reply, is_quote, tid is None and has_value(obj.get("id")), links=links)

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
            m = RT_PREFIX.match(obj.get("text") or "")
            name = m.group(1) if m else None
        return f"RT @{name}: {text}" if name else None


class _JsonRecords:
    """Routes each decoded JSON value of a file to a Tweet, a drop reason or a dead letter."""

    def __init__(self, ctx: FileContext):
        self._ctx = ctx
        self._build = TweetBuilder(ctx)
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
        if not has_text(text):
            self._ctx.take()
            return DROP_NO_TEXT
        tid = parse_id(note.get("tweetId")) or parse_id(note.get("noteTweetId"))
        return self._build.make(tid, text, FORMAT_ARCHIVE, note.get("createdAt"), None, None,
                                RT_PREFIX.match(text) is not None, False, False,
                                tid is None and has_value(note.get("tweetId"), note.get("noteTweetId")))


def _index_by_id(items: Any) -> dict[str, dict]:
    if not isinstance(items, list):
        return {}
    return {str(x["id"]): x for x in items if isinstance(x, dict) and "id" in x}


# ---------------------------------------------------------------------------------------------------
# JSON, archive and Grailbird readers
# ---------------------------------------------------------------------------------------------------


def _bad_to_dead(ctx: FileContext, bad: BadValue) -> DeadLetter:
    return ctx.dead(bad.reason, bad.detail, bad.raw, bad.line, bad.byte_offset)


def read_json(ctx: FileContext, chunks: Iterable[bytes], stream: SafeStream | None = None,
              offset: int = 0) -> Iterator[Record]:
    """The JSON records of ``chunks`` (v1, v2, archive values) -> Tweets, drop reasons, dead letters.

    ``stream``, when given, is the input the chunks come from: if it broke, the unfinished last line
    is kept back in ``stream.partial`` (part of the one ``truncated_stream`` dead letter)."""
    records = _JsonRecords(ctx)
    broken = (lambda: stream.error is not None) if stream is not None else (lambda: False)
    values = JsonValues(chunks, broken, offset)
    for item in values:
        if type(item) is BadValue:
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
    it = without_bom(iter(chunks))
    first = next(it, b"")
    m = pattern.match(first) or _JS_ASSIGNMENT.match(first)
    if m is None:
        return None, itertools.chain([first], it), 0
    return m, itertools.chain([first[m.end() :]], it), m.end()


def _read_unknown_assignment(ctx: FileContext, m: re.Match, chunks: Iterator[bytes], stream: SafeStream,
                             offset: int) -> Iterator[Record]:
    """An assignment that names no known archive dataset (never read as text): its value is read as JSON
    when it is an array of tweets, counted in ``notes``; else the file is one dead letter naming it."""
    name = re.sub(rb"\s+", b"", m.group(1)).decode("ascii", "replace")
    first = next(chunks, b"")
    if _TWEET_ARRAY.match(first):
        ctx.notes[NOTE_UNKNOWN_PREFIX_READ] += 1
        logger.warning("%s: unknown prefix %r, read as a JSON array of tweets", ctx.path, name)
        yield from read_json(ctx, itertools.chain([first], chunks), stream, offset)
        return
    yield ctx.dead(REASON_UNKNOWN_JS_PREFIX,
                   f"unknown JavaScript assignment {name!r}: not a tweet archive dataset nor a tweet array",
                   (m.group(0) + first[:200]).decode("utf-8", "replace"), 1, 0)


def read_archive(ctx: FileContext, chunks: Iterable[bytes], stream: SafeStream) -> Iterator[Record]:
    """An account archive's ``window.YTD.<dataset>.partN = [...]`` file; datasets without tweets are one
    dead letter."""
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
    yield from read_json(ctx, chunks, stream, offset)


def read_grailbird(ctx: FileContext, chunks: Iterable[bytes], stream: SafeStream) -> Iterator[Record]:
    """A legacy Grailbird archive's ``Grailbird.data.tweets_YYYY_MM = [...]`` file; other datasets are one
    dead letter."""
    m, chunks, offset = _strip_assignment(chunks, _GRAILBIRD_PREFIX)
    if m is not None and m.re is not _GRAILBIRD_PREFIX:
        yield from _read_unknown_assignment(ctx, m, chunks, stream, offset)
        return
    if m is not None and not m.group(1).lower().startswith(b"tweets_"):
        # tweet_index, user_details, ...: the monthly tweets_YYYY_MM files hold the tweets
        name = m.group(1).decode("ascii")
        yield ctx.dead(REASON_UNSUPPORTED_ARCHIVE, f"Grailbird dataset {name!r} holds no tweets")
        return
    yield from read_json(ctx, chunks, stream, offset)

"""The record types that flow between pipeline stages.

Stages pass *lists* of these records (batches) so the hot paths stay vectorised. They are plain
dataclasses: cheap to pickle between Beam stages, easy to build in tests without Beam.
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
from dataclasses import dataclass, field

# Source formats a record can come from (``Tweet.source_format``).
FORMAT_V1 = "v1"  # Twitter API v1.1 tweet objects (REST, search, streaming)
FORMAT_V2 = "v2"  # Twitter API v2 responses, stream lines, twarc2 flattened lines
FORMAT_ARCHIVE = "archive"  # account archive tweets.js (window.YTD.*.partN)
FORMAT_GRAILBIRD = "grailbird"  # legacy account archive monthly files (Grailbird.data.*)
FORMAT_CSV = "csv"  # legacy tweets.csv and generic CSV exports
FORMAT_TEXT = "text"  # plain text, one tweet per line
SOURCE_FORMATS = (FORMAT_V1, FORMAT_V2, FORMAT_ARCHIVE, FORMAT_GRAILBIRD, FORMAT_CSV, FORMAT_TEXT)

UNDETERMINED_LANGUAGE = "und"

# Largest tweet id a derived id may take: real Twitter ids are < 2**63, so derived ids live in the
# same int64 space and order deterministically beside real ones.
_INT63 = (1 << 63) - 1
_PATH_SEPARATORS = re.compile(r"[/\\!]")  # folders, and ``container!member``
_COMPRESSED_SUFFIX = re.compile(r"\.(?:gz|gzip|bz2|xz|zst|zstd)$", re.IGNORECASE)


def source_file_name(source_file: str) -> str:
    """A source file's name without its folder, container or compression suffix: what stays the same
    however an archive is stored (``gs://b/x/a.zip!data/notes.txt.gz`` and ``/tmp/notes.txt``)."""
    return _COMPRESSED_SUFFIX.sub("", _PATH_SEPARATORS.split(source_file)[-1])


def derived_tweet_id(source_file: str, position: int, text: str) -> int:
    """A deterministic id for a record that has none (plain text, id-less CSV rows).

    Derived from the file's *name* (not its directory, its container or its compression suffix), the
    record's position and its text, so the same archive gives the same ids, hence the same dedup
    survivors and shards, whether it is read from a laptop or from ``gs://``, packed in a zip or a
    tar (``a.zip!data/notes.txt``) or compressed (``notes.txt.gz``). Records of same-named files in
    different folders differ in text or position; where both are equal the two are the same record of
    two copies of one file, and the second is dropped as a duplicate id.
    """
    name = source_file_name(source_file)
    key = f"{name}\x00{position}\x00{text}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hashlib.blake2b(key, digest_size=8).digest(), "big") & _INT63


@dataclass
class Tweet:
    """One tweet, in the canonical form every parser produces and every stage consumes."""

    id: int
    text: str
    source_format: str
    source_file: str
    position: int  # record index within its source file (0-based), for dead letters and ids
    id_derived: bool = False  # True when ``id`` came from ``derived_tweet_id``
    created_at_ms: int | None = None  # UTC, milliseconds since the epoch
    author_id: int | None = None
    twitter_lang: str | None = None  # Twitter's own ``lang`` tag, as given
    lang: str = UNDETERMINED_LANGUAGE  # detected language (ISO 639-1 where possible)
    lang_score: float = 0.0  # detector confidence in [0, 1]
    is_retweet: bool = False
    is_reply: bool = False
    is_quote: bool = False
    # The links between tweets, as the source gives them (None where it has none): the tweet this one
    # replies to and that tweet's author, the conversation (v2's ``conversation_id``: its root tweet)
    # and the quoted tweet. ``transforms/documents.py`` builds threads and conversations from them.
    reply_to_id: int | None = None
    reply_to_author_id: int | None = None
    conversation_id: int | None = None
    quoted_id: int | None = None
    # Set on a multi-tweet document (``--documents threads|conversations``): the ids of the tweets
    # it holds, in reply order (empty: the record is the single tweet ``id``), and the tweet given
    # as context before them (the tweet a conversation branch answers; not one of its own tweets).
    tweet_ids: tuple[int, ...] = ()
    context_id: int | None = None
    # The parser applied the payload's display_text_range: the hidden reply prefix is already gone,
    # so a leading @mention left in the text was typed by the author and stays.
    display_range_applied: bool = False
    # Filled by the tokenize stage: token ids as little-endian int32 bytes (cheaper to move
    # between Beam stages than lists or numpy arrays).
    token_bytes: bytes = field(default=b"", repr=False)

    def replace(self, **changes) -> Tweet:
        """A copy with ``changes`` applied; ~10x cheaper than ``dataclasses.replace`` on the hot path."""
        if not _TWEET_FIELDS.issuperset(changes):
            raise TypeError(f"Tweet has no field(s) {sorted(changes.keys() - _TWEET_FIELDS)}")
        values = self.__dict__.copy()
        values.update(changes)
        new = object.__new__(Tweet)
        new.__dict__ = values
        return new


_TWEET_FIELDS = frozenset(f.name for f in dataclasses.fields(Tweet))


@dataclass(frozen=True)
class DeadLetter:
    """Input that could not be turned into a ``Tweet``: written to ``errors/`` with its reason."""

    source_file: str
    position: int  # record index, or -1 when the failure is not tied to one record
    reason: str  # a short machine-readable reason, e.g. ``invalid_json``
    detail: str = ""  # human-readable detail (exception message, offending field)
    line: int | None = None  # 1-based line number where known
    byte_offset: int | None = None  # offset into the decompressed stream where known
    raw: str = ""  # the offending input, truncated to ``MAX_RAW_CHARS``

    MAX_RAW_CHARS = 2000

    def to_json_dict(self) -> dict:
        return {
            "source_file": self.source_file,
            "position": self.position,
            "line": self.line,
            "byte_offset": self.byte_offset,
            "reason": self.reason,
            "detail": self.detail,
            "raw": self.raw[: self.MAX_RAW_CHARS],
        }


# Drop reasons of the parser and the core stages (a filter declares its own in its module). Every
# stage drops only with a reason it declares, counted per (stage, reason) in the manifest, so the
# funnel is stable and ``read = kept + sum(dropped) + errors`` can be checked.
DROP_DELETE_NOTICE = "delete_notice"  # v1 stream {"delete": ...}
DROP_STREAM_NOTICE = "stream_notice"  # v1 stream limit/warning/scrub_geo/... notices
DROP_COMPLIANCE_EVENT = "compliance_event"  # v2 compliance events (delete, withheld, ...)
DROP_API_ERROR = "api_error"  # v2 ``errors`` entries (inaccessible tweets, media, users)
DROP_NO_TEXT = "no_text"  # a tweet object without any text (withheld, media-only)
DROP_DELETED_BY_AUTHOR = "deleted_by_author"  # account archives' deleted-tweets.js: honour the deletion
DROP_NOTE_MERGED = "note_tweet_merged"  # an archive's long post, merged into its truncated tweets.js entry
DROP_RETWEET = "retweet"
DROP_EMPTY = "empty_after_cleaning"
DROP_TOO_SHORT = "too_short"
DROP_LANGUAGE = "language"
DROP_DUPLICATE_ID = "duplicate_id"  # the same tweet id seen again (overlapping archives)
DROP_EXACT_DUPLICATE = "exact_duplicate"  # same normalised text as a tweet with a smaller id
DROP_NEAR_DUPLICATE = "near_duplicate"
DROP_EMPTY_TOKENS = "no_tokens"

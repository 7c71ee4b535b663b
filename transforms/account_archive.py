"""Twitter's account archive read as a whole, not file by file.

The archive's ``data/`` folder holds one dataset per file (``window.YTD.<dataset>.partN = [...]``).
Its tweet files are read; every other dataset is skipped and counted (likes, followers, ads...), and
direct messages are private: never opened past their first line. Two other files complete the
tweets of the same folder:

* ``account.js`` gives the author id every archive tweet lacks;
* ``note-tweet.js`` holds the full text of long posts whose ``tweets.js`` entry is truncated. A note
  has no tweet id: it belongs to the tweet created within ``NOTE_MATCH_MS`` of it whose visible text
  (entities unescaped, links and the ellipsis removed) is a prefix of the note's. The tweet keeps its
  id and takes the note's text; the note is counted as ``note_tweet_merged``. A note no tweet takes
  is kept as a tweet of its own.

Both sides apply one rule (``best_note``), so the worker reading ``tweets.js`` and the one reading
``note-tweet.js`` agree without talking to each other.
"""

from __future__ import annotations

import bisect
import html
import json
import re
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

from tweetmill.schemas.records import Tweet, source_file_name
from tweetmill.transforms.containers import SNIFF_BYTES, Replay, peek
from tweetmill.transforms.parse import iter_records
from tweetmill.transforms.tweet_objects import YTD_PREFIX

TWEET_DATASETS = frozenset(("tweets", "tweet", "community_tweet", "community_tweets"))
NOTE_DATASETS = frozenset(("note_tweet", "note_tweets"))
DELETED_DATASETS = frozenset(("deleted_tweets", "deleted_tweet"))
NOTE_MATCH_MS = 60_000
_MIN_PREFIX_CHARS = 20  # a shorter visible text is too weak to tie a tweet to a note

SKIP_PRIVATE = "account archive: direct messages are private and never read"
SKIP_DELETED = "account archive: deleted tweets (read them with --include-deleted-tweets)"


def _ytd(head: bytes) -> tuple[str | None, bytes]:
    """The dataset a file's first (decoded) bytes assign (``window.YTD.<dataset>.partN =``), and
    what follows the assignment; the parser reads the same prefix (``tweet_objects.YTD_PREFIX``)."""
    body = head.lstrip().removeprefix(b"\xef\xbb\xbf")
    m = YTD_PREFIX.match(body)
    return (m.group(1).decode("ascii").lower(), body[m.end():]) if m else (None, b"")


def ytd_dataset(head: bytes) -> str | None:
    """The archive dataset a file holds (``tweets``, ``like``...), from its first (decoded) bytes."""
    return _ytd(head)[0]


def skip_reason(dataset: str | None, include_deleted: bool) -> str:
    """Why an archive dataset is not read ("" when it is)."""
    if dataset is None or dataset in TWEET_DATASETS or dataset in NOTE_DATASETS:
        return ""
    if dataset in DELETED_DATASETS:
        return "" if include_deleted else SKIP_DELETED
    if dataset.startswith("direct_message"):
        return SKIP_PRIVATE
    return f"account archive: dataset {dataset!r} holds no tweets"


_URL = re.compile(r"https?://\S+")
_SPACE = re.compile(r"\s+")


def visible_key(text: str) -> str:
    """What a truncated tweet and its note share: unescaped text without links or the ellipsis."""
    text = _URL.sub(" ", html.unescape(text)).replace("\u2026", " ")
    return _SPACE.sub(" ", text).strip().casefold()


@dataclass
class Notes:
    """The long posts of one archive folder, ordered by creation time for the ±window lookup."""

    notes: list[Tweet] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.notes.sort(key=lambda n: (n.created_at_ms or 0, n.id))
        self._times = [n.created_at_ms or 0 for n in self.notes]
        self._keys = [visible_key(n.text) for n in self.notes]

    def best_note(self, tweet: Tweet) -> int | None:
        """Index of the note ``tweet`` is the truncated form of: nearest in time, then smallest id."""
        if not self.notes or tweet.created_at_ms is None:
            return None
        key = visible_key(tweet.text)
        if len(key) < _MIN_PREFIX_CHARS:
            return None
        t = tweet.created_at_ms
        lo = bisect.bisect_left(self._times, t - NOTE_MATCH_MS)
        hi = bisect.bisect_right(self._times, t + NOTE_MATCH_MS)
        found = [i for i in range(lo, hi) if self._keys[i].startswith(key) and len(self._keys[i]) > len(key)]
        if not found:
            return None
        return min(found, key=lambda i: (abs(self._times[i] - t), self.notes[i].id))

    def window(self) -> tuple[int, int] | None:
        return (self._times[0] - NOTE_MATCH_MS, self._times[-1] + NOTE_MATCH_MS) if self.notes else None


@dataclass
class ArchiveFolder:
    """What the tweets of one archive folder take from their siblings."""

    author_id: int | None = None
    notes: Notes = field(default_factory=Notes)

    def complete(self, tweet: Tweet, notes: Counter) -> Tweet:
        """``tweet`` with its author and, for a truncated long post, the note's full text."""
        changes = {}
        if tweet.author_id is None and self.author_id is not None:
            changes["author_id"] = self.author_id
        i = self.notes.best_note(tweet)
        if i is not None:
            changes["text"] = self.notes.notes[i].text
            notes["text_from_note_tweet"] += 1
        return tweet.replace(**changes) if changes else tweet


Opener = Callable[[], BinaryIO]


def read_account_id(open_file: Opener) -> int | None:
    """``accountId`` of an ``account.js`` (a few hundred bytes), None when it is not one."""
    with open_file() as f:
        data = peek(f, SNIFF_BYTES)[1]
    dataset, body = _ytd(data)
    if dataset != "account":
        return None
    try:
        doc = json.loads(body)
        value = doc[0]["account"]["accountId"]
        return int(value) if str(value).isdigit() else None
    except (ValueError, KeyError, IndexError, TypeError):
        return None


def _tweets_of(name: str, open_file: Opener) -> Iterator[Tweet]:
    with open_file() as f:
        for record in iter_records(name, f):
            if type(record) is Tweet:
                yield record


def load_folder(siblings: Iterable[tuple[str, Opener]], dataset: str) -> ArchiveFolder:
    """The context the tweets (or notes) of ``dataset`` need from their folder's ``siblings``."""
    author_id, notes = None, []
    for name, open_file in siblings:
        base = source_file_name(name).lower()
        if base == "account.js":
            author_id = read_account_id(open_file)
        elif base.startswith("note-tweet") and dataset in TWEET_DATASETS:
            notes.extend(_tweets_of(name, open_file))
    return ArchiveFolder(author_id, Notes(notes))


def merged_notes(notes: list[Tweet], siblings: Iterable[tuple[str, Opener]]) -> set[int]:
    """Ids of the ``notes`` that a tweet of a sibling tweets file takes (``best_note``)."""
    index = Notes(list(notes))
    window = index.window()
    taken: set[int] = set()
    if window is None:
        return taken
    for name, open_file in siblings:
        if source_file_name(name).lower().startswith("tweet"):
            with open_file() as f:
                head, decoded = peek(f)
                if ytd_dataset(decoded) not in TWEET_DATASETS:
                    continue
                for record in iter_records(name, Replay(head, f)):
                    if type(record) is Tweet and window[0] <= (record.created_at_ms or -1) <= window[1]:
                        i = index.best_note(record)
                        if i is not None:
                            taken.add(index.notes[i].id)
    return taken

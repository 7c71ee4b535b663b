"""Threads and conversations as documents: the pure rules, callable without Beam.

Tweets link to the tweet they reply to (``Tweet.reply_to_id``). A *chain* follows those links the
other way: each tweet continues at most one tweet (its parent) and is continued by at most one
(its *first* child: among the replies that may continue it, the earliest that is answered in
turn, else the earliest; so an exchange goes on in one document and side replies branch off it,
``first_child_order``). So every tweet is in exactly one chain, and a chain is a list: a thread
(``threads``: only an author's replies to itself continue a chain) or a branch of a conversation
(``conversations``: any reply does). A reply
that is not its parent's first child starts a chain of its own; in ``conversations`` it gets the
tweet it answers as a context turn, so every branch reads as the exchange it is, and every tweet
is the new turn of exactly one document (root-to-leaf paths would repeat each shared prefix once
per leaf: ``docs/documents.md`` has the measurements).

A chain's order is found by pointer jumping (list ranking): every tweet points at its parent, and
each round replaces the pointer by the pointer's pointer and adds up the distances, so after
``ceil(log2(depth))`` rounds every tweet knows its chain's first tweet and its place in it. One
round is one join of tweets with the tweets they point at, each key holding at most two values, so
no worker ever holds a whole chain or conversation (``transforms/documents.py`` runs the rounds as
Beam joins; ``resolve_chains`` runs the same steps in one process, for tests and small inputs).

A chain longer than ``max_chars`` becomes several documents: each tweet's offset in characters
from the chain's start is summed by the same pointer jumping, tweets are grouped by their offset
in windows of 3/4 ``max_chars`` (a bounded group, ``window_of``), and a window is one document, or
split evenly at tweet boundaries where it would run over ``max_chars``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from tweetmill.schemas.records import Tweet

DOCUMENTS_TWEETS = "tweets"
DOCUMENTS_THREADS = "threads"
DOCUMENTS_CONVERSATIONS = "conversations"
DOCUMENT_MODES = (DOCUMENTS_TWEETS, DOCUMENTS_THREADS, DOCUMENTS_CONVERSATIONS)

# Between the turns of a document. Cleaning leaves at most two line breaks in a row in a tweet
# (transforms/clean.py), so three never occur inside one: the turns split back unambiguously, and
# the bundled BPE encodes them as three ``Ċ`` (the line-break token) with no new vocabulary.
TURN_SEPARATOR = "\n\n\n"
# A conversation's turns start with their speaker, anonymised by order of appearance: "A: ", "B: ".
SPEAKER_SUFFIX = ": "


class Link(NamedTuple):
    """What a tweet brings to chain building: no text, so joins move little."""

    id: int
    key: tuple[int, int | None]  # the key it is found under as a parent
    parent_key: tuple[int, int | None] | None  # the key of the tweet it may continue (None: none)
    chars: int  # the characters it adds to a document (its turn and a separator)


def link_of(tweet: Tweet, mode: str) -> Link:
    """A tweet's place in the chain graph. Threads: a tweet continues its parent only when both
    have the same known author (a self-reply), so the key carries the author; conversations: any
    reply continues its parent."""
    if mode == DOCUMENTS_THREADS:
        author = tweet.author_id
        key = (tweet.id, author)
        parent = (tweet.reply_to_id, author) if tweet.reply_to_id is not None and author is not None else None
    else:
        key = (tweet.id, None)
        parent = (tweet.reply_to_id, None) if tweet.reply_to_id is not None else None
    if parent is not None and parent[0] == tweet.id:
        parent = None  # a tweet that answers itself (broken data) starts its own chain
    return Link(tweet.id, key, parent, turn_chars(tweet, mode))


def turn_chars(tweet: Tweet, mode: str) -> int:
    """The characters a tweet adds to a document: its text, a separator, a speaker label's room."""
    label = 4 if mode == DOCUMENTS_CONVERSATIONS else 0
    return len(tweet.text) + len(TURN_SEPARATOR) + label


# --- the chain edges --------------------------------------------------------------------------------


class Edge(NamedTuple):
    """``child`` continues ``parent``; ``weight`` is the parent's characters (the child's offset
    from its parent in a document)."""

    child: int
    parent: int
    weight: int


class Branch(NamedTuple):
    """``child`` answers ``parent`` but does not continue its chain: it starts a document of its
    own, with the parent as context (conversations) or without (threads)."""

    child: int
    parent: int


def first_child_order(child: tuple[int, bool]) -> tuple[bool, int]:
    """Which reply continues its parent: one that is answered in turn before one that is not (the
    exchange goes on), then the earliest (smallest id)."""
    child_id, answered = child
    return (not answered, child_id)


def decide_children(
    parent: Link | None, children: Iterable[tuple[int, bool]]
) -> tuple[Edge | None, list[Branch]]:
    """The edge from a present parent to its first child, and the other children as branches.
    ``children``: ``(id, answered)`` of each reply that may continue the parent. Nothing when the
    parent is not in the corpus (dropped, or never collected): its replies then start their
    documents themselves."""
    if parent is None:
        return None, []
    ordered = sorted(set(children), key=first_child_order)
    if not ordered:
        return None, []
    (first, _), rest = ordered[0], ordered[1:]
    return Edge(first, parent.id, parent.chars), [Branch(c, parent.id) for c, _ in rest]


# --- pointer jumping --------------------------------------------------------------------------------


class State(NamedTuple):
    """A tweet's progress in list ranking: ``target`` is an ancestor ``dist`` tweets and ``chars``
    characters before it; ``done`` when ``target`` is its chain's first tweet (a root's target is
    itself)."""

    node: int
    target: int
    dist: int
    chars: int
    done: bool


def initial_states(nodes: Iterable[int], edges: Iterable[Edge]) -> list[State]:
    """Roots are done from the start; every other tweet of a chain points at its parent."""
    parent = {e.child: e for e in edges}
    states = []
    for n in nodes:
        e = parent.get(n)
        states.append(State(n, n, 0, 0, True) if e is None else State(n, e.parent, 1, e.weight, False))
    return states


def jump(target: State, asking: State | None) -> State | None:
    """One pointer-jumping step for ``asking``, whose target is ``target.node``: it now points where
    its target points, further by its target's distance; done when its target was."""
    if asking is None:
        return None
    if target.done:
        return State(asking.node, target.target, asking.dist + target.dist, asking.chars + target.chars, True)
    return State(asking.node, target.target, asking.dist + target.dist, asking.chars + target.chars, False)


def jump_round(states: Sequence[State]) -> list[State]:
    """One round over all states (the in-process equivalent of one Beam join)."""
    by_node = {s.node: s for s in states}
    out = []
    for s in states:
        out.append(s if s.done else jump(by_node[s.target], s))
    return out


def rounds_needed(depth: int) -> int:
    """Pointer-jumping rounds that resolve a chain of ``depth`` tweets: ceil(log2(depth))."""
    return max(0, (depth - 1).bit_length())


@dataclass
class Resolved:
    """Each chain tweet's first tweet, distance and character offset; tweets left unresolved after
    the rounds allowed (deeper chains than ``2 ** rounds``) start documents of their own."""

    states: dict[int, State]
    rounds: int
    unresolved: int


def resolve_chains(links: Sequence[Link], max_rounds: int = 64) -> tuple[Resolved, list[Branch]]:
    """The whole chain building in one process: edges, branches, then pointer jumping."""
    by_key = {link.key: link for link in links}
    by_id = {link.id: link for link in links}
    children: dict[tuple[int, int | None], list[int]] = {}
    for link in links:
        if link.parent_key is not None:
            children.setdefault(link.parent_key, []).append(link.id)
    edges, branches = [], []
    for key, kids in sorted(children.items()):
        answered = [(kid, by_id[kid].key in children) for kid in kids]
        edge, more = decide_children(by_key.get(key), answered)
        if edge is not None:
            edges.append(edge)
        branches.extend(more)
    nodes = sorted({e.child for e in edges} | {e.parent for e in edges})
    states = initial_states(nodes, edges)
    rounds = 0
    while rounds < max_rounds and not all(s.done for s in states):
        states = jump_round(states)
        rounds += 1
    return finish(states, rounds), branches


def finish(states: Iterable[State], rounds: int) -> Resolved:
    """Unresolved states (chains deeper than the rounds reach) become roots of their own."""
    out: dict[int, State] = {}
    unresolved = 0
    for s in states:
        if not s.done:
            unresolved += 1
            s = State(s.node, s.node, 0, 0, True)
        out[s.node] = s
    return Resolved(out, rounds, unresolved)


# --- assembly ---------------------------------------------------------------------------------------


class Member(NamedTuple):
    """A tweet placed in its chain: what assembly sorts and splits."""

    root: int
    dist: int
    chars: int
    tweet: Tweet


class Context(NamedTuple):
    """The tweet a conversation branch answers, shown as its first turn."""

    id: int
    author_id: int | None
    text: str


def window_of(chars: int, max_chars: int) -> int:
    """Which bounded group a tweet is assembled in: its character offset in steps of three quarters
    of ``max_chars``. A window holds the tweets that start in it, so with tweets of up to a quarter
    of the budget (1,000 characters by default: all but the longest posts) a window is one document
    filled to 75-100 % of the budget; a window that runs over is shared out evenly (``split_chain``)."""
    return chars // max(1, max_chars * 3 // 4)


def split_chain(members: Sequence[Member], max_chars: int, mode: str) -> list[list[Member]]:
    """Members of one window in chain order, split at tweet boundaries into parts of at most
    ``max_chars`` characters (a tweet longer than that alone is a part of its own).

    A window holds the tweets that *start* in it, so it may run over ``max_chars`` by up to one
    tweet: its tweets are then shared out evenly over the fewest parts (never a stray last tweet)."""
    ordered = sorted(members, key=lambda m: m.dist)
    sizes = [turn_chars(m.tweet, mode) for m in ordered]
    total = sum(sizes)
    target = total / max(1, -(-total // max_chars))  # the fewest parts, evenly filled
    parts: list[list[Member]] = []
    size = 0
    for m, chars in zip(ordered, sizes, strict=True):
        if parts and size + chars <= max_chars and size < target:
            parts[-1].append(m)
            size += chars
        else:
            parts.append([m])
            size = chars
    return parts


def speaker_label(index: int) -> str:
    """A, B, ..., Z, AA, AB, ...: the ``index``-th speaker of a document."""
    label = ""
    index += 1
    while index:
        index, rest = divmod(index - 1, 26)
        label = chr(ord("A") + rest) + label
    return label


def document_text(turns: Sequence[tuple[int | None, str]], mode: str) -> str:
    """The text of a document: its turns (author, text) joined by ``TURN_SEPARATOR``; in
    conversations each turn starts with its speaker, anonymised by order of appearance (a tweet of
    unknown author is a speaker of its own)."""
    if mode != DOCUMENTS_CONVERSATIONS:
        return TURN_SEPARATOR.join(text for _, text in turns)
    speakers: dict[object, str] = {}
    out = []
    for i, (author, text) in enumerate(turns):
        who = author if author is not None else ("unknown", i)
        label = speakers.setdefault(who, speaker_label(len(speakers)))
        out.append(f"{label}{SPEAKER_SUFFIX}{text}")
    return TURN_SEPARATOR.join(out)


def split_turns(text: str) -> list[str]:
    """The turns of a document's text (``tweetmill sample`` prints them one by one)."""
    return text.split(TURN_SEPARATOR)


def known_authors(
    turns: list[tuple[int | None, str]], tweets: Sequence[Tweet]
) -> list[tuple[int | None, str]]:
    """The turns with each unknown author taken from the reply that answers it (its
    ``reply_to_author_id``): an account archive read without its ``account.js`` has no author on
    its tweets, but every reply names whom it answers, so its speakers are still told apart."""
    offset = len(turns) - len(tweets)  # 1 with a context turn before the tweets
    out = list(turns)
    for i, (author, text) in enumerate(turns[:-1]):
        answer = tweets[i + 1 - offset]
        if author is None and answer.reply_to_author_id is not None:
            out[i] = (answer.reply_to_author_id, text)
    return out


def make_document(part: Sequence[Member], context: Context | None, mode: str) -> Tweet:
    """One shard row for a part of a chain: the first tweet's fields, the turns' text, the member
    ids in order. A part of one tweet without context is that tweet unchanged."""
    first = part[0].tweet
    if len(part) == 1 and context is None:
        return first
    tweets = [m.tweet for m in part]
    turns = [(context.author_id, context.text)] if context is not None else []
    turns.extend((t.author_id, t.text) for t in tweets)
    return first.replace(
        text=document_text(known_authors(turns, tweets), mode),
        tweet_ids=tuple(t.id for t in tweets),
        context_id=context.id if context is not None else None,
        is_quote=any(m.tweet.is_quote for m in part),
    )


def assemble(
    members: Sequence[Member], contexts: dict[int, Context], max_chars: int, mode: str
) -> list[Tweet]:
    """The documents of one window of one chain (``contexts`` by root: only the chain's first part
    gets its root's context)."""
    docs = []
    for part in split_chain(members, max_chars, mode):
        head = part[0]
        context = contexts.get(head.root) if head.dist == 0 else None
        docs.append(make_document(part, context, mode))
    return docs


def build_documents(tweets: Sequence[Tweet], mode: str, max_chars: int, max_rounds: int = 64) -> list[Tweet]:
    """The documents of ``tweets`` in one process (what the Beam composite computes, by id)."""
    if mode == DOCUMENTS_TWEETS:
        return sorted(tweets, key=lambda t: t.id)
    by_id = {t.id: t for t in tweets}
    resolved, branches = resolve_chains([link_of(t, mode) for t in tweets], max_rounds)
    contexts = {}
    if mode == DOCUMENTS_CONVERSATIONS:
        for b in branches:
            parent = by_id[b.parent]
            contexts[b.child] = Context(parent.id, parent.author_id, parent.text)
    groups: dict[tuple[int, int], list[Member]] = {}
    for t in tweets:
        s = resolved.states.get(t.id)
        member = Member(t.id, 0, 0, t) if s is None else Member(s.target, s.dist, s.chars, t)
        groups.setdefault((member.root, window_of(member.chars, max_chars)), []).append(member)
    docs = [d for key in sorted(groups) for d in assemble(groups[key], contexts, max_chars, mode)]
    return sorted(docs, key=lambda d: d.id)

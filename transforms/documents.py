"""``--documents threads|conversations``: tweets become documents, as a Beam composite that scales.

The rules are in ``documents_core`` (pure, one process); this module runs them as joins, so no
worker holds a whole chain or conversation: a tweet joins its parent (one group per parent: the
parent's link and its children's ids), the chains are ranked by ``rounds`` of pointer jumping (each
round one join, each group at most two states), and documents are assembled per bounded window of
``max_chars`` characters of one chain. Tweets in no chain pass through untouched, so the cost over
``--documents tweets`` is a few joins of the tweets that are in threads or conversations.

Every tweet ends in exactly one document: nothing is dropped here. The output depends only on the
tweets (ids decide every order), so it is the same on any runner and any number of workers.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import apache_beam as beam
from apache_beam.metrics import Metrics
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.common import METRICS_NAMESPACE, TAG_STATS
from tweetmill.transforms.documents_core import (
    DOCUMENT_MODES,
    DOCUMENTS_CONVERSATIONS,
    DOCUMENTS_TWEETS,
    Context,
    Link,
    Member,
    State,
    assemble,
    decide_children,
    jump,
    link_of,
    window_of,
)
from tweetmill.transforms.stage import KIND_SHUFFLE, option

log = logging.getLogger(__name__)

STAGE = "documents"
TAG_CONTEXT = "context"
TAG_SINGLE = "single"


@dataclass(frozen=True)
class DocumentsConfig:
    documents: str = option(
        DOCUMENTS_TWEETS,
        "what a shard row is: a tweet; an author's thread of self-replies; or a branch of a "
        "conversation, speakers anonymised",
        choices=DOCUMENT_MODES,
    )
    document_max_chars: int = option(
        4000, "longest document in characters (about 1,100 tokens); longer threads are split", low=300
    )
    document_rounds: int = option(
        20, "pointer-jumping rounds: chains up to 2**N tweets are resolved whole", low=1
    )


# --- DoFns --------------------------------------------------------------------------------------------


class _DecideChildrenFn(beam.DoFn):
    """Per parent key: the edge to its first child; its other children start their own documents
    (with the parent's text as context, in conversations)."""

    def __init__(self, mode: str):
        self._mode = mode
        self._edges = Metrics.counter(METRICS_NAMESPACE, "documents_edges")
        self._branches = Metrics.counter(METRICS_NAMESPACE, "documents_branches")

    def process(self, element: tuple[Any, dict[str, list]]) -> Iterator:
        _, grouped = element
        parents = grouped["parent"]
        parent = parents[0] if parents else None
        link = parent[0] if parent is not None else None
        edge, branches = decide_children(link, grouped["children"])
        if edge is not None:
            self._edges.inc()
            yield beam.pvalue.TaggedOutput("edges", edge)
        if branches:
            self._branches.inc(len(branches))
        if self._mode == DOCUMENTS_CONVERSATIONS and parent is not None:
            _, author, text = parent
            context = Context(link.id, author, text)
            for b in branches:
                yield beam.pvalue.TaggedOutput(TAG_CONTEXT, (b.child, context))


def _as_child(element: tuple[Any, dict[str, list]]) -> Iterator[tuple[Any, tuple[int, bool]]]:
    """A reply under its parent's key, with whether it is answered in turn (``first_child_order``)."""
    _, grouped = element
    answered = bool(grouped["answered"])
    for link in grouped["reply"]:
        yield link.parent_key, (link.id, answered)


def _as_parent_with_text(tweet: Tweet, mode: str) -> tuple:
    link = link_of(tweet, mode)
    return link.key, (link, tweet.author_id, tweet.text)


def _edge_ends(edge) -> Iterator[tuple[int, tuple]]:
    yield edge.child, ("edge", edge.parent, edge.weight)
    yield edge.parent, ("parent",)


def _initial_state(element: tuple[int, Iterable[tuple]]) -> State:
    node, values = element
    edge = next((v for v in values if v[0] == "edge"), None)
    return State(node, node, 0, 0, True) if edge is None else State(node, edge[1], 1, edge[2], False)


def _requests(state: State) -> Iterator[tuple[int, tuple[str, State]]]:
    yield state.node, ("own", state)
    if not state.done:
        yield state.target, ("ask", state)


def _jump_group(element: tuple[int, Iterable[tuple[str, State]]]) -> Iterator[State]:
    """One pointer-jumping step at one tweet: it stays if done, and answers the one tweet asking."""
    _, values = element
    own = asking = None
    for kind, state in values:
        if kind == "own":
            own = state
        else:
            asking = state
    if own.done:
        yield own
    if asking is not None:
        yield jump(own, asking)


class _FinishFn(beam.DoFn):
    """States left unresolved after the rounds (a chain deeper than 2**rounds) start their own
    document, counted."""

    def __init__(self):
        self._unresolved = Metrics.counter(METRICS_NAMESPACE, "documents_unresolved")

    def process(self, state: State) -> Iterator:
        if not state.done:
            self._unresolved.inc()
            yield beam.pvalue.TaggedOutput("unresolved", 1)
            state = State(state.node, state.node, 0, 0, True)
        yield state.node, state


class _PlaceFn(beam.DoFn):
    """A tweet with its chain state and context: a tweet in no chain is its own document at once;
    the others are keyed by (chain, window) for assembly."""

    def __init__(self, max_chars: int):
        self._max_chars = max_chars

    def process(self, element: tuple[int, dict[str, list]]) -> Iterator:
        _, grouped = element
        (tweet,) = grouped["tweet"]
        states, contexts = grouped["state"], grouped["context"]
        context = contexts[0] if contexts else None
        if not states and context is None:
            yield beam.pvalue.TaggedOutput(TAG_SINGLE, tweet)
            return
        s = states[0] if states else State(tweet.id, tweet.id, 0, 0, True)
        member = Member(s.target, s.dist, s.chars, tweet)
        yield (s.target, window_of(s.chars, self._max_chars)), (member, context)


class _AssembleFn(beam.DoFn):
    def __init__(self, mode: str, max_chars: int):
        self._mode, self._max_chars = mode, max_chars
        self._documents = Metrics.counter(METRICS_NAMESPACE, "documents_assembled")

    def process(self, element: tuple[tuple[int, int], Iterable[tuple[Member, Any]]]) -> Iterator[Tweet]:
        _, values = element
        members, contexts = [], {}
        for member, context in values:
            members.append(member)
            if context is not None:
                contexts[member.tweet.id] = context
        docs = assemble(members, contexts, self._max_chars, self._mode)
        self._documents.inc(len(docs))
        yield from docs


# --- stats --------------------------------------------------------------------------------------------


class _DocStats(beam.CombineFn):
    """Documents, multi-tweet documents, their tweets, the deepest, those with a context turn."""

    def create_accumulator(self) -> list[int]:
        return [0, 0, 0, 0, 0]

    def add_input(self, acc: list[int], doc: Tweet) -> list[int]:
        n = len(doc.tweet_ids) or 1
        acc[0] += 1
        if n > 1 or doc.context_id is not None:
            acc[1] += 1
            acc[2] += n
        acc[3] = max(acc[3], n)
        acc[4] += doc.context_id is not None
        return acc

    def merge_accumulators(self, accs: Iterable[list[int]]) -> list[int]:
        out = self.create_accumulator()
        for a in accs:
            out = [out[0] + a[0], out[1] + a[1], out[2] + a[2], max(out[3], a[3]), out[4] + a[4]]
        return out

    def extract_output(self, acc: list[int]) -> list[int]:
        return acc


def _stats_element(acc: list[int], unresolved: int, config: DocumentsConfig) -> tuple[str, dict[str, Any]]:
    documents, multi, in_multi, deepest, with_context = acc
    return STAGE, {
        "mode": config.documents,
        "documents": documents,
        "multi_tweet_documents": multi,
        "tweets_in_multi_tweet_documents": in_multi,
        "most_tweets_in_a_document": deepest,
        "documents_with_context": with_context,
        "unresolved_chain_tweets": unresolved,
        "max_chars": config.document_max_chars,
        "rounds": config.document_rounds,
    }


# --- the composite ------------------------------------------------------------------------------------


class BuildDocuments(beam.PTransform):
    """Tweets → documents (``Tweet`` rows whose ``tweet_ids`` list their tweets), and ``[TAG_STATS]``:
    one ``("documents", dict)`` for the manifest. Nothing is dropped. Input: unique ids, batch
    (globally windowed) tweets, after every per-tweet stage."""

    name: ClassVar[str] = STAGE
    kind: ClassVar[str] = KIND_SHUFFLE
    reasons: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = "threads or conversation branches joined into documents (--documents)"
    Config: ClassVar[type] = DocumentsConfig

    def __init__(self, config: DocumentsConfig | None = None):
        super().__init__()
        self.config = config or DocumentsConfig()

    def enabled(self) -> bool:
        return self.config.documents != DOCUMENTS_TWEETS

    def expand(self, tweets: beam.PCollection):  # -> {"tweets": documents, TAG_STATS: stats}
        mode, max_chars = self.config.documents, self.config.document_max_chars
        conversations = mode == DOCUMENTS_CONVERSATIONS
        links = tweets | "Links" >> beam.Map(link_of, mode).with_output_types(Link)
        if conversations:  # the parent's author and text travel with it, for its branches' context
            parents = tweets | "AsParent" >> beam.Map(_as_parent_with_text, mode)
        else:
            parents = links | "AsParent" >> beam.Map(lambda link: (link.key, (link, None, None)))
        replies = links | "Replies" >> beam.Filter(lambda link: link.parent_key is not None)
        answered = (  # the keys that replies answer: a reply under one of them is answered in turn
            replies
            | "AnsweredKeys" >> beam.Map(lambda link: (link.parent_key, None))
            | "DistinctAnswered" >> beam.CombinePerKey(lambda _: None)
        )
        children = (
            {"reply": replies | "ByOwnKey" >> beam.Map(lambda link: (link.key, link)), "answered": answered}
            | "JoinAnswered" >> beam.CoGroupByKey()
            | "AsChild" >> beam.FlatMap(_as_child)
        )
        decided = (
            {"parent": parents, "children": children}
            | "JoinParents" >> beam.CoGroupByKey()
            | "DecideChildren" >> beam.ParDo(_DecideChildrenFn(mode)).with_outputs("edges", TAG_CONTEXT)
        )
        states = (
            decided.edges
            | "EdgeEnds" >> beam.FlatMap(_edge_ends)
            | "GroupEdgeEnds" >> beam.GroupByKey()
            | "InitialStates" >> beam.Map(_initial_state).with_output_types(State)
        )
        for r in range(self.config.document_rounds):
            states = (
                states
                | f"Round{r:02d}Requests" >> beam.FlatMap(_requests)
                | f"Round{r:02d}Join" >> beam.GroupByKey()
                | f"Round{r:02d}Jump" >> beam.FlatMap(_jump_group).with_output_types(State)
            )
        finished = states | "Finish" >> beam.ParDo(_FinishFn()).with_outputs("unresolved", main="states")
        placed = (
            {
                "tweet": tweets | "ById" >> beam.Map(lambda t: (t.id, t)),
                "state": finished.states,
                "context": decided[TAG_CONTEXT],
            }
            | "JoinStates" >> beam.CoGroupByKey()
            | "Place" >> beam.ParDo(_PlaceFn(max_chars)).with_outputs(TAG_SINGLE, main="members")
        )
        assembled = (
            placed.members
            | "GroupWindows" >> beam.GroupByKey()
            | "Assemble" >> beam.ParDo(_AssembleFn(mode, max_chars)).with_output_types(Tweet)
        )
        docs = (placed[TAG_SINGLE], assembled) | "AllDocuments" >> beam.Flatten().with_output_types(Tweet)
        unresolved = finished.unresolved | "CountUnresolved" >> beam.CombineGlobally(sum)
        stats = (
            docs
            | "DocumentStats" >> beam.CombineGlobally(_DocStats())
            | "StatsDict"
            >> beam.Map(_stats_element, unresolved=beam.pvalue.AsSingleton(unresolved), config=self.config)
        )
        return {"tweets": docs, TAG_STATS: stats}

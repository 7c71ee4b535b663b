"""Exact deduplication: the same tweet id seen twice, and the same normalised text.

Most tweets have neither a repeated id nor a repeated text, and shuffling every tweet costs more
CPU (coders, per-element overhead) than the dedup itself. So only keys are shuffled (8-byte ids,
16-byte text hashes: ``dedup_batches.SplitDuplicates``) and the tweets stay in their batches; the
few whose id or text another tweet shares go through a ``CombinePerKey`` that keeps one
deterministic survivor per key and counts the rest, so the result is the same whatever the runner,
worker count or input order. A run that audits its drops (``--write-dropped``) needs the removed
copies themselves: it groups those instead and runs the same combine over each group. In the
pipeline both stages are decided in one pass over the batches (``DeduplicateIds(texts_next=True)``,
then ``DeduplicateTexts``).

Copies of one id are not always the same record: an edited tweet, a truncated v1 text beside the
full one, an export that re-encoded or flattened the text. The id stage keeps the most complete
copy by content alone (``id_survivor_order``), so the same archives give the same rows however they
are packed or stored, and reports such *conflicts*: counts in the manifest's ``stages["id_dedup"]``
and a bounded sample of kept/other text pairs (written as ``id_conflicts.sample.jsonl``).
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import apache_beam as beam
from apache_beam.metrics import Metrics
from tweetmill.schemas.records import DROP_DUPLICATE_ID, DROP_EXACT_DUPLICATE, Tweet, source_file_name
from tweetmill.schemas.shard import splitmix64
from tweetmill.transforms.common import (
    METRICS_NAMESPACE,
    TAG_DROPPED,
    TAG_SAMPLES,
    TAG_STATS,
    DropCounter,
    TweetCoder,
)
from tweetmill.transforms.dedup_batches import BatchTweets, SplitDuplicates, UnbatchTweets
from tweetmill.transforms.spill import parked
from tweetmill.transforms.stage import KIND_SHUFFLE, TAG_DROPPED_TWEETS

ID_STAGE = "id_dedup"  # key of the id stage's stats in the manifest's ``stages``
TEXT_STAGE = "exact_dedup"
MAX_CONFLICT_SAMPLES = 100

_WHITESPACE = re.compile(r"\s+")
_MASK64 = (1 << 64) - 1


def normalized_text_key(text: str) -> bytes:
    """Key under which texts count as exact duplicates: NFKC, case-folded, whitespace collapsed.

    Hashed to 16 bytes so the shuffle moves keys of fixed, small size. ``str.split`` splits on
    exactly the characters ``\\s`` matches (``str.isspace``), at a quarter of the regex's cost; an
    ASCII text is already NFKC (tested on every code point in ``tests/test_dedup.py``).
    """
    norm = " ".join((text if text.isascii() else unicodedata.normalize("NFKC", text)).casefold().split())
    return hashlib.blake2b(norm.encode("utf-8"), digest_size=16).digest()


def _none_last(value, empty):
    return (value is None, empty if value is None else value)


def id_survivor_order(tweet: Tweet) -> tuple:
    """Among copies of one tweet id, the smallest tuple survives. By content first, so the same
    archives keep the same row whether read zipped or extracted, locally or from ``gs://``:

    1. a real id before a derived one (a record that carried its id is the original);
    2. the longest text (a truncated copy loses to the full one);
    3. the text itself, lexicographically (two equally long but different texts: a total order);
    4. a known ``created_at`` (the earliest), a known author, a known Twitter ``lang``;
    5. the source format, the retweet/reply/quote/display-range flags, then the fields later stages
       fill (language, tokens; unset at dedup time) so that every field takes part;
    6. only when all of the above are equal, i.e. the copies are the same row but for their origin:
       the source file's *name* (not its folder, container or compression suffix: see
       ``source_file_name``), the position, then the full path.
    """
    return (
        tweet.id_derived,
        -len(tweet.text),
        tweet.text,
        _none_last(tweet.created_at_ms, 0),
        _none_last(tweet.author_id, 0),
        _none_last(tweet.twitter_lang, ""),
        tweet.source_format,
        tweet.is_retweet,
        tweet.is_reply,
        tweet.is_quote,
        tweet.display_range_applied,
        tweet.lang,
        tweet.lang_score,
        tweet.token_bytes,
        source_file_name(tweet.source_file),
        tweet.position,
        tweet.source_file,
    )


def text_survivor_order(tweet: Tweet) -> tuple:
    """Among tweets with one text: the smallest id (the earliest tweet), ties by origin."""
    return (tweet.id, tweet.source_file, tweet.position)


def same_text(a: Tweet, b: Tweet) -> bool:
    """Whether two copies of one id agree on their text; if not, the id is a *conflict*.

    The cleaned texts are compared as they are, case and punctuation included (an edit or a
    re-encoding is a conflict), except that whitespace runs count as one space: cleaning already
    collapsed spaces, and what is left (a line break that a CSV export flattened to a space) is
    layout, not a different tweet. The survivor is still chosen on the exact text.
    """
    if a.text == b.text:
        return True
    return _WHITESPACE.sub(" ", a.text).strip() == _WHITESPACE.sub(" ", b.text).strip()


class KeepFirst(beam.CombineFn):
    """Keeps the smallest element by ``order`` and counts how many were seen."""

    def __init__(self, order: Callable[[Tweet], tuple]):
        self._order = order

    def create_accumulator(self):
        return (None, 0)

    def add_input(self, acc, tweet: Tweet):
        best, n = acc
        if best is None or self._order(tweet) < self._order(best):
            best = tweet
        return (best, n + 1)

    def merge_accumulators(self, accumulators):
        best, total = None, 0
        for candidate, n in accumulators:
            total += n
            if candidate is not None and (best is None or self._order(candidate) < self._order(best)):
                best = candidate
        return (best, total)

    def extract_output(self, acc):
        return acc

    def get_accumulator_coder(self):
        return beam.coders.TupleCoder([beam.coders.NullableCoder(TweetCoder()), beam.coders.VarIntCoder()])


# --- same-id groups: survivor, one differing copy, count ------------------------------------------

# A group of copies of one id, in constant space however hot the id: ``(best, other, count)`` where
# ``best`` is the smallest copy by ``id_survivor_order`` and ``other`` the smallest copy whose text
# differs from best's (``same_text``), or None. Merging keeps both exact: the overall ``other`` is
# the smallest of the parts' bests and others that differ from the overall best (a part whose best
# has best's text holds its smallest differing copy as its ``other``).
IdGroup = tuple  # (Tweet | None, Tweet | None, int)


def _smallest_differing(candidates: Iterable[Tweet | None], best: Tweet) -> Tweet | None:
    differing = [t for t in candidates if t is not None and not same_text(t, best)]
    return min(differing, key=id_survivor_order) if differing else None


def add_to_group(group: IdGroup, tweet: Tweet) -> IdGroup:
    best, other, n = group
    if best is None:
        return (tweet, None, n + 1)
    if id_survivor_order(tweet) < id_survivor_order(best):
        return (tweet, _smallest_differing((best, other), tweet), n + 1)
    if (other is None or id_survivor_order(tweet) < id_survivor_order(other)) and not same_text(tweet, best):
        other = tweet
    return (best, other, n + 1)


def merge_groups(groups: Iterable[IdGroup]) -> IdGroup:
    groups = list(groups)
    total = sum(n for _, _, n in groups)
    bests = [b for b, _, _ in groups if b is not None]
    if not bests:
        return (None, None, total)
    best = min(bests, key=id_survivor_order)
    return (best, _smallest_differing([t for b, o, _ in groups for t in (b, o)], best), total)


def conflict_sample(best: Tweet, other: Tweet, count: int) -> dict:
    """One line of ``id_conflicts.sample.jsonl``: the kept copy and the closest differing one."""
    return {
        "id": best.id,
        "copies": count,
        "kept_text": best.text,
        "kept_source_file": best.source_file,
        "other_text": other.text,
        "other_source_file": other.source_file,
    }


def conflict_sample_order(sample: dict) -> tuple:
    """Spread-out, deterministic choice of sampled conflicts: a hash of the id (not its time order),
    so the sample is the same on any runner or worker count."""
    return (splitmix64(sample["id"] & _MASK64), sample["id"])


# (ids seen more than once, copies removed, ids with conflicting texts, records of those ids)
IdStats = tuple


def group_stats(group: IdGroup) -> IdStats:
    _, other, n = group
    conflict = other is not None
    return (int(n > 1), n - 1, int(conflict), n if conflict else 0)


def sum_stats(parts: Iterable[IdStats]) -> IdStats:
    totals = [0, 0, 0, 0]
    for part in parts:
        for i, v in enumerate(part):
            totals[i] += v
    return tuple(totals)


def id_stats_dict(stats: IdStats) -> tuple[str, dict]:
    """The ``("id_dedup", {...})`` element of the manifest's ``stages``."""
    duplicate_ids, removed, conflicting_ids, conflicting_records = stats
    return (
        ID_STAGE,
        {
            "duplicate_ids": duplicate_ids,  # ids seen more than once
            "duplicates_removed": removed,  # == counts.dropped["duplicate_id"]
            "conflicting_ids": conflicting_ids,  # of those, ids whose copies' texts differ
            "conflicting_records": conflicting_records,  # all copies of the conflicting ids
            "rule": "keep the real, longest, then lexicographically first text; origin breaks ties last",
            "conflict": "texts differ beyond whitespace",
        },
    )


def dedup_batch(tweets: list[Tweet], key: Callable[[Tweet], object], order: Callable[[Tweet], tuple]):
    """The pure core, for tests and single-process use: survivors and the number removed."""
    best: dict[object, Tweet] = {}
    for tweet in tweets:
        k = key(tweet)
        if k not in best or order(tweet) < order(best[k]):
            best[k] = tweet
    return list(best.values()), len(tweets) - len(best)


@dataclass(frozen=True)
class IdDedupReport:
    """Everything ``DeduplicateIds`` outputs, computed in one process (tests, single-process use)."""

    survivors: list[Tweet]  # in order of first appearance of their id
    removed: int
    stats: tuple[str, dict]  # the ``stats`` output
    samples: list[dict]  # the ``samples`` output, in ``conflict_sample_order``


def id_dedup_report(tweets: Iterable[Tweet], max_samples: int = MAX_CONFLICT_SAMPLES) -> IdDedupReport:
    """The pure core of ``DeduplicateIds``: the same group fold as its CombineFn."""
    groups: dict[int, IdGroup] = {}
    for tweet in tweets:
        groups[tweet.id] = add_to_group(groups.get(tweet.id, (None, None, 0)), tweet)
    samples = [conflict_sample(*g) for g in groups.values() if g[1] is not None]
    return IdDedupReport(
        survivors=[best for best, _, _ in groups.values()],
        removed=sum(n - 1 for _, _, n in groups.values()),
        stats=id_stats_dict(sum_stats(group_stats(g) for g in groups.values())),
        samples=sorted(samples, key=conflict_sample_order)[:max_samples],
    )


class KeepBestId(beam.CombineFn):
    """Copies of one id -> ``(best, other, count)`` (see ``IdGroup``): constant size per id."""

    def create_accumulator(self) -> IdGroup:
        return (None, None, 0)

    def add_input(self, acc: IdGroup, tweet: Tweet) -> IdGroup:
        return add_to_group(acc, tweet)

    def merge_accumulators(self, accumulators) -> IdGroup:
        return merge_groups(accumulators)

    def extract_output(self, acc: IdGroup) -> IdGroup:
        return acc

    def get_accumulator_coder(self):
        tweet = beam.coders.NullableCoder(TweetCoder())
        return beam.coders.TupleCoder([tweet, tweet, beam.coders.VarIntCoder()])


class _EmitSurvivor(beam.DoFn):
    def __init__(self, stage: str, reason: str):
        self._stage = stage
        self._reason = reason

    def setup(self) -> None:
        self._drops = DropCounter(self._stage)

    def process(self, keyed) -> Iterator:
        _, (survivor, count) = keyed
        yield survivor
        if count > 1:
            yield from self._drops.emit({self._reason: count - 1})


class _EmitIdSurvivor(beam.DoFn):
    """A group -> its survivor, its drops, and for repeated ids their stats and conflict sample."""

    def setup(self) -> None:
        self._drops = DropCounter(ID_STAGE)
        self._metrics = [
            Metrics.counter(METRICS_NAMESPACE, f"{ID_STAGE}_{name}")
            for name in ("duplicate_ids", "duplicates_removed", "conflicting_ids", "conflicting_records")
        ]

    def process(self, keyed) -> Iterator:
        _, group = keyed
        best, other, count = group
        yield best
        if count < 2:
            return
        yield from self._drops.emit({DROP_DUPLICATE_ID: count - 1})
        stats = group_stats(group)
        for metric, value in zip(self._metrics, stats, strict=True):
            if value:
                metric.inc(value)
        yield beam.pvalue.TaggedOutput(TAG_STATS, stats)
        if other is not None:
            yield beam.pvalue.TaggedOutput(TAG_SAMPLES, conflict_sample(best, other, count))


class _CombineGroupFn(beam.DoFn):
    """A group → ``(key, combined)`` as ``CombinePerKey(fn)`` would give, and every copy the combine
    did not keep under ``TAG_DROPPED_TWEETS``."""

    def __init__(self, fn: beam.CombineFn, stage: str, reason: str):
        self._fn, self._stage, self._reason = fn, stage, reason

    def process(self, keyed) -> Iterator:
        key, tweets = keyed
        tweets = list(tweets)
        acc = self._fn.create_accumulator()
        for tweet in tweets:
            acc = self._fn.add_input(acc, tweet)
        combined = self._fn.extract_output(acc)
        yield key, combined
        survivor = combined[0]
        for tweet in tweets:
            if tweet is not survivor:
                yield beam.pvalue.TaggedOutput(TAG_DROPPED_TWEETS, (self._stage, self._reason, tweet))


class _KeepPerKey(beam.PTransform):
    """``(key, tweet)`` → ``combined`` per key, and with ``audit`` the copies removed (else empty)."""

    def __init__(self, fn: beam.CombineFn, output_type, stage: str, reason: str, audit: bool):
        super().__init__()
        self._fn, self._output_type, self._audit = fn, output_type, audit
        self._stage, self._reason = stage, reason

    def expand(self, keyed):
        if not self._audit:
            combined = keyed | "Combine" >> beam.CombinePerKey(self._fn).with_output_types(self._output_type)
            return combined, keyed.pipeline | "NoDroppedTweets" >> beam.Create([])
        out = (
            keyed
            | "Group" >> beam.GroupByKey()
            | "Combine"
            >> beam.ParDo(_CombineGroupFn(self._fn, self._stage, self._reason))
            .with_output_types(self._output_type)
            .with_outputs(TAG_DROPPED_TWEETS, main="combined")
        )
        return out.combined, out[TAG_DROPPED_TWEETS]


_PENDING = "pending"  # DeduplicateIds(texts_next=True) -> DeduplicateTexts: id survivors to decide


class DedupOutputs(dict):
    """A dedup stage's outputs: a dict of PCollections that reads like a ``DoOutputsTuple``."""

    @property
    def tweets(self) -> beam.PCollection:
        return self["tweets"]

    def for_texts(self) -> dict[str, beam.PCollection]:
        """What ``DeduplicateTexts`` takes from ``DeduplicateIds(texts_next=True)``."""
        return {"tweets": self["tweets"], _PENDING: self[_PENDING]}


def _join(
    unique: beam.PCollection, survivors: beam.PCollection, batched: bool, spill_dir: str | None = None
) -> beam.PCollection:
    """The stage's kept tweets: the batches it left alone and the survivors of the combine, as
    batches (``batched``) or elements. With ``spill_dir`` both wait for each other in spill files."""
    if batched:
        return parked(_parts(unique, survivors), "Kept", spill_dir, after=None)
    return (unique | "Unbatch" >> UnbatchTweets(), survivors) | "Kept" >> beam.Flatten()


def _parts(unique: beam.PCollection, survivors: beam.PCollection) -> tuple[beam.PCollection, ...]:
    """The stage's kept tweets as two PCollections of batches: those it left alone, the survivors."""
    return unique, survivors | "BatchSurvivors" >> BatchTweets()


def _tweet_id(tweet: Tweet) -> int:
    return tweet.id


def _text_key(tweet: Tweet) -> bytes:
    return normalized_text_key(tweet.text)


def _keyed_by_text(tweet: Tweet) -> tuple[bytes, Tweet]:
    return normalized_text_key(tweet.text), tweet


def _sorted_samples(samples: list[dict], max_samples: int) -> list[dict]:
    return sorted(samples, key=conflict_sample_order)[:max_samples]


class _KeepBestIds(beam.PTransform):
    """``(id, Tweet)`` of the ids that may be repeated → ``DedupOutputs`` of the id stage, with the
    survivors (``Tweet`` elements) as ``.tweets``."""

    def __init__(self, max_samples: int, audit: bool):
        super().__init__()
        self._max_samples, self._audit = max_samples, audit

    def expand(self, keyed):
        combined, removed = keyed | "KeepBest" >> _KeepPerKey(
            KeepBestId(),
            tuple[int, tuple[Tweet, Tweet | None, int]],
            ID_STAGE,
            DROP_DUPLICATE_ID,
            self._audit,
        )
        groups = combined | "EmitSurvivors" >> beam.ParDo(_EmitIdSurvivor()).with_output_types(
            Tweet
        ).with_outputs(TAG_DROPPED, TAG_STATS, TAG_SAMPLES, main="tweets")
        stats = (
            groups[TAG_STATS]
            | "SumStats" >> beam.CombineGlobally(sum_stats)
            | "StatsDict" >> beam.Map(id_stats_dict)
        )
        samples = (
            groups[TAG_SAMPLES]
            | "SampleConflicts"
            >> beam.combiners.Top.Smallest(max(self._max_samples, 1), key=conflict_sample_order)
            | "SortSamples" >> beam.Map(_sorted_samples, self._max_samples)
        )
        return DedupOutputs(
            {
                "tweets": groups.tweets,
                TAG_DROPPED: groups[TAG_DROPPED],
                TAG_DROPPED_TWEETS: removed,
                TAG_STATS: stats,
                TAG_SAMPLES: samples,
            }
        )


class _KeepFirstTexts(beam.PTransform):
    """``(text key, Tweet)`` of the texts that may be repeated → ``DedupOutputs`` of the text stage,
    with the survivors (``Tweet`` elements) as ``.tweets``."""

    def __init__(self, audit: bool):
        super().__init__()
        self._audit = audit

    def expand(self, keyed):
        combined, removed = keyed | "KeepFirst" >> _KeepPerKey(
            KeepFirst(text_survivor_order),
            tuple[bytes, tuple[Tweet, int]],
            TEXT_STAGE,
            DROP_EXACT_DUPLICATE,
            self._audit,
        )
        kept = combined | "EmitSurvivors" >> beam.ParDo(
            _EmitSurvivor(TEXT_STAGE, DROP_EXACT_DUPLICATE)
        ).with_output_types(Tweet).with_outputs(TAG_DROPPED, main="tweets")
        return DedupOutputs(
            {"tweets": kept.tweets, TAG_DROPPED: kept[TAG_DROPPED], TAG_DROPPED_TWEETS: removed}
        )


def _check_max_samples(max_samples: int) -> int:
    if max_samples < 0:
        raise ValueError(f"max_samples must be >= 0, got {max_samples}")
    return max_samples


class DeduplicateIds(beam.PTransform):
    """One tweet per id (overlapping archives hold the same tweets); the survivor by content only.

    Returns ``DedupOutputs``: ``.tweets`` (one ``Tweet`` per id, see ``id_survivor_order``; with
    ``batched``, lists in and lists out), ``[TAG_DROPPED]`` (``(("id_dedup", "duplicate_id"),
    count)``), ``["stats"]`` (one ``("id_dedup", dict)``, see ``id_stats_dict``), ``["samples"]``
    (one list of at most ``max_samples`` conflict dicts, the same on every run, see
    ``conflict_sample``) and ``[TAG_DROPPED_TWEETS]`` (the removed copies, with ``audit``).
    ``id_dedup_report`` is the same in one process. Only the copies of repeated ids cross a
    shuffle (``SplitDuplicates``); the other tweets stay in their batches.

    ``texts_next`` (batched only): ``DeduplicateTexts`` runs next, and both are decided in one pass
    over the batches. The split also finds the tweets whose text key another tweet holds (before
    id dedup); every tweet of such an id, or of a repeated id, goes through this stage's combine,
    and its survivors, under ``"pending"``, through the text stage's (whole id groups, so whole
    text groups of the survivors: the same decisions, drops, stats and samples as two passes).
    ``.tweets`` is then the batches that both stages keep as they are, and the outputs go to
    ``DeduplicateTexts`` as they are.
    """

    name = ID_STAGE
    kind = KIND_SHUFFLE
    reasons = (DROP_DUPLICATE_ID,)
    description = "copies of one tweet id (overlapping archives); the most complete copy stays"

    def __init__(
        self,
        max_samples: int = MAX_CONFLICT_SAMPLES,
        *,
        audit: bool = False,
        batched: bool = False,
        texts_next: bool = False,
        spill_dir: str | None = None,
    ):
        super().__init__()
        if texts_next and not batched:
            raise ValueError("texts_next needs batched input")
        if spill_dir is not None and not batched:
            raise ValueError("spill_dir needs batched input")
        self._max_samples = _check_max_samples(max_samples)
        self._audit, self._batched, self._texts_next = audit, batched, texts_next
        self._spill_dir = spill_dir

    def expand(self, tweets):
        batches = tweets if self._batched else tweets | "Batch" >> BatchTweets()
        text_key = _text_key if self._texts_next else None
        unique, repeated = batches | "SplitDuplicates" >> SplitDuplicates(
            _tweet_id, int, text_key=text_key, ids_too=True, spill_dir=self._spill_dir
        )
        out = repeated | "Decide" >> _KeepBestIds(self._max_samples, self._audit)
        if self._texts_next:
            return DedupOutputs({**out, "tweets": unique, _PENDING: out.tweets})
        return DedupOutputs({**out, "tweets": _join(unique, out.tweets, self._batched, self._spill_dir)})


class DeduplicateTexts(beam.PTransform):
    """One tweet per normalised text; the survivor is the tweet with the smallest id.

    Returns ``DedupOutputs``: ``.tweets`` (with ``batched``, lists in and lists out),
    ``[TAG_DROPPED]`` and ``[TAG_DROPPED_TWEETS]`` (with ``audit``). Only tweets whose text key
    another tweet shares cross a shuffle; the keys travel as 16-byte hashes. Applied to the
    outputs of ``DeduplicateIds(texts_next=True)``, it decides only the tweets that stage left
    pending, and keeps its batches as they are. ``join=False`` (batched): ``.tweets`` is a tuple of
    two PCollections of batches, the batches left alone and the survivors, for a next stage that
    takes them apart (``RemoveNearDuplicates``) instead of joining them in spill files here."""

    name = TEXT_STAGE
    kind = KIND_SHUFFLE
    reasons = (DROP_EXACT_DUPLICATE,)
    description = "the same normalised text as a tweet with a smaller id"

    def __init__(self, *, audit: bool = False, batched: bool = False, spill_dir: str | None = None,
                 join: bool = True):
        super().__init__()
        if (spill_dir is not None or not join) and not batched:
            raise ValueError("spill_dir and join=False need batched input")
        self._audit, self._batched, self._spill_dir, self._join = audit, batched, spill_dir, join

    def expand(self, tweets):
        if isinstance(tweets, dict):  # after DeduplicateIds(texts_next=True)
            unique = tweets["tweets"]
            repeated = tweets[_PENDING] | "KeyByText" >> beam.Map(_keyed_by_text).with_output_types(
                tuple[bytes, Tweet]
            )
        else:
            batches = tweets if self._batched else tweets | "Batch" >> BatchTweets()
            unique, repeated = batches | "SplitDuplicates" >> SplitDuplicates(
                _text_key, bytes, text_key=_text_key, spill_dir=self._spill_dir
            )
        out = repeated | "Decide" >> _KeepFirstTexts(self._audit)
        if not self._join:
            return DedupOutputs({**out, "tweets": _parts(unique, out.tweets)})
        return DedupOutputs({**out, "tweets": _join(unique, out.tweets, self._batched, self._spill_dir)})

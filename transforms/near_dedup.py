"""Near-duplicate removal as a Beam transform: ``RemoveNearDuplicates`` applies the rule of
``near_dedup_rule.py`` (a tweet is dropped iff it has a verified near-duplicate with a smaller id)
at scale, with the same kept tweets, counts, stats and samples as its in-process reference
``near_dedup_report``.

The module composes the steps (``near_dedup_steps.py``, one DoFn each) into the data flow of
``docs/near-dedup.md``; the byte payloads of the shuffles are in ``near_dedup_encoding.py``. Only
compact keys and texts are shuffled: the tweets stay in their batches, and Decide drops the
removed ones there against a side input of their ids.
"""

from __future__ import annotations

import logging

import apache_beam as beam
from tweetmill.schemas.records import DROP_NEAR_DUPLICATE, Tweet
from tweetmill.transforms import near_dedup_steps as steps
from tweetmill.transforms.common import TAG_DROPPED, TAG_SAMPLES, TAG_STATS
from tweetmill.transforms.dedup_batches import BatchTweets, UnbatchTweets
from tweetmill.transforms.near_dedup_rule import (
    STAGE,
    NearDedupConfig,
    NearDedupReport,
    RemovedPair,
    config_dict,
    near_dedup_report,
    near_duplicate_pairs,
    near_duplicates,
    sample_order,
    stats_dict,
)
from tweetmill.transforms.spill import co_group_by_key, group_by_key, parked
from tweetmill.transforms.stage import KIND_SHUFFLE, TAG_DROPPED_TWEETS

__all__ = [
    "STAGE",
    "NearDedupConfig",
    "NearDedupOutputs",
    "NearDedupReport",
    "RemoveNearDuplicates",
    "RemovedPair",
    "config_dict",
    "near_dedup_report",
    "near_duplicate_pairs",
    "near_duplicates",
]

log = logging.getLogger(__name__)


class NearDedupOutputs(dict):
    """The transform's outputs: a dict of PCollections (what Beam accepts from a composite) that
    also reads like a ``DoOutputsTuple``: ``.tweets``, ``[TAG_DROPPED]``, ``["stats"]``,
    ``["samples"]``."""

    @property
    def tweets(self) -> beam.PCollection:
        return self["tweets"]


def _unbatch_samples(batch: list[dict]) -> list[dict]:
    return batch


def _sorted_samples(pairs: list[dict]) -> list[dict]:
    return sorted(pairs, key=sample_order)


class RemoveNearDuplicates(beam.PTransform):
    """Tweets -> tweets without near-duplicates (the rule: ``near_dedup_rule.py``; ``docs/near-dedup.md``).

    Returns ``NearDedupOutputs``, a dict of PCollections that also reads like a ``DoOutputsTuple``:
    ``.tweets`` (kept ``Tweet`` elements, or with ``batched`` lists of them), ``[TAG_DROPPED]``
    (``((STAGE, reason), count)``), ``["stats"]`` (one ``("near_dedup", dict)``), ``["samples"]``
    (at most ``max_samples`` removed-pair dicts, the same ones on every run) and
    ``[TAG_DROPPED_TWEETS]`` (each removed tweet, for the audit). ``batched``: the input is lists
    of tweets (the pipeline's batches), and so is ``.tweets``.

    ``partitions`` bounds what one worker holds in a shuffle (~1/partitions of the band entries or
    texts: raise it with the input), except that one bucket's entries, and the members checked
    against one anchor, share a partition: a cluster of 10M copies puts ~1.5 GB on one worker.
    ``batch_size`` is the number of tweets signed at once. Results depend on neither. Input:
    globally windowed tweets with unique ids (``DeduplicateIds`` runs before), or with ``batched``
    a tuple of PCollections of batches that together hold them (``DeduplicateTexts(join=False)``):
    each part is signed and parked where it is made, so the parts are not joined in files first.
    ``spill_dir`` (batched, local runs): every shuffle goes through files, and the batches wait for
    the decisions in spill files (``spill.py``).
    """

    # The stage's entry in the manifest (``transforms/stage.py``'s contract).
    name = STAGE
    kind = KIND_SHUFFLE
    reasons = (DROP_NEAR_DUPLICATE,)
    description = "a verified near-duplicate (MinHash LSH) of a tweet with a smaller id"

    def __init__(
        self,
        config: NearDedupConfig | None = None,
        partitions: int = 64,
        batch_size: int = 2048,
        *,
        batched: bool = False,
        spill_dir: str | None = None,
    ):
        super().__init__()
        if partitions < 1 or batch_size < 1:
            raise ValueError("partitions and batch_size must be positive")
        self._config = config or NearDedupConfig()
        self._partitions, self._batch_size, self._batched = partitions, batch_size, batched
        self._spill_dir = spill_dir
        _ = self._config.bands  # compute (and cache) the LSH parameters at construction

    def expand(self, tweets):  # -> NearDedupOutputs (Beam warns on non-PCollection hints)
        inputs = tweets if isinstance(tweets, tuple) else (tweets,)
        if len(inputs) > 1 and not self._batched:
            raise ValueError("RemoveNearDuplicates takes several PCollections only of batches (batched=True)")
        if not all(t.windowing.is_default() for t in inputs):
            # Sign and Decide emit what they buffered at the end of a bundle, in the global window.
            raise ValueError("RemoveNearDuplicates runs on globally windowed (batch) input")
        cfg, parts = self._config, self._partitions
        log.debug("near dedup: %s, %d partitions", config_dict(cfg), parts)
        batches = inputs if self._batched else (tweets | "Batch" >> BatchTweets(self._batch_size),)
        sign = steps.SignFn(cfg, parts, self._batch_size)
        signs = [
            part | f"Sign{i or ''}" >> beam.ParDo(sign).with_outputs(steps.TWEETS, main="bands")
            for i, part in enumerate(batches)
        ]
        signed = {tag: tuple(s[tag] for s in signs) for tag in ("bands", steps.TWEETS)}  # parts: spill.py
        spill = self._spill_dir
        buckets = (
            group_by_key(signed["bands"], "GroupBands", spill)
            | "PairWithBucketMin"
            >> beam.ParDo(steps.BucketPairsFn(parts)).with_outputs(steps.PAIRS, steps.ANCHORS)
        )
        candidates = {
            steps.TWEETS: signed[steps.TWEETS],
            steps.PAIRS: buckets[steps.PAIRS],
            steps.ANCHORS: buckets[steps.ANCHORS],
        }
        routed = (
            co_group_by_key(candidates, "JoinCandidates", spill)
            | "Route"
            >> beam.ParDo(steps.RouteFn(parts)).with_outputs(steps.PENDING, steps.CLAIMS, steps.ANCHOR_TEXTS)
        )
        claims = {steps.CLAIMS: routed[steps.CLAIMS], steps.ANCHOR_TEXTS: routed[steps.ANCHOR_TEXTS]}
        first = (
            co_group_by_key(claims, "JoinClaims", spill)
            | "CheckSmallestAnchor"
            >> beam.ParDo(steps.CheckFn(cfg, parts, cfg.max_samples, forward=True)).with_outputs(
                steps.VERDICTS, steps.KEPT_TEXTS, steps.CHECKED, steps.CLAIMS
            )
        )
        retries = {steps.CLAIMS: first[steps.CLAIMS], steps.ANCHOR_TEXTS: routed[steps.ANCHOR_TEXTS]}
        second = (
            co_group_by_key(retries, "JoinRetries", spill)
            | "CheckOtherAnchors"
            >> beam.ParDo(steps.CheckFn(cfg, parts, cfg.max_samples, forward=False)).with_outputs(
                steps.VERDICTS, steps.KEPT_TEXTS, steps.CHECKED
            )
        )

        def both(tag: str) -> beam.PCollection:
            return (first[tag], second[tag]) | f"Both{tag.title().replace('_', '')}" >> beam.Flatten()

        verdicts = {
            steps.PENDING: routed[steps.PENDING],
            steps.VERDICTS: both(steps.VERDICTS),
            steps.KEPT_TEXTS: both(steps.KEPT_TEXTS),
        }
        verified = (
            co_group_by_key(verdicts, "JoinVerdicts", spill)
            | "Verify"
            >> beam.ParDo(steps.VerifyFn(cfg, parts, cfg.max_samples)).with_outputs(
                steps.REMOVED, TAG_SAMPLES, steps.ANCHOR_IDS
            )
        )
        waiting = parked(batches, "Park", spill, after=verified[steps.REMOVED])
        decided = waiting | "Decide" >> beam.ParDo(
            steps.DecideFn(), removed=beam.pvalue.AsIter(verified[steps.REMOVED])
        ).with_output_types(list[Tweet]).with_outputs(TAG_DROPPED, TAG_DROPPED_TWEETS, main="kept")
        pair_counts = both(steps.CHECKED) | "SumChecked" >> beam.CombineGlobally(steps.sum_pairs)
        stats = (
            verified[steps.ANCHOR_IDS]
            | "GroupAnchors" >> beam.GroupByKey()
            | "ClustersPerPartition" >> beam.Map(steps.cluster_stats)
            | "ClusterStats" >> beam.CombineGlobally(steps.ClusterStats())
            | "StatsDict"
            >> beam.Map(
                lambda c, checked, config=cfg: stats_dict(config, c, checked),
                checked=beam.pvalue.AsSingleton(pair_counts),
            )
        )
        samples = (
            verified[TAG_SAMPLES]
            | "UnbatchSamples" >> beam.FlatMap(_unbatch_samples)
            | "SampleRemoved" >> beam.combiners.Top.Smallest(max(cfg.max_samples, 1), key=sample_order)
            | "EmitSamples" >> beam.FlatMap(_sorted_samples)
        )
        kept = decided.kept if self._batched else decided.kept | "Unbatch" >> UnbatchTweets()
        return NearDedupOutputs(
            {
                "tweets": kept,
                TAG_DROPPED: decided[TAG_DROPPED],
                TAG_DROPPED_TWEETS: decided[TAG_DROPPED_TWEETS],
                TAG_STATS: stats,
                TAG_SAMPLES: samples,
            }
        )

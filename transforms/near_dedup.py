"""Near-duplicate removal as a Beam transform: the removal rule, its in-process reference
(``near_dedup_report``/``near_duplicates``) and ``RemoveNearDuplicates``, which applies it at scale.

Exact dedup misses copy-paste spam, bot templates, the same text with another link or hashtag, and
manual retweets. The rule: *a tweet is dropped iff it has a verified near-duplicate with a smaller
id* (estimated Jaccard of MinHash signatures >= threshold; see ``minhash.py``); its anchor (the
``kept_id`` of samples and stats) is the smallest such id. It is local, so survivors do not depend on
runner, worker count, partitions or input order. Candidates come from LSH buckets, each member paired
only with its bucket's smallest id. ``docs/near-dedup.md`` explains the rule, why it is correct,
how the transform scales and how it stays compatible with datasketch; the byte payloads of the
shuffles are in ``near_dedup_encoding.py``.

Ids are expected to be unique (``DeduplicateIds`` runs earlier); tweets that share an id share a
fate and are never compared with each other.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
from collections import defaultdict
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass

import apache_beam as beam
import numpy as np
from apache_beam.transforms.window import GlobalWindow
from apache_beam.utils.windowed_value import WindowedValue
from tweetmill.schemas.records import DROP_NEAR_DUPLICATE, Tweet
from tweetmill.schemas.shard import splitmix64
from tweetmill.transforms.common import TAG_DROPPED, TAG_SAMPLES, TAG_STATS, DropCounter
from tweetmill.transforms.minhash import SCHEME, band_keys, is_empty, lsh_params, minhash_signatures
from tweetmill.transforms.near_dedup_encoding import (
    Claims,
    concat,
    decode_arrays,
    encode_arrays,
    ids_array,
    match_ids,
    pack_tweets,
    partition_of,
    split_by_partition,
    unique_pairs,
    unpack_tweets,
)
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

STAGE = "near_dedup"


@dataclass(frozen=True)
class NearDedupConfig:
    """What near-dedup treats as a duplicate. Part of the run fingerprint, so keep it plain data.

    The defaults were chosen with ``bench/bench_near_dedup_quality.py`` (see its docstring).
    """

    threshold: float = 0.7  # estimated Jaccard of shingle sets at or above which tweets are duplicates
    num_perm: int = 128
    seed: int = 1
    shingle_size: int = 4  # characters per shingle
    max_samples: int = 100  # removed pairs kept for inspection
    # LSH tuning, as datasketch's ``MinHashLSH(weights=(1 - w, w))``. Candidates are verified, so a
    # false positive costs one comparison while a false negative is a duplicate kept: 0.9 makes a
    # pair exactly at the threshold a candidate ~90% of the time instead of ~45% with 0.5
    # (measured: recall against exact Jaccard 0.94 -> 0.98 at threshold 0.7, n 5).
    false_negative_weight: float = 0.9

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold <= 1.0:
            raise ValueError(f"threshold must be in (0, 1], got {self.threshold}")
        if self.num_perm < 1:
            raise ValueError(f"num_perm must be positive, got {self.num_perm}")
        if self.shingle_size < 1:
            raise ValueError(f"shingle_size must be positive, got {self.shingle_size}")
        if self.max_samples < 0:
            raise ValueError(f"max_samples must be >= 0, got {self.max_samples}")
        if not 0.0 < self.false_negative_weight < 1.0:
            raise ValueError(f"false_negative_weight must be in (0, 1), got {self.false_negative_weight}")

    @property
    def bands(self) -> int:
        return lsh_params(self.threshold, self.num_perm, self.false_negative_weight)[0]

    @property
    def rows(self) -> int:
        return lsh_params(self.threshold, self.num_perm, self.false_negative_weight)[1]

    @property
    def min_agreement(self) -> int:
        """Signature positions that must agree for a verified pair (``jaccard >= threshold``)."""
        return math.ceil(self.threshold * self.num_perm - 1e-9)


# --- pure in-memory core -------------------------------------------------------------------------


@dataclass(frozen=True)
class RemovedPair:
    """A removed tweet and its anchor (smallest-id verified near-duplicate)."""

    removed: Tweet
    kept: Tweet
    similarity: float

    def to_json_dict(self) -> dict:
        return {
            "removed_id": self.removed.id,
            "removed_text": self.removed.text,
            "kept_id": self.kept.id,
            "kept_text": self.kept.text,
            "similarity": self.similarity,
        }


@dataclass(frozen=True)
class NearDedupReport:
    """Everything the Beam transform outputs, computed in one process (tests, benchmarks)."""

    removed: list[RemovedPair]  # input order
    candidate_pairs: int  # (tweet, bucket min) pairs compared
    verified_pairs: int  # of those, estimated Jaccard >= threshold
    config: NearDedupConfig

    def stats(self) -> tuple[str, dict]:
        """The ``("near_dedup", {...})`` element of the ``stats`` output."""
        per_anchor: dict[int, int] = defaultdict(int)
        for pair in self.removed:
            per_anchor[pair.kept.id] += 1
        clusters = (len(self.removed), len(per_anchor), 1 + max(per_anchor.values(), default=-1))
        return _stats_dict(self.config, clusters, (self.candidate_pairs, self.verified_pairs))

    def samples(self) -> list[dict]:
        """The ``samples`` output, in ``_sample_order``."""
        return sorted((p.to_json_dict() for p in self.removed), key=_sample_order)[: self.config.max_samples]


def near_dedup_report(tweets: list[Tweet], config: NearDedupConfig) -> NearDedupReport:
    """The pure core, same rule and candidates as ``RemoveNearDuplicates``: bucket members are
    compared with the bucket's smallest id only, verified pairs count, a tweet goes iff it has a
    verified near-duplicate with a smaller id (its anchor: the smallest such id). A tweet is
    compared with its smallest candidate first and with the others only if that one fails (the
    same outcome as comparing with all; ``candidate_pairs`` counts the comparisons made)."""
    if not tweets:
        return NearDedupReport([], 0, 0, config)
    sigs = minhash_signatures([t.text for t in tweets], config)
    keys = band_keys(sigs, config.bands, config.rows)
    empty = is_empty(sigs)
    ids = [t.id for t in tweets]
    by_id: dict[int, list[int]] = defaultdict(list)
    for i, tid in enumerate(ids):
        by_id[tid].append(i)
    buckets: dict[tuple[int, int], list[int]] = defaultdict(list)
    for i in np.flatnonzero(~empty).tolist():
        for band, key in enumerate(keys[i].tolist()):
            buckets[(band, key)].append(ids[i])
    candidates: dict[int, set[int]] = defaultdict(set)  # id -> the bucket mins it was paired with
    for members in buckets.values():
        if len(members) < 2:
            continue
        smallest = min(members)
        for tid in members:
            if tid != smallest:
                candidates[tid].add(smallest)
    need = config.min_agreement
    removed: dict[int, RemovedPair] = {}
    checked = verified = 0
    for tid, others in candidates.items():
        smallest, *rest = sorted(others)
        for i in by_id[tid]:
            best: tuple[int, str, int, int] | None = None  # (anchor id, text, position, agreement)
            for round_ in ([smallest], rest):  # the others only if the smallest anchor fails
                for other in round_:
                    for j in by_id[other]:
                        agree = int(np.count_nonzero(sigs[i] == sigs[j]))
                        checked += 1
                        verified += agree >= need
                        if agree >= need and (best is None or (other, tweets[j].text) < best[:2]):
                            best = (other, tweets[j].text, j, agree)
                if best is not None:
                    break
            if best is not None:
                removed[i] = RemovedPair(tweets[i], tweets[best[2]], best[3] / config.num_perm)
    return NearDedupReport([removed[i] for i in sorted(removed)], checked, verified, config)


def near_duplicate_pairs(tweets: list[Tweet], config: NearDedupConfig) -> list[RemovedPair]:
    """One ``RemovedPair`` (removed tweet, anchor, similarity) per removed tweet, in input order."""
    return near_dedup_report(tweets, config).removed


def near_duplicates(tweets: list[Tweet], config: NearDedupConfig) -> tuple[list[Tweet], list[Tweet]]:
    """``(kept, removed)``, each in input order: the Beam transform's result, in one process."""
    gone = {id(p.removed) for p in near_duplicate_pairs(tweets, config)}
    kept = [t for t in tweets if id(t) not in gone]
    removed = [t for t in tweets if id(t) in gone]
    return kept, removed


# --- Beam ----------------------------------------------------------------------------------------
#
# Every shuffle moves batches routed to one of ``partitions`` keys (``near_dedup_encoding``), so the
# number of partitions, not the input size, bounds what one worker holds: raise it with the input
# (the result does not depend on it). Tweets go from Sign to Verify (packed, one shuffle); Route and
# Check see only ids and texts. No signature is shuffled: Check signs the members and anchors of its
# pairs again from their texts (~8 µs each), which costs less than moving 512 bytes per tweet or
# per pair through the shuffles (measured: every byte is copied several times on the FnApiRunner,
# and the kernel's page faults on those copies grew faster than the data).

# The tags between the steps.
_TWEETS, _PACKED = "tweets", "packed"  # Sign -> Route (ids, texts); Sign -> Verify (tweets)
_PAIRS, _ANCHORS = "pairs", "anchors"  # PairWithBucketMin -> Route: (member, anchor); anchor ids
_PENDING = "pending"  # Route -> Verify: which tweets of each chunk wait for a verdict
_CLAIMS, _ANCHOR_TEXTS = "claims", "anchor_texts"  # Route -> Check: member texts; anchor texts
_VERDICTS, _KEPT_TEXTS = "verdicts", "kept_texts"  # Check -> Verify: verified pairs; sample texts
_CHECKED, _ANCHOR_IDS = "checked", "anchor_ids"  # Check, Verify -> stats
# Signed tweets are emitted this many at a time (and at the end of a bundle), not per batch.
_EMIT_TWEETS = 65536
# Bucket pairs are deduplicated and emitted this many at a time (and at the end of a bundle).
_EMIT_PAIRS = 1 << 23


class _SignFn(beam.DoFn):
    """Tweets -> band entries ``(key partition, keys and ids)``, their ids and texts ``(id
    partition, (token, ids, texts))`` for Route and the tweets themselves ``(id partition, (token,
    packed tweets))`` for Verify (the token pairs the two), signed a batch at a time and emitted
    ``_EMIT_TWEETS`` at a time. Empty texts get no band entry, so they never match.

    It buffers tweets itself rather than follow ``BatchElements``: the runner samples the size
    of list elements by pickling every tweet in them (measured: 10% of the stage's time)."""

    def __init__(self, config: NearDedupConfig, partitions: int, batch_size: int):
        self._config, self._partitions, self._batch_size = config, partitions, batch_size

    def start_bundle(self) -> None:
        self._buffer: list[Tweet] = []
        # (tweets, their ids, band keys of those with a shingle, those tweets' ids)
        self._signed: list[tuple[list[Tweet], np.ndarray, np.ndarray, np.ndarray]] = []
        self._signed_count = 0

    def process(self, tweet: Tweet) -> Iterator:
        self._buffer.append(tweet)
        if len(self._buffer) >= self._batch_size:
            self._sign()
            if self._signed_count >= _EMIT_TWEETS:
                yield from self._emit()

    def finish_bundle(self) -> Iterator:
        window = GlobalWindow()
        self._sign()
        for out in self._emit():
            if isinstance(out, beam.pvalue.TaggedOutput):
                yield beam.pvalue.TaggedOutput(
                    out.tag, WindowedValue(out.value, window.max_timestamp(), (window,))
                )
            else:
                yield WindowedValue(out, window.max_timestamp(), (window,))

    def _sign(self) -> None:
        """Signs the buffered batch; the results wait for ``_emit`` (a few large elements per
        partition rather than two per batch and partition: Beam's cost is per element)."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        cfg = self._config
        sigs = minhash_signatures([t.text for t in batch], cfg)
        ids = ids_array(batch)
        has_shingles = ~is_empty(sigs)
        keys = band_keys(sigs[has_shingles], cfg.bands, cfg.rows).ravel()
        self._signed.append((batch, ids, keys, np.repeat(ids[has_shingles], cfg.bands)))
        self._signed_count += len(batch)

    def _emit(self) -> Iterator:
        signed, self._signed, self._signed_count = self._signed, [], 0
        if not signed:
            return
        parts = self._partitions
        batch = [t for b, _, _, _ in signed for t in b]
        ids = np.concatenate([i for _, i, _, _ in signed])
        for q, rows in split_by_partition(partition_of(ids, parts), parts):
            part = [batch[i] for i in rows.tolist()]
            token = os.urandom(16)  # pairs Route's view of this chunk with the chunk in Verify
            texts = [t.text for t in part]
            yield beam.pvalue.TaggedOutput(_TWEETS, (q, (token, encode_arrays(ids[rows]), texts)))
            yield beam.pvalue.TaggedOutput(_PACKED, (q, (token, pack_tweets(part))))
        keys = np.concatenate([k for _, _, k, _ in signed])
        key_ids = np.concatenate([i for _, _, _, i in signed])
        for q, sel in split_by_partition(partition_of(keys, parts), parts):
            yield q, encode_arrays(keys[sel], key_ids[sel])


class _BucketPairsFn(beam.DoFn):
    """One partition of band entries -> ``(member, bucket min)`` pairs, routed to the member's
    partition, and the bucket mins (anchors), routed to theirs: linear in a bucket's size (a
    100k-copy bucket gives 100k pairs, not 10**10)."""

    def __init__(self, partitions: int):
        self._partitions = partitions

    def start_bundle(self) -> None:
        self._found: list[tuple[np.ndarray, np.ndarray]] = []  # (members, bucket mins)
        self._found_count = 0

    def finish_bundle(self) -> Iterator:
        window = GlobalWindow()
        for out in self._emit():
            yield beam.pvalue.TaggedOutput(
                out.tag, WindowedValue(out.value, window.max_timestamp(), (window,))
            )

    def process(self, element) -> Iterator:
        _, chunks = element
        chunks = [decode_arrays(c) for c in chunks]
        keys = concat([k for k, _ in chunks], np.uint64)
        ids = concat([i for _, i in chunks], np.int64)
        if len(keys) < 2:
            return
        # By key only (one sort key, not two: a lexsort by (key, id) cost twice as much); each
        # bucket's min comes from a reduceat over its run, on the buckets of two or more only.
        order = np.argsort(keys)
        keys = keys[order]
        new_run = np.r_[True, keys[1:] != keys[:-1]]
        run_start = np.flatnonzero(new_run)
        run_len = np.diff(np.r_[run_start, len(keys)])
        shared = np.repeat(run_len > 1, run_len)
        if not shared.any():
            return
        ids = ids[order[shared]]
        run_start = np.flatnonzero(new_run[shared])
        run_of = np.cumsum(new_run[shared]) - 1
        smallest = np.minimum.reduceat(ids, run_start)[run_of]
        member = ids != smallest  # excludes each bucket's min, and tweets sharing its id
        self._found.append((ids[member], smallest[member]))
        self._found_count += len(self._found[-1][0])
        if self._found_count >= _EMIT_PAIRS:
            yield from self._emit()

    def _emit(self) -> Iterator:
        """The bundle's pairs so far, each once: a member shares up to one bucket per band with
        its bucket min, so the same pair comes from up to ``bands`` partitions; the copies are
        removed here, before the shuffle (Route still deduplicates across bundles)."""
        found, self._found, self._found_count = self._found, [], 0
        if not found:
            return
        xs = np.concatenate([x for x, _ in found])
        ms = np.concatenate([m for _, m in found])
        del found
        parts = self._partitions
        unique_x, unique_m = [], []
        for q, sel in split_by_partition(partition_of(xs, parts), parts):
            x, m = unique_pairs(xs[sel], ms[sel])
            unique_x.append(x)
            unique_m.append(m)
            yield beam.pvalue.TaggedOutput(_PAIRS, (q, encode_arrays(x, m)))
        anchors = np.unique(np.concatenate(unique_m))
        for q, sel in split_by_partition(partition_of(anchors, parts), parts):
            yield beam.pvalue.TaggedOutput(_ANCHORS, (q, encode_arrays(anchors[sel])))


class _RouteFn(beam.DoFn):
    """One id partition (Route sees ids and texts; the tweets go from Sign to Verify):

    * to Verify, which tweets of each chunk are members of a pair (they wait for a verdict; the
      others are kept), in chunk order, so a member is named by its rank ``k`` among them;
    * to the partition of each member's smallest anchor, its text with all its anchors (``Check``
      tries the smallest first and forwards the member to the others only if that one fails: 91%
      pass on the benchmark): a member's text (~100 bytes) travels, not the anchor's signature
      (512 bytes, to every partition holding one of its members: measured, those were two thirds
      of the bytes shuffled at 1M tweets);
    * to its own partition's Check, the texts of its anchors.
    """

    def __init__(self, partitions: int):
        self._partitions = partitions

    def process(self, element) -> Iterator:
        q, grouped = element
        chunks = [(token, decode_arrays(arrays)[0], texts) for token, arrays, texts in grouped[_TWEETS]]
        if not chunks:  # cannot happen: pairs and anchors come from tweets, which Route holds
            return
        all_ids = np.concatenate([i for _, i, _ in chunks])
        texts = [t for _, _, tx in chunks for t in tx]
        pairs = [decode_arrays(c) for c in grouped[_PAIRS]]
        xs, ms = unique_pairs(
            concat([x for x, _ in pairs], np.int64), concat([m for _, m in pairs], np.int64)
        )
        is_member = np.isin(all_ids, xs)
        member_rows = np.flatnonzero(is_member)
        tokens = [token for token, _, _ in chunks]
        yield beam.pvalue.TaggedOutput(_PENDING, (q, (tokens, encode_arrays(is_member))))

        anchors = concat([decode_arrays(c)[0] for c in grouped[_ANCHORS]], np.int64)
        if len(anchors):
            _, rows = match_ids(all_ids, np.unique(anchors))
            anchor_texts = [texts[r] for r in rows.tolist()]
            yield beam.pvalue.TaggedOutput(_ANCHOR_TEXTS, (q, (encode_arrays(all_ids[rows]), anchor_texts)))
        if len(xs) == 0:
            return
        # Every member tweet (rows sharing an id each count) with each of its anchors, by member
        # then anchor (``unique_pairs`` sorted the pairs by id, then anchor).
        pair_of, k = match_ids(all_ids[member_rows], xs)  # k: the member's rank, indexing member_rows
        order = np.lexsort((pair_of, k))
        k, anchor = k[order], ms[pair_of[order]]
        smallest = np.r_[True, k[1:] != k[:-1]]
        claims = Claims(
            src=np.full(len(member_rows), q, dtype=np.int64),
            k=np.arange(len(member_rows), dtype=np.int64),
            x=all_ids[member_rows],
            texts=[texts[r] for r in member_rows.tolist()],
            pair_member=k[smallest],
            pair_anchor=anchor[smallest],
            rest_member=k[~smallest],
            rest_anchor=anchor[~smallest],
        )
        for claim in claims.route(self._partitions):
            yield beam.pvalue.TaggedOutput(_CLAIMS, claim)


class _CheckFn(beam.DoFn):
    """One anchor partition: each claimed member's signature against its anchors' (both signed
    here from their texts, each once); per (member, anchor id) the best verified anchor tweet (the
    smallest text, where tweets share an id) goes back to the member's partition as a verdict. A
    member none of whose pairs passes is forwarded to the partitions of its other anchors (round
    1 only: round 2 checks all the rest at once). The anchor's text goes along only for members
    that may be sampled (the partition's first ``max_samples`` in sample order: the overall first
    ones are among them wherever they are verified)."""

    def __init__(self, config: NearDedupConfig, partitions: int, max_samples: int, forward: bool):
        self._config, self._partitions, self._max_samples = config, partitions, max_samples
        self._forward = forward

    def process(self, element) -> Iterator:
        _, grouped = element
        if not grouped[_CLAIMS]:
            return
        cfg = self._config
        anchor_blocks = [(decode_arrays(arrays)[0], texts) for arrays, texts in grouped[_ANCHOR_TEXTS]]
        anchor_ids = concat([a for a, _ in anchor_blocks], np.int64)
        anchor_texts = [t for _, tx in anchor_blocks for t in tx]
        claims = Claims.join(grouped[_CLAIMS])
        pair_of, arow = match_ids(anchor_ids, claims.pair_anchor)  # one row per anchor tweet of a pair
        member = claims.pair_member[pair_of]
        needed, arow = np.unique(arow, return_inverse=True)  # sign only the anchors claimed here
        arow = arow.ravel()
        anchor_sigs = minhash_signatures([anchor_texts[r] for r in needed.tolist()], cfg)
        member_sigs = minhash_signatures(claims.texts, cfg)
        agree = np.count_nonzero(member_sigs[member] == anchor_sigs[arow], axis=1)
        ok = agree >= cfg.min_agreement
        yield beam.pvalue.TaggedOutput(_CHECKED, (len(agree), int(np.count_nonzero(ok))))
        if self._forward:
            failed = np.isin(claims.rest_member, member[ok], invert=True)
            retries = dataclasses.replace(
                claims, pair_member=claims.rest_member[failed], pair_anchor=claims.rest_anchor[failed],
                rest_member=claims.rest_member[:0], rest_anchor=claims.rest_anchor[:0],
            )
            for claim in retries.route(self._partitions):
                yield beam.pvalue.TaggedOutput(_CLAIMS, claim)
        member, arow, agree = member[ok], needed[arow[ok]], agree[ok]
        if len(member) == 0:
            return
        # One verdict per member tweet and anchor id: where tweets share the anchor's id, the
        # smallest text (a Python sort, on those few rows only).
        m = anchor_ids[arow]
        order = np.lexsort((m, member))
        run_m, run_member = m[order], member[order]
        starts = np.flatnonzero(np.r_[True, (run_m[1:] != run_m[:-1]) | (run_member[1:] != run_member[:-1])])
        pick = order[starts]
        if len(starts) < len(order):  # tweets share an anchor id: per run, the smallest anchor text
            ends = np.r_[starts[1:], len(order)]
            pick = np.array([min(order[lo:hi].tolist(), key=lambda i: anchor_texts[arow[i]])
                             for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True)], dtype=np.int64)
        member, arow, agree = member[pick], arow[pick], agree[pick]
        src, k, x, m = claims.src[member], claims.k[member], claims.x[member], anchor_ids[arow]
        for q, sel in split_by_partition(src, self._partitions):
            yield beam.pvalue.TaggedOutput(_VERDICTS, (q, encode_arrays(k[sel], m[sel], agree[sel])))
        if self._max_samples:
            distinct = np.unique(x)
            first = distinct[np.lexsort((distinct, _sample_hash(distinct)))[: self._max_samples]]
            sampled = np.flatnonzero(np.isin(x, first))
            for q, sel in split_by_partition(src[sampled], self._partitions):
                rows = sampled[sel]
                texts = [anchor_texts[r] for r in arow[rows].tolist()]
                yield beam.pvalue.TaggedOutput(_KEPT_TEXTS, (q, (encode_arrays(k[rows], m[rows]), texts)))


class _VerifyFn(beam.DoFn):
    """One id partition: tweets that wait for no verdict are kept; a member is dropped iff a
    verdict names an anchor (its anchor: the smallest such id)."""

    def __init__(self, config: NearDedupConfig, partitions: int, max_samples: int):
        self._config, self._partitions, self._max_samples = config, partitions, max_samples

    def setup(self) -> None:
        self._drops = DropCounter(STAGE)

    def process(self, element) -> Iterator:
        _, grouped = element
        blob_of = dict(grouped[_PACKED])
        members = []
        for tokens, arrays in grouped[_PENDING]:
            chunk = [t for token in tokens for t in unpack_tweets(blob_of[token])]
            for t, member in zip(chunk, decode_arrays(arrays)[0].tolist(), strict=True):
                if member:
                    members.append(t)
                else:
                    yield t
        if not members:
            return
        verdicts = [decode_arrays(c) for c in grouped[_VERDICTS]]
        k = concat([v[0] for v in verdicts], np.int64)
        m = concat([v[1] for v in verdicts], np.int64)
        agree = concat([v[2] for v in verdicts], np.int64)
        order = np.lexsort((m, k))  # by member, then anchor id: the first of each member wins
        k, m, agree = k[order], m[order], agree[order]
        first = np.r_[True, k[1:] != k[:-1]] if len(k) else np.zeros(0, dtype=bool)
        k, m, agree = k[first], m[first], agree[first]
        removed = np.zeros(len(members), dtype=bool)
        removed[k] = True
        for t, gone in zip(members, removed.tolist(), strict=True):
            if gone:
                yield beam.pvalue.TaggedOutput(TAG_DROPPED_TWEETS, (STAGE, DROP_NEAR_DUPLICATE, t))
            else:
                yield t
        if len(k) == 0:
            return
        yield from self._drops.emit({DROP_NEAR_DUPLICATE: len(k)})
        if self._max_samples:
            kept_text = {}
            for arrays, texts in grouped[_KEPT_TEXTS]:
                sk, sm = decode_arrays(arrays)
                kept_text.update(zip(zip(sk.tolist(), sm.tolist(), strict=True), texts, strict=True))
            removed_ids = np.fromiter((members[r].id for r in k.tolist()), dtype=np.int64, count=len(k))
            samples = []
            for i in np.lexsort((removed_ids, _sample_hash(removed_ids)))[: self._max_samples].tolist():
                text = kept_text.get((int(k[i]), int(m[i])))
                if text is not None:  # else not among the first samples anywhere (see _CheckFn)
                    t = members[int(k[i])]
                    samples.append({"removed_id": t.id, "removed_text": t.text, "kept_id": int(m[i]),
                                    "kept_text": text, "similarity": int(agree[i]) / self._config.num_perm})
            yield beam.pvalue.TaggedOutput(TAG_SAMPLES, samples)
        for q, sel in split_by_partition(partition_of(m, self._partitions), self._partitions):
            yield beam.pvalue.TaggedOutput(_ANCHOR_IDS, (q, encode_arrays(m[sel])))


def _cluster_stats(element) -> tuple[int, int, int]:
    """One anchor partition -> (removed, clusters, largest cluster) over its anchors."""
    _, chunks = element
    anchors = np.concatenate([decode_arrays(c)[0] for c in chunks])
    _, counts = np.unique(anchors, return_counts=True)
    return (int(counts.sum()), len(counts), int(counts.max()) + 1)


class _ClusterStats(beam.CombineFn):
    """Partition results -> (removed, clusters, largest cluster) overall."""

    def create_accumulator(self) -> tuple[int, int, int]:
        return (0, 0, 0)

    def add_input(self, acc, part) -> tuple[int, int, int]:
        return self.merge_accumulators([acc, part])

    def merge_accumulators(self, accumulators) -> tuple[int, int, int]:
        removed = clusters = largest = 0
        for r, c, big in accumulators:
            removed, clusters, largest = removed + r, clusters + c, max(largest, big)
        return (removed, clusters, largest)

    def extract_output(self, acc) -> tuple[int, int, int]:
        return acc


def _sample_hash(removed_ids: np.ndarray) -> np.ndarray:
    return splitmix64(removed_ids.view(np.uint64))


def _sample_order(pair: dict) -> tuple:
    """A spread-out but deterministic order over removed pairs: a hash of the removed id first
    (``_sample_hash``, which Verify applies to whole partitions), then the ids and the text."""
    removed_id = pair["removed_id"]
    return (splitmix64(removed_id & ((1 << 64) - 1)), removed_id, pair["kept_id"], pair["removed_text"])


def _sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    checked = verified = 0
    for c, v in pairs:
        checked, verified = checked + c, verified + v
    return checked, verified


def _stats_dict(
    config: NearDedupConfig, clusters: tuple[int, int, int], checked: tuple[int, int]
) -> tuple[str, dict]:
    removed, n_clusters, largest = clusters
    return (
        STAGE,
        {
            "duplicates_removed": removed,
            "clusters": n_clusters,
            "largest_cluster": largest,
            "candidate_pairs": checked[0],  # (tweet, bucket min) pairs compared
            "verified_pairs": checked[1],  # of those, estimated Jaccard >= threshold
            "threshold": config.threshold,
            "num_perm": config.num_perm,
            "seed": config.seed,
            "false_negative_weight": config.false_negative_weight,
            "bands": config.bands,
            "rows": config.rows,
            "shingle_size": config.shingle_size,
            "scheme": SCHEME,
            "rule": "drop iff a verified near-duplicate has a smaller id",
        },
    )


class NearDedupOutputs(dict):
    """The transform's outputs: a dict of PCollections (what Beam accepts from a composite) that
    also reads like a ``DoOutputsTuple``: ``.tweets``, ``[TAG_DROPPED]``, ``["stats"]``,
    ``["samples"]``."""

    @property
    def tweets(self) -> beam.PCollection:
        return self["tweets"]


class RemoveNearDuplicates(beam.PTransform):
    """Tweets -> tweets without near-duplicates (the rule: the module docstring; ``docs/near-dedup.md``).

    Returns ``NearDedupOutputs``, a dict of PCollections that also reads like a ``DoOutputsTuple``:
    ``.tweets`` (kept ``Tweet`` elements), ``[TAG_DROPPED]`` (``((STAGE, reason), count)``), ``["stats"]``
    (one ``("near_dedup", dict)``), ``["samples"]`` (at most ``max_samples`` removed-pair dicts,
    the same ones on every run) and ``[TAG_DROPPED_TWEETS]`` (each removed tweet, for the audit).
    ``partitions`` bounds what one worker holds in a shuffle
    (~1/partitions of the band entries or tweets: raise it with the input), except that one
    bucket's entries, and the members checked against one anchor, share a partition: a cluster of
    10M copies puts ~1.5 GB on one worker. ``batch_size`` is the number of tweets signed at once.
    Results depend on neither. Input: globally windowed tweets with unique ids
    (``DeduplicateIds`` runs before).
    """

    # The stage's entry in the manifest (``transforms/stage.py``'s contract).
    name = STAGE
    kind = KIND_SHUFFLE
    reasons = (DROP_NEAR_DUPLICATE,)
    description = "a verified near-duplicate (MinHash LSH) of a tweet with a smaller id"

    def __init__(self, config: NearDedupConfig | None = None, partitions: int = 64, batch_size: int = 2048):
        super().__init__()
        if partitions < 1 or batch_size < 1:
            raise ValueError("partitions and batch_size must be positive")
        self._config = config or NearDedupConfig()
        self._partitions, self._batch_size = partitions, batch_size
        _ = self._config.bands  # compute (and cache) the LSH parameters at construction

    def expand(self, tweets: beam.PCollection):  # -> NearDedupOutputs (Beam warns on non-PCollection hints)
        if not tweets.windowing.is_default():
            # The batching in _SignFn emits its last batch in the global window.
            raise ValueError("RemoveNearDuplicates runs on globally windowed (batch) input")
        cfg, parts = self._config, self._partitions
        log.debug("near dedup: %s, %d partitions", config_dict(cfg), parts)
        signed = tweets | "Sign" >> beam.ParDo(_SignFn(cfg, parts, self._batch_size)).with_outputs(
            _TWEETS, _PACKED, main="bands"
        )
        buckets = (
            signed.bands
            | "GroupBands" >> beam.GroupByKey()
            | "PairWithBucketMin" >> beam.ParDo(_BucketPairsFn(parts)).with_outputs(_PAIRS, _ANCHORS)
        )
        routed = (
            {_TWEETS: signed[_TWEETS], _PAIRS: buckets[_PAIRS], _ANCHORS: buckets[_ANCHORS]}
            | "JoinCandidates" >> beam.CoGroupByKey()
            | "Route" >> beam.ParDo(_RouteFn(parts)).with_outputs(_PENDING, _CLAIMS, _ANCHOR_TEXTS)
        )
        first = (
            {_CLAIMS: routed[_CLAIMS], _ANCHOR_TEXTS: routed[_ANCHOR_TEXTS]}
            | "JoinClaims" >> beam.CoGroupByKey()
            | "CheckSmallestAnchor"
            >> beam.ParDo(_CheckFn(cfg, parts, cfg.max_samples, forward=True)).with_outputs(
                _VERDICTS, _KEPT_TEXTS, _CHECKED, _CLAIMS
            )
        )
        second = (
            {_CLAIMS: first[_CLAIMS], _ANCHOR_TEXTS: routed[_ANCHOR_TEXTS]}
            | "JoinRetries" >> beam.CoGroupByKey()
            | "CheckOtherAnchors"
            >> beam.ParDo(_CheckFn(cfg, parts, cfg.max_samples, forward=False)).with_outputs(
                _VERDICTS, _KEPT_TEXTS, _CHECKED
            )
        )

        def both(tag: str) -> beam.PCollection:
            return (first[tag], second[tag]) | f"Both{tag.title().replace('_', '')}" >> beam.Flatten()

        verified = (
            {
                _PACKED: signed[_PACKED],
                _PENDING: routed[_PENDING],
                _VERDICTS: both(_VERDICTS),
                _KEPT_TEXTS: both(_KEPT_TEXTS),
            }
            | "JoinVerdicts" >> beam.CoGroupByKey()
            | "Verify"
            >> beam.ParDo(_VerifyFn(cfg, parts, cfg.max_samples)).with_outputs(
                TAG_DROPPED, TAG_DROPPED_TWEETS, TAG_SAMPLES, _ANCHOR_IDS, main="kept"
            )
        )
        pair_counts = both(_CHECKED) | "SumChecked" >> beam.CombineGlobally(_sum_pairs)
        stats = (
            verified[_ANCHOR_IDS]
            | "GroupAnchors" >> beam.GroupByKey()
            | "ClustersPerPartition" >> beam.Map(_cluster_stats)
            | "ClusterStats" >> beam.CombineGlobally(_ClusterStats())
            | "StatsDict"
            >> beam.Map(
                lambda c, checked, config=cfg: _stats_dict(config, c, checked),
                checked=beam.pvalue.AsSingleton(pair_counts),
            )
        )
        samples = (
            verified[TAG_SAMPLES]
            | "UnbatchSamples" >> beam.FlatMap(lambda batch: batch)
            | "SampleRemoved" >> beam.combiners.Top.Smallest(max(cfg.max_samples, 1), key=_sample_order)
            | "EmitSamples" >> beam.FlatMap(lambda pairs: sorted(pairs, key=_sample_order))
        )
        return NearDedupOutputs(
            {
                "tweets": verified.kept,
                TAG_DROPPED: verified[TAG_DROPPED],
                TAG_DROPPED_TWEETS: verified[TAG_DROPPED_TWEETS],
                TAG_STATS: stats,
                TAG_SAMPLES: samples,
            }
        )


def config_dict(config: NearDedupConfig) -> dict:
    """The config with its derived LSH parameters, for logs and manifests."""
    return {**asdict(config), "bands": config.bands, "rows": config.rows}

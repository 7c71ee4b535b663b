"""The DoFns of ``near_dedup.RemoveNearDuplicates``, one per step of its data flow.

Every shuffle moves batches routed to one of ``partitions`` keys (``near_dedup_encoding``), so the
number of partitions, not the input size, bounds what one worker holds: raise it with the input
(the result does not depend on it). No tweet crosses a shuffle: Sign sends ids, texts and band
keys; Route, Check and Verify see only ids and texts and decide which ids go; Decide drops those
from the batches where they are. No signature is shuffled either: Check signs the members and
anchors of its pairs again from their texts (~8 µs each), which costs less than moving 512 bytes
per tweet or per pair through the shuffles (measured: every byte is copied several times on the
FnApiRunner, and the kernel's page faults on those copies grew faster than the data).

``docs/near-dedup.md`` has the data flow; ``near_dedup_rule.py`` the rule these steps apply.
"""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Iterable, Iterator

import apache_beam as beam
import numpy as np
from tweetmill.schemas.records import DROP_NEAR_DUPLICATE, Tweet
from tweetmill.transforms.common import TAG_SAMPLES, DropCounter
from tweetmill.transforms.dedup_batches import CachedSideInput, IdSet, repeated, windowed
from tweetmill.transforms.minhash import band_keys, is_empty, minhash_signatures
from tweetmill.transforms.near_dedup_encoding import (
    Claims,
    concat,
    decode_arrays,
    encode_arrays,
    ids_array,
    match_ids,
    partition_of,
    split_by_partition,
    unique_pairs,
)
from tweetmill.transforms.near_dedup_rule import STAGE, NearDedupConfig, sample_hash
from tweetmill.transforms.stage import TAG_DROPPED_TWEETS

# The tags between the steps.
TWEETS = "tweets"  # Sign -> Route: ids and texts
PAIRS, ANCHORS = "pairs", "anchors"  # PairWithBucketMin -> Route: (member, anchor); anchor ids
PENDING = "pending"  # Route -> Verify: the ids of the tweets that wait for a verdict
CLAIMS, ANCHOR_TEXTS = "claims", "anchor_texts"  # Route -> Check: member texts; anchor texts
VERDICTS, KEPT_TEXTS = "verdicts", "kept_texts"  # Check -> Verify: verified pairs; sample texts
CHECKED, ANCHOR_IDS = "checked", "anchor_ids"  # Check, Verify -> stats
REMOVED = "removed"  # Verify -> Decide (a side input): the ids to drop
# Signed tweets are emitted this many at a time (and at the end of a bundle), not per batch.
_EMIT_TWEETS = 65536
# Bucket pairs are deduplicated and emitted this many at a time (and at the end of a bundle).
_EMIT_PAIRS = 1 << 23


class SignFn(beam.DoFn):
    """Batches of tweets -> band entries ``(key partition, keys and ids)`` and the tweets' ids and
    texts ``(id partition, (ids, texts))`` for Route, signed ``batch_size`` at a time and emitted
    ``_EMIT_TWEETS`` at a time. Empty texts get no band entry, so they never match. The tweets
    themselves stay where they are (Decide drops the removed ones from the same batches)."""

    def __init__(self, config: NearDedupConfig, partitions: int, batch_size: int):
        self._config, self._partitions, self._batch_size = config, partitions, batch_size

    def start_bundle(self) -> None:
        self._buffer: list[Tweet] = []
        # (texts, their ids, band keys of those with a shingle, those tweets' ids)
        self._signed: list[tuple[list[str], np.ndarray, np.ndarray, np.ndarray]] = []
        self._signed_count = 0

    def process(self, batch: list[Tweet]) -> Iterator:
        self._buffer.extend(batch)
        if len(self._buffer) >= self._batch_size:
            self._sign()
            if self._signed_count >= _EMIT_TWEETS:
                yield from self._emit()

    def finish_bundle(self) -> Iterator:
        self._sign()
        for out in self._emit():
            yield windowed(out)

    def _sign(self) -> None:
        """Signs the buffered tweets; the results wait for ``_emit`` (a few large elements per
        partition rather than two per batch and partition: Beam's cost is per element)."""
        batch, self._buffer = self._buffer, []
        if not batch:
            return
        cfg = self._config
        texts = [t.text for t in batch]
        sigs = minhash_signatures(texts, cfg)
        ids = ids_array(batch)
        has_shingles = ~is_empty(sigs)
        keys = band_keys(sigs[has_shingles], cfg.bands, cfg.rows).ravel()
        self._signed.append((texts, ids, keys, np.repeat(ids[has_shingles], cfg.bands)))
        self._signed_count += len(batch)

    def _emit(self) -> Iterator:
        signed, self._signed, self._signed_count = self._signed, [], 0
        if not signed:
            return
        parts = self._partitions
        texts = [t for tx, _, _, _ in signed for t in tx]
        ids = np.concatenate([i for _, i, _, _ in signed])
        for q, rows in split_by_partition(partition_of(ids, parts), parts):
            part = [texts[i] for i in rows.tolist()]
            yield beam.pvalue.TaggedOutput(TWEETS, (q, (encode_arrays(ids[rows]), part)))
        keys = np.concatenate([k for _, _, k, _ in signed])
        key_ids = np.concatenate([i for _, _, _, i in signed])
        for q, sel in split_by_partition(partition_of(keys, parts), parts):
            yield q, encode_arrays(keys[sel], key_ids[sel])


class BucketPairsFn(beam.DoFn):
    """One partition of band entries -> ``(member, bucket min)`` pairs, routed to the member's
    partition, and the bucket mins (anchors), routed to theirs: linear in a bucket's size (a
    100k-copy bucket gives 100k pairs, not 10**10)."""

    def __init__(self, partitions: int):
        self._partitions = partitions

    def start_bundle(self) -> None:
        self._found: list[tuple[np.ndarray, np.ndarray]] = []  # (members, bucket mins)
        self._found_count = 0

    def finish_bundle(self) -> Iterator:
        for out in self._emit():
            yield windowed(out)

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
            yield beam.pvalue.TaggedOutput(PAIRS, (q, encode_arrays(x, m)))
        anchors = np.unique(np.concatenate(unique_m))
        for q, sel in split_by_partition(partition_of(anchors, parts), parts):
            yield beam.pvalue.TaggedOutput(ANCHORS, (q, encode_arrays(anchors[sel])))


class RouteFn(beam.DoFn):
    """One id partition (Route sees ids and texts; the tweets stay where they are):

    * to Verify, the ids of the tweets that are members of a pair (they wait for a verdict; the
      others are kept), in order, so a member is named by its rank ``k`` among them, and the texts
      of the members whose id another member shares (tweets that share an id are told apart by
      their texts: see ``VerifyFn``);
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
        chunks = [(decode_arrays(arrays)[0], texts) for arrays, texts in grouped[TWEETS]]
        if not chunks:  # cannot happen: pairs and anchors come from tweets, which Route holds
            return
        all_ids = np.concatenate([i for i, _ in chunks])
        texts = [t for _, tx in chunks for t in tx]
        pairs = [decode_arrays(c) for c in grouped[PAIRS]]
        xs, ms = unique_pairs(
            concat([x for x, _ in pairs], np.int64), concat([m for _, m in pairs], np.int64)
        )
        member_rows = np.flatnonzero(np.isin(all_ids, xs))
        if len(member_rows):
            member_ids = all_ids[member_rows]
            shared = [texts[r] for r in member_rows[repeated(member_ids)].tolist()]
            yield beam.pvalue.TaggedOutput(PENDING, (q, (encode_arrays(member_ids), shared)))

        anchors = concat([decode_arrays(c)[0] for c in grouped[ANCHORS]], np.int64)
        if len(anchors):
            _, rows = match_ids(all_ids, np.unique(anchors))
            anchor_texts = [texts[r] for r in rows.tolist()]
            yield beam.pvalue.TaggedOutput(ANCHOR_TEXTS, (q, (encode_arrays(all_ids[rows]), anchor_texts)))
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
            yield beam.pvalue.TaggedOutput(CLAIMS, claim)


class CheckFn(beam.DoFn):
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
        if not grouped[CLAIMS]:
            return
        cfg = self._config
        anchor_blocks = [(decode_arrays(arrays)[0], texts) for arrays, texts in grouped[ANCHOR_TEXTS]]
        anchor_ids = concat([a for a, _ in anchor_blocks], np.int64)
        anchor_texts = [t for _, tx in anchor_blocks for t in tx]
        claims = Claims.join(grouped[CLAIMS])
        pair_of, arow = match_ids(anchor_ids, claims.pair_anchor)  # one row per anchor tweet of a pair
        member = claims.pair_member[pair_of]
        needed, arow = np.unique(arow, return_inverse=True)  # sign only the anchors claimed here
        arow = arow.ravel()
        anchor_sigs = minhash_signatures([anchor_texts[r] for r in needed.tolist()], cfg)
        member_sigs = minhash_signatures(claims.texts, cfg)
        agree = np.count_nonzero(member_sigs[member] == anchor_sigs[arow], axis=1)
        ok = agree >= cfg.min_agreement
        yield beam.pvalue.TaggedOutput(CHECKED, (len(agree), int(np.count_nonzero(ok))))
        if self._forward:
            failed = np.isin(claims.rest_member, member[ok], invert=True)
            retries = dataclasses.replace(
                claims,
                pair_member=claims.rest_member[failed],
                pair_anchor=claims.rest_anchor[failed],
                rest_member=claims.rest_member[:0],
                rest_anchor=claims.rest_anchor[:0],
            )
            for claim in retries.route(self._partitions):
                yield beam.pvalue.TaggedOutput(CLAIMS, claim)
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
            pick = np.array(
                [
                    min(order[lo:hi].tolist(), key=lambda i: anchor_texts[arow[i]])
                    for lo, hi in zip(starts.tolist(), ends.tolist(), strict=True)
                ],
                dtype=np.int64,
            )
        member, arow, agree = member[pick], arow[pick], agree[pick]
        src, k, x, m = claims.src[member], claims.k[member], claims.x[member], anchor_ids[arow]
        for q, sel in split_by_partition(src, self._partitions):
            yield beam.pvalue.TaggedOutput(VERDICTS, (q, encode_arrays(k[sel], m[sel], agree[sel])))
        if self._max_samples:
            distinct = np.unique(x)
            first = distinct[np.lexsort((distinct, sample_hash(distinct)))[: self._max_samples]]
            sampled = np.flatnonzero(np.isin(x, first))
            for q, sel in split_by_partition(src[sampled], self._partitions):
                rows = sampled[sel]
                kept = [anchor_texts[r] for r in arow[rows].tolist()]
                removed = [claims.texts[r] for r in member[rows].tolist()]
                payload = (encode_arrays(k[rows], m[rows]), kept, removed)
                yield beam.pvalue.TaggedOutput(KEPT_TEXTS, (q, payload))


class VerifyFn(beam.DoFn):
    """One id partition: a member is dropped iff a verdict names an anchor (its anchor: the
    smallest such id); the tweets that wait for no verdict are kept where they are. Outputs, under
    ``REMOVED``, what Decide drops: ``(ids, [(id, text), ...])``, the ids of the removed tweets and,
    only for an id that also names a kept tweet (tweets sharing an id, which ``DeduplicateIds``
    prevents in a run), the removed ones' texts (such tweets have the same fate when their texts
    are the same: the same signature, the same candidates)."""

    def __init__(self, config: NearDedupConfig, partitions: int, max_samples: int):
        self._config, self._partitions, self._max_samples = config, partitions, max_samples

    def process(self, element) -> Iterator:
        _, grouped = element
        if not grouped[PENDING]:
            return
        ((arrays, shared_texts),) = grouped[PENDING]  # Route sends one per partition
        (member_ids,) = decode_arrays(arrays)
        verdicts = [decode_arrays(c) for c in grouped[VERDICTS]]
        k = concat([v[0] for v in verdicts], np.int64)
        m = concat([v[1] for v in verdicts], np.int64)
        agree = concat([v[2] for v in verdicts], np.int64)
        if len(k) == 0:
            return
        order = np.lexsort((m, k))  # by member, then anchor id: the first of each member wins
        k, m, agree = k[order], m[order], agree[order]
        first = np.r_[True, k[1:] != k[:-1]]
        k, m, agree = k[first], m[first], agree[first]
        removed_ids = member_ids[k]
        yield beam.pvalue.TaggedOutput(REMOVED, _removed(member_ids, k, shared_texts))
        if self._max_samples:
            texts = {}
            for arrays, kept, removed in grouped[KEPT_TEXTS]:
                sk, sm = decode_arrays(arrays)
                pairs = zip(kept, removed, strict=True)
                texts.update(zip(zip(sk.tolist(), sm.tolist(), strict=True), pairs, strict=True))
            samples = []
            for i in np.lexsort((removed_ids, sample_hash(removed_ids)))[: self._max_samples].tolist():
                pair = texts.get((int(k[i]), int(m[i])))
                if pair is not None:  # else not among the first samples anywhere (see CheckFn)
                    samples.append(
                        {
                            "removed_id": int(removed_ids[i]),
                            "removed_text": pair[1],
                            "kept_id": int(m[i]),
                            "kept_text": pair[0],
                            "similarity": int(agree[i]) / self._config.num_perm,
                        }
                    )
            yield beam.pvalue.TaggedOutput(TAG_SAMPLES, samples)
        for q, sel in split_by_partition(partition_of(m, self._partitions), self._partitions):
            yield beam.pvalue.TaggedOutput(ANCHOR_IDS, (q, encode_arrays(m[sel])))


def _removed(member_ids: np.ndarray, k: np.ndarray, shared_texts: list[str]) -> tuple[bytes, list]:
    """``(ids, [(id, text), ...])`` of the removed members ``k`` (see ``VerifyFn``)."""
    shared_rows = np.flatnonzero(repeated(member_ids))
    if len(shared_rows) == 0:
        return encode_arrays(member_ids[k]), []
    gone = np.zeros(len(member_ids), dtype=bool)
    gone[k] = True
    text_of = dict(zip(shared_rows.tolist(), shared_texts, strict=True))
    fates: dict[int, set[bool]] = {}
    for r in shared_rows.tolist():
        fates.setdefault(int(member_ids[r]), set()).add(bool(gone[r]))
    mixed = {i for i, f in fates.items() if len(f) > 1}
    ids = member_ids[k]
    by_text = np.isin(ids, np.fromiter(mixed, dtype=np.int64, count=len(mixed)))
    pairs = [(int(member_ids[r]), text_of[r]) for r in k[by_text].tolist()]
    return encode_arrays(ids[~by_text]), pairs


class Removed:
    """Decide's view of the ``REMOVED`` side input: which tweets of a batch go."""

    def __init__(self, payloads: Iterable[tuple[bytes, list]]):
        ids, pairs = [], []
        for arrays, mixed in payloads:
            ids.append(decode_arrays(arrays)[0])
            pairs.extend(mixed)
        self.ids = IdSet(concat(ids, np.int64))
        self.by_text: dict[int, set[str]] = {}
        for i, text in pairs:
            self.by_text.setdefault(i, set()).add(text)
        self.any_ids = IdSet(np.concatenate([self.ids.ids, np.fromiter(self.by_text, dtype=np.int64)]))

    def of_batch(self, batch: list[Tweet]) -> np.ndarray:
        hit = self.any_ids.of_batch(batch)
        if self.by_text and hit.any():  # an id also kept: only the removed texts go
            for r in np.flatnonzero(hit).tolist():
                texts = self.by_text.get(batch[r].id)
                if texts is not None:
                    hit[r] = batch[r].text in texts
        return hit


class DecideFn(beam.DoFn):
    """A batch -> the tweets it keeps (a batch), the removed ones under ``TAG_DROPPED_TWEETS``, and
    the drop count once per bundle: the tweets never left their batch."""

    def setup(self) -> None:
        self._drops = DropCounter(STAGE)
        self._removed = CachedSideInput()

    def start_bundle(self) -> None:
        self._dropped = 0

    def process(self, batch: list[Tweet], removed: Iterable) -> Iterator:
        gone = self._removed.get(removed, Removed).of_batch(batch)
        if not gone.any():
            yield batch
            return
        flags = gone.tolist()
        kept = [t for t, g in zip(batch, flags, strict=True) if not g]
        if kept:
            yield kept
        for t, g in zip(batch, flags, strict=True):
            if g:
                self._dropped += 1
                yield beam.pvalue.TaggedOutput(TAG_DROPPED_TWEETS, (STAGE, DROP_NEAR_DUPLICATE, t))

    def finish_bundle(self) -> Iterator:
        for out in self._drops.emit(Counter({DROP_NEAR_DUPLICATE: self._dropped})):
            yield windowed(out)


def cluster_stats(element) -> tuple[int, int, int]:
    """One anchor partition -> (removed, clusters, largest cluster) over its anchors."""
    _, chunks = element
    anchors = np.concatenate([decode_arrays(c)[0] for c in chunks])
    _, counts = np.unique(anchors, return_counts=True)
    return (int(counts.sum()), len(counts), int(counts.max()) + 1)


class ClusterStats(beam.CombineFn):
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


def sum_pairs(pairs: Iterable[tuple[int, int]]) -> tuple[int, int]:
    checked = verified = 0
    for c, v in pairs:
        checked, verified = checked + c, verified + v
    return checked, verified

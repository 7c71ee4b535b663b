"""Near-duplicate removal: the rule, its configuration and its in-process reference.

Exact dedup misses copy-paste spam, bot templates, the same text with another link or hashtag, and
manual retweets. The rule: *a tweet is dropped iff it has a verified near-duplicate with a smaller
id* (estimated Jaccard of MinHash signatures >= threshold; see ``minhash.py``); its anchor (the
``kept_id`` of samples and stats) is the smallest such id. It is local, so survivors do not depend on
runner, worker count, partitions or input order. Candidates come from LSH buckets, each member paired
only with its bucket's smallest id. ``near_dedup_report`` applies it in one process (tests,
benchmarks); ``near_dedup.RemoveNearDuplicates`` applies it at scale, with the same outputs.
``docs/near-dedup.md`` explains the rule and why it is correct.

Ids are expected to be unique (``DeduplicateIds`` runs earlier); tweets that share an id share a
fate and are never compared with each other.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import asdict, dataclass

import numpy as np
from tweetmill.schemas.records import Tweet
from tweetmill.schemas.shard import splitmix64
from tweetmill.transforms.minhash import SCHEME, band_keys, is_empty, lsh_params, minhash_signatures

__all__ = [
    "STAGE",
    "NearDedupConfig",
    "NearDedupReport",
    "RemovedPair",
    "config_dict",
    "near_dedup_report",
    "near_duplicate_pairs",
    "near_duplicates",
    "sample_hash",
    "sample_order",
    "stats_dict",
]

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
        return stats_dict(self.config, clusters, (self.candidate_pairs, self.verified_pairs))

    def samples(self) -> list[dict]:
        """The ``samples`` output, in ``sample_order``."""
        return sorted((p.to_json_dict() for p in self.removed), key=sample_order)[: self.config.max_samples]


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


def sample_hash(removed_ids: np.ndarray) -> np.ndarray:
    return splitmix64(removed_ids.view(np.uint64))


def sample_order(pair: dict) -> tuple:
    """A spread-out but deterministic order over removed pairs: a hash of the removed id first
    (``sample_hash``, which Verify applies to whole partitions), then the ids and the text."""
    removed_id = pair["removed_id"]
    return (splitmix64(removed_id & ((1 << 64) - 1)), removed_id, pair["kept_id"], pair["removed_text"])


def stats_dict(
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


def config_dict(config: NearDedupConfig) -> dict:
    """The config with its derived LSH parameters, for logs and manifests."""
    return {**asdict(config), "bands": config.bands, "rows": config.rows}

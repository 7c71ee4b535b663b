"""Tweets per ``author_id`` over record batches, bounded in memory (``AuthorCounter``)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa

AUTHOR_CAP = 100_000  # distinct authors kept; beyond 2x this the rarest are pruned (counts lower bounds)
AUTHOR_MERGE_EVERY = 1 << 20  # pending author ids before they are merged (the merge: ~50 B each)


class AuthorCounter:
    """Tweets per ``author_id``, bounded in memory like ``HashtagCounter``.

    Each batch's ids are copied (no view keeps a memory-mapped shard alive); every
    ``AUTHOR_MERGE_EVERY`` ids they are sorted, counted and merged into the running counts, kept
    sorted by id (a sort is cheaper than hashing when nearly every author is new, as in a sample
    stream). Past ``2 * cap`` distinct authors only the ``cap`` most prolific are kept: from then
    on the counts are lower bounds (``pruned``) and ``distinct_seen`` is a lower bound of the
    distinct authors.
    """

    def __init__(self, cap: int = AUTHOR_CAP) -> None:
        self.cap = cap
        self.pruned = False
        self.distinct_seen = 0  # the most distinct authors held at once (exact while not pruned)
        self.ids = np.zeros(0, dtype=np.int64)  # sorted
        self.counts = np.zeros(0, dtype=np.int64)
        self._pending: list[np.ndarray] = []
        self._pending_len = 0

    def add(self, author_id: pa.Array) -> None:
        if author_id.null_count == len(author_id):
            return
        ids = (author_id.drop_null() if author_id.null_count else author_id).to_numpy()
        self._pending.append(ids.copy())  # a copy: no view keeps a memory-mapped shard alive
        self._pending_len += len(ids)
        if self._pending_len > AUTHOR_MERGE_EVERY:
            self.merge()

    def merge(self, *others: AuthorCounter) -> None:
        """Fold in ``others`` (other threads) and the pending ids."""
        runs = []
        if self._pending:
            ids = np.concatenate(self._pending)
            ids.sort()
            starts = np.flatnonzero(np.concatenate(([True], ids[1:] != ids[:-1])))
            runs.append((ids[starts], np.diff(np.append(starts, len(ids)))))
            self._pending, self._pending_len = [], 0
        for other in others:
            other.merge()
            runs.append((other.ids, other.counts))
            self.pruned |= other.pruned
            self.distinct_seen = max(self.distinct_seen, other.distinct_seen)
        if not runs:
            return
        for ids, counts in runs:
            self.ids, self.counts = _merge_sorted_counts(self.ids, self.counts, ids, counts)
        self.distinct_seen = max(self.distinct_seen, len(self.ids))
        if len(self.ids) > 2 * self.cap:
            keep = np.sort(np.argpartition(-self.counts, self.cap)[: self.cap])
            self.ids, self.counts = self.ids[keep], self.counts[keep]
            self.pruned = True

    def top(self, k: int) -> list[tuple[int, int]]:
        """The ``k`` most prolific authors with their tweets (ties: smaller id first)."""
        self.merge()
        order = np.lexsort((self.ids, -self.counts))[:k]
        return list(zip(self.ids[order].tolist(), self.counts[order].tolist(), strict=True))

    def sorted_counts(self) -> np.ndarray:
        """Every author's tweets, largest first."""
        self.merge()
        return np.sort(self.counts)[::-1]


def _merge_sorted_counts(
    a_ids: np.ndarray, a_counts: np.ndarray, b_ids: np.ndarray, b_counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Two (sorted unique ids, counts) as one: the smaller looked up in the larger, no full sort."""
    if len(a_ids) > len(b_ids):
        a_ids, a_counts, b_ids, b_counts = b_ids, b_counts, a_ids, a_counts
    if not len(a_ids):
        return b_ids, b_counts
    at = np.searchsorted(b_ids, a_ids)
    found = at < len(b_ids)
    found[found] = b_ids[at[found]] == a_ids[found]
    counts = b_counts.copy()
    counts[at[found]] += a_counts[found]  # ``at`` is unique where found: a's ids are
    new = ~found
    return np.insert(b_ids, at[new], a_ids[new]), np.insert(counts, at[new], a_counts[new])

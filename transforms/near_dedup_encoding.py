"""What near dedup sends through its shuffles: partition keys, compact byte payloads, and the joins
that put the batches back together on the other side.

Every shuffle of ``near_dedup.RemoveNearDuplicates`` moves *batches* routed to one of
``partitions`` keys (a hash of a band key or of a tweet id), never one element per band entry or
per tweet: a GroupByKey per band entry cost ~20 Beam elements per tweet and ran at ~2k tweets/s on
the FnApiRunner. The payloads are plain ``bytes`` (numpy arrays behind a short header; tweets as one
pickle of their field tuples) because Beam's default coder pickles every array and every dataclass
on its own, which made pickling the costliest step of the shuffles (measured). Numpy and pickle
only, no Beam API: the DoFns wrap these payloads in their tagged outputs.

See ``docs/near-dedup.md`` for the data flow.
"""

from __future__ import annotations

import math
import pickle
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.common import tweet_values

__all__ = [
    "Claims",
    "concat",
    "decode_arrays",
    "encode_arrays",
    "ids_array",
    "match_ids",
    "pack_tweets",
    "partition_of",
    "split_by_partition",
    "unique_pairs",
    "unpack_tweets",
]

# --- routing -------------------------------------------------------------------------------------


def partition_of(values: np.ndarray, partitions: int) -> np.ndarray:
    """Partition of each id or band key: a multiplicative hash, so sequential ids spread evenly."""
    h = values.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)
    return ((h >> np.uint64(32)) % np.uint64(partitions)).astype(np.int64)


def split_by_partition(parts: np.ndarray, partitions: int) -> Iterator[tuple[int, np.ndarray]]:
    """(partition, row indices) for each partition that has rows."""
    order = np.argsort(parts, kind="stable")
    bounds = np.searchsorted(parts[order], np.arange(partitions + 1))
    for q in range(partitions):
        lo, hi = int(bounds[q]), int(bounds[q + 1])
        if lo < hi:
            yield q, order[lo:hi]


# --- payloads ------------------------------------------------------------------------------------


def pack_tweets(tweets: list[Tweet]) -> bytes:
    """Tweets for a shuffle as one pickle of their field tuples: Beam's default coder pickles each
    tweet on its own, ~3x the bytes and ~2.5x the time, and tuples cost 40% less than the
    dataclasses (measured: 2.4 µs per tweet there and back, 127 bytes)."""
    return pickle.dumps(list(map(tweet_values, tweets)), protocol=pickle.HIGHEST_PROTOCOL)


def unpack_tweets(blob: bytes) -> list[Tweet]:
    return [Tweet(*values) for values in pickle.loads(blob)]


def ids_array(tweets: list[Tweet]) -> np.ndarray:
    """The tweets' ids as an int64 array, the form in which ids travel and are joined."""
    return np.fromiter((t.id for t in tweets), dtype=np.int64, count=len(tweets))


def encode_arrays(*arrays: np.ndarray) -> bytes:
    """Arrays for a shuffle as one ``bytes`` (dtypes and shapes in a short header): Beam's coder
    pickles each array on its own, ~8 µs apiece there and ~6 back, which made pickling the
    costliest step of the shuffles (measured); bytes are copied as they are."""
    meta = ";".join(f"{a.dtype.str}/{'x'.join(map(str, a.shape))}" for a in arrays).encode()
    return b"".join(
        [len(meta).to_bytes(4, "little"), meta, *(np.ascontiguousarray(a).tobytes() for a in arrays)]
    )


def decode_arrays(blob: bytes) -> list[np.ndarray]:
    """The arrays of ``encode_arrays`` (read-only views of ``blob``)."""
    size = int.from_bytes(blob[:4], "little")
    offset = 4 + size
    out = []
    for spec in blob[4:offset].decode().split(";"):
        dtype_str, shape_str = spec.split("/")
        dtype = np.dtype(dtype_str)
        shape = tuple(int(x) for x in shape_str.split("x"))
        count = math.prod(shape)
        out.append(np.frombuffer(blob, dtype=dtype, count=count, offset=offset).reshape(shape))
        offset += count * dtype.itemsize
    return out


# --- joining the batches back ----------------------------------------------------------------------


def concat(arrays: list[np.ndarray], dtype) -> np.ndarray:
    """The arrays of several payloads as one (of ``dtype`` when there are none)."""
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=dtype)


def match_ids(ids: np.ndarray, wanted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(k, r)``, every ``k``, ``r`` with ``wanted[k] == ids[r]``, by ``k`` then ``r``: a join of
    two id arrays in numpy (ids may repeat on both sides)."""
    order = np.argsort(ids, kind="stable")
    sorted_ids = ids[order]
    lo = np.searchsorted(sorted_ids, wanted, "left")
    counts = np.searchsorted(sorted_ids, wanted, "right") - lo
    k = np.repeat(np.arange(len(wanted), dtype=np.int64), counts)
    starts = np.repeat(lo - (np.cumsum(counts) - counts), counts)
    return k, order[starts + np.arange(len(k), dtype=np.int64)]


def unique_pairs(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (a, b) rows, sorted (the same pair comes from several bands)."""
    if len(a) == 0:
        return a, b
    order = np.lexsort((b, a))
    a, b = a[order], b[order]
    keep = np.r_[True, (a[1:] != a[:-1]) | (b[1:] != b[:-1])]
    return a[keep], b[keep]


# --- claims: member tweets on their way to their anchors' partitions -------------------------------


@dataclass
class Claims:
    """Member tweets to check against anchors: ``src``/``k`` name a member (its partition and rank
    there, for the verdict), ``x`` is its id; pairs ``(member index, anchor id)`` are checked
    now, the ``rest`` only if none of a member's pairs passes.

    On the wire (``route``) a claim is seven arrays in one ``encode_arrays`` payload plus the
    members' texts, each member once per destination however many of its pairs go there; ``join``
    concatenates the payloads a partition received, renumbering the member indices."""

    src: np.ndarray
    k: np.ndarray
    x: np.ndarray
    texts: list[str]
    pair_member: np.ndarray
    pair_anchor: np.ndarray
    rest_member: np.ndarray
    rest_anchor: np.ndarray

    def route(self, partitions: int) -> Iterator[tuple[int, tuple[bytes, list[str]]]]:
        """``(partition, (arrays, texts))``: the claims to the partitions of the pairs' anchors; a
        member (text included) once each."""
        for dest, sel in split_by_partition(partition_of(self.pair_anchor, partitions), partitions):
            members, which = np.unique(self.pair_member[sel], return_inverse=True)
            keep = np.isin(self.rest_member, members)
            arrays = encode_arrays(
                self.src[members], self.k[members], self.x[members], which.astype(np.int64).ravel(),
                self.pair_anchor[sel],
                np.searchsorted(members, self.rest_member[keep]), self.rest_anchor[keep],
            )
            texts = [self.texts[i] for i in members.tolist()]
            yield dest, (arrays, texts)

    @classmethod
    def join(cls, grouped: list) -> Claims:
        """The claims of the ``(arrays, texts)`` payloads ``route`` sent to one partition."""
        parts = [(*decode_arrays(arrays), texts) for arrays, texts in grouped]
        bases = np.cumsum([0] + [len(p[0]) for p in parts])[:-1]

        def cat(i: int, offset: bool = False) -> np.ndarray:
            return concat([p[i] + (b if offset else 0) for p, b in zip(parts, bases, strict=True)], np.int64)

        return cls(src=cat(0), k=cat(1), x=cat(2), texts=[t for p in parts for t in p[7]],
                   pair_member=cat(3, True), pair_anchor=cat(4), rest_member=cat(5, True), rest_anchor=cat(6))

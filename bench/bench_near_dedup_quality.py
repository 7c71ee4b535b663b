"""Quality of near-dedup: precision and recall of the removed tweets, over thresholds and n.

Run by hand:  .venv/bin/python bench/bench_near_dedup_quality.py [--originals 20000] [--ns 3,4,5,6,7]

A seeded sample of the bench corpus (10% given a link) plus injected near-duplicates of 20% of it
(1-3 variants each: typos, swapped links, added hashtags, case changes, ``RT @x:`` prefixes, alone
or two at a time), shuffled, with random ids. Two references:

* **exact** — the same rule (drop a tweet iff a tweet with a smaller id has Jaccard >= threshold)
  with the exact Jaccard of the shingle sets over *all* pairs, found with a prefix-filtered
  inverted index (exact for thresholds >= ``--min-threshold``). Precision/recall against it
  measure what MinHash + LSH + bucket-min candidates lose or add: the approximation.
* **injected** — the known near-duplicates: ``injected recall`` is the share of the removals each
  group of copies calls for (group size - 1) that happened; ``other removed`` counts removed
  tweets outside the injected groups (natural near-duplicates in the corpus, or false merges: the
  examples printed at the end show which). This is what the choice of n and threshold rests on.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from collections import Counter, defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_near_dedup_data import load_corpus, make_variant, random_link, unique_ids
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.minhash import shingle_strings
from tweetmill.transforms.near_dedup import NearDedupConfig, near_duplicate_pairs

THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9)


def build_sample(n_originals: int, seed: int) -> tuple[list[Tweet], dict[int, int], Counter]:
    """Tweets, the injected group of each tweet id (absent: not injected), and variant kinds."""
    rng = random.Random(seed)
    corpus = load_corpus()
    originals = rng.sample(corpus, min(n_originals, len(corpus)))
    originals = [f"{t} {random_link(rng)}" if rng.random() < 0.1 else t for t in originals]
    texts: list[tuple[str, int | None]] = [(t, None) for t in originals]
    kinds: Counter = Counter()
    for g in rng.sample(range(len(originals)), len(originals) // 5):
        texts[g] = (originals[g], g)
        for _ in range(rng.randint(1, 3)):
            kind, variant = make_variant(originals[g], rng)
            kinds[kind] += 1
            texts.append((variant, g))
    rng.shuffle(texts)
    ids = unique_ids(len(texts), rng)
    tweets = [
        Tweet(id=i, text=t, source_format="text", source_file="bench", position=p)
        for p, (i, (t, _)) in enumerate(zip(ids, texts, strict=True))
    ]
    groups = {i: g for i, (_, g) in zip(ids, texts, strict=True) if g is not None}
    return tweets, groups, kinds


def exact_similar_pairs(tweets: list[Tweet], n: int, min_threshold: float) -> list[tuple[int, int, float]]:
    """All (i, j, Jaccard) with Jaccard >= min_threshold, exactly: prefix filtering over shingles
    ordered rare-first (two sets reaching t share a token among each one's first
    |x| - ceil(t|x|) + 1), then the exact Jaccard of every candidate."""
    sets = [set(shingle_strings(t.text, n)) for t in tweets]
    freq = Counter(s for st in sets for s in st)
    rank = {s: r for r, (s, _) in enumerate(sorted(freq.items(), key=lambda kv: (kv[1], kv[0])))}
    ordered = [sorted(rank[s] for s in st) for st in sets]
    index: dict[int, list[int]] = defaultdict(list)
    out = []
    for i in sorted(range(len(tweets)), key=lambda k: len(ordered[k])):  # size order: smaller first
        toks = ordered[i]
        if not toks:
            continue
        prefix = len(toks) - math.ceil(min_threshold * len(toks) - 1e-9) + 1
        seen: set[int] = set()
        for tok in toks[:prefix]:
            for j in index[tok]:
                if j not in seen:
                    seen.add(j)
                    inter = len(sets[i] & sets[j])
                    jac = inter / (len(sets[i]) + len(sets[j]) - inter)
                    if jac >= min_threshold - 1e-12:
                        out.append((i, j, jac))
            index[tok].append(i)
    return out


def exact_removed(tweets: list[Tweet], pairs: list[tuple[int, int, float]], threshold: float) -> set[int]:
    """Ids the rule removes with exact Jaccard: a neighbour at >= threshold with a smaller id."""
    removed = set()
    for i, j, jac in pairs:
        if jac >= threshold - 1e-12:
            a, b = tweets[i].id, tweets[j].id
            if a != b:
                removed.add(max(a, b))
    return removed


def injected_recall(removed: set[int], groups: dict[int, int]) -> tuple[float, int]:
    """(share of the removals injected groups call for that happened, removed outside groups)."""
    size: Counter = Counter(groups.values())
    hit: Counter = Counter(groups[i] for i in removed if i in groups)
    wanted = sum(s - 1 for s in size.values())
    got = sum(min(hit[g], size[g] - 1) for g in size)
    return got / wanted, sum(1 for i in removed if i not in groups)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--originals", type=int, default=20000)
    parser.add_argument(
        "--ns", default="3,4,5,6,7", help="shingle sizes to compare (3: ~9 min of exact Jaccard)"
    )
    parser.add_argument("--num-perm", type=int, default=NearDedupConfig.num_perm)
    parser.add_argument("--min-threshold", type=float, default=min(THRESHOLDS))
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--examples", type=int, default=8, help="borderline removals to print")
    args = parser.parse_args()

    tweets, groups, kinds = build_sample(args.originals, args.seed)
    default = NearDedupConfig()
    n_groups = len(set(groups.values()))
    print(
        f"{len(tweets):,} tweets: {args.originals:,} originals, {n_groups:,} of them copied "
        f"({len(tweets) - args.originals:,} injected near-duplicates)"
    )
    print("variant kinds: " + ", ".join(f"{k} {c}" for k, c in sorted(kinds.items())))
    print(
        f"default config: threshold {default.threshold}, shingle_size {default.shingle_size}, "
        f"num_perm {args.num_perm}\n"
    )
    by_id = {t.id: t for t in tweets}
    for n in [int(x) for x in args.ns.split(",")]:
        start = time.perf_counter()
        pairs = exact_similar_pairs(tweets, n, args.min_threshold)
        gt_s = time.perf_counter() - start
        print(f"n = {n}  ({len(pairs):,} pairs with exact Jaccard >= {args.min_threshold}, {gt_s:.1f} s)")
        print(
            f"{'threshold':>9} {'bands x rows':>12} {'removed':>8} {'exact':>7} {'precision':>9} "
            f"{'recall':>7} {'injected recall':>15} {'other removed':>13} {'exact other':>11}"
        )
        for threshold in THRESHOLDS:
            config = NearDedupConfig(threshold=threshold, num_perm=args.num_perm, shingle_size=n)
            removed_pairs = near_duplicate_pairs(tweets, config)
            removed = {p.removed.id for p in removed_pairs}
            truth = exact_removed(tweets, pairs, threshold)
            tp = len(removed & truth)
            precision = tp / len(removed) if removed else 1.0
            recall = tp / len(truth) if truth else 1.0
            inj, other = injected_recall(removed, groups)
            _, exact_other = injected_recall(truth, groups)
            mark = " <- default" if (threshold, n) == (default.threshold, default.shingle_size) else ""
            print(
                f"{threshold:>9.2f} {config.bands:>5} x {config.rows:<4} {len(removed):>8,} {len(truth):>7,} "
                f"{precision:>9.3f} {recall:>7.3f} {inj:>15.3f} {other:>13,} {exact_other:>11,}{mark}"
            )
            if (threshold, n) == (default.threshold, default.shingle_size) and args.examples:
                chosen = (removed_pairs, groups)
        print()
    if args.examples and "chosen" in locals():
        removed_pairs, groups = chosen
        outside = [p for p in removed_pairs if p.removed.id not in groups]
        outside.sort(key=lambda p: p.similarity)
        print(
            f"Removals outside the injected groups at the default config, least similar first "
            f"({len(outside)} in all):"
        )
        for p in outside[: args.examples]:
            print(f"  {p.similarity:.2f}  {p.removed.text!r}\n        {by_id[p.kept.id].text!r}")


if __name__ == "__main__":
    main()

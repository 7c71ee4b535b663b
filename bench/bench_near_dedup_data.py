"""Bench inputs for near-dedup: the bench corpus and the near-duplicates the benchmarks inject.

Shared by ``bench_near_dedup_quality.py`` and ``bench_near_dedup_scale.py`` (not a benchmark by
itself). Every edit is seeded, so a run can be repeated exactly.
"""

from __future__ import annotations

import random
import string
from collections.abc import Callable
from pathlib import Path

DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "bench"

_HASHTAGS = (
    "#blessed",
    "#tbt",
    "#love",
    "#followback",
    "#MAGA",
    "#news",
    "#win",
    "#giveaway",
    "#fail",
    "#mood",
)
_HANDLES = ("cnnbrk", "bot_2931", "justin", "dealz4u", "x", "nytimes", "fan_account")
_ALPHABET = string.ascii_letters + string.digits + " .,!?'"


def load_corpus(limit: int | None = None) -> list[str]:
    """Non-empty lines of every ``*.txt`` under the bench data folder, in file order."""
    lines = [
        ln.strip() for f in sorted(DATA.glob("*.txt")) for ln in f.read_text().splitlines() if ln.strip()
    ]
    return lines[:limit] if limit else lines


def random_link(rng: random.Random) -> str:
    return "https://t.co/" + "".join(rng.choices(string.ascii_letters + string.digits, k=10))


def char_edits(text: str, rng: random.Random) -> str:
    """Typos: one edit per started 60 characters (insert, delete or substitute a character)."""
    chars = list(text)
    for _ in range(1 + len(text) // 60):
        op = rng.randrange(3)
        pos = rng.randrange(len(chars) + (op == 0)) if chars else 0
        if op == 0 or not chars:
            chars.insert(pos, rng.choice(_ALPHABET))
        elif op == 1:
            del chars[pos]
        else:
            chars[pos] = rng.choice(_ALPHABET)
    return "".join(chars)


def swap_link(text: str, rng: random.Random) -> str:
    """The same text with another link (a link is appended where there was none)."""
    words = text.split()
    links = [i for i, w in enumerate(words) if w.startswith(("http://", "https://"))]
    if links:
        words[rng.choice(links)] = random_link(rng)
        return " ".join(words)
    return f"{text} {random_link(rng)}"


def add_hashtags(text: str, rng: random.Random) -> str:
    return " ".join([text, *rng.sample(_HASHTAGS, rng.randint(1, 2))])


def change_case(text: str, rng: random.Random) -> str:
    return rng.choice((str.upper, str.lower, str.title, str.swapcase))(text)


def rt_prefix(text: str, rng: random.Random) -> str:
    return f"RT @{rng.choice(_HANDLES)}: {text}"


EDITS: dict[str, Callable[[str, random.Random], str]] = {
    "char_edits": char_edits,
    "swap_link": swap_link,
    "add_hashtags": add_hashtags,
    "change_case": change_case,
    "rt_prefix": rt_prefix,
}


def make_variant(text: str, rng: random.Random) -> tuple[str, str]:
    """A near-duplicate of ``text``: one edit, or two (30%), of the kinds above. Returns (kind, text)."""
    kinds = rng.sample(sorted(EDITS), 2 if rng.random() < 0.3 else 1)
    for kind in kinds:
        text = EDITS[kind](text, rng)
    return "+".join(sorted(kinds)), text


def unique_ids(n: int, rng: random.Random) -> list[int]:
    """Distinct random ids below 2**62: near-duplicates are not ordered after their originals."""
    ids: set[int] = set()
    while len(ids) < n:
        ids.update(rng.getrandbits(62) for _ in range(n - len(ids)))
    out = sorted(ids)
    rng.shuffle(out)
    return out

"""``tweetmill sample``: a few decoded tweets from a shard directory, to see what training will see.

Deterministic for a ``seed``: the ``n`` rows are drawn uniformly (without replacement) from the
rows that match (every row, or those whose detected ``lang`` is the one asked for, or documents of
at least ``min_turns`` turns), by global row number over the shards in manifest order; the same
seed on the same shards gives the same tweets. Two passes, both batch by batch: the first counts
matching rows per batch, the second reads just the chosen rows. Each sample shows the stored text,
its token count, the tokens decoded one by one, and whether decoding the tokens gives the text back
exactly (the round trip training relies on).
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
from apache_beam.io.filesystems import FileSystems
from rich.console import Console
from rich.panel import Panel
from tweetmill.pipeline.shard_io import load_shard_tokenizer, open_shard, read_manifest
from tweetmill.pipeline.stats_print import visible
from tweetmill.pipeline.stats_scan import document_shape
from tweetmill.pipeline.terminal import safe
from tweetmill.schemas.shard_dir import TOKENIZER_NAME
from tweetmill.transforms.documents_core import split_turns

log = logging.getLogger(__name__)

_COLUMNS = (
    "id",
    "created_at",
    "lang",
    "lang_score",
    "twitter_lang",
    "source_format",
    "source_file",
    "is_reply",
    "is_quote",
    "text",
    "num_tokens",
    "tokens",
)
# Shard format 2's document columns: a row of several tweets prints as its turns.
_DOCUMENT_COLUMNS = ("tweet_ids", "context_id")


def _matching(batch: pa.RecordBatch, lang: str | None, min_turns: int) -> np.ndarray | None:
    """Row numbers of ``batch`` whose ``lang`` is ``lang`` and whose document has at least
    ``min_turns`` turns (None: every row)."""
    if lang is None and min_turns <= 1:
        return None
    mask = np.ones(batch.num_rows, dtype=bool)
    if lang is not None:
        mask &= pc.fill_null(pc.equal(batch.column("lang"), lang), False).to_numpy(zero_copy_only=False)
    if min_turns > 1:
        tweets, context = document_shape(batch)
        mask &= tweets + context >= min_turns
    return np.flatnonzero(mask)


def sample(
    shard_dir: str, n: int = 5, *, seed: int = 0, lang: str | None = None, min_turns: int = 1
) -> list[dict[str, Any]]:
    """``n`` decoded rows (fewer if fewer match), in shard order, the same for the same seed.
    ``min_turns`` 2 or more: only documents of several tweets (threads, conversation branches)."""
    manifest = read_manifest(shard_dir)
    paths = [FileSystems.join(shard_dir, s.file) for s in manifest.shards]
    counts: list[tuple[int, int, int]] = []  # (shard, batch, matching rows)
    for s, path in enumerate(paths):
        with open_shard(path) as reader:
            for b in range(reader.num_record_batches):
                batch = reader.get_batch(b)
                rows = _matching(batch, lang, min_turns)
                counts.append((s, b, batch.num_rows if rows is None else len(rows)))
    total = sum(c for _, _, c in counts)
    if total == 0 or n <= 0:
        return []
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(total, size=min(n, total), replace=False))
    starts = np.cumsum([0] + [c for _, _, c in counts])

    tokenizer, _ = load_shard_tokenizer(shard_dir, manifest)
    eos = manifest.tokenizer.eos_id
    samples: list[dict[str, Any]] = []
    for s, path in enumerate(paths):
        wanted = [(k, b) for k, (s2, b, _) in enumerate(counts) if s2 == s]
        chosen = {
            b: picks[(picks >= starts[k]) & (picks < starts[k + 1])] - starts[k]
            for k, b in wanted
            if np.any((picks >= starts[k]) & (picks < starts[k + 1]))
        }
        if not chosen:
            continue
        with open_shard(path) as reader:
            for b, local in sorted(chosen.items()):
                batch = reader.get_batch(b)
                rows = _matching(batch, lang, min_turns)
                index = local if rows is None else rows[local]
                columns = [*_COLUMNS, *(c for c in _DOCUMENT_COLUMNS if c in batch.schema.names)]
                picked = batch.select(columns).take(pa.array(index))
                for offset, row in zip(index.tolist(), picked.to_pylist(), strict=True):
                    samples.append(
                        _decoded(row, tokenizer, eos)
                        | {"shard": manifest.shards[s].file, "batch": b, "row_in_batch": offset}
                    )
    return samples


def document_turns(row: dict[str, Any]) -> list[tuple[str, str]] | None:
    """A document's turns, each labelled with its tweet (``context`` for a branch's context turn);
    None for a row of one tweet (and for shards of format 1, which have no ``tweet_ids``)."""
    ids = row.get("tweet_ids") or []
    context = row.get("context_id")
    if len(ids) <= 1 and context is None:
        return None
    turns = split_turns(row["text"])
    labels = ([f"context {context}"] if context is not None else []) + [f"tweet {i}" for i in ids]
    if len(labels) != len(turns):  # a tokenizer-side change of the text: show it whole
        return None
    return [(f"{k}. {label}:", turn) for k, (label, turn) in enumerate(zip(labels, turns, strict=True), 1)]


def _decoded(row: dict[str, Any], tokenizer: Any, eos: int) -> dict[str, Any]:
    ids: list[int] = row.pop("tokens")
    body = ids[:-1] if ids and ids[-1] == eos else ids
    created = row.get("created_at")
    row["created_at"] = created.isoformat().replace("+00:00", "Z") if isinstance(created, datetime) else None
    row["token_ids"] = ids
    row["turns"] = document_turns(row)
    row["ends_with_eos"] = bool(ids) and ids[-1] == eos
    if tokenizer is None:
        row.update(decoded=None, pieces=None, round_trip=None)
        return row
    decoded = tokenizer.decode(body, skip_special_tokens=False)
    row["decoded"] = decoded
    row["pieces"] = [tokenizer.decode([i], skip_special_tokens=False) for i in ids]
    row["round_trip"] = decoded == row["text"]
    return row


def print_samples(console: Console, samples: list[dict[str, Any]], *, max_pieces: int = 80) -> None:
    """One panel per tweet: where it comes from, its text, and its tokens decoded one by one.

    Everything from the data is escaped (``terminal.safe``): Rich markup and control characters."""
    if not samples:
        console.print("no tweets match")
        return
    for k, s in enumerate(samples, 1):
        title = (
            f"{k}. id {s['id']} · {s['lang']} ({s['lang_score']:.2f}) · Twitter: "
            f"{s['twitter_lang'] or '-'} · {s['created_at'] or 'no date'} · {s['source_format']}"
        )
        pieces = s["pieces"]
        if pieces is None:
            tokens = f"tokens not decoded (no {TOKENIZER_NAME} with the run's sha256): " + " ".join(
                map(str, s["token_ids"][:max_pieces])
            )
        else:
            shown = "[dim]|[/dim]".join(safe(visible(p)) for p in pieces[:max_pieces])
            more = f" [dim]… {len(pieces) - max_pieces} more[/dim]" if len(pieces) > max_pieces else ""
            tokens = shown + more
        if s["round_trip"] is None:
            verdict = "[yellow]round trip not checked[/yellow]"
        elif s["round_trip"]:
            verdict = "[green]decodes back to the text exactly[/green]"
        else:
            verdict = f"[red]decodes to a different text:[/red] {safe(repr(s['decoded']))}"
        eos = "" if s["ends_with_eos"] else " [red](no EOS at the end)[/red]"
        turns = s.get("turns")
        text = (
            safe(s["text"], multiline=True)
            if not turns
            else "\n".join(f"[bold]{label}[/bold] {safe(turn, multiline=True)}" for label, turn in turns)
        )
        body = (
            f"{text}\n\n[bold]{s['num_tokens']} tokens[/bold]{eos}: {tokens}\n"
            f"{verdict}\n[dim]{safe(s['source_file'])} → {safe(s['shard'])} batch {s['batch']} "
            f"row {s['row_in_batch']}[/dim]"
        )
        console.print(Panel(body, title=safe(title), title_align="left"))

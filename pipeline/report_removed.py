"""The report's sections on what the run took out and changed: the funnel's balance, dedup, the
tweets each drop reason removed, near-duplicate pairs (removed beside kept, differing words marked)
and the clean stage."""

from __future__ import annotations

import difflib
import re
from typing import Any

from tweetmill.pipeline.report_markup import esc, html_note, html_table
from tweetmill.pipeline.report_plots import clean_plot
from tweetmill.pipeline.stats_print import count_text, held_text, share_text


def balance_note(funnel: dict[str, Any]) -> str:
    ok = funnel["balanced"]
    verdict = '<span class="ok">balanced</span>' if ok else '<span class="bad">NOT balanced</span>'
    return html_note(
        f"read {count_text(funnel['read'])} = kept {count_text(funnel['kept'])} + dropped "
        f"{count_text(funnel['dropped'])} + errors {count_text(funnel['errors'])}; "
        f"{held_text(funnel)} in the shards: {verdict}"
    )


def dedup_note(dedup: dict[str, Any]) -> str:
    text = (
        f"Dedup: {count_text(dedup['duplicate_id'])} repeated ids, "
        f"{count_text(dedup['exact_duplicate'])} exact and "
        f"{count_text(dedup['near_duplicate'])} near duplicates removed."
    )
    near = dedup.get("near_dedup")
    if near:
        text += (
            f" Near-duplicate clusters: {count_text(near.get('clusters', 0))}, the largest "
            f"{count_text(near.get('largest_cluster', 0))} tweets "
            f"(threshold {esc(near.get('threshold', '?'))})."
        )
    elif not dedup["near_duplicate"]:
        text += " No near-dedup stage in this run."
    return html_note(text)


def _tweet(text: str, meta: str = "") -> str:
    """A tweet's text as it is (escaped, line breaks kept), with a line of escaped ``meta``."""
    return f'<div class="tweet">{esc(text)}<span class="meta">{esc(meta)}</span></div>'


def _example_meta(x: dict[str, Any]) -> str:
    """Where a dropped tweet came from; its language only where one was detected (stages before the
    language stage drop tweets that have none yet)."""
    lang = f" · {x['lang']}" if x.get("lang") not in (None, "und") else ""
    return f"{_file_name(x['source_file'])}{lang} · id {x['id']}"


def _file_name(path: Any) -> str:
    return str(path or "?").rstrip("/").rpartition("/")[2]


def removed_section(stats: dict[str, Any]) -> str:
    """Every drop reason that removed something, with a few of the tweets it removed."""
    removed = stats.get("removed") or {}
    reasons = removed.get("reasons") or []
    read = max(stats["funnel"]["read"], 1)
    out = ["<h2>What each drop reason removed</h2>"]
    if not reasons:
        return out[0] + html_note("Nothing was dropped.")
    rows = []
    for r in reasons:
        head = (
            f'<span class="reason"><b>{esc(r["stage"])}: {esc(r["reason"])}</b></span><br>'
            f'<span class="small">{count_text(r["count"])} removed '
            f"({share_text(r['count'], read)} of read)</span>"
        )
        if not r["tweets"]:
            shown = html_note(
                "Records that are not tweets (notices, API errors): counted per input file below."
            )
        elif r["examples"]:
            shown = (
                '<div class="examples">'
                + "".join(_tweet(x["text"], _example_meta(x)) for x in r["examples"])
                + "</div>"
            )
        else:
            shown = html_note(
                "None in the run's sample of dropped tweets: stages that combine rather than group "
                "(the exact dedup stages) hand on the tweets they remove only with "
                "<code>--write-dropped</code>."
            )
        rows.append([head, shown])
    out.append(html_table(["stage: reason", "examples of removed tweets"], rows, set()))
    source = removed.get("source")
    if source == "dropped/":
        where = "from every dropped tweet (<code>--write-dropped</code>, <code>dropped/</code>)"
    elif source:
        where = f"from <code>{esc(source)}</code>, the run's sample of dropped tweets per reason"
    else:
        where = "none: this run wrote no sample of dropped tweets (a run of an older tweetmill)"
    out.append(
        html_note(
            f"Up to {removed.get('per_reason', 0)} examples per reason, the same ones on every run of "
            f"the same input (ordered by a hash of the tweet id); {where}. Text as the stage saw it, "
            "after cleaning."
        )
    )
    return "".join(out)


_WORDS = re.compile(r"\s+|[^\s]+")


def _marked(text: str, other: str) -> str:
    """``text`` escaped, its words that ``other`` does not have at that place in <mark>."""
    words, others = _WORDS.findall(text), _WORDS.findall(other)
    out = []
    matcher = difflib.SequenceMatcher(a=words, b=others, autojunk=False)
    for tag, i1, i2, _, _ in matcher.get_opcodes():
        chunk = esc("".join(words[i1:i2]))
        out.append(chunk if tag == "equal" or not chunk.strip() else f"<mark>{chunk}</mark>")
    return "".join(out)


def near_duplicates_section(stats: dict[str, Any]) -> str:
    near = (stats.get("removed") or {}).get("near_duplicates") or {}
    pairs = near.get("shown") or []
    out = ["<h2>Near-duplicate pairs: removed beside kept</h2>"]
    if not pairs:
        if stats["dedup"]["near_duplicate"]:
            return out[0] + html_note("No sample of the pairs in this run (near_duplicates.sample.jsonl).")
        return out[0] + html_note("No near duplicates removed (or no near-dedup stage in this run).")
    rows = [
        [
            f'<div class="removed"><div class="tweet">{_marked(p["removed_text"], p["kept_text"])}'
            f'<span class="meta">id {esc(p["removed_id"])}</span></div></div>',
            f'<div class="kept"><div class="tweet">{_marked(p["kept_text"], p["removed_text"])}'
            f'<span class="meta">id {esc(p["kept_id"])}</span></div></div>',
            esc(f"{p['similarity']:.2f}" if isinstance(p.get("similarity"), (int, float)) else "?"),
        ]
        for p in pairs
    ]
    out.append(
        html_table(["removed", "kept (the near duplicate with the smaller id)", "similarity"], rows, {2})
    )
    out.append(
        html_note(
            f"The first {len(pairs)} of the {count_text(near.get('sampled', 0))} pairs in "
            "<code>near_duplicates.sample.jsonl</code>; words that differ are marked. Similarity: "
            "estimated Jaccard of the texts' shingles."
        )
    )
    return "".join(out)


def clean_section(stats: dict[str, Any]) -> str:
    clean = stats.get("clean")
    if not clean:
        return "<h2>Clean stage</h2>" + html_note(
            "This run's manifest does not record what the clean stage changed (a run of an older tweetmill)."
        )
    if not clean["texts"]:
        return "<h2>Clean stage</h2>" + html_note("The clean stage saw no text.")
    return clean_plot(clean) + html_note(
        "Texts each step changed, of every tweet the clean stage saw (before the filters); a text "
        "counts once per step."
    )

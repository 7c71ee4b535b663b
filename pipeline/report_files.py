"""The report's tables of the run's files: per input file where its records went (kept, dropped
later, not tweets, errors; a stacked bar each) and the shards it wrote."""

from __future__ import annotations

from typing import Any

from tweetmill.pipeline.report_markup import esc, html_note, html_table
from tweetmill.pipeline.stats_print import common_dir, count_text, share_text, size_text


def _reasons_text(by_reason: dict[str, int] | None) -> str:
    if not by_reason:
        return ""
    return (
        '<br><span class="small">' + esc(" · ".join(f"{k} {v:,}" for k, v in by_reason.items())) + "</span>"
    )


def _fate_bar(f: dict[str, Any]) -> str:
    """A file's records as one stacked bar: kept, dropped later, not tweets, errors."""
    parts = [
        ("k-kept", f["kept"]),
        ("k-later", f["dropped_later"] or 0),
        ("k-parse", f["parse_dropped"]),
        ("k-err", f["errors"]),
    ]
    total = sum(n for _, n in parts)
    if not total:
        return ""
    spans = "".join(
        f'<span class="{cls}" style="width:{100 * n / total:.2f}%"></span>' for cls, n in parts if n
    )
    return f'<div class="fate">{spans}</div>'


def inputs_table(stats: dict[str, Any]) -> str:
    files = stats["inputs"]
    prefix = common_dir([str(f["file"]) for f in files])
    by_reason = any(f.get("dropped_later_by_reason") is not None for f in files)
    rows = []
    for f in files:
        later = f.get("dropped_later")
        row = [
            esc(str(f["file"])[len(prefix) :]),
            esc(f["format"] or "?"),
            count_text(f["records"]),
            count_text(f["errors"]),
            count_text(f["parse_dropped"]) + _reasons_text(f.get("parse_dropped_by_reason")),
            count_text(f["tweets"]),
            "?" if later is None else count_text(later),
            count_text(f["kept"]),
            share_text(f["kept"], f["tweets"]) if f["tweets"] else "-",
            _fate_bar(f),
        ]
        if by_reason:
            row.append(
                esc(" · ".join(f"{k} {v:,}" for k, v in (f.get("dropped_later_by_reason") or {}).items()))
            )
        rows.append(row)
    headers = [
        "file",
        "format",
        "records",
        "errors",
        "not tweets",
        "tweets",
        "dropped later",
        "kept",
        "kept of tweets",
        "",
    ]
    if by_reason:
        headers.append("dropped later, by stage: reason")
    table = html_table(headers, rows, {2, 3, 4, 5, 6, 7, 8}, {0})
    if len(rows) > 30:
        table = f"<details><summary>{len(rows):,} files</summary>{table}</details>"
    acc = stats.get("inputs_accounting") or {}
    key = (
        '<p class="note key"><span class="k-kept"></span>kept<span class="k-later"></span>dropped later'
        '<span class="k-parse"></span>not tweets<span class="k-err"></span>errors</p>'
    )
    note = (
        (f"In <code>{esc(prefix)}</code>. " if prefix else "")
        + "records = tweets + not tweets (delete notices, API errors... dropped while parsing, by reason) "
        "+ errors (dead letters). <b>dropped later</b> = tweets − kept: the file's tweets that a stage after "
        "parsing removed (exact: kept is counted in the shards by <code>source_file</code>)."
    )
    if acc.get("stages_dropped_later") is not None:
        verdict = '<span class="ok">agree</span>' if acc["agree"] else '<span class="bad">DISAGREE</span>'
        note += (
            f" Over all files {count_text(acc['dropped_later'])}; the stages after parsing dropped "
            f"{count_text(acc['stages_dropped_later'])}: {verdict}."
        )
    if by_reason:
        note += " By stage and reason per file: counted in every dropped tweet (<code>dropped/</code>)."
    else:
        note += (
            " Per file by reason only for runs with <code>--write-dropped</code> (the run's sample of "
            "dropped tweets does not count per file); the funnel has the reasons over all files."
        )
    return table + key + html_note(note)


def shards_table(stats: dict[str, Any]) -> str:
    rows = [
        [esc(s["file"]), count_text(s["rows"]), count_text(s["tokens"]), size_text(s["bytes"])]
        for s in stats["per_shard"]
    ]
    table = html_table(["shard", "tweets", "tokens", "size"], rows, {1, 2, 3})
    agree = (
        '<span class="ok">agree</span>' if stats["matches_manifest"] else '<span class="bad">DISAGREE</span>'
    )
    note = html_note(f"Rows and tokens read from the shards {agree} with the manifest.")
    if len(rows) > 12:
        return f"<details><summary>{len(rows):,} shards</summary>{table}</details>{note}"
    return table + note

"""The HTML building blocks of ``tweetmill stats --html``: escaping, tables, notes and panels.

Everything taken from the data goes through ``esc``; ``html_table`` cells are HTML already (escape
data before), its headers plain text.
"""

from __future__ import annotations

import html
from typing import Any


def esc(value: Any) -> str:
    return html.escape(str(value), quote=True)


def html_table(
    headers: list[str], rows: list[list[Any]], numeric: set[int], wrap: set[int] = frozenset()
) -> str:
    """An HTML table; ``rows`` hold HTML (escape data before), ``headers`` plain text."""
    head = "".join(
        f'<th class="n">{esc(h)}</th>' if i in numeric else f"<th>{esc(h)}</th>"
        for i, h in enumerate(headers)
    )
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            cls = ' class="n"' if i in numeric else (' class="f"' if i in wrap else "")
            cells.append(f"<td{cls}>{cell}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def html_note(text: str) -> str:
    return f'<p class="note">{text}</p>'


def html_panel(content: str, wide: bool = False) -> str:
    return f'<section class="panel{" wide" if wide else ""}">{content}</section>'

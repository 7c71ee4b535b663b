"""Text from input data, made safe to print: the one place that escapes what reaches a terminal.

Tweet texts, file names, language tags, hashtags, dead-letter reasons and paths come from files
anyone may have written. Printed raw, an escape sequence (``\\x1b[31m``, a title change, a cursor
move) is obeyed by the terminal, and Rich reads ``[red]`` or ``[/x]`` as markup (the latter raises
``MarkupError``). ``plain`` shows every control character as a visible ``\\xNN``; ``safe`` does that
and escapes Rich markup, for strings passed to a ``Console`` or a Rich table.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

from rich.markup import escape

# C0 controls, DEL and C1 controls (U+0080-U+009F: 8-bit CSI, OSC... that some terminals obey).
_CONTROLS = re.compile(r"[\x00-\x1f\x7f-\x9f]")
_CONTROLS_BUT_LINES = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # keeps tab and newline
_C1_AND_DEL = re.compile(r"[\x7f-\x9f]")  # what json.dumps(ensure_ascii=False) leaves raw


def _visible(match: re.Match[str]) -> str:
    return f"\\x{ord(match.group()):02x}"


def plain(value: Any, *, multiline: bool = False) -> str:
    """``str(value)`` with control characters shown as ``\\xNN``; with ``multiline``, tab and
    newline are kept (a tweet's own line breaks), otherwise escaped too (one table cell, one line)."""
    pattern = _CONTROLS_BUT_LINES if multiline else _CONTROLS
    return pattern.sub(_visible, str(value))


def safe(value: Any, *, multiline: bool = False) -> str:
    """``plain`` plus Rich markup escaped: for data printed through a Rich ``Console`` or table."""
    return escape(plain(value, multiline=multiline))


def json_text(doc: Any) -> str:
    """``doc`` as indented JSON for the terminal: non-ASCII text kept readable, but DEL and C1
    controls written as ``\\u00NN`` (JSON already escapes C0), so no byte of it is a control."""
    text = json.dumps(doc, indent=2, ensure_ascii=False)
    return _C1_AND_DEL.sub(lambda m: f"\\u{ord(m.group()):04x}", text)


def error_line(message: str) -> None:
    """One ``error:`` line on stderr, control characters made visible."""
    sys.stderr.write(f"error: {plain(message)}\n")
    sys.stderr.flush()

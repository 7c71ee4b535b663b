"""Clean stage: parsed tweet text → training text.

A pure, batch-oriented core (``clean_text``, ``clean_batch``) and a thin Beam composite
(``CleanTweets``). The steps run in this order, and the order matters:

1. HTML entities are unescaped exactly once. Twitter escapes ``& < >`` once, so ``&amp;amp;``
   must become ``&amp;`` (what the author typed), not ``&``.
2. Mojibake is repaired with ftfy (config ``FTFY_CONFIG``), only for texts a sound pre-check
   (``needs_ftfy``) says ftfy could change. It runs before whitespace handling because NBSP and
   C1 controls are evidence ftfy uses to decode mojibake.
3. Invisible characters: line breaks unified to ``\\n``, Unicode spaces to a space, control,
   zero-width and bidi control characters removed; ZWJ/ZWNJ survive where they carry meaning (emoji ZWJ
   sequences, joining in Indic/Persian and other scripts).
4. The hidden reply prefix (the leading run of @mentions of a reply) is stripped.
5. URLs, e-mail addresses, @mentions and phone numbers are kept, removed or replaced by a
   placeholder, found by ``twitter_text``'s finders (URLs and mentions follow twitter-text's
   rules, conformance-tested).
6. Runs of spaces collapse to one, 3+ line breaks to 2 (tweets' line breaks carry meaning), and
   the text is stripped.

Manual retweet markers (``RT @user:``) stay: the filter stage decides on retweets.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Literal

import apache_beam as beam
import ftfy
from apache_beam.metrics import Metrics
from ftfy import badness, chardata, fixes
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.common import METRICS_NAMESPACE, TAG_STATS, relax_collector
from tweetmill.transforms.twitter_text import REPLY_PREFIX, find_emails, find_mentions, find_phones, find_urls

try:  # Python >= 3.11
    from re import _constants as _sre_constants
    from re import _parser as _sre_parse
except ImportError:  # pragma: no cover - Python 3.10
    import sre_constants as _sre_constants  # type: ignore[no-redef]
    import sre_parse as _sre_parse  # type: ignore[no-redef]

__all__ = [
    "FTFY_CONFIG",
    "MODES",
    "STAT_NAMES",
    "CleanConfig",
    "CleanTweets",
    "clean_batch",
    "clean_batch_counted",
    "clean_text",
    "collapse_whitespace",
    "fix_mojibake",
    "needs_ftfy",
    "normalize_invisibles",
    "strip_reply_prefix",
    "unescape_html",
]

Mode = Literal["keep", "remove", "placeholder"]
MODES: tuple[str, ...] = ("keep", "remove", "placeholder")


@dataclass(frozen=True)
class CleanConfig:
    """What the clean stage does with entities. Part of the run fingerprint, so keep it plain data."""

    urls: Mode = "placeholder"
    mentions: Mode = "placeholder"
    emails: Mode = "placeholder"
    phones: Mode = "placeholder"
    url_placeholder: str = "<URL>"
    mention_placeholder: str = "@user"
    email_placeholder: str = "<EMAIL>"
    phone_placeholder: str = "<PHONE>"
    strip_reply_prefix: bool = True
    fix_mojibake: bool = True

    def __post_init__(self) -> None:
        for name in ("urls", "mentions", "emails", "phones"):
            if getattr(self, name) not in MODES:
                raise ValueError(f"CleanConfig.{name} must be one of {MODES}, not {getattr(self, name)!r}")


def _char_class(codepoints: Iterable[int]) -> str:
    """A regex character class body for a set of code points, as merged ``\\uXXXX`` ranges."""

    def esc(cp: int) -> str:
        return f"\\u{cp:04x}" if cp <= 0xFFFF else f"\\U{cp:08x}"

    out: list[str] = []
    cps = sorted(set(codepoints))
    i = 0
    while i < len(cps):
        j = i
        while j + 1 < len(cps) and cps[j + 1] == cps[j] + 1:
            j += 1
        out.append(esc(cps[i]) if i == j else f"{esc(cps[i])}-{esc(cps[j])}")
        i = j + 1
    return "".join(out)


# --------------------------------------------------------------------------------------------
# 1. HTML entities


def unescape_html(text: str) -> str:
    """Decode HTML entities once, only the unambiguous ``;``-terminated ones.

    ftfy's decoder, not ``html.unescape``: the latter also decodes legacy entities without a
    semicolon, turning ``&timesheet`` into ``×esheet`` in text that was never escaped (CSV, text).
    One regex pass, so ``&amp;amp;`` → ``&amp;``.
    """
    return fixes.unescape_html(text) if "&" in text else text


# --------------------------------------------------------------------------------------------
# 2. Mojibake

#: ftfy's fixes minus the ones that change text a model should see as written, or that step 1/3
#: already do. Kept: mojibake decoding (with its sub-fixes), C1 controls, Latin ligatures, UTF-16
#: surrogates and NFC (canonical equivalence only: no visible or semantic change). Not NFKC: it would
#: turn ``10³`` into ``103`` and ``½`` into ``1⁄2``. Off: ``fix_character_width`` (fullwidth forms are
#: the norm in CJK text: ``！`` is the Japanese exclamation mark), ``uncurl_quotes`` (typography, not
#: damage), ``unescape_html`` (step 1; a second pass would double-unescape), ``fix_line_breaks``,
#: ``remove_control_chars`` and ``remove_terminal_escapes`` (step 3 does them, and more thoroughly).
#: With these off, ftfy cannot change an ASCII-only text, which the pre-check relies on.
FTFY_CONFIG = ftfy.TextFixerConfig(
    unescape_html=False,
    remove_terminal_escapes=False,
    fix_character_width=False,
    uncurl_quotes=False,
    fix_line_breaks=False,
    remove_control_chars=False,
    normalization="NFC",
    explain=False,
)


def _single_char_set(op: object, av: object) -> set[int] | None:
    """Code points a one-character regex element accepts, or None if not a plain literal/set."""
    if op is _sre_constants.LITERAL:
        return {av}  # type: ignore[arg-type]
    if op is _sre_constants.IN:
        chars: set[int] = set()
        for item_op, item in av:  # type: ignore[attr-defined]
            if item_op is _sre_constants.LITERAL:
                chars.add(item)
            elif item_op is _sre_constants.RANGE:
                chars.update(range(item[0], item[1] + 1))
            else:  # NEGATE, CATEGORY (\s, \w): not a finite plain set
                return None
        return chars
    return None


def _hitting_set(items: list) -> set[int] | None:
    """Non-ASCII code points such that every match of ``items`` contains one, or None if unprovable.

    Picks, per sequence, the smallest mandatory element whose characters are all non-ASCII; a
    branch needs one for each alternative. Optional and repeated-from-zero parts never count.
    """
    best: set[int] | None = None
    for op, av in items:
        cand: set[int] | None = None
        if op is _sre_constants.LITERAL or op is _sre_constants.IN:
            chars = _single_char_set(op, av)
            if chars and min(chars) > 0x7F:
                cand = chars
        elif op is _sre_constants.SUBPATTERN:
            cand = _hitting_set(av[-1])
        elif op is _sre_constants.BRANCH:
            parts = [_hitting_set(list(alt)) for alt in av[1]]
            if all(p is not None for p in parts):
                cand = set().union(*parts)  # type: ignore[arg-type]
        elif op in (_sre_constants.MAX_REPEAT, _sre_constants.MIN_REPEAT) and av[0] >= 1:
            cand = _hitting_set(list(av[2]))
        if cand is not None and (best is None or len(cand) < len(best)):
            best = cand
    return best


def _badness_triggers() -> tuple[frozenset[int] | None, int]:
    """Characters one of which every match of ftfy's BADNESS_RE contains (None: unknown), and the
    longest match it can make (0: unbounded).

    Derived from ftfy's own compiled regex, so an ftfy upgrade that widens the heuristic widens
    the pre-check with it (or disables it, if the pattern's shape is no longer provable).
    """
    pattern = badness.BADNESS_RE
    if pattern.flags & re.IGNORECASE:
        return None, 0
    try:
        parsed = _sre_parse.parse(pattern.pattern, pattern.flags)
        longest = parsed.getwidth()[1]
    except Exception:  # pragma: no cover - private parser API changed
        return None, 0
    found = _hitting_set(list(parsed))
    return (frozenset(found) if found else None), (longest if longest < 64 else 0)


_TRIGGER_CHARS, _BADNESS_MAX_WIDTH = _badness_triggers()
# Fixers that run on every text ftfy sees, whatever the badness: C1 controls, Latin ligatures,
# surrogates. Any of these characters means "run ftfy".
_FTFY_ALWAYS_RE = re.compile(
    "["
    + _char_class(
        list(range(0x80, 0xA0))  # chardata.C1_CONTROL_RE
        + list(chardata.LIGATURES)  # fixes.fix_latin_ligatures
        + list(range(0xD800, 0xE000))  # fixes.SURROGATE_RE
    )
    + "]"
)
_FTFY_TRIGGER_RE = re.compile("[" + _char_class(_TRIGGER_CHARS) + "]") if _TRIGGER_CHARS else None
# ftfy fixes text line by line; ``^`` in BADNESS_RE means "start of a line" there, so MULTILINE makes
# one search over the whole text find every match a per-line search would.
_BADNESS_ANY_LINE_RE = re.compile(badness.BADNESS_RE.pattern, badness.BADNESS_RE.flags | re.MULTILINE)


def needs_ftfy(text: str) -> bool:
    """False only if ``ftfy.fix_text(text, FTFY_CONFIG)`` would return ``text`` unchanged.

    Sound by construction against ftfy's code path with ``FTFY_CONFIG``: ASCII text cannot change
    (every enabled fixer needs a non-ASCII character; the encoding fixer skips ASCII); otherwise ftfy
    changes text only if it has C1 controls, Latin ligatures or surrogates, is not NFC, or
    ``badness.is_bad`` holds for a line -- which needs one of the trigger characters derived from
    BADNESS_RE and then a match of BADNESS_RE itself (ftfy's own test, run once for all lines).
    """
    if text.isascii():
        return False
    if len(text) > FTFY_CONFIG.max_decode_length or _FTFY_ALWAYS_RE.search(text) is not None:
        return True
    if not unicodedata.is_normalized("NFC", text):
        return True
    if _FTFY_TRIGGER_RE is None:  # pragma: no cover - could not derive the trigger set
        return True
    return _is_bad_near_triggers(text)


def _is_bad_near_triggers(text: str) -> bool:
    """``BADNESS_RE`` found on some line, searching only where a match could be.

    Every match contains a trigger character and is at most ``_BADNESS_MAX_WIDTH`` long, so only
    windows of that reach around trigger characters need searching: a text with one curly quote
    costs a dozen positions instead of all of them (the regex tries ~40 branches per position).
    (``^`` still means "start of a line" when the search starts at ``pos``.)
    """
    reach = _BADNESS_MAX_WIDTH
    if not reach:  # pragma: no cover - unbounded matches: search everything
        return _FTFY_TRIGGER_RE.search(text) is not None and _BADNESS_ANY_LINE_RE.search(text) is not None
    window_start = window_end = -1  # the pending window [start, end), merged while windows overlap
    for trigger in _FTFY_TRIGGER_RE.finditer(text):
        position = trigger.start()
        first = max(0, position - reach + 1)  # a match holding `position` starts here at the earliest
        if first > window_end:  # disjoint from the pending window: search that one first
            if window_end >= 0 and _BADNESS_ANY_LINE_RE.search(text, window_start, window_end):
                return True
            window_start = first
        window_end = position + reach  # ... and ends here at the latest
    return window_end >= 0 and _BADNESS_ANY_LINE_RE.search(text, window_start, window_end) is not None


def fix_mojibake(text: str) -> str:
    """``ftfy.fix_text`` with ``FTFY_CONFIG``, skipped where ``needs_ftfy`` proves it a no-op."""
    return ftfy.fix_text(text, FTFY_CONFIG) if needs_ftfy(text) else text


# --------------------------------------------------------------------------------------------
# 3. Invisible characters and Unicode whitespace

# Horizontal spaces → " ": tab, NBSP, Ogham space, en quad..hair space, narrow NBSP (French
# punctuation spacing), medium math space, ideographic space.
_SPACE_CHARS = [0x09, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x202F, 0x205F, 0x3000]
# Line breaks → "\n" (CR, VT, FF, NEL, LINE SEPARATOR); PARAGRAPH SEPARATOR → "\n\n".
_LINE_BREAKS = {0x0D: "\n", 0x0B: "\n", 0x0C: "\n", 0x85: "\n", 0x2028: "\n", 0x2029: "\n\n"}
# Removed outright: invisible, no meaning a model can use, and they break exact dedup.
_REMOVED_CHARS = [
    *range(0x00, 0x09),  # C0 controls (tab and LF kept, CR/VT/FF are line breaks)
    *range(0x0E, 0x20),
    0x7F,
    *(cp for cp in range(0x80, 0xA0) if cp != 0x85),  # C1 controls left over after ftfy
    0xAD,  # soft hyphen: an invisible hyphenation hint
    0x061C,  # ARABIC LETTER MARK (bidi)
    0x115F,  # Hangul fillers: invisible, used to post "blank" tweets; absent from modern Korean
    0x1160,
    0x3164,
    0xFFA0,
    0x200B,  # ZERO WIDTH SPACE
    0x200E,  # LRM, RLM: bidi marks
    0x200F,
    *range(0x202A, 0x202F),  # LRE RLE PDF LRO RLO: bidi embeddings/overrides (spoofing, leak into
    *range(0x2060, 0x2070),  # neighbours); WORD JOINER, invisible operators, LRI..PDI, deprecated
    0xFEFF,  # BOM / ZWNBSP
    *range(0xFFF9, 0xFFFD),  # interlinear annotation, OBJECT REPLACEMENT CHARACTER
    0xFFFE,  # noncharacters
    0xFFFF,
]
_INVISIBLE_TABLE: dict[int, str | None] = {
    **{cp: " " for cp in _SPACE_CHARS},
    **_LINE_BREAKS,
    **dict.fromkeys(_REMOVED_CHARS),
}
_ZWNJ, _ZWJ = "\u200c", "\u200d"
# Anything step 3 may change; a text without any is left alone at the cost of one scan.
_INVISIBLE_RE = re.compile("[" + _char_class([*_INVISIBLE_TABLE, ord(_ZWNJ), ord(_ZWJ)]) + "]")
_JOINERS_RE = re.compile("[\u200c\u200d]+")
# Extended_Pictographic, approximated by blocks (Python's re has no \p{...}); generous is harmless:
# a ZWJ kept between two symbols changes nothing visible.
_PICTOGRAPHIC = (
    "\u00a9\u00ae\u203c\u2049\u2122\u2139\u2194-\u2199\u21a9\u21aa\u231a\u231b\u2328\u2388\u23cf"
    "\u23e9-\u23fa\u24c2\u25aa\u25ab\u25b6\u25c0\u25fb-\u25fe\u2600-\u27bf\u2934\u2935\u2b05-\u2b07"
    "\u2b1b\u2b1c\u2b50\u2b55\u3030\u303d\u3297\u3299\U0001f000-\U0001faff\U0001fc00-\U0001fffd"
)
_BEFORE_EMOJI_ZWJ_RE = re.compile(f"[{_PICTOGRAPHIC}\ufe0f\U000e0020-\U000e007f]")
_AFTER_EMOJI_ZWJ_RE = re.compile(f"[{_PICTOGRAPHIC}]")


def _joiner_kept(match: re.Match[str]) -> str:
    """Keep one ZWJ/ZWNJ where it carries meaning, drop it elsewhere.

    Kept: a ZWJ inside an emoji ZWJ sequence (👩‍💻 would split into 👩 💻); a joiner after a combining
    mark (Indic virama + ZWJ/ZWNJ choose half forms, Malayalam chillu, Sinhala yansaya); a joiner
    between letters (Persian ZWNJ in می‌خواهم, Arabic/Indic joining control).
    """
    text, start, end = match.string, match.start(), match.end()
    before = text[start - 1] if start else ""
    after = text[end] if end < len(text) else ""
    run = match.group()
    if (
        _ZWJ in run
        and before
        and after
        and _BEFORE_EMOJI_ZWJ_RE.match(before)
        and _AFTER_EMOJI_ZWJ_RE.match(after)
    ):
        return _ZWJ
    if before:
        cat_before = unicodedata.category(before)[0]
        if cat_before == "M" or (cat_before == "L" and after and unicodedata.category(after)[0] in "LM"):
            return run[0]
    return ""


def normalize_invisibles(text: str) -> str:
    """Step 3 (without the final collapse): one scan when there is nothing to do."""
    if _INVISIBLE_RE.search(text) is None:
        return text
    if "\x1b" in text:
        text = fixes.remove_terminal_escapes(text)  # "\x1b[31m" would otherwise leave "[31m"
    if "\r" in text:
        text = text.replace("\r\n", "\n")
    text = text.translate(_INVISIBLE_TABLE)
    if _ZWJ in text or _ZWNJ in text:
        text = _JOINERS_RE.sub(_joiner_kept, text)
    return text


_MULTI_SPACE_RE = re.compile(" {2,}")
_LINE_BREAK_RUN_RE = re.compile(" ?\n[ \n]*")


def _line_breaks(match: re.Match[str]) -> str:
    return "\n\n" if match.group().count("\n") > 1 else "\n"


def collapse_whitespace(text: str) -> str:
    """Step 6: single spaces, no spaces around line breaks, at most one empty line, stripped.

    Expects step 3's output (only " " and "\\n" as whitespace).
    """
    if "  " in text:
        text = _MULTI_SPACE_RE.sub(" ", text)
    if "\n" in text:
        text = _LINE_BREAK_RUN_RE.sub(_line_breaks, text)
    return text.strip()


# --------------------------------------------------------------------------------------------
# 4. Reply prefix


def strip_reply_prefix(text: str) -> str:
    """Remove the leading run of @mentions a reply starts with (hidden by Twitter's clients).

    Each mention of the prefix is followed by whitespace or ends the text ("@bob's idea" or "@bob: hi"
    are visible text); ``REPLY_PREFIX`` counts only " " and "\\n" as whitespace: this runs after step 3.
    """
    match = REPLY_PREFIX.match(text)
    return text[match.end() :] if match else text


# --------------------------------------------------------------------------------------------
# 5. Entities: URLs, mentions (twitter-text rules), e-mails, phone numbers

# The finders follow twitter-text's rules: see ``twitter_text``.

_URL, _EMAIL, _MENTION, _PHONE = 0, 1, 2, 3  # also the priority when spans start together


def _entity_spans(text: str, modes: tuple[str, str, str, str]) -> list[tuple[int, int, int]]:
    """Non-overlapping ``(start, end, kind)``, earliest-then-longest first.

    URLs are found whenever anything is replaced, even if kept themselves: they protect the
    "@name" and digits inside them from the mention and phone rules (as twitter-text's
    extractEntitiesWithIndices does).
    """
    _, email_mode, mention_mode, phone_mode = modes
    spans: list[tuple[int, int, int]] = []
    for start, end in find_urls(text):
        spans.append((start, end, _URL))
    if "@" in text or "＠" in text:
        if email_mode != "keep" or mention_mode != "keep":  # an address protects its "@host"
            for start, end in find_emails(text):
                spans.append((start, end, _EMAIL))
        if mention_mode != "keep":
            for start, end, _, _ in find_mentions(text):
                spans.append((start, end, _MENTION))
    if phone_mode != "keep":
        for start, end in find_phones(text):
            spans.append((start, end, _PHONE))
    if len(spans) < 2:
        return spans
    spans.sort(key=lambda span: (span[0], span[0] - span[1], span[2]))
    kept = [spans[0]]
    for span in spans[1:]:
        if span[0] >= kept[-1][1]:
            kept.append(span)
    return kept


# --------------------------------------------------------------------------------------------
# The whole stage

_KIND_STATS = ("urls", "emails", "mentions", "phones")
#: Names of the per-step counters (Beam metrics ``clean_<name>``): texts each step changed.
STAT_NAMES = (
    "texts",
    "changed",
    "html",
    "ftfy_run",
    "ftfy",
    "invisible",
    "reply_prefix",
    *_KIND_STATS,
    "whitespace",
    "empty",
)


def _clean(text: str, config: CleanConfig, is_reply: bool, stats: Counter | None) -> str:
    """All steps on one text; counts what changed into ``stats`` when given."""
    original = text
    if "&" in text:
        text = fixes.unescape_html(text)
        if stats is not None and text != original:
            stats["html"] += 1
    if config.fix_mojibake:
        if needs_ftfy(text):
            fixed = ftfy.fix_text(text, FTFY_CONFIG)
            if stats is not None:
                stats["ftfy_run"] += 1
                if fixed != text:
                    stats["ftfy"] += 1
            text = fixed
    elif not text.isascii():
        text = fixes.fix_surrogates(text)  # lone surrogates cannot be written as UTF-8
        if not unicodedata.is_normalized("NFC", text):
            text = unicodedata.normalize("NFC", text)
    before = text
    text = normalize_invisibles(text)
    if stats is not None and text != before:
        stats["invisible"] += 1
    if is_reply and config.strip_reply_prefix and text:
        before = text
        text = strip_reply_prefix(text)
        if stats is not None and text != before:
            stats["reply_prefix"] += 1
    modes = (config.urls, config.emails, config.mentions, config.phones)
    if modes != ("keep", "keep", "keep", "keep"):
        spans = _entity_spans(text, modes)
        if spans:
            placeholders = (
                config.url_placeholder,
                config.email_placeholder,
                config.mention_placeholder,
                config.phone_placeholder,
            )
            pieces = []
            pos = 0
            seen = [False, False, False, False]
            for start, end, kind in spans:
                mode = modes[kind]
                if mode == "keep":
                    continue
                pieces.append(text[pos:start])
                if mode == "placeholder":
                    pieces.append(placeholders[kind])
                pos = end
                seen[kind] = True
            if pos:
                pieces.append(text[pos:])
                text = "".join(pieces)
                if stats is not None:
                    for kind, name in enumerate(_KIND_STATS):
                        if seen[kind]:
                            stats[name] += 1
    before = text
    text = collapse_whitespace(text)
    if stats is not None:
        stats["texts"] += 1
        if text != before:
            stats["whitespace"] += 1
        if text != original:
            stats["changed"] += 1
        if not text:
            stats["empty"] += 1
    return text


def clean_text(text: str, config: CleanConfig, *, is_reply: bool = False) -> str:
    """Training text for one tweet text (``is_reply`` enables the reply-prefix rule)."""
    return _clean(text, config, is_reply, None)


def _reply_prefix_rule_applies(tweet: Tweet) -> bool:
    """Whether the reply-prefix rule applies: a reply whose payload did not say what is displayed."""
    return tweet.is_reply and not tweet.display_range_applied


def clean_batch_counted(tweets: list[Tweet], config: CleanConfig) -> tuple[list[Tweet], Counter]:
    """``clean_batch`` plus a ``Counter`` over ``STAT_NAMES`` of what each step changed."""
    stats: Counter = Counter()
    cleaned = [t.replace(text=_clean(t.text, config, _reply_prefix_rule_applies(t), stats)) for t in tweets]
    return cleaned, stats


def clean_batch(tweets: list[Tweet], config: CleanConfig) -> list[Tweet]:
    """New Tweets with cleaned text, same order and length: never drops (the filter stage drops)."""
    return [t.replace(text=_clean(t.text, config, _reply_prefix_rule_applies(t), None)) for t in tweets]


class _CleanBatchFn(beam.DoFn):
    """Cleans one batch, reporting per-step counts as Beam counters ``clean_<step>`` (and, with
    ``emit_stats``, as a ``TAG_STATS`` dict per batch)."""

    def __init__(self, config: CleanConfig, emit_stats: bool = False):
        super().__init__()
        self._config = config
        self._emit_stats = emit_stats

    def setup(self) -> None:
        relax_collector()
        self._counters = {name: Metrics.counter(METRICS_NAMESPACE, f"clean_{name}") for name in STAT_NAMES}

    def process(self, batch: list[Tweet]) -> Iterable[list[Tweet]]:
        cleaned, stats = clean_batch_counted(batch, self._config)
        for name, count in stats.items():
            if count:
                self._counters[name].inc(count)
        yield cleaned
        if self._emit_stats:
            yield beam.pvalue.TaggedOutput(TAG_STATS, dict(stats))


def _sum_stats(parts: Iterable[dict[str, int]]) -> dict[str, int]:
    total: Counter = Counter()
    for part in parts:
        total.update(part)
    return dict(total)


def _stats_element(sums: dict[str, int], stage: str) -> tuple[str, dict[str, int]]:
    return stage, dict.fromkeys(STAT_NAMES, 0) | sums


class CleanTweets(beam.PTransform):
    """PCollection of ``list[Tweet]`` → PCollection of ``list[Tweet]`` with cleaned text, batch for batch."""

    name = "clean"
    kind = "map"
    reasons = ()
    description = "repairs mojibake, normalises entities and whitespace, placeholders for URLs and mentions"

    def __init__(self, config: CleanConfig, *, with_stats: bool = False):
        super().__init__()
        self._config = config
        self._with_stats = with_stats

    def expand(self, batches: beam.PCollection):
        """The cleaned batches; with ``with_stats``, ``(batches, stats)`` where ``stats`` holds one
        ``("clean", {step: texts changed})`` element (every ``STAT_NAMES`` key) for the manifest."""
        clean = beam.ParDo(_CleanBatchFn(self._config, self._with_stats)).with_output_types(list[Tweet])
        if not self._with_stats:
            return batches | "CleanBatches" >> clean
        out = batches | "CleanBatches" >> clean.with_outputs(TAG_STATS, main="tweets")
        stats = (
            out[TAG_STATS]
            | "SumStats" >> beam.CombineGlobally(_sum_stats)
            | "StatsDict" >> beam.Map(_stats_element, self.name)
        )
        return out.tweets, stats

"""The clean stage: entities, mojibake (pre-check soundness), invisibles, reply prefixes, entity
modes with twitter-text conformance, phone negatives, and a DirectRunner run of ``CleanTweets``."""

from __future__ import annotations

import json
import random
import re

import apache_beam as beam
import ftfy
import pytest
import yaml
from apache_beam.metrics.metric import MetricsFilter
from apache_beam.testing.util import assert_that, equal_to
from conftest import shared_data
from ftfy import badness, fixes
from tweetmill.schemas.records import Tweet
from tweetmill.transforms import clean, twitter_text
from tweetmill.transforms.clean import (
    FTFY_CONFIG,
    CleanConfig,
    CleanTweets,
    clean_batch,
    clean_text,
    fix_mojibake,
    needs_ftfy,
)
from tweetmill.transforms.twitter_text import (
    CASHTAG,
    COUNTRY_TLDS,
    GENERIC_TLDS,
    HASHTAG,
    MANUAL_RETWEET,
    MENTION,
    REPLY_PREFIX,
    RT_MARKER,
    URL_SIMPLE,
    find_emails,
    find_mentions,
    find_phones,
    find_urls,
)

DEFAULT = CleanConfig()
KEEP_ALL = CleanConfig(urls="keep", mentions="keep", emails="keep", phones="keep")


def tweet(i: int, text: str, **kw) -> Tweet:
    return Tweet(id=i, text=text, source_format="text", source_file="t.txt", position=i, **kw)


def test_config_defaults_and_validation() -> None:
    assert (DEFAULT.urls, DEFAULT.mentions, DEFAULT.emails, DEFAULT.phones) == ("placeholder",) * 4
    assert (DEFAULT.url_placeholder, DEFAULT.mention_placeholder) == ("<URL>", "@user")
    assert (DEFAULT.email_placeholder, DEFAULT.phone_placeholder) == ("<EMAIL>", "<PHONE>")
    assert DEFAULT.strip_reply_prefix and DEFAULT.fix_mojibake
    with pytest.raises(ValueError, match="urls"):
        CleanConfig(urls="drop")  # type: ignore[arg-type]


# --- HTML entities ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Tom &amp; Jerry", "Tom & Jerry"),
        ("1 &lt; 2 &gt; 0", "1 < 2 > 0"),
        ("&quot;hi&quot; it&#39;s&hellip;", '"hi" it\'s…'),
        ("&#x1F600; &#128512;", "😀 😀"),
        ("&amp;amp; is how you write &amp;", "&amp; is how you write &"),  # unescaped once only
        ("&amp;lt;b&amp;gt;", "&lt;b&gt;"),
        ("AT&T, R&D, &timesheet &not", "AT&T, R&D, &timesheet &not"),  # no legacy no-';' entities
        ("a&nbsp;b", "a b"),  # NBSP then becomes a plain space
    ],
)
def test_html_entities(raw: str, expected: str) -> None:
    assert clean_text(raw, KEEP_ALL) == expected


# --- mojibake -----------------------------------------------------------------------------------


def ftfy_cases() -> list[dict]:
    cases = []
    for path in sorted(shared_data("ftfy").glob("*.json")):
        cases += [dict(case, file=path.name) for case in json.loads(path.read_text(encoding="utf-8"))]
    assert len(cases) > 100
    return cases


def test_precheck_equals_plain_ftfy_on_ftfy_cases() -> None:
    """On every ftfy test text (as given, HTML-unescaped, and fixed), pre-check + ftfy == ftfy."""
    failures, skipped, total = [], 0, 0
    for case in ftfy_cases():
        for text in (case["original"], clean.unescape_html(case["original"]), case["fixed"]):
            total += 1
            plain = ftfy.fix_text(text, FTFY_CONFIG)
            skipped += not needs_ftfy(text)
            if fix_mojibake(text) != plain:
                failures.append((case["file"], case["label"], text))
    assert not failures
    assert 0 < skipped < total  # the pre-check does skip, and does not skip everything


def _without_disabled_fixers(text: str) -> str:
    """What ftfy's default config does on top of FTFY_CONFIG (fixes we turned off on purpose)."""
    text = fixes.fix_line_breaks(fixes.remove_control_chars(text))
    return fixes.uncurl_quotes(fixes.fix_character_width(text))


def test_mojibake_cases_are_fixed() -> None:
    """Every ftfy case expected to pass gives ftfy's expected text, up to the fixers we disable."""
    failures = []
    for case in ftfy_cases():
        if case["expect"] != "pass":
            continue
        ours = fix_mojibake(clean.unescape_html(case["original"]))
        if _without_disabled_fixers(ours) != _without_disabled_fixers(case["fixed"]):
            failures.append((case["file"], case["label"], ours, case["fixed"]))
    assert not failures


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("voilÃ  le travail", "voilà le travail"),
        ("Ã¡rbol and cafÃ©", "árbol and café"),
        ("I donâ€™t know", "I don’t know"),  # decoded, but curly quotes are kept
        ("ＬＯＵＤ！ 10³ ½ ﬁne", "ＬＯＵＤ！ 10³ ½ fine"),  # no width fix, no NFKC; ligature split
        ("e\u0301te\u0301", "été"),  # NFC
    ],
)
def test_mojibake_in_the_stage(raw: str, expected: str) -> None:
    assert clean_text(raw, KEEP_ALL) == expected


def test_fix_mojibake_off() -> None:
    no_ftfy = CleanConfig(fix_mojibake=False)
    assert clean_text("cafÃ© donâ€™t", no_ftfy) == "cafÃ© donâ€™t"
    assert clean_text("e\u0301", no_ftfy) == "é"  # NFC still (canonical equivalence only)
    assert clean_text("a\ud83d\ude00 \udc00", no_ftfy) == "a😀 \ufffd"  # never unencodable text


def test_precheck_skips_what_cannot_need_ftfy() -> None:
    for text in ("plain ascii text", "日本語のテキスト 😀👍", "café crème, naïve", "Привет, мир", "مرحبا"):
        assert not needs_ftfy(text), text
    for text in ("cafÃ©", "a\x93quoted\x94", "ﬁx", "e\u0301", "\ud83d\ude00"):
        assert needs_ftfy(text), text


def test_precheck_derivation_is_provable() -> None:
    """The trigger set and match width come from ftfy's BADNESS_RE (else a slow, safe fallback)."""
    assert clean._TRIGGER_CHARS and 0 < len(clean._TRIGGER_CHARS) < 1000
    assert 0 < clean._BADNESS_MAX_WIDTH < 64
    assert "’" not in map(chr, clean._TRIGGER_CHARS)  # a curly apostrophe alone triggers nothing


def test_precheck_sound_on_single_characters() -> None:
    """Every character of the scripts and symbols mojibake lives in, alone and between letters."""
    codepoints = [*range(0x80, 0x3000), *range(0xFB00, 0xFB50), *range(0xFE00, 0x10000)]
    unsound = []
    for cp in codepoints:
        if 0xD800 <= cp < 0xE000:
            continue
        for text in (chr(cp), f"a{chr(cp)}b"):
            if not needs_ftfy(text) and ftfy.fix_text(text, FTFY_CONFIG) != text:
                unsound.append(hex(cp))
    assert not unsound


def test_precheck_sound_on_random_mojibake_strings() -> None:
    """Random short strings over every character ftfy's heuristics name, plus context characters."""
    pool = sorted(
        set("".join(v for v in badness.MOJIBAKE_CATEGORIES.values() if "-" not in v))
        | set("ÂÃÎÐØÙàâ€œŠš¢£Ÿž\xa0\xad®©°·»–—´²³√±∂†≠™≤≥¥µøВГРСΒΓΞΟβ‚Äāa zA.\n")
    )
    rng = random.Random(0)
    unsound = []
    for _ in range(20000):
        text = "".join(rng.choice(pool) for _ in range(rng.randint(1, 6)))
        if not needs_ftfy(text) and ftfy.fix_text(text, FTFY_CONFIG) != text:
            unsound.append(text)
    assert not unsound


def test_windowed_badness_search_matches_ftfy_per_line() -> None:
    pool = sorted(set("ÂÃÎÐØÙàâ€œŠš¢£Ÿž\xa0®©°·»–—´²³√±∂†≠™≤≥¥µøВГРСΒΓΞΟβ‚Äā¡¿«»"))
    filler = list("abc XYZ.\n  ")
    rng = random.Random(1)
    for _ in range(10000):
        text = "".join(rng.choice(pool if rng.random() < 0.15 else filler) for _ in range(rng.randint(1, 60)))
        windowed = clean._is_bad_near_triggers(text)
        # exactly the whole-text search (the windows lose nothing) ...
        assert windowed == (clean._BADNESS_ANY_LINE_RE.search(text) is not None), repr(text)
        # ... which finds whatever ftfy's per-line test finds (and may over-approximate: \s can
        # match a line break across lines, which only costs an ftfy call).
        if any(badness.is_bad(line) for line in text.splitlines(keepends=True)):
            assert windowed, repr(text)


# --- whitespace and invisible characters --------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("a\u00a0b\u2009c\u3000d\u202fe\u2003f\tg", "a b c d e f g"),  # NBSP, thin, ideographic...
        ("  lots   of    space  ", "lots of space"),
        ("line one\r\nline two\rthree", "line one\nline two\nthree"),
        ("a\u2028b\u2029c", "a\nb\n\nc"),  # line separator, paragraph separator
        ("a\n\n\n\n\nb", "a\n\nb"),  # 3+ line breaks → one empty line
        ("a \n \n b \n c", "a\n\nb\nc"),  # no spaces around line breaks
        ("zero\u200bwidth\u2060joiner\ufeffbom soft\u00adhyphen", "zerowidthjoinerbom softhyphen"),
        ("bidi \u202eevil\u202c \u2066iso\u2069 \u200emark\u200f", "bidi evil iso mark"),
        ("ctrl\x00\x07\x1b[31mred\x1b[0m\x7f", "ctrlred"),
        ("\u3164\u3164", ""),  # Hangul filler "blank tweet"
    ],
)
def test_whitespace_and_invisibles(raw: str, expected: str) -> None:
    assert clean_text(raw, KEEP_ALL) == expected


def test_c1_controls_removed_without_ftfy() -> None:
    assert clean_text("a\x93b\x85c", CleanConfig(fix_mojibake=False)) == "ab\nc"
    assert clean_text("a\x93b\x94", KEEP_ALL) == "a“b”"  # ftfy reads C1 as Windows-1252


@pytest.mark.parametrize(
    "emoji",
    [
        "👨\u200d👩\u200d👧\u200d👦",  # family
        "🏳\ufe0f\u200d🌈",  # rainbow flag
        "👩🏽\u200d💻",  # skin tone + ZWJ
        "❤\ufe0f\u200d🔥",
        "🏴\u200d☠\ufe0f",
        "🧑\u200d🤝\u200d🧑",
        "🐻\u200d❄\ufe0f",
        "🧔\u200d♂\ufe0f",
        "🏴\U000e0067\U000e0062\U000e0073\U000e0063\U000e0074\U000e007f",  # Scotland (tag sequence)
        "1\ufe0f\u20e3",  # keycap
    ],
)
def test_emoji_sequences_survive(emoji: str) -> None:
    assert clean_text(f"look {emoji} here", DEFAULT) == f"look {emoji} here"
    assert clean_text(emoji, DEFAULT) == emoji


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("می\u200cخواهم", "می\u200cخواهم"),  # Persian ZWNJ between letters
        ("क्\u200dष", "क्\u200dष"),  # Devanagari virama + ZWJ (half form)
        ("ന്\u200d വരും", "ന്\u200d വരും"),  # Malayalam chillu (old encoding), word-final
        ("ශ්\u200dරී", "ශ්\u200dරී"),  # Sinhala yansaya
        ("\u200dstart and end\u200c", "start and end"),
        ("word\u200d \u200cword", "word word"),
        ("😀\u200c😀", "😀😀"),  # ZWNJ means nothing between emoji
        ("a\u200d\u200d\u200db", "a\u200db"),  # a run is one joiner
    ],
)
def test_zero_width_joiners(raw: str, expected: str) -> None:
    assert clean_text(raw, KEEP_ALL) == expected


# --- reply prefix -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("@alice @bob thanks!", "thanks!"),
        ("@alice\u00a0@bob  thanks @carol", "thanks @user"),
        ("＠alice thanks", "thanks"),
        ("@alice", ""),  # only the prefix: empty (the filter stage drops it)
        ("@alice: thanks", "@user: thanks"),  # not a hidden prefix
        ("@alice's idea", "@user's idea"),
        (".@alice thanks", ".@user thanks"),
        ("thanks @alice", "thanks @user"),
    ],
)
def test_reply_prefix(raw: str, expected: str) -> None:
    assert clean_text(raw, DEFAULT, is_reply=True) == expected


def test_reply_prefix_only_for_replies_and_configurable() -> None:
    assert clean_text("@alice hi", DEFAULT, is_reply=False) == "@user hi"
    assert clean_text("@alice hi", CleanConfig(strip_reply_prefix=False), is_reply=True) == "@user hi"
    assert clean_text("@alice hi", KEEP_ALL, is_reply=True) == "hi"


def test_manual_retweet_marker_stays() -> None:
    assert clean_text("RT @alice: big news", DEFAULT) == "RT @user: big news"
    assert clean_text("RT @alice: big news", DEFAULT, is_reply=True) == "RT @user: big news"


# --- entity modes -------------------------------------------------------------------------------

TEXT = "Hi @alice, see https://t.co/AbC123 or mail bob.smith@example.com or call +1 (202) 555-0143."


@pytest.mark.parametrize(
    ("config", "expected"),
    [
        (KEEP_ALL, TEXT),
        (DEFAULT, "Hi @user, see <URL> or mail <EMAIL> or call <PHONE>."),
        (
            CleanConfig(urls="remove", mentions="remove", emails="remove", phones="remove"),
            "Hi , see or mail or call .",
        ),
        (CleanConfig(urls="remove"), "Hi @user, see or mail <EMAIL> or call <PHONE>."),
        (CleanConfig(mentions="keep"), "Hi @alice, see <URL> or mail <EMAIL> or call <PHONE>."),
        (CleanConfig(mentions="remove"), "Hi , see <URL> or mail <EMAIL> or call <PHONE>."),
        (CleanConfig(emails="keep"), "Hi @user, see <URL> or mail bob.smith@example.com or call <PHONE>."),
        (CleanConfig(emails="remove"), "Hi @user, see <URL> or mail or call <PHONE>."),
        (CleanConfig(phones="keep"), "Hi @user, see <URL> or mail <EMAIL> or call +1 (202) 555-0143."),
        (CleanConfig(phones="remove"), "Hi @user, see <URL> or mail <EMAIL> or call ."),
        (
            CleanConfig(
                url_placeholder="[link]",
                mention_placeholder="[at]",
                email_placeholder="[mail]",
                phone_placeholder="[tel]",
            ),
            "Hi [at], see [link] or mail [mail] or call [tel].",
        ),
    ],
)
def test_entity_modes(config: CleanConfig, expected: str) -> None:
    assert clean_text(TEXT, config) == expected


def test_urls_protect_their_insides() -> None:
    url = "https://example.com/@alice/202-555-0143"
    keep_urls = CleanConfig(urls="keep")
    assert clean_text(f"see {url} now", keep_urls) == f"see {url} now"
    assert clean_text(f"see {url} now", DEFAULT) == "see <URL> now"
    assert clean_text("write me@example.com", CleanConfig(emails="keep")) == "write me@example.com"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mail john.doe@example.com.", ["john.doe@example.com"]),
        ("a@b.co.uk, c+tag@d.org", ["a@b.co.uk", "c+tag@d.org"]),
        ("me@gmail.comfollow me", ["me@gmail.com"]),
        ("@alice hi", []),
        ("x@y.notatld", []),
        ("über@example.com", []),  # glued to a non-ASCII letter: not an address we can delimit
    ],
)
def test_emails(text: str, expected: list[str]) -> None:
    assert [text[s:e] for s, e in find_emails(text)] == expected


@pytest.mark.parametrize(
    "phone",
    [
        "+44 20 7946 0958",
        "+1 (202) 555-0143",
        "+1-202-555-0143",
        "+33 1 23 45 67 89",
        "+49 (0)30 123456",
        "+4915112345678",
        "(202) 555-0143",
        "(760)434-7878",
        "202-555-0143",
        "202.555.0143",
        "202 555 0143",
        "1-800-555-0199",
    ],
)
def test_phones(phone: str) -> None:
    text = f"call {phone} now"
    assert [text[s:e] for s, e in find_phones(text)] == [phone]


@pytest.mark.parametrize(
    "text",
    [
        "back in 2019 and 1999-2020",
        "at 10:30 or 10:30:45 or 10.30pm",
        "only $1,299.99 or €1.234.567 or 1,000,000 or £12.50",
        "on 12/25/2019, 2019-12-25, 25.12.2019",
        "won 3-1, then 2-2",
        "ping 192.168.100.200 or 10.0.0.1",
        "id 1234567890 and 20195550143",
        "dial 555-1234 or 911",
        "ISBN 978-0-306-40615-7",
        "card 4111 1111 1111 1111",
        "+1 to that, +100 points",
        "version 10.0.19041.1234",
        "order #202-555-0143",
        "123-456-7890",  # area code cannot start with 1
    ],
)
def test_not_phones(text: str) -> None:
    assert find_phones(text) == []
    assert clean_text(text, DEFAULT) == text


# --- twitter-text conformance -------------------------------------------------------------------


def conformance() -> dict:
    return yaml.safe_load(shared_data("conformance", "extract.yml").read_text(encoding="utf-8"))["tests"]


def test_conformance_mentions() -> None:
    tests = conformance()
    for case in tests["mentions"]:
        got = [name for _, _, name, slug in find_mentions(case["text"]) if not slug]
        assert got == case["expected"], case["description"]
    for case in tests["mentions_with_indices"]:
        found = find_mentions(case["text"])
        got = [{"screen_name": n, "indices": [s, e]} for s, e, n, slug in found if not slug]
        assert got == case["expected"], case["description"]
    for case in tests["mentions_or_lists_with_indices"]:
        found = find_mentions(case["text"])
        got = [{"screen_name": n, "list_slug": slug, "indices": [s, e]} for s, e, n, slug in found]
        assert got == case["expected"], case["description"]


def test_conformance_urls() -> None:
    tests = conformance()
    for section in ("urls", "tco_urls_with_params"):
        for case in tests[section]:
            text = case["text"]
            assert [text[s:e] for s, e in find_urls(text)] == case["expected"], case["description"]
    for section in ("urls_with_indices", "urls_with_directional_markers"):
        for case in tests[section]:
            text = case["text"]
            got = [{"url": text[s:e], "indices": [s, e]} for s, e in find_urls(text)]
            assert got == case["expected"], case["description"]


def test_conformance_replies_via_reply_prefix() -> None:
    """twitter-text's reply cases: a reply prefix is stripped exactly where it finds a reply."""
    for case in conformance()["replies"]:
        text = case["text"]
        cleaned = clean_text(text, KEEP_ALL, is_reply=True)
        if case["expected"]:
            assert not cleaned.startswith("@" + case["expected"]), case["description"]
        else:
            assert cleaned == clean_text(text, KEEP_ALL), case["description"]


def test_tld_lists_match_twitter_text() -> None:
    tlds = yaml.safe_load(shared_data("conformance", "tld_lib.yml").read_text(encoding="utf-8"))
    assert list(GENERIC_TLDS) == tlds["generic"]
    assert list(COUNTRY_TLDS) == tlds["country"]


def test_documented_deviations_from_twitter_text() -> None:
    # 1. A bare domain with a Titlecase TLD is a sentence missing its space, not a URL.
    assert find_urls("I love you.Today was great, Mike.It is") == []
    assert [t for t in ("see liketoknow.it", "MLB.tv", "Amazon.de/x") if find_urls(t)] == [
        "see liketoknow.it",
        "MLB.tv",
        "Amazon.de/x",
    ]
    # 2. A name of more than 20 characters is no mention (twitter-text would take its first 20).
    assert find_mentions("hi @abcdefghijklmnopqrstuvwxyz") == []
    assert clean_text("hi @abcdefghijklmnopqrstuvwxyz", DEFAULT) == "hi @abcdefghijklmnopqrstuvwxyz"


def test_simple_shared_patterns() -> None:
    """The rough patterns other stages count with (``twitter_text``'s compiled regexes)."""
    assert HASHTAG.findall("#tag &#39; a#b #123 #1a #über") == ["tag", "1a", "über"]
    assert [CASHTAG.findall(t) for t in ("$AAPL up", "buy $BRK.A", "$100", "x$AAPL", "$AAPLXYZ")] == [
        ["AAPL"],
        ["BRK.A"],
        [],
        [],
        [],
    ]
    assert MENTION.findall("hi @bob_1, mail a@b.c") == ["@bob_1", "@b"]
    assert URL_SIMPLE.findall("see https://t.co/x, or http://a.b") == ["https://t.co/x,", "http://a.b"]
    assert [bool(MANUAL_RETWEET.match(t)) for t in ("RT @bob: hi", " RT@bob hi", "hi RT @bob", "RT bob")] == [
        True,
        True,
        False,
        False,
    ]
    assert RT_MARKER.findall("RT @a ART rt via RT") == ["RT", "RT"]
    assert REPLY_PREFIX.match("@a @b hi").group() == "@a @b " and REPLY_PREFIX.match("@bob's idea") is None


# The shared patterns in their plain form, lookbehind first; twitter_text writes them literal first.
_PLAIN_PATTERNS = {
    "RT": (RT_MARKER, r"(?:^|(?<=\s))RT\b"),
    "hashtag": (HASHTAG, r"(?<![\w&])#(\w*[^\W\d]\w*)"),
    "cashtag": (CASHTAG, r"(?<!\S)\$([A-Za-z]{1,6}(?:[._][A-Za-z]{1,2})?)(?![\w$])"),
    "phone hint": (twitter_text._PHONE_HINT_RE, r"\+\d|\d[ .-]\d{4}"),
}


@pytest.mark.parametrize("name", sorted(_PLAIN_PATTERNS))
def test_literal_first_patterns_match_as_their_plain_form(name: str) -> None:
    pattern, plain_source = _PLAIN_PATTERNS[name]
    plain = re.compile(plain_source)
    texts = [
        "RT @a ART rt via RT", "RT", "xRT", " RT\tRT\nRT", "RTRT RT:", "#a #1 #1a a#b &#39; (#x) ##y",
        "$AB x$AB $ABCDEFG $BRK.A $100 $AB$ \n$cd", "#", "$", "R", "", "+1 +x 555-1234 ++2 1.23456 ٣-٤٥٦٧",
    ]
    real = shared_data("bench", "tweeteval_sentiment__test_text.txt").read_text(encoding="utf-8")
    texts += real.splitlines()[:2000]

    def spans(p: re.Pattern, text: str, pos: int = 0) -> list:
        return [(m.span(), m.groups()) for m in p.finditer(text, pos)]

    for text in texts:
        assert spans(pattern, text) == spans(plain, text), text
        for pos in range(1, min(len(text), 12)):  # a search from inside the text sees what precedes
            assert spans(pattern, text, pos) == spans(plain, text, pos), (text, pos)


# --- batches and Beam ---------------------------------------------------------------------------


def test_clean_batch_returns_new_tweets_and_never_drops() -> None:
    tweets = [
        tweet(1, "  hello &amp; welcome  ", author_id=7, is_quote=True),
        tweet(2, "@bob", is_reply=True),
        tweet(3, ""),
        tweet(4, "unchanged"),
    ]
    out = clean_batch(tweets, DEFAULT)
    assert [t.text for t in out] == ["hello & welcome", "", "", "unchanged"]
    assert [t.text for t in tweets] == ["  hello &amp; welcome  ", "@bob", "", "unchanged"]  # not mutated
    assert all(a is not b for a, b in zip(tweets, out, strict=True))
    assert out[0] == tweets[0].replace(text="hello & welcome")
    assert clean_batch([], DEFAULT) == []


def test_clean_tweets_direct_runner() -> None:
    batches = [
        [tweet(1, "@alice hi &amp; bye", is_reply=True), tweet(2, "cafÃ© https://t.co/x1")],
        [tweet(3, "call 202-555-0143\u200b now")],
    ]
    pipeline = beam.Pipeline()
    out = (
        pipeline
        | "Create" >> beam.Create(batches)
        | "Clean" >> CleanTweets(DEFAULT)
        | "Texts" >> beam.Map(lambda batch: [t.text for t in batch])
    )
    assert_that(out, equal_to([["hi & bye", "café <URL>"], ["call <PHONE> now"]]))
    result = pipeline.run()
    result.wait_until_finish()
    counters = {c.key.metric.name: c.committed for c in result.metrics().query(MetricsFilter())["counters"]}
    assert counters["clean_texts"] == 3
    assert counters["clean_html"] == 1
    assert counters["clean_ftfy"] == 1
    assert counters["clean_reply_prefix"] == 1
    assert counters["clean_urls"] == 1
    assert counters["clean_phones"] == 1
    assert counters["clean_invisible"] == 1

"""Parse robustness (issue #10): binary content never becomes rows, CSV never cuts or swallows silently,
unknown JavaScript prefixes are not text, replaced ids and repaired bytes are counted.

Real files of ../shared/data and broken variants of them, built in memory. Every test checks the exact
accounting: each record is a Tweet, a drop reason or a dead letter, and each took its own position.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import sqlite3
import sys
from collections import Counter
from pathlib import Path

import pytest
from conftest import shared_data
from tweetmill.schemas.records import FORMAT_ARCHIVE, FORMAT_CSV, FORMAT_TEXT, DeadLetter, Tweet
from tweetmill.transforms.csv_records import _CSV_MAX_RECORD_CHARS, CsvReader, parse_csv_delimiter
from tweetmill.transforms.parse import detect_format, open_records
from tweetmill.transforms.streams import iter_lines
from tweetmill.transforms.text_lines import _STRETCH_END_BYTES, _utf8
from tweetmill.transforms.tweet_objects import FileContext

TRUMP_CSV = ("csv", "fivethirtyeight_trump-twitter__realDonaldTrump_poll_tweets.csv")
MAYWEATHER_CSV = ("csv", "fivethirtyeight_mayweather-mcgregor__tweets.csv")
OBAMA_CSV = ("csv", "fivethirtyeight_twitter-ratio__BarackObama.csv")
TWEETS_JS = ("archive", "milahu-twitter-milahu104", "tweets.js")
LAYOUT = ("archive-layout", "milahu-twitter-milahu104", "data")


def read(name: str, data: bytes, fmt: str | None = None, **kw) -> tuple[str, list, Counter]:
    """(format used, records, notes) of ``data`` read as file ``name``, with the accounting checked."""
    notes: Counter = Counter()
    used, records = open_records(name, io.BytesIO(data), fmt, notes=notes, **kw)
    records = list(records)
    assert all(type(r) in (Tweet, DeadLetter, str) for r in records)
    positions = [r.position for r in records if type(r) is not str]
    assert positions == sorted(set(positions)) and all(p < len(records) for p in positions)
    if not any(type(r) is str for r in records):  # every record took the next position
        assert positions == list(range(len(records)))
    return used, records, notes


def summary(records: list) -> dict[str, int]:
    c: Counter = Counter()
    for r in records:
        c["tweets" if type(r) is Tweet else r if type(r) is str else f"dead:{r.reason}"] += 1
    return dict(c)


def tweets(records: list) -> list[Tweet]:
    return [r for r in records if type(r) is Tweet]


def dead(records: list) -> list[DeadLetter]:
    return [r for r in records if type(r) is DeadLetter]


def text_lines(*rel: str) -> list[bytes]:
    """The non-blank lines of a real one-tweet-per-line file."""
    return [line for line in shared_data(*rel).read_bytes().split(b"\n") if line.strip()]


def png() -> bytes:
    (path,) = shared_data(*LAYOUT, "tweets_media").glob("*.png")
    return path.read_bytes()


def csv_bytes(rows: list[list[str]], **fmt) -> bytes:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n", **fmt).writerows(rows)
    return out.getvalue().encode()


def csv_rows(*rel: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(shared_data(*rel).read_text("utf-8"), newline="")))


# ---------------------------------------------------------------------------------------------------
# Binary content: one dead letter per file, or per stretch of lines, never rows
# ---------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["media.txt", "media.csv", "media", "media.json", "media.txt.gz"])
def test_png_is_one_dead_letter_whatever_its_name(name: str) -> None:
    data = png()
    if name.endswith(".gz"):
        data = gzip.compress(data)
    used, records, _ = read(name, data)
    assert used == (FORMAT_CSV if name == "media.csv" else FORMAT_TEXT)
    assert summary(records) == {"dead:binary_content": 1}
    (d,) = records
    assert (d.line, d.byte_offset) == (1, 0) and "PNG image" in d.detail
    assert d.raw.startswith("\\x89PNG\\r\\n\\x1a\\n\\x00")  # escaped, readable


def test_binary_formats_by_signature_and_content(tmp_path: Path) -> None:
    db = tmp_path / "t.sqlite"
    with sqlite3.connect(db) as con:
        con.execute("create table t (text)")
        texts = text_lines("lang", "xlm-t", "english", "test_text.txt")
        con.executemany("insert into t values (?)", [(line.decode(),) for line in texts])
    con.close()
    elf = Path(sys.executable).resolve().read_bytes()[: 1 << 20]
    cases = {"SQLite database": db.read_bytes(), "ELF executable": elf,
             "PDF document": b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\n"}
    for what, data in cases.items():
        for name in ("x.txt", "x.csv"):
            _, records, _ = read(name, data)
            assert summary(records) == {"dead:binary_content": 1}, (what, name)
            assert what in records[0].detail
    # Text that starts like a signature is text.
    _, records, _ = read("t.txt", b"GIF89a is a format\n%PDF-1.4 is old\nMZ is a band\n")
    assert summary(records) == {"tweets": 3}
    # No signature: the PNG's compressed body (from byte 4096) is judged by its bytes.
    _, records, _ = read("body.txt", png()[4096:])
    assert summary(records) == {"dead:binary_content": 1}
    assert records[0].detail.startswith("binary data, not text")


def test_utf16_text_is_one_unsupported_encoding_dead_letter() -> None:
    text = b"\n".join(text_lines("lang", "xlm-t", "english", "test_text.txt")).decode()
    for data in (text.encode("utf-16"), text.encode("utf-16-le"), text.encode("utf-16-be"),
                 text.encode("utf-32")):
        _, records, _ = read("export.txt", data)
        assert summary(records) == {"dead:unsupported_encoding": 1}
        assert "UTF-16" in records[0].detail or "UTF-32" in records[0].detail


def test_binary_stretch_inside_a_text_file_is_one_dead_letter() -> None:
    lines = text_lines("bench", "tweeteval_emoji__val_text.txt")
    junk = png()[4096:4096 + 30_000]
    at = 2000  # the junk goes after this many lines; the line after it is a long one
    assert len(lines[at]) >= _STRETCH_END_BYTES
    data = b"\n".join(lines[:at]) + b"\n" + junk + b"\n" + b"\n".join(lines[at:]) + b"\n"
    _, records, notes = read("mixed.txt", data)
    assert summary(records) == {"tweets": len(lines), "dead:binary_content": 1}
    assert [t.text for t in tweets(records)] == [line.decode() for line in lines]  # nothing lost or made up
    (d,) = dead(records)
    assert records[at] is d
    assert d.line == at + 1 and d.byte_offset == sum(len(line) + 1 for line in lines[:at])
    junk_lines = junk.count(b"\n") + 1
    assert f"lines {at + 1}-{at + junk_lines}" in d.detail
    assert not notes  # no junk line was "repaired" into text


def test_binary_stretch_inside_a_csv_is_one_dead_letter() -> None:
    path = shared_data(*MAYWEATHER_CSV)
    data = path.read_bytes()
    expected = [(t.id, t.text) for t in tweets(read(path.name, data)[1])]
    # Insert the junk at a record boundary past the head: before the physical line row 6000 starts on.
    reader = csv.reader(io.StringIO(data.decode(), newline=""))
    for _ in range(6001):  # the header and 6000 rows
        next(reader)
    boundary = sum(len(line) + 1 for line in data.split(b"\n")[: reader.line_num])
    junk = png()[4096:4096 + 20_000]
    broken = data[:boundary] + junk + b"\n" + data[boundary:]
    _, records, _ = read(path.name, broken)
    assert summary(records) == {"tweets": len(expected), "dead:binary_content": 1}
    assert [(t.id, t.text) for t in tweets(records)] == expected
    assert dead(records)[0].byte_offset == boundary


def test_undecodable_and_control_lines_in_a_legacy_file() -> None:
    """cp1252 text stays text (repaired, counted); bytes that only decode as junk are dead letters."""
    french = [line.decode() for line in text_lines("lang", "xlm-t", "french", "test_text.txt")]
    latin = [line for line in french if line.encode("cp1252", "ignore").decode("cp1252") == line][:40]
    accented = sum(not line.isascii() for line in latin)
    assert accented >= 5
    high = bytes(range(0xA0, 0x100))  # no control byte, but all of it would need repair
    control = b"a tweet with a bell \x07 in it, and an escape \x1b[0m here"  # not UTF-8 either: \xe9
    body = [line.encode("cp1252") for line in latin]
    data = b"\n".join([*body[:10], high, *body[10:20], control + b" caf\xe9", *body[20:]]) + b"\n"
    _, records, notes = read("latin.txt", data)
    assert summary(records) == {"tweets": len(latin), "dead:unsupported_encoding": 1,
                                "dead:binary_content": 1}
    assert [t.text for t in tweets(records)] == latin
    assert [(d.reason, d.line) for d in dead(records)] == [("unsupported_encoding", 11),
                                                            ("binary_content", 22)]
    assert notes == {"invalid_utf8_repaired": accented}


def test_obama_csv_repairs_are_counted() -> None:
    """The Mac Roman file still reads whole (see test_parse); each repaired line is counted."""
    data = shared_data(*OBAMA_CSV).read_bytes()
    invalid = 0
    for line in data.split(b"\n"):
        try:
            line.decode("utf-8")
        except UnicodeDecodeError:
            invalid += 1
    _, records, notes = read("obama.csv", data)
    assert summary(records) == {"tweets": 3207}
    assert notes == {"invalid_utf8_repaired": invalid} and invalid > 1000


def test_utf8_file_with_a_corrupt_line_repairs_it_with_replacement_chars() -> None:
    lines = text_lines("lang", "xlm-t", "arabic", "test_text.txt")[:50]
    lead = max(i for i, b in enumerate(lines[20]) if b >= 0xC0)  # the last multi-byte char, cut in half
    cut = lines[20][: lead + 1]
    assert not _utf8(cut)
    data = b"\n".join([*lines[:20], cut, *lines[21:]]) + b"\n"
    _, records, notes = read("arabic.txt", data)
    assert summary(records) == {"tweets": 50}
    assert tweets(records)[20].text == cut.decode("utf-8", "replace")  # U+FFFD, not cp1252 mojibake
    assert notes == {"invalid_utf8_repaired": 1}


def test_non_latin_legacy_text_is_not_read_as_cp1252_mojibake() -> None:
    """Russian in cp1251 (not UTF-8, and too many bytes to repair) is one dead letter, not 100 rows."""
    data = "".join(f"Привет, это твит номер {i}: всё хорошо\n" for i in range(100)).encode("cp1251")
    _, records, _ = read("ru.txt", data)
    assert summary(records) == {"dead:unsupported_encoding": 1}


# ---------------------------------------------------------------------------------------------------
# JavaScript prefixes: never text
# ---------------------------------------------------------------------------------------------------


def test_archive_prefix_spellings() -> None:
    data = shared_data(*TWEETS_JS).read_bytes()
    body = data[data.index(b"[") :]
    for prefix in (b"window.YTD.tweets.part0 = ", b"window.ytd.tweets.part0=", b"window.YTD.tweet.part0 = ",
                   b"window.YTD.tweets.part12 = ", b"window . YTD . tweets . part0\n= "):
        for name in ("tweets.js", "tweets.txt"):
            used, records, notes = read(name, prefix + body)
            assert used == FORMAT_ARCHIVE and summary(records) == {"tweets": 2045}, prefix
            assert not notes


def test_unknown_prefix_of_a_tweet_array_is_read_and_counted() -> None:
    data = shared_data(*TWEETS_JS).read_bytes()
    body = data[data.index(b"[") :]
    expected = [(t.id, t.text) for t in tweets(read("tweets.js", data)[1])]
    for prefix in (b"window.YTD_tweets.part0 = ", b"var tweets = ", b"window.twitter.tweets = "):
        used, records, notes = read("tweets.txt", prefix + body)
        assert used == FORMAT_ARCHIVE
        assert [(t.id, t.text) for t in tweets(records)] == expected
        assert notes == {"unknown_js_prefix_read_as_json": 1}


def test_unknown_prefix_of_anything_else_is_one_dead_letter() -> None:
    manifest = shared_data(*LAYOUT, "manifest.js").read_bytes()  # window.__THAR_CONFIG = {...}
    used, records, _ = read("manifest.js", manifest)
    assert used == FORMAT_ARCHIVE and summary(records) == {"dead:unknown_js_prefix": 1}
    assert "window.__THAR_CONFIG" in records[0].detail and records[0].line == 1
    like = shared_data(*LAYOUT, "like.js").read_bytes()
    for prefix in (b"var likes = ", b"window.YTD_like.part0 = "):
        _, records, _ = read("likes.txt", prefix + like[like.index(b"[") :])
        assert summary(records) == {"dead:unknown_js_prefix": 1}
    assert summary(read("like.js", like)[1]) == {"dead:unsupported_archive_file": 1}  # a known dataset


def test_detect_format_never_text_for_an_assignment() -> None:
    for head in (b"window.YTD_tweets.part0 = [", b"window.ytd.tweets.part0=[", b"var tweets = [\n  {",
                 b"x = {\"a\": 1}", b"tweets=[]"):
        for name in ("a.txt", "a.csv", "a", "a.json"):
            assert detect_format(name, head) == FORMAT_ARCHIVE, (head, name)
    assert detect_format("a.js", b"grailbird.data.tweets_2013_04 = [") == "grailbird"
    for head in (b"I said x = [1] today", b"a = b", b"x = [1, 2]"):  # a tweet, not an assignment
        assert detect_format("a.txt", head) == FORMAT_TEXT


# ---------------------------------------------------------------------------------------------------
# CSV: never cut, never swallowed
# ---------------------------------------------------------------------------------------------------


def _generic_rows(n: int) -> list[list[str]]:
    """``tweet_id,text,created_at`` rows with real tweet texts (no comma, semicolon, tab or quote)."""
    texts = [line.decode() for line in text_lines("bench", "tweeteval_sentiment__test_text.txt")
             if not any(c in line for c in b',;\t"')][:n]
    return [[str(1000 + i), text, f"2020-01-02 03:04:{i % 60:02d}"] for i, text in enumerate(texts)]


def test_unquoted_comma_in_one_text_is_a_dead_letter() -> None:
    rows = _generic_rows(10)
    lines = ["tweet_id,text,created_at"] + [",".join(r) for r in rows]
    lines[5] = f"{rows[4][0]},hello, world,{rows[4][2]}"  # row 5's text has an unquoted comma
    _, records, _ = read("export.csv", ("\n".join(lines) + "\n").encode())
    assert summary(records) == {"tweets": 9, "dead:malformed_csv_row": 1}
    (d,) = dead(records)
    assert (d.line, d.raw) == (6, lines[5]) and "4 fields" in d.detail
    assert [t.text for t in tweets(records)] == [r[1] for i, r in enumerate(rows) if i != 4]
    assert [t.id for t in tweets(records)] == [int(r[0]) for i, r in enumerate(rows) if i != 4]


def test_newline_in_an_unquoted_text_is_two_dead_letters_not_a_cut_text() -> None:
    rows = _generic_rows(5)
    lines = ["tweet_id,text,created_at"] + [",".join(r) for r in rows]
    lines[3] = f"{rows[2][0]},first half\nsecond half,{rows[2][2]}"
    _, records, _ = read("export.csv", ("\n".join(lines) + "\n").encode())
    assert summary(records) == {"tweets": 4, "dead:malformed_csv_row": 2}
    assert [d.line for d in dead(records)] == [4, 5]
    assert "first half" not in {t.text for t in tweets(records)}


@pytest.mark.parametrize("quoted", [True, False], ids=["quoted-texts", "bare-texts"])
def test_unterminated_quote_costs_one_row(quoted: bool) -> None:
    """Row 31 of 100 opens a quote it never closes: 99 tweets and 1 dead letter (line 32)."""
    rows = _generic_rows(100)
    body = csv_bytes([["tweet_id", "text", "created_at"], *rows],
                     quoting=csv.QUOTE_NONNUMERIC if quoted else csv.QUOTE_MINIMAL).decode().split("\n")
    body[31] = body[31].replace(rows[30][1] + ('"' if quoted else ""), rows[30][1])
    if not quoted:
        body[31] = body[31].replace(f",{rows[30][1]}", f',"{rows[30][1]}')
    assert body[31].count('"') % 2 == 1
    _, records, _ = read("export.csv", "\n".join(body).encode())
    assert summary(records) == {"tweets": 99, "dead:malformed_csv_row": 1}
    (d,) = dead(records)
    assert d.line == 32 and d.raw == body[31] and "reading resumes at the next line" in d.detail
    assert [t.text for t in tweets(records)] == [r[1] for i, r in enumerate(rows) if i != 30]


def test_runaway_quote_is_cut_at_the_bound_and_reading_resumes() -> None:
    rows = _generic_rows(3000)
    body = ["tweet_id,text,created_at"] + [",".join(r) for r in rows]
    body[11] = f'{rows[10][0]},"{rows[10][1]},{rows[10][2]}'
    assert sum(len(line) for line in body[12:]) > _CSV_MAX_RECORD_CHARS  # the bound comes first
    _, records, _ = read("export.csv", ("\n".join(body) + "\n").encode())
    assert summary(records) == {"tweets": len(rows) - 1, "dead:malformed_csv_row": 1}
    (d,) = dead(records)
    assert d.line == 12 and "still open after" in d.detail


def test_semicolon_csv_reads_like_the_comma_original() -> None:
    rows = csv_rows(*MAYWEATHER_CSV)
    expected = [(t.id, t.text, t.created_at_ms) for t in tweets(read("m.csv", csv_bytes(rows))[1])]
    assert len(expected) == 12118
    for name in ("m.csv", "m.tsv", "m"):  # content decides; the name is only a hint
        used, records, _ = read(name, csv_bytes(rows, delimiter=";"))
        assert used == FORMAT_CSV, name
        assert [(t.id, t.text, t.created_at_ms) for t in tweets(records)] == expected
        assert summary(records) == {"tweets": 12118}


def test_tsv_named_csv() -> None:
    rows = csv_rows(*TRUMP_CSV)
    expected = [(t.id, t.text) for t in tweets(read("t.csv", shared_data(*TRUMP_CSV).read_bytes())[1])]
    _, records, _ = read("t.csv", csv_bytes(rows, delimiter="\t"))
    assert [(t.id, t.text) for t in tweets(records)] == expected and summary(records) == {"tweets": 448}
    # A naive TSV (no quoting at all; texts may start with a quote), named .csv
    single = [r for r in rows[1:] if "\n" not in r[2] and "\t" not in r[2]]
    naive = "\n".join("\t".join(r) for r in [rows[0], *single]).encode() + b"\n"
    assert sum(r[2].startswith('"') for r in single) > 5
    _, records, _ = read("t.csv", naive)
    assert [t.text for t in tweets(records)] == [r[2] for r in single]
    assert summary(records) == {"tweets": len(single)}


def test_csv_delimiter_option() -> None:
    assert [parse_csv_delimiter(v) for v in (",", ";", "\t", "tab", "\\t", "Semicolon", "|")] == \
        [",", ";", "\t", "\t", "\t", ";", "|"]
    for bad in ("", ",;", '"', "\n"):
        with pytest.raises(ValueError, match="one character"):
            parse_csv_delimiter(bad)
    data = b"id|text|note\n1234567|a|b, c; d\n"
    ctx = FileContext("x.csv", FORMAT_CSV)
    records = list(CsvReader(ctx, None, csv_delimiter="pipe").read(iter_lines([data])))
    assert [(t.id, t.text) for t in tweets(records)] == [(1234567, "a")]


def test_legacy_tweets_csv_url_tail_and_its_limits() -> None:
    """Twitter's legacy tweets.csv omits / repeats its last column (expanded_urls); nothing else may."""
    data = shared_data("csv", "legacy-archive-NiciDieNase_tweets.csv").read_bytes()
    _, records, _ = read("tweets.csv", data)
    assert summary(records) == {"tweets": 1357}
    header, first = data.split(b"\n")[:2]  # the first row has no expanded_urls: 8 fields
    assert first.count(b'","') == 7
    urls = first + b',"http://a.example/1","http://b.example/2"\n'
    junk = first + b',"http://a.example/1","not a url"\n'
    _, records, _ = read("tweets.csv", header + b"\n" + first + b"\n" + urls + junk)
    assert summary(records) == {"tweets": 2, "dead:malformed_csv_row": 1}
    assert dead(records)[0].line == 4


# ---------------------------------------------------------------------------------------------------
# Counted changes: replaced ids, repaired bytes
# ---------------------------------------------------------------------------------------------------


def test_invalid_ids_are_replaced_and_counted() -> None:
    line = json.loads(shared_data("v1", "tweepy_cassettes_v1.jsonl").read_text("utf-8").split("\n")[0])
    variants = []
    for id_str, id_ in (("abc", None), ("-5", -5), (None, 1e21), ("1.23457E+18", None), (None, None),
                        ("", None), ("20", 20)):
        obj = {k: v for k, v in line.items() if k not in ("id", "id_str")}
        if id_str is not None:
            obj["id_str"] = id_str
        if id_ is not None:
            obj["id"] = id_
        variants.append(obj)
    data = b"".join(json.dumps(o).encode() + b"\n" for o in variants)
    _, records, notes = read("ids.jsonl", data)
    assert [(t.id_derived, t.id if not t.id_derived else None) for t in records] == \
        [(True, None)] * 6 + [(False, 20)]
    assert notes == {"invalid_id_replaced": 4}  # absent / empty ids are not invalid ones


def test_excel_mangled_csv_ids_are_replaced_and_counted() -> None:
    """The real Trump poll CSV has 3 ids Excel turned into floats (7.02608E+17): the ids are lost."""
    data = shared_data(*TRUMP_CSV).read_bytes()
    _, records, notes = read("t.csv", data)
    assert summary(records) == {"tweets": 448} and notes == {"invalid_id_replaced": 3}
    assert sum(t.id_derived for t in records) == 3
    rows = csv_rows(*TRUMP_CSV)
    mangled = [rows[0]] + [[f"{float(r[0]):.5E}", *r[1:]] for r in rows[1:]]  # every id as Excel shows it
    _, records, notes = read("t.csv", csv_bytes(mangled))
    assert summary(records) == {"tweets": 448} and all(t.id_derived for t in records)
    assert notes == {"invalid_id_replaced": 448}
    # A bare "id" column of row numbers is no tweet id, not an invalid one; text lines have no id.
    assert read("n.csv", b"id,text\n1,a\n2,b\n")[2] == Counter()
    assert read("n.txt", b"a\nb\n")[2] == Counter()


def test_invalid_utf8_inside_json_strings_is_counted() -> None:
    line = shared_data("v1", "tweepy_cassettes_v1.jsonl").read_bytes().split(b"\n")[0]
    obj = json.loads(line)
    obj["text"] = "caf\u00e9 au lait"
    latin = json.dumps(obj).encode().replace(b"\\u00e9", b"\xe9")
    obj["text"] = "cut \ud83d"
    half = json.dumps(obj).encode()
    _, records, notes = read("j.jsonl", line + b"\n" + latin + b"\n" + half + b"\n")
    assert summary(records) == {"tweets": 3}
    assert [t.text for t in records[1:]] == ["caf\ufffd au lait", "cut \ufffd"]
    assert notes == {"invalid_utf8_repaired": 1, "lone_surrogate_repaired": 1}

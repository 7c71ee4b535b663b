"""``tweetmill stats`` / ``sample`` / ``verify`` on shards the real pipeline made from ../shared/data.

Every figure is compared with an independent computation: the whole shard set read into one pyarrow
table and counted with pyarrow compute and plain Python (no code from pipeline/stats.py). The HTML
report is opened in headless Chromium where ``chromium`` is installed.
"""

from __future__ import annotations

import hashlib
import html
import itertools
import json
import math
import random
import re
import shutil
import subprocess
from collections import Counter
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from apache_beam.io.filesystem import FileMetadata
from apache_beam.io.localfilesystem import LocalFileSystem
from conftest import shared_data
from rich.console import Console
from tweetmill.pipeline.build import run
from tweetmill.pipeline.cli import main as cli_main
from tweetmill.pipeline.html_report import render_html
from tweetmill.pipeline.options import RunConfig
from tweetmill.pipeline.report import print_run_report
from tweetmill.pipeline.report_charts import compact
from tweetmill.pipeline.report_plots import funnel_plot, languages_plot
from tweetmill.pipeline.sample import sample
from tweetmill.pipeline.stats import LEGACY_FUNNEL_STAGES, compute_stats, funnel
from tweetmill.pipeline.stats_authors import AuthorCounter
from tweetmill.pipeline.stats_hashtags import HashtagCounter
from tweetmill.pipeline.stats_print import funnel_table
from tweetmill.pipeline.stats_scan import Accumulator, string_layout
from tweetmill.pipeline.verify import verify
from tweetmill.schemas.manifest import MANIFEST_NAME, Counts, Manifest, ShardEntry, StageRecord, TokenizerInfo
from tweetmill.schemas.shard_dir import DROPPED_SAMPLE_NAME, NEAR_DUP_SAMPLE_NAME, TOKENIZER_NAME
from tweetmill.transforms.clean import STAT_NAMES, CleanConfig

# The reference definition of a hashtag, written out here on purpose (not imported).
HASHTAG = re.compile(r"(?<![\w&])#(\w*[^\W\d]\w*)")


# --- fixtures: two real runs ------------------------------------------------------------------------


def _inputs() -> tuple[str, ...]:
    csv, v2 = shared_data("csv"), shared_data("v2")
    return (
        str(csv / "fivethirtyeight_trump-twitter__realDonaldTrump_poll_tweets.csv"),
        str(csv / "legacy-archive-NiciDieNase_tweets.csv"),
        str(v2 / "tweepy_cassettes_v2.jsonl"),
        *(str(v2 / "twarc-csv" / f"{name}.jsonl") for name in ("kpop", "brexit", "withheld")),
        # a dead letter, compliance events, API errors: every part of the funnel
        *(
            str(v2 / "twarc-csv" / f"{name}.jsonl")
            for name in ("streaming_output_with_error", "tweets_compliance")
        ),
    )


@pytest.fixture(scope="module")
def run_a(tmp_path_factory) -> Path:
    """CSV and v2 inputs, 3 shards, default options."""
    out = tmp_path_factory.mktemp("a") / "out"
    run(RunConfig(inputs=_inputs(), output=str(out), num_shards=3))
    return out


@pytest.fixture(scope="module")
def run_b(tmp_path_factory) -> Path:
    """Another run with other options (URLs kept, one shard): another fingerprint."""
    out = tmp_path_factory.mktemp("b") / "out"
    csv, v2 = shared_data("csv"), shared_data("v2")
    inputs = (
        str(csv / "fivethirtyeight_trump-twitter__realDonaldTrump_poll_tweets.csv"),
        str(v2 / "twarc-csv" / "brexit.jsonl"),
    )
    run(RunConfig(inputs=inputs, output=str(out), num_shards=1, clean=CleanConfig(urls="keep")))
    return out


# Text a page must show literally: markup, quotes and ampersands, in a tweet and in a file name.
EVIL_TEXT = "<script>alert('x')</script> & this tweet must show its markup literally"
EVIL_FILE = "a <script>&amp; b.txt"


@pytest.fixture(scope="module")
def run_c(tmp_path_factory) -> Path:
    """Text-only input (no dates, no authors) under a file name with markup, every dropped tweet
    written (``--write-dropped``): a duplicate, a near duplicate, a too short line."""
    folder = tmp_path_factory.mktemp("c")
    words = "the quick brown fox jumps over a lazy dog while seven wizards box in the fog near town"
    rng = random.Random(1)
    lines = [EVIL_TEXT, EVIL_TEXT, EVIL_TEXT.replace("'x'", "'y'") + "!", "ok"]
    lines.append("A quote \" and an apostrophe ' and <b>bold</b> & ampersand &amp; entity")
    for i in range(60):
        lines.append(" ".join(rng.choice(words.split()) for _ in range(rng.randint(6, 18))) + f" number {i}")
    (folder / EVIL_FILE).write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = folder / "out"
    run(RunConfig(inputs=(str(folder / "*.txt"),), output=str(out), write_dropped=True))
    return out


@pytest.fixture(scope="module")
def stats_a(run_a) -> dict:
    return compute_stats(str(run_a), top=10_000)


def _manifest(out: Path) -> Manifest:
    return Manifest.from_json((out / MANIFEST_NAME).read_text(encoding="utf-8"))


def _table(out: Path) -> pa.Table:
    """The whole shard set as one table: fine for a test, what stats must never do."""
    tables = [pa.ipc.open_file(pa.memory_map(str(out / s.file))).read_all() for s in _manifest(out).shards]
    return pa.concat_tables(tables)


def _nearest_rank(sorted_values: np.ndarray, p: int) -> int:
    rank = max(1, math.ceil(p * len(sorted_values) / 100))
    return int(sorted_values[rank - 1])


# --- stats: every figure against an independent computation ----------------------------------------


@pytest.mark.slow
def test_totals_match_pyarrow_and_manifest(run_a, stats_a):
    table, manifest = _table(run_a), _manifest(run_a)
    assert len(manifest.shards) == 3 and stats_a["shards"] == 3
    assert stats_a["rows"] == table.num_rows == manifest.counts.kept
    list_lengths = pc.list_value_length(table.column("tokens"))
    assert stats_a["tokens"] == pc.sum(list_lengths).as_py() == pc.sum(table.column("num_tokens")).as_py()
    assert stats_a["bytes"] == sum((run_a / s.file).stat().st_size for s in manifest.shards)
    assert stats_a["matches_manifest"] is True
    per_shard = {s["file"]: (s["rows"], s["tokens"]) for s in stats_a["per_shard"]}
    assert per_shard == {s.file: (s.rows, s.tokens) for s in manifest.shards}
    json.dumps(stats_a)  # everything is JSON-ready


@pytest.mark.slow
def test_tokens_per_tweet(run_a, stats_a):
    lengths = np.sort(pc.list_value_length(_table(run_a).column("tokens")).to_numpy())
    tpt = stats_a["tokens_per_tweet"]
    assert tpt["mean"] == pytest.approx(lengths.mean(), abs=1e-3)
    assert tpt["std"] == pytest.approx(lengths.std(), abs=1e-3)
    assert (tpt["min"], tpt["max"]) == (lengths[0], lengths[-1])
    for p in (10, 50, 90, 99):
        assert tpt[f"p{p}"] == _nearest_rank(lengths, p)
        assert tpt[f"p{p}"] == int(np.percentile(lengths, p, method="inverted_cdf"))
    assert dict(tpt["histogram"]) == dict(Counter(lengths.tolist()))


def test_languages_formats_files_and_flags(run_a, stats_a):
    table, manifest = _table(run_a), _manifest(run_a)
    assert stats_a["languages"] == dict(Counter(table.column("lang").to_pylist()))
    twitter = Counter("(none)" if v is None else v for v in table.column("twitter_lang").to_pylist())
    assert stats_a["twitter_languages"] == dict(twitter)
    assert list(stats_a["languages"].values()) == sorted(stats_a["languages"].values(), reverse=True)
    assert stats_a["source_formats"] == dict(Counter(table.column("source_format").to_pylist()))
    assert set(stats_a["source_formats"]) == {"csv", "v2"}
    kept = Counter(table.column("source_file").to_pylist())
    by_file = {f["file"]: f for f in stats_a["inputs"]}
    assert set(by_file) == {i["file"] for i in manifest.inputs}
    for item in manifest.inputs:
        row = by_file[item["file"]]
        assert (row["records"], row["tweets"], row["errors"]) == (
            item["records"],
            item["tweets"],
            item["errors"],
        )
        assert row["parse_dropped"] == sum(item["dropped"].values())
        assert row["parse_dropped_by_reason"] == {k: v for k, v in item["dropped"].items() if v}
        assert row["kept"] == kept.get(item["file"], 0)
        assert row["dropped_later"] == item["tweets"] - kept.get(item["file"], 0) >= 0
        assert row["dropped_later_by_reason"] is None  # a sample per reason says nothing per file
    assert any(row["parse_dropped"] for row in by_file.values())  # the v2 files' notices and errors
    accounting = stats_a["inputs_accounting"]
    assert accounting["stages_dropped_later"] == sum(
        n for reason, n in manifest.counts.dropped.items() if reason not in _parse_reasons(manifest)
    )
    assert accounting["dropped_later"] == sum(r["dropped_later"] for r in stats_a["inputs"])
    assert accounting["agree"] is True
    for flag in ("is_reply", "is_quote", "is_retweet", "id_derived"):
        assert stats_a["flags"][flag] == sum(table.column(flag).to_pylist())
    assert stats_a["flags"]["author_known"] == table.num_rows - table.column("author_id").null_count


def _parse_reasons(manifest: Manifest) -> set[str]:
    return {r for s in manifest.pipeline if s.kind == "source" for r in s.dropped}


def _sample_key(tweet_id: int) -> int:
    """The audit's sampling order, written out here (transforms/stage.py ``sample_key``)."""
    digest = hashlib.blake2b(tweet_id.to_bytes(8, "big", signed=True), digest_size=8).digest()
    return int.from_bytes(digest, "big")


def test_tokens_per_language_histograms_and_authors(run_a, stats_a):
    table = _table(run_a)
    by_lang = table.group_by("lang").aggregate([("num_tokens", "sum")]).to_pylist()
    assert stats_a["tokens_per_language"] == dict(
        sorted(((r["lang"], r["num_tokens_sum"]) for r in by_lang), key=lambda kv: (-kv[1], kv[0]))
    )
    assert sum(stats_a["tokens_per_language"].values()) == stats_a["tokens"]
    # lang_score: bin floor(score * 100) of the float32 value, 1.0 in the last bin
    scores = table.column("lang_score").to_numpy().astype(np.float64)
    bins = np.minimum(np.floor(scores * 100).astype(int), 99)
    confidence = stats_a["language_confidence"]
    assert confidence["histogram"] == np.bincount(bins, minlength=100).tolist()
    assert confidence["threshold"] == 0.5
    assert confidence["below_threshold"] == int((scores < 0.5).sum())
    texts = table.column("text").to_pylist()
    chars = stats_a["chars_per_tweet"]
    assert dict(chars["histogram"]) == dict(Counter(len(t) for t in texts))
    lengths = np.sort([len(t) for t in texts])
    assert (chars["min"], chars["max"], chars["p50"]) == (lengths[0], lengths[-1], _nearest_rank(lengths, 50))
    authors = Counter(a for a in table.column("author_id").to_pylist() if a is not None)
    summary = stats_a["authors"]
    known = sum(authors.values())
    assert (summary["known"], summary["unknown"], summary["distinct"]) == (
        known,
        table.num_rows - known,
        len(authors),
    )
    assert known > 0 and summary["approximate"] is False
    ranked = sorted(authors.items(), key=lambda kv: (-kv[1], kv[0]))
    assert summary["top"] == [list(kv) for kv in ranked]
    for k, share in summary["top_share"].items():
        assert int(k) <= len(authors)
        assert share == pytest.approx(sum(n for _, n in ranked[: int(k)]) / known, abs=1e-5)
    assert "1" in summary["top_share"] and "10" in summary["top_share"]


def test_clean_changes_reach_the_manifest(run_a, stats_a):
    """The clean stage's per-step counts are summed into the manifest's ``stages["clean"]``."""
    doc = json.loads((run_a / MANIFEST_NAME).read_text())
    counts = doc["stages"]["clean"]
    assert list(counts) == list(STAT_NAMES)
    assert counts["texts"] == sum(item["tweets"] for item in doc["inputs"])  # every parsed tweet
    assert 0 < counts["changed"] <= counts["texts"] and counts["mentions"] > 0 and counts["urls"] > 0
    clean = stats_a["clean"]
    assert (clean["texts"], clean["changed"]) == (counts["texts"], counts["changed"])
    steps = {s["step"]: s for s in clean["steps"]}
    assert {name: s["texts"] for name, s in steps.items()} == {n: counts[n] for n in steps}
    assert steps["urls"]["what"] == "URLs replaced by <URL>" and "ftfy_run" not in steps
    assert compute_stats(str(run_a), top=10)["clean"] == clean


def test_examples_of_what_each_reason_removed(run_a, stats_a):
    """Per drop reason, in funnel order, the 3 dropped tweets with the smallest sample key of the
    run's sample; the first near-duplicate pairs of its sample."""
    manifest = _manifest(run_a)
    sample = [json.loads(line) for line in (run_a / DROPPED_SAMPLE_NAME).read_text().splitlines()]
    removed = stats_a["removed"]
    assert removed["source"] == DROPPED_SAMPLE_NAME
    steps = [(s["stage"], s["reason"], s["count"]) for s in stats_a["funnel"]["steps"]]
    listed = [(r["stage"], r["reason"], r["count"]) for r in removed["reasons"]]
    assert listed == [s for s in steps if s[1] != "errors (dead letters)"]
    parse = _parse_reasons(manifest)
    for entry in removed["reasons"]:
        mine = [r for r in sample if (r["stage"], r["reason"]) == (entry["stage"], entry["reason"])]
        expected = sorted(mine, key=lambda r: _sample_key(r["id"]))[:3]
        assert [x["id"] for x in entry["examples"]] == [r["id"] for r in expected]
        assert [x["text"] for x in entry["examples"]] == [
            r["text"] if len(r["text"]) <= 400 else r["text"][:399] + "…" for r in expected
        ]
        assert entry["tweets"] is (entry["reason"] not in parse)
        assert len(entry["examples"]) == min(3, len(mine), entry["count"])
    with_examples = {r["reason"] for r in removed["reasons"] if r["examples"]}
    assert {"retweet", "too_short", "near_duplicate"} <= with_examples
    near = [json.loads(line) for line in (run_a / NEAR_DUP_SAMPLE_NAME).read_text().splitlines()]
    shown = removed["near_duplicates"]
    assert shown["sampled"] == len(near) == min(100, sum(n for _, r, n in steps if r == "near_duplicate")) > 0
    assert [(p["removed_id"], p["kept_id"]) for p in shown["shown"]] == [
        (p["removed_id"], p["kept_id"]) for p in near[:8]
    ]


def test_time_coverage(run_a, stats_a):
    created = _table(run_a).column("created_at").to_pylist()
    dated = [c for c in created if c is not None]
    assert stats_a["tweets_per_month"] == dict(sorted(Counter(c.strftime("%Y-%m") for c in dated).items()))
    assert stats_a["time"]["undated"] == len(created) - len(dated)
    assert stats_a["time"]["first"] == min(dated).isoformat().replace("+00:00", "Z")
    assert stats_a["time"]["last"] == max(dated).isoformat().replace("+00:00", "Z")


def test_funnel_and_dedup_from_the_manifest(run_a, stats_a):
    doc = json.loads((run_a / MANIFEST_NAME).read_text())
    counts = doc["counts"]
    funnel = stats_a["funnel"]
    assert funnel["read"] == counts["read"] and funnel["kept"] == counts["kept"]
    steps = {s["reason"]: s["count"] for s in funnel["steps"]}
    assert {k: v for k, v in steps.items() if k in counts["dropped"]} == counts["dropped"]
    assert steps["errors (dead letters)"] == counts["errors"] > 0
    assert funnel["steps"][-1]["remaining"] == counts["kept"]
    remaining = counts["read"]
    for step in funnel["steps"]:
        remaining -= step["count"]
        assert step["remaining"] == remaining
    stages = [s["stage"] for s in funnel["steps"]]
    manifest = _manifest(run_a)
    order = [s.name for s in manifest.pipeline] or [name for name, _ in LEGACY_FUNNEL_STAGES]
    assert stages == sorted(stages, key=order.index)
    assert funnel["balanced"] is True
    assert stats_a["dedup"]["exact_duplicate"] == counts["dropped"].get("exact_duplicate", 0)
    assert stats_a["dedup"]["duplicate_id"] == counts["dropped"].get("duplicate_id", 0)
    assert stats_a["dedup"]["near_dedup"] == doc["stages"].get("near_dedup")


@pytest.mark.slow
def test_near_dedup_clusters_shown_when_the_manifest_has_them(run_a, tmp_path, capsys):
    out = tmp_path / "out"
    shutil.copytree(run_a, out)
    doc = json.loads((out / MANIFEST_NAME).read_text())
    doc["stages"]["near_dedup"] = {
        "duplicates_removed": 7,
        "clusters": 3,
        "largest_cluster": 4,
        "threshold": 0.8,
    }
    (out / MANIFEST_NAME).write_text(json.dumps(doc))
    stats = compute_stats(str(out))
    assert stats["dedup"]["near_dedup"]["largest_cluster"] == 4
    assert cli_main(["stats", str(out)]) == 0
    assert "near-duplicate clusters: 3, the largest 4 tweets" in capsys.readouterr().out
    assert "Near-duplicate clusters: 3, the largest 4 tweets" in render_html(stats)


def _funnel_manifest(
    read: int, dropped: dict[str, int], errors: int, pipeline: list[StageRecord]
) -> Manifest:
    """A manifest with just what the funnel reads (no run behind it)."""
    kept = read - errors - sum(dropped.values())
    return Manifest(
        run_fingerprint="f" * 32,
        shard_format_version=1,
        tokenizer=TokenizerInfo("0" * 64, 100, 99, "<eos>", "bundled:tweet-bpe"),
        counts=Counts(read=read, kept=kept, dropped=dropped, errors=errors),
        shards=[ShardEntry("shard-00000-of-00001.arrow", kept, 10 * kept, 1000, "0" * 64)],
        pipeline=pipeline,
    )


def _steps(funnel_stats: dict) -> list[tuple[str, str, int, int]]:
    return [(s["stage"], s["reason"], s["count"], s["remaining"]) for s in funnel_stats["steps"]]


def test_funnel_follows_the_stages_the_manifest_lists(capsys):
    """Format 2: the stages in the manifest's order, under their own names (a user's filter too);
    only drops of one or more; a reason no stage declares last, as "other"."""
    pipeline = [
        StageRecord("read", "source", {"delete_notice": 3, "no_text": 0}),
        StageRecord("clean", "map", {}),
        StageRecord("no_crypto", "user", {"crypto": 4}, "drops tweets about crypto"),
        StageRecord("exact_dedup", "shuffle", {"duplicate_id": 0, "exact_duplicate": 5}),
        StageRecord("language", "filter", {"language": 6}),
    ]
    dropped = {"delete_notice": 3, "crypto": 4, "exact_duplicate": 5, "language": 6}
    manifest = Manifest.from_json(_funnel_manifest(100, dropped, 2, pipeline).to_json())  # via JSON
    assert manifest.pipeline == pipeline
    result = funnel(manifest)
    assert _steps(result) == [
        ("read", "errors (dead letters)", 2, 98),
        ("read", "delete_notice", 3, 95),
        ("no_crypto", "crypto", 4, 91),
        ("exact_dedup", "exact_duplicate", 5, 86),
        ("language", "language", 6, 80),
    ]
    assert result["stages"] == "manifest" and result["balanced"] is True
    assert (result["read"], result["kept"], result["dropped"], result["errors"]) == (100, 80, 18, 2)

    manifest.counts.dropped["mystery"] = 1  # counted, but no stage declares it
    manifest.counts.kept -= 1
    manifest.shards[0].rows -= 1
    result = funnel(manifest)
    assert _steps(result)[-1] == ("other", "mystery", 1, 79) and result["balanced"] is True

    # The run's closing report, the terminal table and the HTML page show the same funnel.
    console = Console(width=200, record=True)
    print_run_report(console, manifest, "out", 1.0)
    console.print(funnel_table(result))
    text = console.export_text()
    assert "Accounting" in text and "no_crypto" in text and "− crypto" in text and "balanced" in text
    assert text.index("no_crypto") < text.index("exact_dedup") < text.index("other")
    assert "no_crypto: crypto" in funnel_plot(result)


def test_funnel_of_a_version_1_manifest_uses_the_legacy_stages():
    dropped = {"retweet": 5, "delete_notice": 1, "language": 2, "near_duplicate": 3, "mystery": 1}
    doc = json.loads(_funnel_manifest(50, dropped, 1, []).to_json())
    doc["format_version"] = 1
    del doc["pipeline"]
    manifest = Manifest.from_json(json.dumps(doc))
    assert manifest.pipeline == []
    result = funnel(manifest)
    assert _steps(result) == [
        ("parse", "errors (dead letters)", 1, 49),
        ("parse", "delete_notice", 1, 48),
        ("filter", "retweet", 5, 43),
        ("near dedup", "near_duplicate", 3, 40),
        ("language", "language", 2, 38),
        ("other", "mystery", 1, 37),
    ]
    assert result["stages"] == "legacy" and result["balanced"] is True and result["kept"] == 37


@pytest.mark.slow
def test_hashtags_and_domains(run_a, run_b, stats_a):
    reference = Counter()
    for text in _table(run_a).column("text").to_pylist():
        reference.update("#" + tag.lower() for tag in HASHTAG.findall(text))
    tags = stats_a["hashtags"]
    assert dict(tags["top"]) == dict(reference) and tags["distinct"] == len(reference) > 20
    assert tags["total"] == sum(reference.values()) and tags["approximate"] is False
    assert [n for _, n in tags["top"]] == sorted(reference.values(), reverse=True)
    assert stats_a["domains"]["available"] is False and "--urls keep" in stats_a["domains"]["why"]
    stats_b = compute_stats(str(run_b))
    domains = Counter()
    for text in _table(run_b).column("text").to_pylist():
        domains.update(
            h.lower().removeprefix("www.") for h in re.findall(r"https?://([^/\s?#:]+)", text, re.I)
        )
    assert stats_b["domains"]["available"] is True
    assert stats_b["domains"]["total"] == sum(domains.values()) > 0
    assert dict(stats_b["domains"]["top"]) == dict(domains.most_common(len(stats_b["domains"]["top"])))


def test_vocabulary_coverage_and_top_tokens(run_a, stats_a):
    from tokenizers import Tokenizer

    flat = pc.list_flatten(_table(run_a).column("tokens"))
    counts = {v["values"]: v["counts"] for v in pc.value_counts(flat).to_pylist()}
    vocab, manifest = stats_a["vocabulary"], _manifest(run_a)
    assert vocab["size"] == manifest.tokenizer.vocab_size
    assert vocab["used"] == len(counts) and vocab["share_used"] == pytest.approx(
        len(counts) / vocab["size"], abs=1e-5
    )
    assert vocab["eos_count"] == counts[manifest.tokenizer.eos_id] == manifest.counts.kept
    ordered = sorted(counts.values(), reverse=True)
    total = sum(ordered)
    assert vocab["tokens_for_90pct"] == next(
        k for k in range(1, len(ordered) + 1) if sum(ordered[:k]) >= 0.9 * total
    )
    tokenizer = Tokenizer.from_file(str(run_a / TOKENIZER_NAME))
    for entry in vocab["top_tokens"][:50]:
        assert entry["count"] == counts[entry["id"]]
        assert entry["text"] == tokenizer.decode([entry["id"]], skip_special_tokens=False)
    assert [t["count"] for t in vocab["top_tokens"]] == ordered[: len(vocab["top_tokens"])]
    assert vocab["placeholders"]["@user"] == counts.get(tokenizer.token_to_id("@user"), 0) > 0
    assert vocab["coverage"][-1] == [len(counts), 1.0]


def test_workers_do_not_change_the_figures(run_a, stats_a):
    for workers in (1, 3):
        assert compute_stats(str(run_a), top=10_000, workers=workers) == stats_a


def test_sliced_strings_are_read_through_their_offsets():
    texts = pa.array(["#skip me", "x #a", None, "#Brexit! é#no ☃#Snow #1 C#x &#38;", "#skip"]).slice(1, 3)
    offsets, data = string_layout(texts)
    assert [data[a:b].tobytes().decode() for a, b in itertools.pairwise(offsets)] == texts.fill_null(
        ""
    ).to_pylist()
    counter = HashtagCounter()
    counter.add(offsets, data)
    assert counter.counts() == Counter({"#a": 1, "#brexit": 1, "#snow": 1})


def test_hashtag_scan_edge_cases():
    texts = [
        "#" + "x" * 70 + " #" + "y" * 20 + "é" * 30 + "!",  # longer than both windows
        "end of one text #tag",  # a tag ending its text, the next text starts with letters
        "Tagged#not ##double #tag#tag2 (#paren) #1234 #_ #İstanbul #日本語…",
        "#",
    ]
    array = pa.array(texts)
    counter = HashtagCounter()
    counter.add(*string_layout(array))
    reference = Counter("#" + t.lower() for text in texts for t in HASHTAG.findall(text))
    assert counter.counts() == reference


def test_author_counter_prunes_to_the_most_prolific():
    """Past 2 * cap distinct authors only the cap most prolific stay: their counts are exact here
    (never pruned), the result is flagged approximate and the distinct count is a lower bound."""
    counter = AuthorCounter(cap=3)
    heavy = [7] * 50 + [8] * 40 + [9] * 30
    counter.add(pa.array(heavy + list(range(100, 120)) + [None, None], pa.int64()))
    counter.merge()
    assert counter.pruned is True and counter.distinct_seen == 23
    assert counter.top(3) == [(7, 50), (8, 40), (9, 30)]
    other = AuthorCounter(cap=3)
    other.add(pa.array([9] * 25 + [5] * 2, pa.int64()))
    counter.merge(other)
    assert counter.top(2) == [(9, 55), (7, 50)]
    small = AuthorCounter()
    small.add(pa.array([3, 1, 3, None], pa.int64()))
    assert small.top(5) == [(3, 2), (1, 1)] and small.pruned is False
    assert AuthorCounter().top(3) == []


def test_every_bar_is_labelled_and_axes_stay_short():
    """A 1 % drop and a language of one tweet get their count written beside the bar; count axes
    use short ticks (10k), never 10,000 beside 20,000."""
    assert [compact(n) for n in (0, 950, 1000, 12_345, 999_999, 1_234_567, 45_000)] == [
        "0", "950", "1k", "12.3k", "1M", "1.23M", "45k",
    ]  # fmt: skip
    pipeline = [StageRecord("read", "source", {}), StageRecord("filter", "filter", {"short": 450})]
    manifest = _funnel_manifest(45_000, {"short": 450}, 0, pipeline)
    svg = html.unescape(funnel_plot(funnel(manifest)))
    assert "−450 (1.0 %)" in svg and "44,550 (99.0 %)" in svg
    ticks = re.findall(r'id="xtick_\d+">.*?<text[^>]*>([^<]*)</text>', svg, re.DOTALL)
    assert ticks == ["0", "15k", "30k", "45k"], ticks
    detected = {"en": 40_000, "de": 4_000, "fr": 900, "is": 1}
    svg = html.unescape(languages_plot(detected, {"(none)": 44_901}, 44_901))
    for n in ("40,000", "4,000", "900", "1 (<0.1 %)"):
        assert n in svg, n
    assert "no tweet has a Twitter tag" in svg


# --- the command line -------------------------------------------------------------------------------


def test_cli_table_json_and_html(run_a, stats_a, tmp_path, capsys):
    assert cli_main(["stats", str(run_a), "--top", "10000", "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == json.loads(json.dumps(stats_a))
    report = tmp_path / "report.html"
    assert cli_main(["stats", str(run_a), "--html", str(report)]) == 0
    out = capsys.readouterr().out
    for text in (
        "tweets",
        f"{stats_a['rows']:,}",
        f"{stats_a['tokens']:,}",
        "balanced",
        "Funnel",
        "Top tokens",
    ):
        assert text in out
    page = report.read_text(encoding="utf-8")
    assert page.count("<svg") >= 9
    assert _fetches(page) == []


class _Page(HTMLParser):
    """Every tag with its attributes, the text shown, and the CSS of a page."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.tags: list[tuple[str, dict[str, str | None]]] = []
        self.text: list[str] = []
        self.css: list[str] = []
        self._in: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in.append(tag)
        self.css += [v or "" for k, v in attrs if k == "style"]

    def handle_endtag(self, tag):
        if self._in and self._in[-1] == tag:
            self._in.pop()

    def handle_data(self, data):
        (self.css if self._in and self._in[-1] == "style" else self.text).append(data)


def _fetches(page: str) -> list[str]:
    """What the page would load from elsewhere: scripts, frames, images, style sheets, fonts, and
    every URL attribute or CSS ``url()`` that is not a reference inside the page (``#id``)."""
    parsed = _Page()
    parsed.feed(page)
    found = [f"<{t}>" for t, _ in parsed.tags if t in {"script", "link", "img", "iframe", "object", "embed"}]
    for tag, attrs in parsed.tags:
        for name, value in attrs.items():
            if name in {"src", "href", "xlink:href", "srcset", "action", "data", "poster"} and not (
                value or ""
            ).startswith("#"):
                found.append(f"<{tag} {name}={value!r}>")
            if name.startswith("on"):
                found.append(f"<{tag} {name}>")  # an event handler: script
    css = " ".join(parsed.css)
    found += re.findall(r"@import|@font-face|url\((?!\s*['\"]?#)[^)]*\)", css)
    found += re.findall(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page)
    return found


def test_page_is_self_contained_and_shows_input_text_literally(run_c):
    """Nothing is fetched from elsewhere, and markup in a tweet or a file name is shown as text:
    the page holds no script, its text reads exactly what the tweet says."""
    bad = (
        '<html><head><link rel="stylesheet" href="https://x.test/a.css"><style>@import "b.css";'
        ' p { background: url(http://x.test/i.png) }</style></head><body><img src="//x.test/i.png">'
        '<svg><use xlink:href="#here"/><image href="https://x.test/p.png"/></svg><script>1</script>'
        '<p onclick="f()">x</p></body></html>'
    )
    assert len(_fetches(bad)) >= 8  # the check itself finds what it looks for
    stats = compute_stats(str(run_c))
    page = render_html(stats)
    assert _fetches(page) == []
    assert "<script" not in page.lower()
    assert html.escape(EVIL_TEXT, quote=True) in page  # &lt;script&gt;alert(&#x27;x&#x27;)...&amp; this
    parsed = _Page()
    parsed.feed(page)
    shown = "".join(parsed.text)
    assert EVIL_TEXT in shown and EVIL_FILE in shown
    assert [t for t, _ in parsed.tags].count("svg") >= 7
    # the sections of a text-only run: no empty time or author chart, a note instead
    assert "Not in these inputs" in shown and "created_at" in shown and "author_id" in shown
    assert 'aria-label="tweets-per-month"' not in page and 'aria-label="authors"' not in page
    for section in ("What each drop reason removed", "Near-duplicate pairs", "Clean stage", "Input files"):
        assert section in shown, section
    # --write-dropped: per file, the later drops by stage and reason, from every dropped tweet
    dropped = Counter()
    for path in (run_c / "dropped").glob("*.jsonl"):
        for line in path.read_text(encoding="utf-8").splitlines():
            r = json.loads(line)
            dropped[f"{r['stage']}: {r['reason']}"] += 1
    (row,) = stats["inputs"]
    assert row["file"].endswith(EVIL_FILE) and row["dropped_later_by_reason"] == dict(dropped)
    assert dict(dropped) == {
        "exact_dedup: exact_duplicate": 1,
        "near_dedup: near_duplicate": 1,
        "length: too_short": 1,
    }
    assert row["dropped_later"] == sum(dropped.values()) and stats["inputs_accounting"]["agree"] is True
    assert stats["removed"]["source"] == "dropped/"
    examples = {(r["stage"], r["reason"]): r["examples"] for r in stats["removed"]["reasons"]}
    assert [x["text"] for x in examples[("exact_dedup", "exact_duplicate")]] == [EVIL_TEXT]
    assert stats["authors"]["known"] == 0 and stats["authors"]["top_share"] == {}
    assert stats["tweets_per_month"] == {}


@pytest.mark.skipif(
    shutil.which("chromium") is None, reason="chromium is not installed (apt-get install chromium)"
)
@pytest.mark.slow
def test_html_report_renders_in_headless_chromium(run_a, stats_a, tmp_path):
    from PIL import Image

    page = tmp_path / "report.html"
    page.write_text(render_html(stats_a), encoding="utf-8")
    shot = tmp_path / "shot.png"
    common = [
        "chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
    ]  # fmt: skip
    height = 9000  # the whole page, every section
    result = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", "--hide-scrollbars", f"--screenshot={shot}",
         f"--window-size=1280,{height}", page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    image = Image.open(shot)
    assert image.size == (1280, height)
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    assert gray.std() > 20, "the screenshot is blank"
    # every 1000 px band down to the page's end has drawn content (the panels, not background)
    bands = [gray[i : i + 1000] for i in range(0, height, 1000)]
    drawn = [(band < 128).mean() for band in bands]
    assert drawn[0] > 0.01, "hardly any dark pixels: nothing rendered"
    last = max(i for i, d in enumerate(drawn) if d > 0.002)
    assert last >= 4 and all(d > 0.002 for d in drawn[: last + 1]), drawn
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0
    assert dom.stdout.count("<svg") >= 10 and f"{stats_a['rows']:,}" in dom.stdout
    for section in (
        "Funnel", "Tokens per tweet", "What each drop reason removed", "Near-duplicate pairs",
        "Clean stage: what it changed", "Language confidence", "Tokens per language",
        "Characters per tweet", "Share of the most prolific authors", "Tweets per", "Input files",
    ):  # fmt: skip
        assert section in dom.stdout, section


# --- sample -----------------------------------------------------------------------------------------


def test_sample_is_deterministic_filtered_and_round_trips(run_a):
    table = _table(run_a)
    texts = dict(zip(table.column("id").to_pylist(), table.column("text").to_pylist(), strict=True))
    first = sample(str(run_a), 6, seed=7)
    assert first == sample(str(run_a), 6, seed=7)
    assert [s["id"] for s in first] != [s["id"] for s in sample(str(run_a), 6, seed=8)]
    assert len(first) == 6
    for s in first:
        assert s["text"] == texts[s["id"]]
        assert s["num_tokens"] == len(s["token_ids"]) == len(s["pieces"])
        assert s["round_trip"] is True and s["decoded"] == s["text"] and s["ends_with_eos"]
    german = sample(str(run_a), 5, seed=1, lang="de")
    assert len(german) == 5 and {s["lang"] for s in german} == {"de"}
    n_de = pc.sum(pc.equal(table.column("lang"), "de")).as_py()
    assert len(sample(str(run_a), n_de + 10, seed=1, lang="de")) == n_de
    assert sample(str(run_a), 3, lang="xx") == []


def test_sample_cli(run_a, capsys):
    assert cli_main(["sample", str(run_a), "-n", "2", "--seed", "3", "--lang", "en"]) == 0
    out = capsys.readouterr().out
    assert "tokens" in out and "decodes back to the text exactly" in out
    assert cli_main(["sample", str(run_a), "-n", "2", "--seed", "3", "--json"]) == 0
    assert [s["id"] for s in json.loads(capsys.readouterr().out)] == [
        s["id"] for s in sample(str(run_a), 2, seed=3)
    ]


# --- verify -----------------------------------------------------------------------------------------


@pytest.fixture
def copy_a(run_a, tmp_path) -> Path:
    out = tmp_path / "copy"
    shutil.copytree(run_a, out)
    return out


def _problems(report) -> str:
    return "\n".join(report.problems + [f"{s.file}: {p}" for s in report.shards for p in s.problems])


def test_verify_passes_a_clean_run(run_a, capsys):
    report = verify(str(run_a))
    assert report.ok, _problems(report)
    assert [(s.file, s.rows, s.tokens, s.sha256_ok) for s in report.shards] == [
        (s.file, s.rows, s.tokens, True) for s in _manifest(run_a).shards
    ]
    assert cli_main(["verify", str(run_a)]) == 0
    assert "OK: 3 shard(s) match the manifest" in capsys.readouterr().out


def test_verify_catches_a_flipped_byte(copy_a, capsys):
    name = _manifest(copy_a).shards[1].file
    shard = copy_a / name
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    report = verify(str(copy_a))
    assert not report.ok
    bad = [s for s in report.shards if not s.ok]
    assert [s.file for s in bad] == [name] and bad[0].sha256_ok is False
    assert any("sha256" in p for p in bad[0].problems)
    assert cli_main(["verify", str(copy_a)]) == 1
    out = capsys.readouterr().out
    assert "FAIL" in out and "sha256" in out and "FAILED" in out


def test_verify_catches_a_missing_shard(copy_a, capsys):
    missing = _manifest(copy_a).shards[2].file
    (copy_a / missing).unlink()
    report = verify(str(copy_a))
    assert not report.ok
    assert [(s.file, s.problems[0].split(":")[0]) for s in report.shards if not s.ok] == [
        (missing, "missing")
    ]
    assert cli_main(["verify", str(copy_a)]) == 1
    assert "missing" in capsys.readouterr().out


@pytest.mark.slow
def test_verify_catches_a_shard_from_another_run(copy_a, run_b):
    other = _manifest(run_b).shards[0].file  # data/shard-00000-of-00001.arrow
    # 1. an extra file of another run beside the shards
    shutil.copy(run_b / other, copy_a / other)
    report = verify(str(copy_a))
    assert not report.ok and all(s.ok for s in report.shards)
    assert any(other in p and "not in the manifest" in p for p in report.problems)
    (copy_a / other).unlink()
    # 2. another run's shard in place of one of ours
    replaced = _manifest(copy_a).shards[0].file
    shutil.copy(run_b / other, copy_a / replaced)
    report = verify(str(copy_a))
    bad = {s.file: " | ".join(s.problems) for s in report.shards if not s.ok}
    assert list(bad) == [replaced]
    for needle in ("sha256", "run fingerprint", "another run", "shard count", "rows, the manifest says"):
        assert needle in bad[replaced]


def test_verify_catches_a_wrong_tokenizer_and_manifest_totals(copy_a):
    (copy_a / TOKENIZER_NAME).write_text((copy_a / TOKENIZER_NAME).read_text().replace("<URL>", "<url>", 1))
    doc = json.loads((copy_a / MANIFEST_NAME).read_text())
    doc["totals"]["tokens"] += 1
    (copy_a / MANIFEST_NAME).write_text(json.dumps(doc))
    problems = "\n".join(verify(str(copy_a)).problems)
    assert "tokenizer.json is not the run's tokenizer" in problems and "totals.tokens" in problems


# --- Beam filesystem paths --------------------------------------------------------------------------


class _PrefixedLocalFileSystem(LocalFileSystem):
    """A Beam filesystem with its own scheme over local files: stands in for gs:// in tests."""

    PREFIX = "tmtest://"

    @classmethod
    def scheme(cls) -> str:
        return "tmtest"

    def _local(self, path: str) -> str:
        return path[len(self.PREFIX) :] if path.startswith(self.PREFIX) else path

    def _list(self, dir_or_prefix):
        for meta in super()._list(self._local(dir_or_prefix)):
            yield FileMetadata(self.PREFIX + meta.path, meta.size_in_bytes, meta.last_updated_in_seconds)

    def _path_open(self, path, mode, *args, **kwargs):
        return super()._path_open(self._local(path), mode, *args, **kwargs)

    def create(self, path, *args, **kwargs):
        return super().create(self._local(path), *args, **kwargs)

    def exists(self, path: str) -> bool:
        return super().exists(self._local(path))

    def size(self, path: str) -> int:
        return super().size(self._local(path))

    def metadata(self, path: str) -> FileMetadata:
        meta = super().metadata(self._local(path))
        return FileMetadata(self.PREFIX + meta.path, meta.size_in_bytes, meta.last_updated_in_seconds)


@pytest.mark.slow
def test_beam_filesystem_paths(run_a, stats_a, copy_a, tmp_path):
    remote = _PrefixedLocalFileSystem.PREFIX + str(run_a)
    stats = compute_stats(remote, top=10_000)
    assert stats["tokenizer"].pop("decoded_with") == remote + "/" + TOKENIZER_NAME
    assert stats.pop("shard_dir") == remote
    assert stats == {k: v for k, v in stats_a.items() if k != "shard_dir"} | {
        "tokenizer": {k: v for k, v in stats_a["tokenizer"].items() if k != "decoded_with"}
    }
    assert verify(remote).ok
    (copy_a / _manifest(copy_a).shards[0].file).unlink()
    assert not verify(_PrefixedLocalFileSystem.PREFIX + str(copy_a)).ok
    assert sample(remote, 3, seed=5) == sample(str(run_a), 3, seed=5)
    page = _PrefixedLocalFileSystem.PREFIX + str(tmp_path / "report.html")
    assert cli_main(["stats", remote, "--html", page, "--json"]) == 0
    assert (tmp_path / "report.html").read_text(encoding="utf-8").startswith("<!DOCTYPE html>")


def test_stats_memory_does_not_hold_the_rows(run_a):
    """The accumulators' size is independent of the rows: no per-row Python objects survive."""
    acc = Accumulator(16384)
    table = _table(run_a)
    for batch in table.to_batches(max_chunksize=512):
        acc.add(batch)
    sizes = (
        len(acc.lengths),
        len(acc.token_counts),
        sum(len(c) for c in acc.values.values()) + len(acc.lang_tokens),
        len(acc.months),
        len(acc.chars) + len(acc.lang_scores),
    )
    assert acc.rows == table.num_rows
    assert sizes[0] <= 1024 and sizes[1] == 16384 and sizes[2] < 250 and sizes[3] < 400 and sizes[4] <= 2048
    acc.authors.merge()
    assert len(acc.authors.ids) == len(set(table.column("author_id").drop_null().to_pylist()))


# --- documents (--documents threads|conversations) ----------------------------------------------------


def test_documents_figures_count_tweets_and_depth_per_row() -> None:
    from tweetmill.pipeline.stats import documents_summary
    from tweetmill.pipeline.stats_print import _document_rows
    from tweetmill.pipeline.stats_scan import Accumulator
    from tweetmill.schemas.records import Tweet
    from tweetmill.schemas.shard import SHARD_FIELDS_V1, shard_schema
    from tweetmill.transforms.write import tweets_to_table

    def row(i: int, ids: tuple[int, ...] = (), context: int | None = None) -> Tweet:
        tokens = np.arange(3 * max(1, len(ids)) + 1, dtype="<i4").tobytes()
        return Tweet(id=i, text="x", source_format="v1", source_file="f", position=0, tweet_ids=ids,
                     context_id=context, token_bytes=tokens)

    rows = [row(1), row(2, (2, 3, 4)), row(5, (5,), context=1), row(6, (6, 7))]
    schema = shard_schema(tokenizer_sha256="0" * 64, vocab_size=100, eos_id=0, run_fingerprint="f",
                          shard_index=0, num_shards=1)
    table = tweets_to_table(rows, schema)
    acc = Accumulator(100, hashtags=False)
    for batch in table.to_batches():
        acc.add(batch)
    docs = documents_summary(acc)
    assert (docs["documents"], docs["tweets"], docs["multi_tweet_documents"]) == (4, 7, 3)
    assert docs["tweets_per_document"]["max"] == 3 and docs["depth"]["histogram"] == [[1, 1], [2, 2], [3, 1]]
    assert docs["tokens_per_multi_tweet_document"] == (10 + 4 + 7) / 3
    assert _document_rows(docs)[0][0] == "documents of several tweets"

    old = Accumulator(100, hashtags=False)  # shard format 1: no tweet_ids, every row one tweet
    for batch in table.select([f.name for f in SHARD_FIELDS_V1]).to_batches():
        old.add(batch)
    assert documents_summary(old)["tweets"] == 4 and _document_rows(documents_summary(old)) == []

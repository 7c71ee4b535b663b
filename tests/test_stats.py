"""``tweetmill stats`` / ``sample`` / ``verify`` on shards the real pipeline made from ../shared/data.

Every figure is compared with an independent computation: the whole shard set read into one pyarrow
table and counted with pyarrow compute and plain Python (no code from pipeline/stats.py). The HTML
report is opened in headless Chromium where ``chromium`` is installed.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import shutil
import subprocess
from collections import Counter
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
from tweetmill.pipeline.html_report import funnel_plot, render_html
from tweetmill.pipeline.options import RunConfig
from tweetmill.pipeline.report import print_run_report
from tweetmill.pipeline.sample import sample
from tweetmill.pipeline.stats import LEGACY_FUNNEL_STAGES, compute_stats, funnel
from tweetmill.pipeline.stats_print import funnel_table
from tweetmill.pipeline.stats_scan import Accumulator, HashtagCounter, string_layout
from tweetmill.pipeline.verify import verify
from tweetmill.schemas.manifest import MANIFEST_NAME, Counts, Manifest, ShardEntry, StageRecord, TokenizerInfo
from tweetmill.schemas.shard_dir import TOKENIZER_NAME
from tweetmill.transforms.clean import CleanConfig

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
        assert row["dropped"] == sum(item["dropped"].values())
        assert row["kept"] == kept.get(item["file"], 0)
    for flag in ("is_reply", "is_quote", "is_retweet", "id_derived"):
        assert stats_a["flags"][flag] == sum(table.column(flag).to_pylist())
    assert stats_a["flags"]["author_known"] == table.num_rows - table.column("author_id").null_count


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
    assert page.count("<svg") >= 5
    assert not re.search(r"<script|<link|<img|@import|url\((?!#)|src=|href=\"?https?:", page), (
        "the page fetches nothing"
    )


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
    result = subprocess.run(
        [*common, "--enable-logging=stderr", "--v=0", f"--screenshot={shot}", "--window-size=1280,2000",
         page.as_uri()],
        capture_output=True, text=True, timeout=90,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    console = [line for line in result.stderr.splitlines() if "CONSOLE" in line or "Uncaught" in line]
    assert not console, console
    image = Image.open(shot)
    assert image.size == (1280, 2000)
    gray = np.asarray(image.convert("L"), dtype=np.float64)
    assert gray.std() > 20, "the screenshot is blank"
    assert (gray < 128).mean() > 0.01, "hardly any dark pixels: nothing rendered"
    dom = subprocess.run([*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0
    assert dom.stdout.count("<svg") >= 5 and f"{stats_a['rows']:,}" in dom.stdout


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
    shard = copy_a / _manifest(copy_a).shards[1].file
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    report = verify(str(copy_a))
    assert not report.ok
    bad = [s for s in report.shards if not s.ok]
    assert [s.file for s in bad] == [shard.name] and bad[0].sha256_ok is False
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
    other = _manifest(run_b).shards[0].file  # shard-00000-of-00001.arrow
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
        sum(len(c) for c in acc.values.values()),
        len(acc.months),
    )
    assert acc.rows == table.num_rows
    assert sizes[0] <= 1024 and sizes[1] == 16384 and sizes[2] < 200 and sizes[3] < 400

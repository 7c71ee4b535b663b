"""The stage contract: checks every stage gets, options derived from configs, filters users write in
their own modules (the worked example of docs/stages.md, run through the whole pipeline), and the audit
of dropped tweets (sample by default, every one with --write-dropped)."""

from __future__ import annotations

import gc
import json
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tweetmill.pipeline.cli import build_parser, main
from tweetmill.pipeline.errors import EXIT_USAGE
from tweetmill.pipeline.options import config_from_args
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest
from tweetmill.schemas.records import Tweet
from tweetmill.transforms.common import COLLECTOR_THRESHOLDS, relax_collector
from tweetmill.transforms.stage import StageContractError, TweetFilter, run_stage

ROOT = Path(__file__).resolve().parents[1]
CRYPTO = [
    "Buy bitcoin now, the best crypto of the year and more btc for you",
    "Bitcoin and eth will moon tonight, get your crypto bag ready folks",
    "Nothing about money here, just a lovely walk along the river today",
    "The bitcoin price is up again today according to the news at noon",
    "Another calm morning with coffee and a good book on the balcony",
]


def tweet(i: int, text: str) -> Tweet:
    return Tweet(id=i, text=text, source_format="text", source_file="t.txt", position=i)


def docs_example(tmp_path: Path, monkeypatch) -> Path:
    """The filter module of docs/stages.md, written where a user would have it (outside the package)."""
    doc = (ROOT / "docs" / "stages.md").read_text()
    code = re.search(r"```python\n(.*?)```", doc, re.DOTALL).group(1)
    module_dir = tmp_path / "user_code"
    module_dir.mkdir()
    (module_dir / "my_filters.py").write_text(code)
    monkeypatch.syspath_prepend(str(module_dir))
    sys.modules.pop("my_filters", None)
    return module_dir / "my_filters.py"


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


# --- the contract --------------------------------------------------------------------------------


class _Lossy(TweetFilter):
    name = "lossy"
    reasons = ("bad",)

    def process_batch(self, tweets):
        return tweets[1:], []


class _Undeclared(TweetFilter):
    name = "undeclared"
    reasons = ("bad",)

    def reject(self, tweet):
        return "other"


def test_a_stage_that_loses_tweets_or_invents_a_reason_fails_at_once():
    batch = [tweet(1, "one tweet here"), tweet(2, "another tweet")]
    with pytest.raises(StageContractError, match="1 kept \\+ 0 dropped for 2 tweets"):
        run_stage(_Lossy(), batch)
    with pytest.raises(StageContractError, match="'other', not one of its reasons"):
        run_stage(_Undeclared(), batch)


def test_options_are_derived_from_the_stage_configs(capsys):
    parser = build_parser("run")
    with pytest.raises(SystemExit):
        parser.parse_args(["run", "--help"])
    help_text = capsys.readouterr().out
    assert "--keep-retweets" in help_text and "--min-chars" in help_text and "--max-chars" in help_text
    assert "length: " in help_text  # one group per stage, titled with its name and description
    args = parser.parse_args(["run", "x", "-o", "y", "--min-chars", "3", "--keep-retweets"])
    config = config_from_args(args)
    assert config.stages["length"].min_chars == 3
    assert config.stages["retweets"].drop_retweets is False
    code, _, err = run_cli(capsys, "run", "x", "-o", "y", "--min-chars", "-1")
    assert code == EXIT_USAGE and "must be an integer >= 0" in err and "Traceback" not in err


# --- a user's own filter ---------------------------------------------------------------------------


@pytest.mark.slow
def test_the_docs_example_filter_runs_through_the_whole_pipeline(tmp_path, monkeypatch, capsys):
    docs_example(tmp_path, monkeypatch)
    source = tmp_path / "tweets.txt"
    source.write_text("\n".join(CRYPTO) + "\n")
    out = tmp_path / "out"
    code, stdout, err = run_cli(
        capsys, "run", str(source), "-o", str(out), "--no-near-dedup",
        "--filter", "my_filters:NoCrypto",
        "--filter-arg", "no_crypto.words=bitcoin,btc,eth,crypto", "--filter-arg", "no_crypto.max_hits=1",
    )  # fmt: skip
    assert code == 0, err
    manifest = Manifest.from_json((out / MANIFEST_NAME).read_text())
    stage = next(s for s in manifest.pipeline if s.name == "no_crypto")
    assert (stage.kind, stage.dropped) == ("user", {"crypto": 2})  # the third mentions bitcoin once
    assert [s.name for s in manifest.pipeline].index("no_crypto") > [s.name for s in manifest.pipeline].index(
        "length"
    )
    assert manifest.counts.balanced and manifest.counts.kept == 3
    assert manifest.config["user_filters"][0]["config"] == {"words": ["bitcoin", "btc", "eth", "crypto"],
                                                            "max_hits": 1}  # fmt: skip
    assert "no_crypto" in stdout and "crypto" in stdout  # the funnel names the user's stage
    sample = [json.loads(line) for line in (out / "dropped.sample.jsonl").read_text().splitlines()]
    assert {(r["stage"], r["reason"]) for r in sample} == {("no_crypto", "crypto")}
    assert sorted(r["text"] for r in sample) == sorted(CRYPTO[:2])


def test_the_filter_source_is_part_of_the_fingerprint(tmp_path, monkeypatch):
    module = docs_example(tmp_path, monkeypatch)
    parser = build_parser("run")
    argv = ["run", "x", "-o", "y", "--filter", "my_filters:NoCrypto"]
    first = config_from_args(parser.parse_args(argv))
    module.write_text(module.read_text().replace('"crypto"', '"crypto_spam"'))
    sys.modules.pop("my_filters", None)
    second = config_from_args(parser.parse_args(argv))
    assert first.fingerprint("t", "v") != second.fingerprint("t", "v")
    again = config_from_args(parser.parse_args(argv))
    assert second.fingerprint("t", "v") == again.fingerprint("t", "v")


@pytest.mark.slow
def test_the_filter_travels_with_the_job(tmp_path, monkeypatch):
    """Pickled as a remote runner gets it, the filter unpickles and runs where its module is absent."""
    from apache_beam.internal import pickler
    from tweetmill.pipeline.user_filters import pickle_by_value
    from tweetmill.transforms.stage import _StageFn

    docs_example(tmp_path, monkeypatch)
    from my_filters import NoCrypto

    stage = NoCrypto()
    pickle_by_value(stage)
    payload = tmp_path / "dofn.pickle"
    payload.write_bytes(pickler.dumps(_StageFn(stage)))
    script = textwrap.dedent(
        f"""
        import sys
        from apache_beam.internal import pickler
        from tweetmill.schemas.records import Tweet
        assert "my_filters" not in sys.modules
        fn = pickler.loads(open({str(payload)!r}, "rb").read())
        fn.setup()
        batch = [Tweet(id=i, text=t, source_format="text", source_file="t", position=i)
                 for i, t in enumerate(["buy bitcoin and more crypto now", "a calm walk by the river"])]
        outputs = list(fn.process(batch))
        print(len(outputs[0]), [o.value for o in outputs[1:]][0])
        """
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.split("\n")[0] == "1 (('no_crypto', 'crypto'), 1)"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["--filter", "no_such_module:X"], "cannot import no_such_module"),
        (["--filter", "json:dumps"], "is not a tweetmill Stage subclass"),
        (["--filter", "unknown_name"], "not module:Class and not an installed filter name"),
        (["--filter", "my_filters:NoCrypto", "--filter-arg", "no_crypto.nope=1"], "has no option 'nope'"),
        (["--filter", "my_filters:NoCrypto", "--filter-arg", "no_crypto.max_hits=-2"], "integer >= 0"),
        (["--filter", "my_filters:NoCrypto", "--filter-arg", "other.x=1"], "not used: other"),
        (["--filter", "my_filters:NoCrypto", "--filter-arg", "bad"], "expected NAME.FIELD=VALUE"),
    ],
)
def test_filter_mistakes_are_one_line(tmp_path, monkeypatch, capsys, args, fragment):
    docs_example(tmp_path, monkeypatch)
    code, _, err = run_cli(capsys, "run", "x", "-o", str(tmp_path / "out"), *args)
    assert code == EXIT_USAGE, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1 and fragment in err, err


def test_filter_options_from_a_config_file(tmp_path, monkeypatch):
    docs_example(tmp_path, monkeypatch)
    options = tmp_path / "filters.json"
    options.write_text(json.dumps({"no_crypto": {"words": ["doge"], "max_hits": 2}}))
    args = build_parser("run").parse_args(
        ["run", "x", "-o", "y", "--filter", "my_filters:NoCrypto", "--filter-config", str(options)]
    )
    (user,) = config_from_args(args).user_filters
    assert user.config == {"words": ("doge",), "max_hits": 2}
    assert user.load().config.words == ("doge",)


# --- the audit ---------------------------------------------------------------------------------------


@pytest.mark.slow
def test_write_dropped_writes_every_dropped_tweet_and_verify_checks_them(tmp_path, capsys):
    sample = ROOT / "examples" / "sample" / "data"
    out = tmp_path / "out"
    code, _, err = run_cli(capsys, "run", str(sample / "*"), "-o", str(out), "--write-dropped")
    assert code == 0, err
    manifest = Manifest.from_json((out / MANIFEST_NAME).read_text())
    lines = [line for name in manifest.dropped_files for line in (out / name).read_text().splitlines()]
    records = [json.loads(line) for line in lines]
    by_stage: dict[tuple[str, str], int] = {}
    for record in records:
        key = (record["stage"], record["reason"])
        by_stage[key] = by_stage.get(key, 0) + 1
    expected = {
        (s.name, r): n for s in manifest.pipeline if s.kind != "source" for r, n in s.dropped.items() if n
    }
    assert by_stage == expected and sum(expected.values()) > 100
    assert manifest.counts.balanced
    code, _, err = run_cli(capsys, "verify", str(out))
    assert code == 0, err
    first = out / manifest.dropped_files[0]
    first.write_text("\n".join(first.read_text().splitlines()[1:]) + "\n")  # one dropped tweet lost
    code, report, _ = run_cli(capsys, "verify", str(out))
    assert code != 0 and f"dropped-tweets files hold {sum(expected.values()) - 1:,} tweets" in report


def test_a_run_relaxes_the_collector_in_its_worker_and_never_tightens_it(tmp_path, capsys):
    """The per-tweet DoFns raise the gc thresholds in their setup (transforms/common.py), so the
    worker that runs them (here: this process, the embedded runner's in-process worker) collects
    rarely; thresholds already above them are left alone."""
    source = tmp_path / "tweets.txt"
    source.write_text("\n".join(CRYPTO) + "\n")
    before = gc.get_threshold()
    try:
        gc.set_threshold(700, 10, 10)  # Python's defaults
        code, _, err = run_cli(capsys, "run", str(source), "-o", str(tmp_path / "out"), "--no-near-dedup")
        assert code == 0, err
        assert gc.get_threshold() == COLLECTOR_THRESHOLDS
        gc.set_threshold(50_000, 20, 20)
        relax_collector()
        assert gc.get_threshold() == (50_000, 20, 20)
    finally:
        gc.set_threshold(*before)


def test_a_bundle_sends_only_its_smallest_dropped_tweets_per_reason_to_the_sample():
    """The dropped-tweet sample is cut in the step that drops the tweets: per (stage, reason), the
    bundle's smallest by rank, however many it dropped (pruned as they come)."""
    from tweetmill.transforms import audit

    fn = audit._SmallestInBundle(per_reason=3)
    fn.start_bundle()
    tweets = [Tweet(id=i, text="t", source_format="text", source_file="f", position=i) for i in range(1, 99)]
    for t in tweets:
        assert not list(fn.process(("length", "too_short", t)) or [])
    fn.process(("retweets", "retweet", tweets[0]))
    sent = [w.value for w in fn.finish_bundle()]
    by_reason = {}
    for key, (_, tweet) in sent:
        by_reason.setdefault(key, []).append(tweet.id)
    smallest = sorted(tweets, key=audit._rank)[:3]
    assert by_reason == {("length", "too_short"): [t.id for t in smallest], ("retweets", "retweet"): [1]}

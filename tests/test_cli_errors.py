"""Every user mistake through the real CLI: one ``error:`` line per problem on stderr, no traceback, the
exit code ``pipeline/errors.py`` documents; and data that would drive a terminal is printed escaped.

The truest check is a subprocess of ``.venv/bin/tweetmill`` (what a user runs); each costs a Beam
import (~3 s), so the cheap cases call ``main([...])`` in this process and read its stderr.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tweetmill.pipeline.cli import build_parser, main
from tweetmill.pipeline.errors import EXIT_REJECTED, EXIT_USAGE, UserError
from tweetmill.pipeline.options import RunConfig, config_from_args
from tweetmill.pipeline.preflight import expand_input, input_problems

TWEETMILL = Path(sys.executable).with_name("tweetmill")
# Rich tables fold long cells at the default 80 columns of a pipe; wide enough to keep names whole.
ENV = {**os.environ, "COLUMNS": "200"}

ESC = "\x1b[31m"
TRICKY_FILE = f"{ESC}[bold]tweets.jsonl"  # a file name with an escape sequence and Rich markup
TEXTS = [
    "Just finished reading a wonderful book about the history of [/x] sailing ships",
    f"The weather today is {ESC}absolutely lovely and I plan to walk in the park",
    "Our team won the match last night after a long and exciting second half [red]",
    "I cannot believe how quickly this year has gone by, time really flies away",
    "Cooking dinner for friends tonight, trying a new recipe with fresh basil leaves",
    "Learning to play the guitar is harder than I expected but I enjoy every lesson",
]
TWITTER_LANGS = ["[/x]", ESC, "en", "en", "[bold]", "en"]  # Twitter's tag is stored as it came


def tweetmill(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(TWEETMILL), *args], capture_output=True, text=True, env=ENV, cwd=cwd, timeout=300
    )


def assert_one_line_per_problem(code: int, stderr: str, expected_code: int, *fragments: str) -> list[str]:
    """``stderr`` is exactly one ``error:`` line per fragment, each containing it, in order."""
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert code == expected_code, stderr
    assert len(lines) == len(fragments), stderr
    for line, fragment in zip(lines, fragments, strict=True):
        assert line.startswith("error: "), line
        assert fragment in line, (fragment, line)
    return lines


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def write_tweets(path: Path, texts: list[str], langs: list[str]) -> None:
    with path.open("w", encoding="utf-8") as f:
        for i, (text, lang) in enumerate(zip(texts, langs, strict=True)):
            record = {
                "id_str": str(1000 + i),
                "text": text,
                "lang": lang,
                "created_at": "Wed Aug 27 13:08:45 +0000 2008",
                "user": {"id_str": "7"},
            }
            f.write(json.dumps(record) + "\n")


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    """A finished run over one file whose name, tags and texts carry markup and escape sequences."""
    root = tmp_path_factory.mktemp("tricky")
    (root / "in").mkdir()
    write_tweets(root / "in" / TRICKY_FILE, TEXTS, TWITTER_LANGS)
    result = tweetmill("run", str(root / "in" / "*"), "-o", str(root / "out"))
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    return root / "out"


# --- shard directories: stats, sample, verify -------------------------------------------------------


@pytest.mark.slow
def test_stats_of_a_missing_directory_is_one_line(tmp_path):
    result = tweetmill("stats", str(tmp_path / "missing"))
    assert_one_line_per_problem(result.returncode, result.stderr, EXIT_USAGE, "missing: no such directory")
    assert result.stdout == ""


@pytest.mark.parametrize("command", ["sample", "verify"])
def test_sample_and_verify_of_a_missing_directory(command, tmp_path, capsys):
    code, _, err = run_main(capsys, command, str(tmp_path / "missing"))
    assert_one_line_per_problem(code, err, EXIT_USAGE, "no such directory")


@pytest.mark.parametrize("command", ["stats", "sample", "verify"])
def test_directory_without_manifest_or_a_file(command, tmp_path, capsys):
    code, _, err = run_main(capsys, command, str(tmp_path))
    assert_one_line_per_problem(code, err, EXIT_USAGE, "no manifest.json")
    (tmp_path / "f.txt").write_text("x")
    code, _, err = run_main(capsys, command, str(tmp_path / "f.txt"))
    assert_one_line_per_problem(code, err, EXIT_USAGE, "is a file")


@pytest.mark.slow
def test_damaged_shards_point_to_verify(shards, tmp_path, capsys):
    copy = tmp_path / "copy"
    shutil.copytree(shards, copy)
    (shard,) = copy.glob("data/shard-*.arrow")
    shard.write_bytes(shard.read_bytes()[:100])
    for command in ("stats", "sample"):
        code, _, err = run_main(capsys, command, str(copy))
        assert_one_line_per_problem(code, err, EXIT_USAGE, f"tweetmill verify {copy}")
    (copy / "manifest.json").write_text("{not json")
    code, _, err = run_main(capsys, "stats", str(copy))
    assert_one_line_per_problem(code, err, EXIT_USAGE, "manifest.json: unreadable")
    code, out, err = run_main(capsys, "verify", str(copy))  # verify reports a damaged manifest itself
    assert code == 1 and "manifest.json is unreadable" in out and err == ""


@pytest.mark.slow
def test_sample_lang_must_be_a_detected_language(shards, capsys):
    code, _, err = run_main(capsys, "sample", str(shards), "--lang", "english")
    (line,) = assert_one_line_per_problem(code, err, EXIT_USAGE, "--lang: 'english'")
    assert line.endswith("did you mean en?")


# --- terminal safety ---------------------------------------------------------------------------------


def assert_escaped(stdout: str) -> None:
    assert "\x1b" not in stdout  # no escape sequence of the data reached the terminal
    assert "\\x1b[31m" in stdout  # shown, visibly
    assert "[/x]" in stdout and "[bold]" in stdout  # shown as text, not read as markup


@pytest.mark.slow
def test_stats_and_sample_print_data_escaped(shards):
    stats = tweetmill("stats", str(shards))
    assert stats.returncode == 0 and "Traceback" not in stats.stderr, stats.stderr
    assert_escaped(stats.stdout)
    assert "\\x1b[31m[bold]tweets.jsonl" in stats.stdout  # the input file, in the files table
    sample = tweetmill("sample", str(shards), "-n", "6")
    assert sample.returncode == 0 and "Traceback" not in sample.stderr, sample.stderr
    assert_escaped(sample.stdout)
    assert "Twitter: [/x]" in sample.stdout and "history of [/x] sailing" in sample.stdout


def test_verify_and_json_outputs_hold_no_control_characters(shards, capsys):
    code, out, _ = run_main(capsys, "verify", str(shards))
    assert code == 0 and "\x1b" not in out
    code, out, _ = run_main(capsys, "sample", str(shards), "-n", "6", "--json")
    assert code == 0 and "\x1b" not in out
    samples = json.loads(out)
    assert {s["twitter_lang"] for s in samples} >= {"[/x]", ESC}  # the data itself is unchanged
    assert {s["source_file"].rsplit("/", 1)[-1] for s in samples} == {TRICKY_FILE}


# --- tweetmill run: options checked before anything runs ----------------------------------------------


@pytest.mark.slow
def test_unknown_run_option_names_the_closest_spellings(tmp_path):
    result = tweetmill("run", "in.jsonl", "-o", str(tmp_path / "out"), "--langauges", "en",
                       "--direct-num-workers", "2")
    assert_one_line_per_problem(
        result.returncode, result.stderr, EXIT_USAGE,
        "unknown option --langauges", "unknown option --direct-num-workers",
    )
    lines = result.stderr.splitlines()
    assert "did you mean --languages" in lines[0]
    assert "--direct_num_workers" in lines[1]
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--near-dup-threshold", "0", "must be in (0, 1]"),
        ("--near-dup-threshold", "1.5", "must be in (0, 1]"),
        ("--near-dup-threshold", "nan", "must be in (0, 1]"),
        ("--min-lang-confidence", "-0.1", "must be in [0, 1]"),
        ("--min-chars", "-1", "must be an integer >= 0"),
        ("--near-dup-samples", "-1", "must be an integer >= 0"),
        ("--max-error-share", "2", "must be in [0, 1]"),
        ("--num-shards", "0", "must be a positive integer"),
        ("--rows-per-shard", "ten", "expected an integer"),
    ],
)
def test_run_option_out_of_range(option, value, message, tmp_path, capsys):
    code, _, err = run_main(capsys, "run", "in.jsonl", "-o", str(tmp_path / "out"), f"{option}={value}")
    assert_one_line_per_problem(code, err, EXIT_USAGE, f"argument {option}: {message}")


@pytest.mark.parametrize(
    ("command", "args", "message"),
    [
        ("stats", ["--top", "0"], "argument --top: must be a positive integer"),
        ("stats", ["--workers", "-2"], "argument --workers"),
        ("sample", ["-n", "0"], "argument -n"),
        ("train-tokenizer", ["-o", "t.json", "--vocab-size", "10"], "argument --vocab-size: must be"),
        ("train-tokenizer", ["-o", "t.json", "--limit", "0"], "argument --limit"),
    ],
)
def test_other_counts_must_be_positive(command, args, message, tmp_path, capsys):
    code, _, err = run_main(capsys, command, str(tmp_path), *args)
    assert_one_line_per_problem(code, err, EXIT_USAGE, message)


def test_usage_errors_are_one_line(capsys):
    code, _, err = run_main(capsys)
    assert_one_line_per_problem(code, err, EXIT_USAGE, "required: command")
    code, _, err = run_main(capsys, "stats")
    assert_one_line_per_problem(code, err, EXIT_USAGE, "required: shards")


def test_languages_every_bad_code_at_once(tmp_path, capsys):
    code, _, err = run_main(capsys, "run", "in.jsonl", "-o", str(tmp_path / "out"),
                            "--languages", "english,en,xx,zh,ger,German")
    bad = ("'english'", "'ger'", "'german'", "'xx'", "'zh'")  # sorted, each once
    lines = assert_one_line_per_problem(code, err, EXIT_USAGE, *bad)
    hints = [line.split("; ", 1)[1] for line in lines]
    assert hints[:3] == ["did you mean en?", "did you mean de?", "did you mean de?"]
    assert hints[3].startswith("known: ") and "und" in hints[3]
    assert hints[4] == "did you mean zh-cn,zh-tw?"


def test_languages_case_and_und_are_accepted():
    args = build_parser("run").parse_args(["run", "x", "-o", "y", "--languages", "EN, zh_TW,und,eu"])
    assert config_from_args(args).language.languages == ("en", "eu", "und", "zh-tw")


def test_run_tokenizer_problem_is_one_line(tmp_path, capsys):
    (tmp_path / "in.txt").write_text("a tweet about nothing much at all today\n")
    code, _, err = run_main(capsys, "run", str(tmp_path / "in.txt"), "-o", str(tmp_path / "out"),
                            "--tokenizer", str(tmp_path / "missing.json"))
    missing = tmp_path / "missing.json"
    assert_one_line_per_problem(code, err, EXIT_USAGE, f"--tokenizer {missing}: no such file")


def test_run_input_problems_all_at_once(tmp_path, capsys):
    (tmp_path / "only-hidden").mkdir()
    (tmp_path / "only-hidden" / ".swp").write_text("x")
    (tmp_path / "a.jsonl").write_text("{}\n")
    code, _, err = run_main(
        capsys, "run", str(tmp_path / "a.jsonl"), str(tmp_path / "missing.jsonl"), str(tmp_path / "*.csv"),
        str(tmp_path / "only-hidden"), "-o", str(tmp_path / "out"),
    )
    assert_one_line_per_problem(
        code, err, EXIT_USAGE, "missing.jsonl: no such file", "*.csv: no file matches", "only-hidden: no file"
    )
    assert not (tmp_path / "out").exists()


@pytest.mark.slow
def test_rejected_run_prints_the_report_then_why(tmp_path, capsys):
    """Kept no tweet, and most records were errors: the report, then one line per reason, exit 3."""
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "a.jsonl").write_text(
        '{"id_str": "1", "text": "hi", "user": {"id_str": "2"}}\n{not json\n{"id_str": \n'
    )
    code, out, err = run_main(capsys, "run", str(tmp_path / "in" / "*"), "-o", str(tmp_path / "out"), "-q")
    assert "Accounting" in out and "balanced" in out
    assert_one_line_per_problem(code, err, EXIT_REJECTED, "kept no tweet", "2 of the 3 records read")
    assert (tmp_path / "out" / "manifest.json").is_file()  # the run itself finished


def test_max_error_share_does_not_change_the_fingerprint():
    base = RunConfig(inputs=("x",), output="y")
    loose = RunConfig(inputs=("x",), output="y", max_error_share=0.9)
    assert base.fingerprint("t", "v") == loose.fingerprint("t", "v")


# --- inputs: what a pattern stands for ----------------------------------------------------------------


def test_expand_input_directories_globs_files(tmp_path, monkeypatch):
    for name in ("d/a.jsonl", "d/sub/b.csv", "d/.hidden.jsonl", "d/.git/c.jsonl", "d/sub/.cache/e.txt"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("x\n")
    d = str(tmp_path / "d")
    assert expand_input(d) == [f"{d}/a.jsonl", f"{d}/sub/b.csv"]  # recursive, hidden skipped
    assert expand_input(d + "/") == expand_input(d)
    assert expand_input(f"{d}/*") == [f"{d}/.hidden.jsonl", f"{d}/a.jsonl"]  # a glob: its matches, no dirs
    assert expand_input(f"{d}/**/*.csv") == [f"{d}/sub/b.csv"]
    assert expand_input(f"{d}/a.jsonl") == [f"{d}/a.jsonl"]
    assert expand_input(f"{d}/.git") == [f"{d}/.git/c.jsonl"]  # hidden only *below* the given directory
    monkeypatch.chdir(d)
    assert expand_input("*.jsonl") == [".hidden.jsonl", "a.jsonl"]  # a bare relative glob
    assert expand_input("sub") == ["sub/b.csv"]
    assert input_problems(["a.jsonl", "sub", "*.jsonl"]) == []
    assert input_problems(["a.jsonl", "*.parquet"]) == ["*.parquet: no file matches this pattern"]


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads every file")
def test_unreadable_inputs_are_named(tmp_path):
    (tmp_path / "d").mkdir()
    (tmp_path / "d" / "a.jsonl").write_text("x")
    (tmp_path / "d" / "a.jsonl").chmod(0)
    problems = input_problems([str(tmp_path / "d"), str(tmp_path / "d" / "a.jsonl")])
    assert problems == [
        f"{tmp_path / 'd'}: none of its 1 file(s) is readable (permission denied)",
        f"{tmp_path / 'd' / 'a.jsonl'}: not readable (permission denied)",
    ]


def test_expand_input_on_cloud_storage(tmp_path):
    """On an object store a directory is a prefix; the same rules, through Beam's GCS filesystem."""
    pytest.importorskip("gcp_storage_emulator")
    from gcs_emulator import GcsEmulator, environment, google_cloud_env, upload

    local = tmp_path / "x.jsonl"
    local.write_text("{}\n")
    with GcsEmulator() as emulator, environment(google_cloud_env(tmp_path, emulator.url)):
        emulator.create_bucket("inputs")
        for name in ("archive/a.jsonl", "archive/2022/b.jsonl", "archive/.hidden/c.jsonl", "archive/.d"):
            upload(local, f"gs://inputs/{name}")
        assert expand_input("gs://inputs/archive") == ["gs://inputs/archive/2022/b.jsonl",
                                                       "gs://inputs/archive/a.jsonl"]
        assert expand_input("gs://inputs/archive/") == expand_input("gs://inputs/archive")
        assert expand_input("gs://inputs/archive/*.jsonl") == ["gs://inputs/archive/a.jsonl"]
        assert expand_input("gs://inputs/archive/a.jsonl") == ["gs://inputs/archive/a.jsonl"]
        assert input_problems(["gs://inputs/archive", "gs://inputs/nothing", "gs://inputs/*.csv"]) == [
            "gs://inputs/nothing: no such file or directory",
            "gs://inputs/*.csv: no file matches this pattern",
        ]


# --- train-tokenizer, train, generate ---------------------------------------------------------------


def test_train_tokenizer_missing_input(tmp_path, capsys):
    code, _, err = run_main(capsys, "train-tokenizer", str(tmp_path / "missing.txt"), "-o",
                            str(tmp_path / "t.json"))
    assert_one_line_per_problem(code, err, EXIT_USAGE, "missing.txt: no such file or directory")
    assert not (tmp_path / "t.json").exists()


@pytest.mark.slow
def test_train_on_cuda_without_a_gpu(shards):
    torch = pytest.importorskip("torch")
    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU")
    result = tweetmill("train", str(shards), "--device", "cuda", "--model", "tiny", "--steps", "1")
    (line,) = assert_one_line_per_problem(result.returncode, result.stderr, EXIT_USAGE, "--device cuda")
    assert "use --device cpu" in line


@pytest.mark.slow
def test_generate_with_missing_checkpoint_and_tokenizer(tmp_path):
    pytest.importorskip("torch")
    result = tweetmill("generate", str(tmp_path / "run"), "--tokenizer", str(tmp_path / "missing.json"))
    assert_one_line_per_problem(
        result.returncode, result.stderr, EXIT_USAGE, "no checkpoint at", "--tokenizer"
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["x", "--lr", "0"], "argument --lr: must be a number > 0"),
        (["x", "--steps", "0"], "argument --steps"),
        (["x", "--val-fraction", "1"], "argument --val-fraction: must be in [0, 1)"),
        (["x", "--grad-clip", "-1"], "argument --grad-clip"),
        (["x", "--device", "gpu"], "--device gpu: not a device name"),
        ([], "give a shard directory"),
    ],
)
def test_train_options(args, message, capsys):
    pytest.importorskip("torch")
    code, _, err = run_main(capsys, "train", *args)
    assert_one_line_per_problem(code, err, EXIT_USAGE, message)


def test_debug_shows_the_traceback(tmp_path):
    with pytest.raises(UserError, match="no such directory"):
        main(["--debug", "stats", str(tmp_path / "missing")])

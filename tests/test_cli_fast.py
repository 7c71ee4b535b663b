"""The command line a person meets first: ``--help`` and ``--version`` without importing Beam, help
text on every option, ``-v``/``--log-level`` that take effect with Beam's chatter kept out, and the
next commands to try after a run."""

from __future__ import annotations

import argparse
import importlib.util
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from tweetmill.pipeline.cli import COMMANDS, build_parser, main

TWEETMILL = Path(sys.executable).with_name("tweetmill")
ENV = {**os.environ, "COLUMNS": "200"}
HEAVY = ("apache_beam", "torch", "pyarrow", "tweetmill.transforms")


def python(code: str, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code), *args],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip


# --- --help and --version ----------------------------------------------------------------------------


def test_version_prints_the_installed_version(capsys):
    from importlib.metadata import version

    assert main(["--version"]) == 0
    assert capsys.readouterr().out == f"tweetmill {version('tweetmill')}\n"


def test_help_lists_every_subcommand_with_its_line(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for name, help_text in COMMANDS.items():
        assert f"    {name} " in out and " ".join(help_text.split()[:3]) in " ".join(out.split()), name
    assert "--version" in out and "--log-level" in out and "--beam-log-level" in out


@pytest.mark.parametrize(
    "argv", [["--help"], ["--version"], ["-v", "--help"], ["--log-level", "info", "--help"]]
)
def test_help_and_version_import_nothing_heavy(argv):
    """Not a timing: what ``tweetmill --help`` imports (Beam alone takes ~3 s)."""
    result = python(
        f"""
        import sys
        from tweetmill.pipeline.cli import main
        code = main({argv!r})
        heavy = sorted(m for m in sys.modules if m.startswith({HEAVY!r}))
        print("heavy:", heavy, file=sys.stderr)
        sys.exit(code)
        """
    )
    assert result.returncode == 0, result.stderr
    assert result.stderr.strip() == "heavy: []"
    assert result.stdout.startswith("tweetmill" if argv == ["--version"] else "usage: tweetmill")


def test_the_installed_script_answers_version():
    result = subprocess.run([str(TWEETMILL), "--version"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0 and result.stdout.startswith("tweetmill ") and result.stderr == ""


def test_a_subcommand_help_shows_its_options(capsys):
    assert main(["stats", "--help"]) == 0
    out = capsys.readouterr().out
    assert "usage: tweetmill stats" in out and "--no-hashtags" in out and "--log-level" in out


# --- help text everywhere ------------------------------------------------------------------------------


def _walk(parser: argparse.ArgumentParser, path: str):
    """(where, action) for every action of ``parser``, its subcommands and theirs."""
    for action in parser._actions:
        yield path, action
        if isinstance(action, argparse._SubParsersAction):
            yield from ((f"{path} {choice.dest}", choice) for choice in action._choices_actions)
            for name, sub in action.choices.items():
                yield from _walk(sub, f"{path} {name}")


@pytest.mark.parametrize("command", [None, *COMMANDS])
def test_every_subcommand_and_option_has_help(command):
    if command in ("train", "generate") and importlib.util.find_spec("torch") is None:
        pytest.skip("the train and generate options need torch")
    parser = build_parser(command)
    missing = [
        f"{where}: {'/'.join(action.option_strings) or action.dest}"
        for where, action in _walk(parser, "tweetmill")
        if not (action.help and action.help.strip()) or action.help == argparse.SUPPRESS
    ]
    assert missing == []
    if command is not None:  # the subcommand's own options were really built
        sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[command]
        assert len(sub._actions) > 5


def test_the_subcommand_is_found_after_options_with_values():
    args = build_parser("sample").parse_args(["--log-level", "info", "sample", "dir", "-n", "3"])
    assert (args.command, args.n, args.log_level) == ("sample", 3, "info")
    assert main(["--beam-log-level", "debug", "stats", "--top", "0", "x"]) == 2  # stats' own option checked


def test_log_options_after_the_subcommand_keep_what_came_before():
    parser = build_parser("verify")
    assert parser.parse_args(["-v", "verify", "d"]).verbose is True
    assert parser.parse_args(["--log-level", "error", "verify", "d"]).log_level == "error"
    assert parser.parse_args(["verify", "d", "--log-level", "DEBUG"]).log_level == "debug"


# --- logging --------------------------------------------------------------------------------------------

# A fresh process runs tweetmill's main with a stand-in ``verify`` that does what a real command does:
# import Beam (which logs "apitools not found" through the root logger at import), then log.
LOGGING_PROBE = """
    import logging, sys
    from tweetmill.pipeline import cli

    def handler(args, extra):
        import apache_beam  # noqa: F401
        logging.getLogger("tweetmill.pipeline.probe").info("tweetmill info")
        logging.getLogger("tweetmill.pipeline.probe").debug("tweetmill debug")
        for _ in range(3):
            logging.getLogger("apache_beam.probe").warning("beam warning")
        logging.getLogger("apache_beam.probe").info("beam info")
        logging.getLogger("urllib3.probe").info("library info")
        return 0

    def arguments(cmd):
        cmd.add_argument("shards", help="x")
        cmd.set_defaults(handler=handler)

    cli._ARGUMENTS["verify"] = arguments
    sys.exit(cli.main(sys.argv[1:]))
"""


def _logged(*argv: str, probe_only: bool = False) -> list[str]:
    """The lines logged, without their time stamps (only the probe's: Beam's own too at info)."""
    result = python(LOGGING_PROBE, *argv, "verify", "x")
    assert result.returncode == 0, result.stderr
    assert "apitools" not in result.stderr  # Beam's import-time warning never reaches the user
    lines = [line.split(" ", 2)[2] for line in result.stderr.splitlines()]
    return [line for line in lines if ".probe:" in line] if probe_only else lines


def test_default_logging_shows_warnings_once():
    assert _logged() == ["WARNING apache_beam.probe: beam warning"]


def test_verbose_shows_tweetmill_info_not_beam_info():
    expected = ["INFO tweetmill.pipeline.probe: tweetmill info", "WARNING apache_beam.probe: beam warning"]
    assert _logged("-v") == expected
    assert _logged("--log-level", "INFO") == expected


def test_beam_log_level_and_debug_show_beam_too():
    assert _logged("--beam-log-level", "info", probe_only=True) == [
        "WARNING apache_beam.probe: beam warning",
        "INFO apache_beam.probe: beam info",
    ]
    assert _logged("--log-level", "error") == []
    assert _logged("--log-level", "debug", probe_only=True) == [
        "INFO tweetmill.pipeline.probe: tweetmill info",
        "DEBUG tweetmill.pipeline.probe: tweetmill debug",
        "WARNING apache_beam.probe: beam warning",
        "INFO apache_beam.probe: beam info",
        "INFO urllib3.probe: library info",
    ]


# --- a real run ------------------------------------------------------------------------------------------


@pytest.mark.slow
def test_a_run_logs_with_v_and_says_what_to_try_next(tmp_path):
    source = tmp_path / "in.txt"
    texts = (f"tweet number {i} about the weather in town and nothing much else" for i in range(20))
    source.write_text("\n".join(texts) + "\n")
    out = tmp_path / "my shards"  # a path the shell needs quoted
    result = subprocess.run(
        [str(TWEETMILL), "-v", "run", str(source), "-o", str(out), "--no-near-dedup"],
        capture_output=True, text=True, env=ENV, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert " INFO tweetmill." in result.stderr and "apitools" not in result.stderr
    assert "next:" in result.stdout
    for command in ("stats", "sample", "train"):
        assert f"tweetmill {command} '{out}'" in result.stdout
    verify = subprocess.run([str(TWEETMILL), "verify", str(out), "--log-level", "info"],
                            capture_output=True, text=True, env=ENV, timeout=300)  # fmt: skip
    assert verify.returncode == 0 and "INFO tweetmill.pipeline.verify" in verify.stderr, verify.stderr

"""The README and docs/ stay true: every documented command parses, generated blocks are current,
links resolve, and the README stays short.

Generated blocks (``<!-- example: NAME -->`` and ``<!-- options: COMMAND -->``) are written by
``docs/build_examples.py``; when a test here says one is stale, run
``.venv/bin/python docs/build_examples.py`` and review the diff.
"""

from __future__ import annotations

import argparse
import importlib.util
import re
import shlex
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tweetmill.pipeline.errors import UserError

REPO_ROOT = Path(__file__).resolve().parents[1]
README_LIMIT = 12 * 1024


def _load_generator():
    spec = importlib.util.spec_from_file_location("build_examples", REPO_ROOT / "docs" / "build_examples.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


gen = _load_generator()
DOCS = gen.doc_files()


# --- (a) every documented command line parses with the real parser ------------------------------------


def _code_lines(path: Path) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of every line inside a fenced code block, backslash continuations
    joined."""
    lines = path.read_text(encoding="utf-8").splitlines()
    in_code, i = False, 0
    while i < len(lines):
        line = lines[i].strip()
        if line.startswith("```"):
            in_code = not in_code
        elif in_code:
            start = i
            while line.endswith("\\") and i + 1 < len(lines):
                i += 1
                line = line[:-1] + " " + lines[i].strip()
            yield start + 1, line
        i += 1


def documented_commands() -> list[tuple[str, str]]:
    """``(where, command line)`` of every ``tweetmill ...`` (or ``$ tweetmill ...``) line in a code
    block of README.md or docs/*.md, and of every ``-m tweetmill.gpu_train`` line."""
    found = []
    for path in DOCS:
        for number, line in _code_lines(path):
            line = line.removeprefix("$ ")
            if line.startswith("tweetmill ") or " -m tweetmill.gpu_train" in line:
                found.append((f"{path.relative_to(REPO_ROOT)}:{number}", line))
    return found


COMMANDS = documented_commands()


def _subcommand(argv: list[str], top: argparse.ArgumentParser) -> str | None:
    """The first argument that is neither an option nor the value of a top-level option."""
    takes_value = {s for a in top._actions if a.nargs != 0 for s in a.option_strings}
    args = iter(argv)
    for arg in args:
        if arg in takes_value:
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def parse_tweetmill(argv: list[str]) -> argparse.Namespace:
    """``argv`` parsed as ``tweetmill`` parses it: Beam's options split off for ``run``."""
    top = gen.build_parser(None)
    command = _subcommand(argv, top)
    if command in ("train", "generate") and importlib.util.find_spec("torch") is None:
        pytest.skip(f"tweetmill {command} needs torch")
    parser = gen.build_parser(command)
    if command == "run":
        from tweetmill.pipeline.options import split_beam_args

        own = set(top._option_string_actions) | set(gen.command_parser("run")._option_string_actions)
        argv, _ = split_beam_args(argv, own)
    return parser.parse_args(argv)


def parse_gpu_train(argv: list[str]) -> argparse.Namespace:
    """The arguments after ``-m tweetmill.gpu_train``, as ``gpu_train.cli.main`` parses them."""
    from tweetmill.gpu_train import cli as train_cli

    parser = argparse.ArgumentParser(exit_on_error=False)
    if argv[:1] == ["generate"]:
        train_cli.add_generate_arguments(parser)
        return parser.parse_args(argv[1:])
    train_cli.add_train_arguments(parser)
    return parser.parse_args(argv[1:] if argv[:1] == ["train"] else argv)


def test_docs_show_commands() -> None:
    assert len(COMMANDS) > 20, "the command extraction found (almost) nothing: is the fence syntax changed?"


@pytest.mark.parametrize(("where", "line"), COMMANDS, ids=[where for where, _ in COMMANDS])
def test_documented_command_parses(where: str, line: str) -> None:
    argv = shlex.split(line, comments=True)
    try:
        if argv[0] == "tweetmill":
            parse_tweetmill(argv[1:])
        else:
            parse_gpu_train(argv[argv.index("tweetmill.gpu_train") + 1 :])
    except (UserError, argparse.ArgumentError) as exc:
        pytest.fail(f"{where}: {line}\n  does not parse: {exc}")
    except SystemExit as exc:
        pytest.fail(f"{where}: {line}\n  argparse exited ({exc.code})")


def test_a_broken_command_is_caught() -> None:
    with pytest.raises(UserError):
        parse_tweetmill(["stats", "out", "--no-such-option"])
    with pytest.raises(UserError):
        parse_tweetmill(["run", "in", "-o", "out", "--min-chars", "many"])


def test_exit_codes_documented() -> None:
    from tweetmill.pipeline import errors

    codes = {value for name, value in vars(errors).items() if name.startswith("EXIT_")}
    cli_md = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    documented = {int(code) for code in re.findall(r"^\| (\d+) \|", cli_md, flags=re.M)}
    assert documented == codes


# --- (b) generated blocks are current -----------------------------------------------------------------------


def test_every_command_has_an_option_table() -> None:
    cli_md = (REPO_ROOT / "docs" / "cli.md").read_text(encoding="utf-8")
    tables = {name for kind, name, _ in gen.blocks_in(cli_md) if kind == "options"}
    assert set(gen.command_names()) | {"commands"} <= tables


def test_option_tables_and_cheap_examples_are_current() -> None:
    stale = gen.stale_blocks(gen.render({"options", "cheap"}))
    assert not stale, f"stale generated blocks (run .venv/bin/python docs/build_examples.py): {stale}"


def _python_blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.slow
def test_examples_from_the_sample_are_current(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs the bundled sample as `make demo` does and every documented command on it, then the
    README's Python snippets on its output (~30 s)."""
    stale = gen.stale_blocks(gen.render({"example"}, work=tmp_path))
    assert not stale, f"stale generated blocks (run .venv/bin/python docs/build_examples.py): {stale}"
    snippets = _python_blocks(REPO_ROOT / "README.md")
    assert snippets, "the README shows no Python to read the shards with"
    monkeypatch.chdir(tmp_path)  # where demo-out is
    for code in snippets:
        exec(compile(code, "README.md", "exec"), {})


def test_staleness_is_detected() -> None:
    text = "<!-- example: x -->\n```\n1 shard(s) (1.5 s, 10 records/s)\n```\n<!-- /example -->\n"
    (_, _, current), = gen.blocks_in(text)
    assert gen.normalized(current) == gen.normalized(current.replace("1.5 s, 10", "2.0 s, 7"))
    assert gen.normalized(current) != gen.normalized(current.replace("1 shard", "2 shard"))


# --- (c) the README stays short; links resolve ------------------------------------------------------------


def test_readme_is_at_most_12_kb() -> None:
    size = len((REPO_ROOT / "README.md").read_bytes())
    assert size <= README_LIMIT, f"README.md: {size} bytes, over {README_LIMIT}; move reference to docs/"


def _anchor(heading: str) -> str:
    """GitHub's anchor of a Markdown heading."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def _anchors(path: Path) -> set[str]:
    lines = path.read_text(encoding="utf-8").splitlines()
    return {_anchor(line.lstrip("#")) for line in lines if re.match(r"#{1,6} ", line)}


LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_relative_links_resolve() -> None:
    broken = []
    for path in DOCS:
        text = re.sub(r"```.*?```", "", path.read_text(encoding="utf-8"), flags=re.S)
        for target in LINK.findall(text):
            if re.match(r"[a-z]+:", target):
                continue
            file, _, anchor = target.partition("#")
            dest = (path.parent / file).resolve() if file else path
            if not dest.exists():
                broken.append(f"{path.relative_to(REPO_ROOT)}: {target} (no such file)")
            elif anchor and dest.exists() and dest.suffix == ".md" and anchor not in _anchors(dest):
                broken.append(f"{path.relative_to(REPO_ROOT)}: {target} (no such heading)")
    assert not broken, "\n".join(broken)

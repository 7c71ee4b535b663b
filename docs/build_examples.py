#!/usr/bin/env python3
"""Writes the generated parts of README.md and docs/*.md, so they cannot go stale.

    .venv/bin/python docs/build_examples.py           rewrite every generated block in place
    .venv/bin/python docs/build_examples.py --check   exit 1 naming each stale block; writes nothing
    .venv/bin/python docs/build_examples.py --cheap   only the blocks that need no pipeline run

A generated block lies between two markers, which stay:

    <!-- example: stats -->      what a command prints on the bundled sample (examples/sample/data)
    ...                          (the commands really run, in a temporary directory, through the
    <!-- /example -->             tweetmill entry point, with a terminal 100 columns wide)
    <!-- options: run -->        the option table of `tweetmill run`, read from its argparse parser
    ...
    <!-- /options -->

The examples use the output directory of `make demo` (demo-out), so after `make demo` every one of
them can be typed again and prints the same. `--check` compares after masking what changes from
run to run (durations, rates, sha256 digests); tests/test_docs.py runs it.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import re
import shlex
import shutil
import sys
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE_DIR = "examples/sample/data"
SAMPLE = f"{SAMPLE_DIR}/*"
OUT = "demo-out"  # the directory `make demo` writes
WIDTH = 100  # terminal columns the examples are printed with

BLOCK = re.compile(r"(<!-- (example|options): ([\w.-]+) -->\n)(.*?)(<!-- /\2 -->)", re.S)
# What differs between two runs of the same command on the same input: masked by --check.
VOLATILE = (
    (re.compile(r"\(\d+(?:\.\d+)? s, [\d,.]+ records/s\)"), "(… s, … records/s)"),
    (re.compile(r"\b[0-9a-f]{64}\b"), "<sha256>"),
)


def doc_files() -> list[Path]:
    """The Markdown files whose blocks are generated: README.md and docs/*.md."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# --- running tweetmill ------------------------------------------------------------------------------


@contextlib.contextmanager
def _terminal(cwd: Path) -> Iterator[None]:
    """A fixed-width terminal without colours, in ``cwd``."""
    saved_env, saved_cwd = dict(os.environ), Path.cwd()
    os.environ.update(COLUMNS=str(WIDTH), LINES="50", TERM="dumb")
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE"):
        os.environ.pop(name, None)
    os.chdir(cwd)
    try:
        yield
    finally:
        os.chdir(saved_cwd)
        os.environ.clear()
        os.environ.update(saved_env)


def tweetmill(cwd: Path, *argv: str) -> tuple[int, str]:
    """Run ``tweetmill ARGV`` in ``cwd`` through the CLI's entry point: its exit code and stdout
    (stderr, where progress goes, only when the command fails)."""
    from tweetmill.pipeline.cli import main

    out, err = io.StringIO(), io.StringIO()
    with _terminal(cwd), contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    text = out.getvalue() + (err.getvalue() if code not in (0, 1) else "")
    return code, "\n".join(line.rstrip() for line in text.rstrip().splitlines())


def fence(body: str, lang: str = "") -> str:
    return f"```{lang}\n{body}\n```\n"


def shown(argv: tuple[str, ...], output: str, code: int = 0) -> str:
    """A command and what it printed, as a terminal shows them."""
    status = f"\n(exit status {code})" if code else ""
    return f"$ {shlex.join(('tweetmill', *argv))}\n{output}{status}"


# --- the examples -------------------------------------------------------------------------------------


@dataclass
class SampleRun:
    """The bundled sample run once, as `make demo` runs it, in a directory of its own."""

    work: Path
    run_output: str  # what `tweetmill run` printed

    @property
    def out(self) -> Path:
        return self.work / OUT

    def manifest(self) -> dict:
        return json.loads((self.out / "manifest.json").read_text(encoding="utf-8"))


RUN_ARGV = ("run", SAMPLE, "--output", OUT)


def sample_run(work: Path) -> SampleRun:
    shutil.copytree(ROOT / SAMPLE_DIR, work / SAMPLE_DIR)
    code, output = tweetmill(work, *RUN_ARGV)
    if code != 0:
        raise RuntimeError(f"tweetmill {shlex.join(RUN_ARGV)} failed (exit {code}):\n{output}")
    return SampleRun(work, output)


def ex_run(s: SampleRun) -> str:
    return fence(shown(RUN_ARGV, s.run_output))


def ex_run_summary(s: SampleRun) -> str:
    """The end of the run's report: the balance, and what was written."""
    lines = s.run_output.splitlines()
    tail = [line for line in lines if line.startswith("read ") or re.match(r"\d[\d,]* shard\(s\)", line)]
    tail = tail or lines[-2:]
    return fence(shown(RUN_ARGV, "\n".join(["…  (the accounting table: docs/inspecting.md)", *tail])))


def _command(argv: tuple[str, ...]) -> Callable[[SampleRun], str]:
    def example(s: SampleRun) -> str:
        code, output = tweetmill(s.work, *argv)
        return fence(shown(argv, output, code))

    return example


def ex_verify_broken(s: SampleRun) -> str:
    """verify on a copy of the run with one byte of its shard flipped."""
    broken = s.work / "broken"
    if not broken.exists():
        shutil.copytree(s.out, broken)
        shard = sorted(broken.glob("**/shard-*.arrow"))[0]
        data = bytearray(shard.read_bytes())
        data[len(data) // 2] ^= 0xFF
        shard.write_bytes(bytes(data))
    argv = ("verify", "broken")
    code, output = tweetmill(s.work, *argv)
    return fence(shown(argv, output, code))


def ex_files(s: SampleRun) -> str:
    """What the run wrote: every file under the output directory."""
    files = sorted(p.relative_to(s.out).as_posix() for p in s.out.rglob("*") if p.is_file())
    return fence(f"$ find {OUT} -type f | sort\n" + "\n".join(f"{OUT}/{f}" for f in files))


def ex_manifest(s: SampleRun) -> str:
    """manifest.json, shortened: one input, the first filter's stage record, no config."""
    m = s.manifest()
    short = {k: v for k, v in m.items() if k not in ("config", "inputs", "pipeline", "stages")}
    filters = [st for st in m["pipeline"] if st["kind"] == "filter" and sum(st["dropped"].values())]
    short["pipeline"] = filters[:1]
    short["stages"] = {"near_dedup": m["stages"]["near_dedup"]} if "near_dedup" in m.get("stages", {}) else {}
    short["inputs"] = m["inputs"][:1]
    short["config"] = {"inputs": m["config"]["inputs"], "output": m["config"]["output"]}
    return fence(json.dumps(short, indent=2, ensure_ascii=False), "json")


def ex_schema(s: SampleRun) -> str:
    """The Arrow schema of the sample's first shard, with its metadata."""
    import pyarrow as pa

    shard = sorted(s.out.glob("**/shard-*.arrow"))[0]
    with pa.memory_map(str(shard)) as source:
        schema = pa.ipc.open_file(source).schema
    text = schema.to_string(show_field_metadata=False, show_schema_metadata=True, truncate_metadata=False)
    return fence(text)


def ex_formats(s: SampleRun) -> str:
    """The sample's files and the format tweetmill detected in each (a Markdown table)."""
    rows = ["| file | detected format | records | tweets |", "|---|---|---:|---:|"]
    for entry in s.manifest()["inputs"]:
        name = entry["file"].removeprefix(f"{SAMPLE_DIR}/")
        records, tweets = entry.get("records", 0), entry.get("tweets", 0)
        rows.append(f"| `{name}` | `{entry.get('format')}` | {records:,} | {tweets:,} |")
    return "\n".join(rows) + "\n"


def ex_stages(s: SampleRun) -> str:
    """The stages of the run with the drop reasons each declares (a Markdown table)."""
    rows = ["| stage | kind | drop reasons | what it does or drops |", "|---|---|---|---|"]
    for stage in s.manifest()["pipeline"]:
        reasons = ", ".join(f"`{r}`" for r in stage["dropped"]) or "—"
        what = _cell(stage.get("description", ""))
        rows.append(f"| `{stage['name']}` | {stage['kind']} | {reasons} | {what} |")
    return "\n".join(rows) + "\n"


def ex_dropped_sample(s: SampleRun) -> str:
    """The first line of dropped.sample.jsonl."""
    path = next(s.out.glob("**/dropped.sample.jsonl"))
    return fence(path.read_text(encoding="utf-8").splitlines()[0], "json")


def ex_dead_letter(_: SampleRun | None) -> str:
    """The dead letter of a JSON-lines file with one broken line, as the read stage makes it."""
    from tweetmill.schemas.records import DeadLetter
    from tweetmill.transforms.read import read_path

    text = (
        '{"id_str": "20", "full_text": "just setting up my twttr", "user": {"id_str": "12"}}\n'
        '{"id_str": "21", "full_text": "oops\n'
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp, "tweets.jsonl")
        path.write_text(text, encoding="utf-8")
        letters = [r for f in read_path(str(path)) for r in f.records if isinstance(r, DeadLetter)]
    doc = letters[0].to_json_dict()
    doc["source_file"] = "tweets.jsonl"
    return fence(json.dumps(doc, ensure_ascii=False), "json")


def ex_bench_scripts(_: SampleRun | None) -> str:
    """Every script in bench/ with the first line of its docstring and its first command line."""
    import ast

    rows = ["| script | measures | run |", "|---|---|---|"]
    for path in sorted((ROOT / "bench").glob("*.py")):
        doc = ast.get_docstring(ast.parse(path.read_text(encoding="utf-8"))) or ""
        what = re.sub(r"\s*Run by hand:?$", "", doc.split("\n\n")[0]).replace("``", "`")
        runs = re.findall(r"(\.venv/bin/python bench/\S+\.py[^\n#]*)", doc)
        run = f"`{runs[0].strip()}`" if runs else "(used by the others)"
        rows.append(f"| [`{path.name}`](../bench/{path.name}) | {_cell(what)} | {_cell(run)} |")
    return "\n".join(rows) + "\n"


EXAMPLES: dict[str, Callable] = {
    "run": ex_run,
    "run-summary": ex_run_summary,
    "stats": _command(("stats", OUT, "--top", "5")),
    "sample": _command(("sample", OUT, "-n", "1", "--lang", "de", "--seed", "3")),
    "verify": _command(("verify", OUT)),
    "verify-broken": ex_verify_broken,
    "files": ex_files,
    "manifest": ex_manifest,
    "schema": ex_schema,
    "formats": ex_formats,
    "stages": ex_stages,
    "dropped-sample": ex_dropped_sample,
}
# Examples that need no run of the sample (cheap enough for every test run).
CHEAP_EXAMPLES: dict[str, Callable] = {"dead-letter": ex_dead_letter, "bench-scripts": ex_bench_scripts}


# --- option tables, from the real parsers ---------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def build_parser(command: str | None) -> argparse.ArgumentParser:
    """``tweetmill.pipeline.cli.build_parser``, with the options of ``command`` where it takes one."""
    from tweetmill.pipeline import cli

    try:
        return cli.build_parser(command)
    except TypeError:  # a build_parser that takes no command
        return cli.build_parser()


def command_parser(command: str) -> argparse.ArgumentParser:
    """The fully built parser of one subcommand (``train`` and ``generate`` need torch)."""
    return _subparsers(build_parser(command))[command]


UNTITLED = ("options", "optional arguments", "positional arguments")
_NOT_OPTIONS = (argparse._HelpAction, argparse._SubParsersAction)


def _help_actions(
    parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset()
) -> Iterator[tuple[str, list[argparse.Action]]]:
    """``(group title, actions)`` in help order; the untitled groups (positionals, plain options) as
    one, titled ""; options in ``skip`` left out."""
    groups: dict[str, list[argparse.Action]] = {}
    for group in parser._action_groups:
        title = "" if group.title in UNTITLED else group.title or ""
        for a in group._group_actions:
            if a.help is argparse.SUPPRESS or isinstance(a, _NOT_OPTIONS):
                continue
            if set(a.option_strings) & skip:
                continue
            groups.setdefault(title, []).append(a)
    yield from groups.items()


def _invocation(action: argparse.Action) -> str:
    if not action.option_strings:
        return f"{action.metavar or action.dest}{'…' if action.nargs in ('+', '*') else ''}"
    flags = ", ".join(action.option_strings)
    if action.nargs == 0:
        return flags
    if action.metavar is None and action.choices:
        return f"{flags} {{{','.join(map(str, action.choices))}}}"
    return f"{flags} {action.metavar or action.dest.upper()}"


def _default(action: argparse.Action) -> str:
    if action.required:
        return "required"
    if action.nargs == 0 or isinstance(action, argparse.BooleanOptionalAction):
        return "off"
    if not action.option_strings:
        return "—"
    if action.default in (None, argparse.SUPPRESS, ""):
        return "—"
    if isinstance(action.default, list | tuple):
        return "—" if not action.default else f"`{','.join(map(str, action.default))}`"
    return f"`{action.default}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def option_table(parser: argparse.ArgumentParser, skip: frozenset[str] = frozenset()) -> str:
    """Every option of ``parser`` but those in ``skip``, by its argument groups, as Markdown tables."""
    formatter = parser._get_formatter()
    parts = []
    for title, actions in _help_actions(parser, skip):
        rows = [f"**{title}**\n"] if title else []
        rows += ["| option | default | |", "|---|---|---|"]
        for action in actions:
            default = _default(action)
            help_text = formatter._expand_help(action) if action.help else ""
            if default not in ("—", "off", "required"):  # the default has its own column
                said = re.escape(str(action.default))
                help_text = re.sub(rf"\s*\(default:? {said}\)$|; default: {said}(?=\)$)", "", help_text)
            rows.append(f"| `{_cell(_invocation(action))}` | {default} | {_cell(help_text)} |")
        parts.append("\n".join(rows) + "\n")
    return "\n".join(parts)


def common_options() -> frozenset[str]:
    """The options every subcommand takes, listed once in the ``commands`` block."""
    return frozenset(s for a in build_parser(None)._actions for s in a.option_strings)


def command_names() -> list[str]:
    return list(_subparsers(build_parser(None)))


def commands_table() -> str:
    """Every subcommand with its one-line help."""
    top = build_parser(None)
    helps = {}
    for action in top._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help or "" for a in action._choices_actions}
    rows = ["| command | what it does |", "|---|---|"]
    for name in command_names():
        rows.append(f"| [`tweetmill {name}`](#tweetmill-{name}) | {_cell(helps.get(name, ''))} |")
    globals_ = option_table(top)
    return "\n".join(rows) + "\n\nBefore or after any subcommand:\n\n" + globals_


def options_block(name: str) -> str:
    if name == "commands":
        return commands_table()
    return option_table(command_parser(name), skip=common_options())


# --- the blocks --------------------------------------------------------------------------------------------


def blocks_in(text: str) -> list[tuple[str, str, str]]:
    """``(kind, name, content)`` of every generated block of a document."""
    return [(m.group(2), m.group(3), m.group(4)) for m in BLOCK.finditer(text)]


def render(kinds: set[str], work: Path | None = None) -> dict[tuple[str, str], str]:
    """The content of every block the documents have, of the kinds asked for: ``options``,
    ``cheap`` (examples without a run) and ``example`` (all examples; runs the sample in ``work``)."""
    wanted = {(kind, name) for path in doc_files() for kind, name, _ in blocks_in(path.read_text("utf-8"))}
    unknown = {n for k, n in wanted if k == "example" and n not in EXAMPLES and n not in CHEAP_EXAMPLES}
    if unknown:
        raise KeyError(f"no example named {', '.join(sorted(unknown))} in docs/build_examples.py")
    done: dict[tuple[str, str], str] = {}
    if "options" in kinds:
        for kind, name in wanted:
            if kind == "options":
                done[kind, name] = options_block(name)
    if kinds & {"cheap", "example"}:
        for name, make in CHEAP_EXAMPLES.items():
            if ("example", name) in wanted:
                done["example", name] = make(None)
    if "example" in kinds and any(k == "example" and n in EXAMPLES for k, n in wanted):
        with contextlib.ExitStack() as stack:
            if work is None:
                work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tweetmill-docs-")))
            run = sample_run(work)
            for name, make in EXAMPLES.items():
                if ("example", name) in wanted:
                    done["example", name] = make(run)
    return done


def replace_blocks(text: str, contents: dict[tuple[str, str], str]) -> str:
    def sub(m: re.Match) -> str:
        new = contents.get((m.group(2), m.group(3)))
        if new is None or normalized(new) == normalized(m.group(4)):  # only durations differ: keep
            return m.group(0)
        return m.group(1) + new + m.group(5)

    return BLOCK.sub(sub, text)


def normalized(text: str) -> str:
    for pattern, replacement in VOLATILE:
        text = pattern.sub(replacement, text)
    return text


def stale_blocks(contents: dict[tuple[str, str], str]) -> list[str]:
    """``file: kind name`` for every block whose text differs from ``contents`` (volatile parts masked)."""
    stale = []
    for path in doc_files():
        for kind, name, current in blocks_in(path.read_text("utf-8")):
            fresh = contents.get((kind, name))
            if fresh is not None and normalized(fresh) != normalized(current):
                stale.append(f"{path.relative_to(ROOT)}: {kind} {name}")
    return stale


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="exit 1 when a block is stale; write nothing")
    parser.add_argument("--cheap", action="store_true", help="only the blocks that need no pipeline run")
    args = parser.parse_args(argv)
    contents = render({"options", "cheap"} if args.cheap else {"options", "cheap", "example"})
    if args.check:
        stale = stale_blocks(contents)
        for line in stale:
            print(f"stale: {line} (run: .venv/bin/python docs/build_examples.py)")
        return 1 if stale else 0
    for path in doc_files():
        text = path.read_text("utf-8")
        new = replace_blocks(text, contents)
        if new != text:
            path.write_text(new, encoding="utf-8")
            print(f"updated {path.relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

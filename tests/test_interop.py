"""The shards open as they are in the tools people read Arrow with (issue #11, docs/reading-shards.md).

A run of the bundled sample is opened with pyarrow.dataset, polars, Hugging Face ``datasets`` and
DuckDB by running the snippets of docs/reading-shards.md themselves (each in a fresh interpreter), and
every one must give the rows (ids, texts, tokens) of the shards the manifest lists, read with
``pyarrow.ipc``. A directory in the layout of manifest formats 1 and 2 (shards at the top level) is
built from the same run as the previous version wrote it, and tweetmill's readers still take it.

``datasets`` cannot share the dev environment (its ``multiprocess`` needs a newer dill than Beam's
pin), so its snippets run in an interpreter that has it: ``$TWEETMILL_HF_PYTHON``, else
``.venv/hf/bin/python``, else this one if it can import ``datasets``; without one they are skipped.
"""

from __future__ import annotations

import importlib.util
import inspect
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pytest
from conftest import REPO_ROOT
from tweetmill.gpu_train.data import DatasetError, open_shards
from tweetmill.pipeline.build import run
from tweetmill.pipeline.cli import main as cli_main
from tweetmill.pipeline.options import RunConfig
from tweetmill.pipeline.verify import verify
from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest
from tweetmill.schemas.shard_dir import SHARD_DIR, shard_path, shard_paths_problem

SAMPLE = REPO_ROOT / "examples" / "sample" / "data"
DOC = REPO_ROOT / "docs" / "reading-shards.md"
CHECKED = re.compile(r"<!-- checked: (\w+) -->\s*```python\n(.*?)```", re.S)
OUT_LINE = re.compile(r'^out = "out"$', re.M)  # each snippet's one line naming the run's directory

# Every checked snippet of the doc: (interpreter, its variables holding rows, whose rows, layout).
# "first": the first shard the manifest lists; "old": the directory in the layout before format 3.
SNIPPETS = {
    "old_layout": ("main", ("table", "df"), "all", "old"),
    "pyarrow": ("main", ("table",), "all", "new"),
    "pyarrow_one_shard": ("main", ("table",), "first", "new"),
    "polars": ("main", ("df",), "all", "new"),
    "hf": ("hf", ("tweets",), "all", "new"),
    "hf_one_shard": ("hf", ("tweets",), "first", "new"),
    "hf_from_file": ("hf", ("tweets",), "first", "new"),
    "duckdb": ("main", ("table",), "all", "new"),
    "decode": ("main", (), "all", "new"),
}
# Beyond the doc's snippets: datasets on the run's directory itself, with and without the builder's name.
HF_EXTRA = {
    "hf_data_dir_is_the_run": (
        'from datasets import load_dataset\nout = "out"\n'
        'tweets = load_dataset("arrow", data_dir=out, split="shard")\n'
        "inferred = load_dataset(out)\n"
        'assert list(inferred) == ["shard"], inferred\n'
        'inferred = inferred["shard"]\n',
        ("tweets", "inferred"),
    ),
}


def as_arrow(value):
    """A snippet's result (pyarrow, polars, datasets or DuckDB's Arrow table) as an Arrow table."""
    import pyarrow as pa

    if isinstance(value, pa.Table):
        return value
    module = type(value).__module__
    if module.startswith("polars"):
        return value.to_arrow()
    if module.startswith("datasets"):
        return value.with_format("arrow")[:]
    raise TypeError(f"no rows in a {type(value)}")


def rows_digest(table) -> dict:
    """How many rows, and a sha256 of their (id, text, tokens) in id order."""
    import hashlib
    import json

    columns = [table.column(name).to_pylist() for name in ("id", "text", "tokens")]
    rows = sorted(zip(*columns, strict=True))
    return {"rows": len(rows), "sha256": hashlib.sha256(json.dumps(rows).encode()).hexdigest()}


# Runs in the snippets' interpreter: each snippet in a fresh namespace, then the digest of the rows
# of each variable it names; the two functions above are its own.
RUNNER = f"""
import json, sys
{inspect.getsource(as_arrow)}
{inspect.getsource(rows_digest)}
found = {{}}
for name, code, names in json.load(sys.stdin):
    namespace = {{"__name__": "__snippet__"}}
    exec(compile(code, f"docs/reading-shards.md: {{name}}", "exec"), namespace)
    found[name] = {{var: rows_digest(as_arrow(namespace[var])) for var in names}}
print(json.dumps(found))
"""


def manifest_of(out: Path) -> Manifest:
    return Manifest.from_json((out / MANIFEST_NAME).read_text(encoding="utf-8"))


def expected(out: Path, which: str) -> dict:
    """The reference: the shards the manifest lists, read with pyarrow.ipc (all, or the first)."""
    entries = manifest_of(out).shards
    entries = entries if which == "all" else entries[:1]
    tables = [pa.ipc.open_file(pa.memory_map(str(out / e.file))).read_all() for e in entries]
    return rows_digest(pa.concat_tables(tables))


def doc_snippets() -> dict[str, str]:
    return dict(CHECKED.findall(DOC.read_text(encoding="utf-8")))


def with_out(code: str, out: Path) -> str:
    return OUT_LINE.sub(lambda _: f"out = {str(out)!r}", code)


def hf_python() -> str | None:
    """An interpreter with ``datasets`` (see the module's docstring), or None."""
    for candidate in (os.environ.get("TWEETMILL_HF_PYTHON"), REPO_ROOT / ".venv" / "hf" / "bin" / "python"):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return sys.executable if importlib.util.find_spec("datasets") else None


def run_snippets(python: str, snippets: list[tuple[str, str, tuple[str, ...]]], cwd: Path, env=None) -> dict:
    done = subprocess.run(
        [python, "-c", RUNNER],
        input=json.dumps(snippets),
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.splitlines()[-1])


def to_old_layout(new: Path, old: Path, version: int) -> Path:
    """``new`` as tweetmill wrote it before manifest format 3: shards at the top level, the manifest
    listing them there (format 2; format 1 also without the stages). The shard bytes are the same."""
    shutil.copytree(new, old)
    for shard in sorted((old / SHARD_DIR).iterdir()):
        shard.rename(old / shard.name)
    (old / SHARD_DIR).rmdir()
    doc = json.loads((old / MANIFEST_NAME).read_text(encoding="utf-8"))
    doc["format_version"] = version
    for entry in doc["shards"]:
        entry["file"] = entry["file"].rsplit("/", 1)[-1]
    if version == 1:
        del doc["pipeline"]
    (old / MANIFEST_NAME).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    return old


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("interop")
    new = base / "out"
    run(RunConfig(inputs=(str(SAMPLE / "*"),), output=str(new), rows_per_shard=1000))
    return {"new": new, "old": to_old_layout(new, base / "old", 2), "base": base}


# --- the doc and the layout ------------------------------------------------------------------------


def test_the_doc_shows_the_checked_snippets():
    snippets = doc_snippets()
    assert list(snippets) == list(SNIPPETS)  # a snippet added to the doc is added here too
    for name, code in snippets.items():
        assert len(OUT_LINE.findall(code)) == 1, f'{name}: no `out = "out"` line to point at the run'


def test_shard_paths_name_one_complete_layout():
    assert shard_path(2, 3) == "data/shard-00002-of-00003.arrow"
    assert shard_paths_problem([shard_path(i, 2) for i in (1, 0)]) is None
    assert shard_paths_problem(["shard-00000-of-00002.arrow", "shard-00001-of-00002.arrow"]) is None  # v1, v2
    assert shard_paths_problem([shard_path(0, 2), "shard-00001-of-00002.arrow"]) is not None
    assert shard_paths_problem([shard_path(0, 2)]) is not None


@pytest.mark.slow
def test_the_shard_folder_holds_the_shards_alone(runs):
    out = runs["new"]
    manifest = manifest_of(out)
    assert json.loads((out / MANIFEST_NAME).read_text())["format_version"] == 3
    assert sorted(p.relative_to(out).as_posix() for p in (out / SHARD_DIR).rglob("*")) == [
        s.file for s in manifest.shards
    ]
    assert [s.file for s in manifest.shards] == [shard_path(i, 3) for i in range(3)]
    assert not list(out.glob("*.arrow"))


# --- every reader, through the doc's own snippets ---------------------------------------------------


@pytest.mark.slow
def test_pyarrow_polars_duckdb_snippets_read_the_manifests_rows(runs):
    snippets = doc_snippets()
    batch = [
        (name, with_out(snippets[name], runs[layout]), variables)
        for name, (python, variables, _, layout) in SNIPPETS.items()
        if python == "main"
    ]
    found = run_snippets(sys.executable, batch, runs["base"])
    for name, (python, variables, which, layout) in SNIPPETS.items():
        if python == "main":
            want = expected(runs[layout], which)
            assert want["rows"] > 0
            assert found[name] == {var: want for var in variables}, name


@pytest.mark.slow
def test_hugging_face_datasets_snippets_read_the_manifests_rows(runs, tmp_path):
    python = hf_python()
    if python is None:
        pytest.skip("no interpreter with `datasets` (TWEETMILL_HF_PYTHON, .venv/hf, or this one)")
    snippets = doc_snippets()
    batch = [
        (name, with_out(snippets[name], runs[layout]), variables)
        for name, (kind, variables, _, layout) in SNIPPETS.items()
        if kind == "hf"
    ]
    batch += [(name, with_out(code, runs["new"]), variables) for name, (code, variables) in HF_EXTRA.items()]
    env = {
        **os.environ,
        "HF_HOME": str(tmp_path / "hf"),  # its cache, not the user's
        "HF_HUB_OFFLINE": "1",
        "HF_DATASETS_DISABLE_PROGRESS_BARS": "1",
    }
    found = run_snippets(python, batch, tmp_path, env)
    for name, (kind, variables, which, layout) in SNIPPETS.items():
        if kind == "hf":
            assert found[name] == {var: expected(runs[layout], which) for var in variables}, name
    every_row = expected(runs["new"], "all")
    for name, (_, variables) in HF_EXTRA.items():
        assert found[name] == {var: every_row for var in variables}, name


# --- the layout before manifest format 3 still reads --------------------------------------------------


@pytest.mark.slow
@pytest.mark.parametrize("version", [1, 2])
def test_an_old_layout_directory_still_reads(runs, tmp_path, version, capsys):
    new = runs["new"]
    old = to_old_layout(new, tmp_path / "old", version)
    assert sorted(p.name for p in old.glob("*.arrow")) == [s.file for s in manifest_of(old).shards]

    report = verify(str(old))
    assert report.ok, report.problems
    assert cli_main(["verify", str(old)]) == 0
    capsys.readouterr()
    assert cli_main(["stats", str(old), "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert (stats["rows"], stats["tokens"]) == (manifest_of(new).total_rows, manifest_of(new).total_tokens)
    assert cli_main(["sample", str(old), "-n", "2"]) == 0

    old_set, new_set = open_shards(old, verify=True), open_shards(new)
    assert old_set.num_docs == new_set.num_docs == manifest_of(new).total_rows
    assert (old_set.ids == new_set.ids).all()
    for doc in (0, old_set.num_docs // 2, old_set.num_docs - 1):
        assert (old_set.table.document(doc) == new_set.table.document(doc)).all()


@pytest.mark.slow
def test_files_that_are_not_listed_shards_are_flagged_in_either_layout(runs, tmp_path):
    new = tmp_path / "new"
    shutil.copytree(runs["new"], new)
    (new / SHARD_DIR / "notes.txt").write_text("breaks the folder as a dataset")  # not a shard: flagged
    problems = verify(str(new)).problems
    assert problems == ["data/notes.txt: shard file not in the manifest (from another run?)"]
    with pytest.raises(DatasetError, match=re.escape("not in the manifest: data/notes.txt")):
        open_shards(new)

    old = tmp_path / "old"
    shutil.copytree(runs["old"], old)
    shutil.copy(old / "shard-00000-of-00003.arrow", old / "shard-00003-of-00004.arrow")  # another run's
    assert verify(str(old)).problems == [
        "shard-00003-of-00004.arrow: shard file not in the manifest (from another run?)"
    ]
    with pytest.raises(DatasetError, match=re.escape("not in the manifest: shard-00003-of-00004.arrow")):
        open_shards(old)


@pytest.mark.slow
def test_a_new_run_over_an_old_layout_directory_leaves_only_its_own_shards(runs, tmp_path):
    out = tmp_path / "old"
    shutil.copytree(runs["old"], out)
    manifest = run(RunConfig(inputs=(str(SAMPLE / "*.csv"),), output=str(out), num_shards=2), overwrite=True)
    assert not list(out.glob("*.arrow"))  # the top-level shards of the old run are gone
    assert sorted(p.relative_to(out).as_posix() for p in (out / SHARD_DIR).iterdir()) == [
        s.file for s in manifest.shards
    ]
    assert verify(str(out)).ok

"""The output directory, for real: refused before a run when it cannot take one (every problem at once),
one writer at a time (a live lock refuses, a dead one is taken over), a run that breaks on the disk
ends in one line with nothing published and no temporary directory, and ``verify`` flags what a
crashed run or a wrong manifest leaves. Disk full and read-only are real tmpfs mounts (skipped where
mounting is not permitted); tests run as root, where chmod does not stop a write."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from tweetmill.pipeline.build import OutputExistsError, output_spec, run
from tweetmill.pipeline.errors import EXIT_RUN_FAILED, EXIT_USAGE, RunFailedError, UserError
from tweetmill.pipeline.options import RunConfig
from tweetmill.pipeline.outputs import LOCK_NAME
from tweetmill.pipeline.verify import verify
from tweetmill.schemas.manifest import MANIFEST_NAME

SAMPLE = REPO_ROOT / "examples" / "sample" / "data"


def tiny(out: Path) -> RunConfig:
    """One small CSV, two shards: a run costs Beam's start-up, not its data."""
    return RunConfig(inputs=(str(SAMPLE / "*.csv"),), output=str(out), num_shards=2, near_dedup=None)


def temps(out: Path) -> list[str]:
    return sorted(p.name for p in out.glob("_tmp-*"))


@contextlib.contextmanager
def tmpfs(path: Path, *options: str) -> Iterator[Path]:
    """A real tmpfs at ``path`` (``size=64k``: a full disk; ``ro``: a read-only one), always unmounted."""
    path.mkdir(parents=True, exist_ok=True)
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", ",".join(options), "tmpfs", str(path)], capture_output=True, text=True
    )
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


@pytest.fixture(scope="module")
def finished(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("finished") / "out"
    run(tiny(out))
    return out


@pytest.fixture
def finished_copy(finished, tmp_path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(finished, copy)
    return copy


# --- before the run -----------------------------------------------------------------------------


def test_an_output_that_is_a_file_is_refused_before_anything_runs(tmp_path):
    out = tmp_path / "shards"
    out.write_text("not a directory")
    with pytest.raises(UserError) as refused:
        run(tiny(out))
    assert refused.value.exit_code == EXIT_USAGE
    assert refused.value.problems == [
        f"{out} is a file, not a directory: --output names the directory the shards go to"
    ]
    assert out.read_text() == "not a directory"


def test_input_and_output_problems_come_together_in_one_error(tmp_path):
    out = tmp_path / "shards"
    out.write_text("not a directory")
    missing = str(tmp_path / "nowhere" / "*.jsonl")
    config = RunConfig(inputs=(missing,), output=str(out))
    with pytest.raises(UserError) as refused:
        run(config)
    inputs_line, output_line = refused.value.problems  # inputs first (pipeline/preflight.py), then output
    assert missing in inputs_line
    assert output_line.startswith(f"{out} is a file, not a directory")


def test_an_output_on_a_read_only_file_system_is_refused(tmp_path):
    with tmpfs(tmp_path / "ro", "size=64k", "ro") as mount:
        with pytest.raises(UserError) as refused:
            run(tiny(mount / "new" / "out"))
        assert refused.value.problems == [
            f"cannot write into {mount}/new/out: {mount} is on a read-only file system"
        ]


@pytest.mark.slow
def test_a_finished_run_is_kept_without_overwrite(finished):
    manifest = (finished / MANIFEST_NAME).read_bytes()
    with pytest.raises(OutputExistsError) as refused:
        run(tiny(finished))
    assert refused.value.exit_code == EXIT_USAGE
    assert refused.value.problems == [
        f"{finished} already holds a finished run; pass --overwrite to replace it"
    ]
    assert (finished / MANIFEST_NAME).read_bytes() == manifest
    assert not (finished / LOCK_NAME).exists()


LOCK_HOLDER = """
import sys, time
from tweetmill.pipeline.outputs import OutputLock
OutputLock(sys.argv[1]).acquire()
print("locked", flush=True)
time.sleep(120)
"""


@pytest.mark.slow
def test_one_writer_per_output_and_a_dead_runs_lock_is_taken_over(finished_copy, caplog):
    """A live run's lock refuses a second run (with every other problem, in one error); once that run
    is killed, its lock is taken over, and the temporary directory a crashed run left is cleaned."""
    out = finished_copy
    holder = subprocess.Popen(
        [sys.executable, "-c", LOCK_HOLDER, str(out)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout.readline().strip() == "locked"
        lock = json.loads((out / LOCK_NAME).read_text())
        assert lock["pid"] == holder.pid and lock["host"] == socket.gethostname()
        with pytest.raises(OutputExistsError) as refused:
            run(tiny(out))
        finished_line, locked_line = refused.value.problems
        assert "already holds a finished run" in finished_line
        assert locked_line.startswith(f"{out} is being written by another run (lock {out / LOCK_NAME}: ")
        assert f"pid {holder.pid} on {socket.gethostname()}, started {lock['started']}" in locked_line
        with pytest.raises(UserError, match="being written by another run"):
            run(tiny(out), overwrite=True)  # --overwrite replaces a finished run, never a running one
    finally:
        holder.kill()
        holder.wait()
    assert (out / LOCK_NAME).exists()  # killed: the lock stays behind

    crashed = out / "_tmp-0123456789abcdef"
    (crashed / "errors").mkdir(parents=True)
    (crashed / "shard-00000-of-00002.arrow").write_bytes(b"half a shard")
    with caplog.at_level(logging.WARNING, logger="tweetmill"):
        manifest = run(tiny(out), overwrite=True)
    assert f"took over the lock {out / LOCK_NAME} of a run that is gone (pid {holder.pid}" in caplog.text
    assert manifest.counts.kept > 0 and (out / MANIFEST_NAME).exists()
    assert not (out / LOCK_NAME).exists()
    assert temps(out) == []


def test_an_unreadable_lock_is_not_taken_over(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / LOCK_NAME).write_text("")
    with pytest.raises(UserError, match="unreadable lock file"):
        run(tiny(out))
    assert (out / LOCK_NAME).read_text() == ""


# --- during the run -----------------------------------------------------------------------------


@pytest.mark.slow
def test_a_full_disk_ends_the_run_in_one_line_with_nothing_left(tmp_path, caplog):
    with tmpfs(tmp_path / "small", "size=64k") as disk:  # room for the lock, not for the shards
        out = disk / "out"
        with caplog.at_level(logging.INFO), pytest.raises(RunFailedError) as failed:
            run(tiny(out))
        assert failed.value.exit_code == EXIT_RUN_FAILED
        (line,) = failed.value.problems
        temp_dir = output_spec(tiny(out)).temp_dir
        assert line.startswith(f"no space left on device while writing {temp_dir}/")
        assert line.endswith("; nothing was published; free space and run again")
        assert list(disk.iterdir()) == []  # no manifest, no shards, no _tmp-*, no lock, no directory
        beam_errors = [r for r in caplog.records if r.name.startswith("apache_beam") and r.levelno >= 40]
        assert beam_errors == []  # Beam's own traceback of the failed bundle is left out


@pytest.mark.slow
def test_a_read_only_temporary_directory_ends_the_run_in_one_line(tmp_path, caplog):
    """A real EROFS from the first file the run writes (its temporary directory is a read-only mount;
    that mount cannot be removed, which is logged, and the failure is still the one line)."""
    out = tmp_path / "out"
    temp_dir = Path(output_spec(tiny(out)).temp_dir)
    with tmpfs(temp_dir, "size=64k", "ro"):
        with caplog.at_level(logging.WARNING), pytest.raises(RunFailedError) as failed:
            run(tiny(out))
        (line,) = failed.value.problems
        assert line.startswith(f"read-only file system while writing {temp_dir}/")
        assert line.endswith("; nothing was published; make it writable and run again")
        assert f"could not remove {temp_dir}" in caplog.text
        assert sorted(p.name for p in out.iterdir()) == [temp_dir.name]  # no manifest, no shard, no lock


# --- verify -------------------------------------------------------------------------------------


@pytest.mark.slow
def test_verify_passes_a_finished_run(finished):
    report = verify(str(finished))
    assert report.ok, report.problems


def test_verify_flags_a_stale_temporary_directory(finished_copy):
    crashed = finished_copy / "_tmp-0123456789abcdef"
    crashed.mkdir()
    (crashed / "shard-00000-of-00002.arrow").write_bytes(b"half a shard")
    report = verify(str(finished_copy))
    assert not report.ok
    assert report.problems == [
        "_tmp-0123456789abcdef/: temporary directory of a run that did not finish (1 file(s)): another run "
        "is writing here, or one crashed (then delete it; the next successful run also does)"
    ]


def test_verify_flags_inputs_that_do_not_sum_to_what_was_read(finished_copy):
    path = finished_copy / MANIFEST_NAME
    doc = json.loads(path.read_text())
    read = doc["counts"]["read"]
    doc["inputs"][0]["records"] += 5
    path.write_text(json.dumps(doc))
    report = verify(str(finished_copy))
    assert report.problems == [
        f"the inputs' records sum to {read + 5:,} but counts.read is {read:,} "
        "(an input file counted twice, or one missing from inputs)"
    ]


# --- object stores ------------------------------------------------------------------------------


@pytest.mark.slow
def test_on_gcs_another_runs_temporary_prefix_needs_overwrite_and_is_cleaned(tmp_path):
    """No lock on object stores: a ``_tmp-*`` prefix under the output refuses a run; with
    --overwrite the run goes ahead and removes it once it has published."""
    from gcs_emulator import GcsEmulator, environment, google_cloud_env, upload

    bucket = "tweetmill-outputs"
    (tmp_path / "gcloud").mkdir()
    with GcsEmulator() as gcs, environment(google_cloud_env(tmp_path / "gcloud", gcs.url)):
        gcs.create_bucket(bucket)
        upload(SAMPLE / "fivethirtyeight_trump_poll_tweets.csv", f"gs://{bucket}/in/tweets.csv")
        (tmp_path / "half").write_bytes(b"half a shard")
        upload(tmp_path / "half", f"gs://{bucket}/out/_tmp-0123456789abcdef/shard-00000-of-00002.arrow")
        config = RunConfig(inputs=(f"gs://{bucket}/in/*",), output=f"gs://{bucket}/out", num_shards=2,
                           near_dedup=None)
        with pytest.raises(UserError) as refused:
            run(config)
        (line,) = refused.value.problems
        assert line.startswith(f"gs://{bucket}/out/_tmp-0123456789abcdef: another run is writing into "
                               f"gs://{bucket}/out, or one crashed (1 file(s), last written ")
        assert line.endswith("pass --overwrite if no run is writing there")

        manifest = run(config, overwrite=True)
        names = gcs.object_names(bucket, "out/")
        assert names == sorted(f"out/{n}" for n in [*(s.file for s in manifest.shards), MANIFEST_NAME,
                                                    *manifest.side_files])
        assert not any(os.path.basename(n).startswith("_tmp-") or "/_tmp-" in n for n in names)

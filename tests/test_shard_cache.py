"""``tweetmill train gs://...`` and ``tweetmill fetch``: shards on Cloud Storage (the emulator of
``tests/gcs_emulator.py``) copied into a verified, resumable, size-bounded local cache."""

from __future__ import annotations

import hashlib
import importlib.util

import pytest
from gcs_emulator import GcsEmulator, environment, google_cloud_env, upload
from train_fixtures import flip_byte, write_synthetic_shards
from tweetmill.pipeline import shard_cache
from tweetmill.pipeline.cli import main as cli_main
from tweetmill.schemas.shard_dir import TOKENIZER_CONFIG_NAME, TOKENIZER_NAME

BUCKET = "tweetmill-cache-bucket"
SRC = f"gs://{BUCKET}/shards/v1"
VOCAB = 512


@pytest.fixture(scope="module")
def local_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("run")
    manifest = write_synthetic_shards(out, 400, vocab_size=VOCAB, num_shards=2, mean_tokens=20)
    # A tokenizer.json whose sha256 is the synthetic tokenizer's, so it is checked like a real one.
    (out / TOKENIZER_NAME).write_bytes(f"synthetic-{VOCAB}".encode())
    assert hashlib.sha256((out / TOKENIZER_NAME).read_bytes()).hexdigest() == manifest.tokenizer.sha256
    (out / TOKENIZER_CONFIG_NAME).write_text('{"eos_token": "<|endoftext|>"}')
    return out, manifest


@pytest.fixture(scope="module")
def gcs(local_run, tmp_path_factory):
    out, _ = local_run
    with GcsEmulator() as emulator, environment(
        google_cloud_env(tmp_path_factory.mktemp("gcloud"), emulator.url)
    ):
        emulator.create_bucket(BUCKET)
        for path in sorted(p for p in out.rglob("*") if p.is_file()):
            upload(path, f"{SRC}/{path.relative_to(out).as_posix()}")
        yield emulator


@pytest.fixture
def fetches(monkeypatch):
    opened: list[str] = []
    real = shard_cache.open_source

    def counting(path):
        opened.append(path)
        return real(path)

    monkeypatch.setattr(shard_cache, "open_source", counting)
    return opened


def _files(directory):
    return {p.relative_to(directory).as_posix(): p.read_bytes() for p in directory.rglob("*") if p.is_file()}


def test_sync_copies_verifies_and_resumes(gcs, local_run, tmp_path, fetches):
    out, manifest = local_run
    cache = tmp_path / "cache"
    result = shard_cache.sync(SRC, cache)
    assert result.path == cache
    wanted = {*(s.file for s in manifest.shards), TOKENIZER_NAME, TOKENIZER_CONFIG_NAME, "manifest.json"}
    assert _files(out) == {k: v for k, v in _files(cache).items() if not k.startswith(".")}
    assert set(_files(out)) == wanted
    assert len(fetches) == len(wanted) - 1  # manifest.json is read, not streamed

    fetches.clear()
    again = shard_cache.sync(SRC, cache)
    assert fetches == [] and again.fetched == []  # every file verified: nothing downloaded

    # A cached shard changed on disk is detected (its stat changed, then its sha256) and re-fetched.
    flip_byte(cache / manifest.shards[0].file)
    third = shard_cache.sync(SRC, cache)
    assert third.fetched == [manifest.shards[0].file]
    assert _files(cache)[manifest.shards[0].file] == (out / manifest.shards[0].file).read_bytes()


def test_an_interrupted_download_leaves_only_temp_files_that_are_cleaned(
    gcs, local_run, tmp_path, monkeypatch
):
    _, manifest = local_run
    cache = tmp_path / "cache"
    real = shard_cache.open_source

    class Broken:
        def __init__(self, path):
            self.f = real(path)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n):
            data = self.f.read(100)
            if data:
                raise KeyboardInterrupt
            return data

    monkeypatch.setattr(shard_cache, "open_source", Broken)
    with pytest.raises(KeyboardInterrupt):
        shard_cache.sync(SRC, cache)
    assert not (cache / "manifest.json").exists()  # not a complete shard directory
    assert [p.name for p in cache.rglob("*.part")]  # the partial download, under a temporary name
    monkeypatch.setattr(shard_cache, "open_source", real)
    result = shard_cache.sync(SRC, cache)
    assert not list(cache.rglob("*.part")) and (cache / "manifest.json").is_file()
    assert manifest.shards[0].file in result.fetched


def test_a_corrupt_source_is_fetched_twice_then_refused_in_one_line(
    gcs, local_run, tmp_path, monkeypatch, capsys
):
    _, manifest = local_run
    real = shard_cache.open_source
    opened: list[str] = []

    class Corrupt:
        def __init__(self, path):
            opened.append(path)
            self.f = real(path)
            self.flip = path.endswith(manifest.shards[1].file)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.f.close()

        def read(self, n):
            data = self.f.read(n)
            return bytes([data[0] ^ 1]) + data[1:] if data and self.flip else data

    monkeypatch.setattr(shard_cache, "open_source", Corrupt)
    code = cli_main(["fetch", SRC, "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(err) == 1 and "sha256" in err[0] and "after 2 downloads" in err[0]  # (and a warning)
    assert sum(p.endswith(manifest.shards[1].file) for p in opened) == 2
    assert not (tmp_path / "cache" / "manifest.json").exists()


def test_the_size_bound_refuses_in_one_line_and_evicts_older_sets(gcs, local_run, tmp_path, capsys):
    root = tmp_path / "root"
    code = cli_main(["fetch", SRC, "--cache-dir", str(root / "a"), "--cache-max-bytes", "1K"])
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--cache-max-bytes" in err[0]
    assert not (root / "a").exists()

    # Two sets fit in no bound that holds one: fetching the second evicts the first (LRU).
    assert cli_main(["fetch", SRC, "--cache-dir", str(root / "a")]) == 0
    assert capsys.readouterr().out.strip() == str(root / "a")
    size = sum(p.stat().st_size for p in (root / "a").rglob("*") if p.is_file())
    (root / "keep.txt").write_text("not a cache: never removed")
    bound = str(size + 4096)
    assert cli_main(["fetch", SRC, "--cache-dir", str(root / "b"), "--cache-max-bytes", bound]) == 0
    assert not (root / "a").exists() and (root / "b" / "manifest.json").is_file()
    assert (root / "keep.txt").is_file()


def test_a_directory_that_is_not_a_cache_is_refused(gcs, tmp_path, capsys):
    (tmp_path / "mine.txt").write_text("x")
    assert cli_main(["fetch", SRC, "--cache-dir", str(tmp_path)]) == 2
    assert "not a tweetmill shard cache" in capsys.readouterr().err
    assert (tmp_path / "mine.txt").is_file()


def test_default_cache_dir_is_under_tweetmill_cache(gcs, tmp_path, monkeypatch, capsys):
    monkeypatch.setenv(shard_cache.CACHE_ENV, str(tmp_path / "c"))
    assert cli_main(["fetch", SRC]) == 0
    path = capsys.readouterr().out.strip()
    assert path.startswith(str(tmp_path / "c") + "/") and len(path.rsplit("/", 1)[1]) == 16


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("torch") is None, reason="needs torch")
def test_train_from_gcs(gcs, local_run, tmp_path, fetches):
    cache = tmp_path / "cache"
    common = ["--model", "tiny", "--steps", "2", "--batch-tokens", "1024", "--micro-batch", "8",
              "--device", "cpu", "--threads", "1", "--run-dir", str(tmp_path / "runs"),
              "--cache-dir", str(cache), "--val-fraction", "0.05"]  # fmt: skip
    assert cli_main(["train", SRC, *common, "--name", "one"]) == 0
    assert fetches and (cache / "manifest.json").is_file()
    assert (tmp_path / "runs" / "one" / "latest").is_file()
    fetches.clear()
    assert cli_main(["train", SRC, *common, "--name", "two"]) == 0
    assert fetches == []  # the second run trains from the cache as it is

"""The on-disk cache of lookup tables (transforms/table_cache.py) and the language tables it holds."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys

import numpy as np
import pytest
from tweetmill.transforms import langid_profiles, langid_words, table_cache
from tweetmill.transforms.table_cache import CACHE_ENV, cached_arrays, fingerprint, from_arrays, to_arrays


class Builder:
    def __init__(self):
        self.calls = 0

    def __call__(self) -> dict[str, np.ndarray]:
        self.calls += 1
        return {"codes": np.arange(10, dtype=np.int32), "names": np.array(["en", "fr"]), "n": np.asarray(7)}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)


def test_a_table_is_built_once_then_mapped_read_only(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    build = Builder()
    first = cached_arrays("t", fingerprint("v1"), build)
    second = cached_arrays("t", fingerprint("v1"), build)
    assert build.calls == 1 and same(first, second)
    with pytest.raises(ValueError):  # a memory map of the file: no process can change the table
        second["codes"][0] = 5
    cached_arrays("t", fingerprint("v2"), build)  # other inputs: another folder, built anew
    assert build.calls == 2 and len([p for p in tmp_path.iterdir() if not p.name.startswith(".")]) == 2


def test_fingerprints_differ_with_their_parts():
    assert fingerprint("ab", "c") != fingerprint("a", "bc")
    assert fingerprint(b"x") == fingerprint("x")


def test_no_cache_when_turned_off_or_not_writable(tmp_path, monkeypatch):
    build = Builder()
    monkeypatch.setenv(CACHE_ENV, "")
    cached_arrays("t", "k", build)
    cached_arrays("t", "k", build)
    assert build.calls == 2
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    monkeypatch.setenv(CACHE_ENV, str(blocked / "cache"))
    assert same(cached_arrays("t", "k", build), Builder()())  # built, nothing raised
    assert build.calls == 3


def test_a_damaged_table_is_built_again(tmp_path, monkeypatch):
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    build = Builder()
    cached_arrays("t", "k", build)
    (npy,) = [p for p in tmp_path.glob("t-*/codes.npy")]
    npy.write_bytes(b"garbage")
    assert same(cached_arrays("t", "k", build), Builder()())
    assert build.calls == 2
    assert same(cached_arrays("t", "k", build), Builder()()) and build.calls == 2  # repaired


def test_the_language_tables_survive_the_round_trip():
    """What the cache stores of the detector's models gives back models equal field by field."""
    profiles = langid_profiles._build_model()
    again = from_arrays(type(profiles), to_arrays(profiles, skip=("_tables",)), _tables={})
    words = langid_words._build(profiles.langs, langid_words.OOV_MARGIN, langid_words.ASSET)
    words_again = from_arrays(type(words), to_arrays(words))
    for original, restored in ((profiles, again), (words, words_again)):
        for field in dataclasses.fields(original):
            a, b = getattr(original, field.name), getattr(restored, field.name)
            if isinstance(a, np.ndarray):
                assert a.dtype == b.dtype and np.array_equal(a, b), field.name
            elif field.name != "_tables":
                assert a == b and type(a) is type(b), field.name


def test_a_process_saves_the_language_tables_and_the_next_maps_them(tmp_path):
    script = (
        "from tweetmill.transforms.langid_tweet import _Tables\n"
        "from tweetmill.transforms.langid_profiles import load_profile_model\n"
        "_Tables.load()\n"
        "import numpy as np\n"
        "print('mapped' if isinstance(load_profile_model().lower.base, np.memmap) else 'built')\n"
    )
    env = {**os.environ, CACHE_ENV: str(tmp_path)}

    def run() -> str:
        return subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True,
                              check=True, timeout=120).stdout.strip()  # fmt: skip

    assert run() == "built"  # in this process
    folders = sorted(p.name.split("-")[1] for p in tmp_path.glob("langid-*") if (p / "complete").exists())
    assert folders == ["loglik", "profiles", "words"]
    stamps = {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()}
    assert run() == "mapped"  # from the files the first process saved, which stay as they were
    assert {p: p.stat().st_mtime_ns for p in tmp_path.iterdir()} == stamps


def test_a_copy_already_in_place_stays(tmp_path, monkeypatch):
    """Two processes that build the same tables at once: the second one's rename fails quietly and
    the first one's files, which a third may already have mapped, are left alone."""
    monkeypatch.setenv(CACHE_ENV, str(tmp_path))
    cached_arrays("t", "k", Builder())
    (folder,) = tmp_path.glob("t-*")
    marker = (folder / "complete").stat().st_ino
    table_cache._save(folder, Builder()(), replace=False)
    assert (folder / "complete").stat().st_ino == marker
    assert [p.name for p in tmp_path.iterdir()] == [folder.name]  # no staging folder left behind

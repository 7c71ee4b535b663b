"""Shared test fixtures. ``shared_data`` is the one path helper for ../shared/data."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"


def shared_data(*parts: str) -> Path:
    """Path into the read-only corpus beside the project (``../shared/data``); skips if absent."""
    path = SHARED_DATA.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"shared data not available: {path}")
    return path


@pytest.fixture(scope="session", autouse=True)
def table_cache(tmp_path_factory) -> Path:
    """The language tables' cache (transforms/table_cache.py) of this session, for every process it
    starts too: the tests neither read nor fill the user's ``~/.cache``."""
    from tweetmill.transforms.table_cache import CACHE_ENV

    folder = tmp_path_factory.mktemp("tables")
    os.environ[CACHE_ENV] = str(folder)
    return folder


@pytest.fixture(scope="session")
def corpus() -> list[str]:
    """3,000 real tweet texts (tests/train_fixtures.py), shared by the trainer's and export's tests."""
    from train_fixtures import tweet_corpus

    return tweet_corpus(3000)


@pytest.fixture(scope="session")
def tokenizer(corpus):
    """A 512-token BPE trained on ``corpus``."""
    from train_fixtures import train_bpe

    return train_bpe(corpus, vocab_size=512)


def detect_in_another_process(texts: list[str], engine: str | None = None) -> list[list[str]]:
    """``make_detector(engine).detect_batch(texts)`` in a fresh interpreter (the default engine
    without ``engine``), each answer as ``[lang, repr(score)]`` so scores compare bit for bit."""
    script = (
        "import json, sys\n"
        "from tweetmill.transforms.langid import make_detector\n"
        "detector = make_detector(*sys.argv[1:])\n"
        "answers = detector.detect_batch(json.load(sys.stdin))\n"
        "print(json.dumps([[lang, repr(score)] for lang, score in answers]))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", script, *([engine] if engine else [])],
        input=json.dumps(texts),
        capture_output=True,
        text=True,
        cwd=REPO_ROOT,
        timeout=60,
        check=True,
    )
    return json.loads(proc.stdout)

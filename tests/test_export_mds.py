"""``tweetmill export --to mds``, read back two ways:

* by a reader written here from the documented MDS layout (``read_mds``: every byte of every shard
  accounted for), which runs everywhere;
* by MosaicML ``streaming`` itself (``StreamingDataset`` and ``LocalDataset``, and its ``MDSWriter``
  writing the same documents byte for byte) in the interpreter ``mds_python`` finds
  (``$TWEETMILL_MDS_PYTHON``, else ``.venv/mds/bin/python`` as ``make install`` makes it, else
  ``/tmp/mdsvenv/bin/python``); skipped without one. Checked with mosaicml-streaming 0.13.0.

The expected documents and split are the trainer's (``open_shards``, ``split_documents``).
"""

from __future__ import annotations

import itertools
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from train_fixtures import synthetic_texts, train_bpe, write_synthetic_shards, write_text_shards
from tweetmill.gpu_train.data import open_shards, split_documents
from tweetmill.pipeline import export_mds
from tweetmill.pipeline.cli import main
from tweetmill.pipeline.export import ExportError, export
from tweetmill.schemas.shard_dir import TOKENIZER_NAME

REPO_ROOT = Path(__file__).resolve().parents[1]
VAL = 0.1
SMALL_LIMIT = 20_000  # bytes per shard: several shards per split from the fixture
TEXTS = synthetic_texts(600, seed=7)


def mds_python() -> str | None:
    """An interpreter with mosaicml-streaming (see the module's docstring), or None."""
    for candidate in (
        os.environ.get("TWEETMILL_MDS_PYTHON"),
        REPO_ROOT / ".venv" / "mds" / "bin" / "python",
        Path("/tmp/mdsvenv/bin/python"),
    ):
        if candidate and Path(candidate).is_file():
            return str(candidate)
    return None


# --- an independent reader of the documented layout ---------------------------------------------------

_VALUE_DTYPES = {"uint16": np.dtype("<u2"), "int32": np.dtype("<i4")}
_SHAPE_DTYPES = {0: np.dtype("<u1"), 1: np.dtype("<u2"), 2: np.dtype("<u4"), 3: np.dtype("<u8")}


def read_mds(folder: Path) -> tuple[str, list[dict]]:
    """(input_ids encoding, samples) of an MDS folder, checking every shard's structure."""
    index = json.loads((folder / "index.json").read_text())
    assert index["version"] == 2 and set(index) == {"shards", "version"}
    encoding, samples = None, []
    for shard in index["shards"]:
        assert shard["format"] == "mds" and shard["version"] == 2 and shard["compression"] is None
        assert shard["column_names"] == ["id", "input_ids", "text"]
        assert shard["column_sizes"] == [8, None, None] and shard["zip_data"] is None
        encoding = shard["column_encodings"][1]
        assert shard["column_encodings"] == ["int64", encoding, "str"] and encoding.startswith("ndarray:")
        dtype = _VALUE_DTYPES[encoding.split(":")[1]]
        raw = (folder / shard["raw_data"]["basename"]).read_bytes()
        assert len(raw) == shard["raw_data"]["bytes"] <= shard["size_limit"] or shard["samples"] == 1
        n = int(np.frombuffer(raw, "<u4", 1)[0])
        assert n == shard["samples"] > 0
        offsets = np.frombuffer(raw, "<u4", n + 1, 4).astype(np.int64)
        config = {k: v for k, v in shard.items() if k not in ("raw_data", "samples", "zip_data")}
        config_data = json.dumps(config, sort_keys=True).encode()
        assert raw[4 + 4 * (n + 1) : offsets[0]] == config_data  # the shard's config sits before the samples
        assert offsets[-1] == len(raw)
        for lo, hi in itertools.pairwise(offsets):
            sample = raw[lo:hi]
            size_ids, size_text = np.frombuffer(sample, "<u4", 2)
            at = 8
            (tweet_id,) = np.frombuffer(sample, "<i8", 1, at)
            at += 8
            head = sample[at]
            assert head >> 2 == 1  # one dimension
            shape_dtype = _SHAPE_DTYPES[head & 3]
            length = int(np.frombuffer(sample, shape_dtype, 1, at + 1)[0])
            values_at = at + 1 + shape_dtype.itemsize
            assert size_ids == 1 + shape_dtype.itemsize + length * dtype.itemsize
            ids = np.frombuffer(sample, dtype, length, values_at)
            at += int(size_ids)
            text = sample[at : at + size_text].decode("utf-8")
            assert at + size_text == len(sample)
            samples.append({"id": int(tweet_id), "input_ids": ids.tolist(), "text": text})
    return encoding, samples


# --- MosaicML streaming itself ----------------------------------------------------------------------

# streaming.vision imports torchvision at ``import streaming``; the MDS reader and writer never use
# it. Where torchvision is missing or unusable (its PyPI build needs CUDA libraries beside a CPU
# torch), stand in the two names streaming.vision imports.
PRELUDE = """
import importlib.machinery, sys, types
try:
    import torchvision  # noqa: F401
except Exception:
    import torch.utils.data
    tv, ds, tr, fn = (types.ModuleType(n) for n in
                      ("torchvision", "torchvision.datasets", "torchvision.transforms",
                       "torchvision.transforms.functional"))
    ds.VisionDataset = torch.utils.data.Dataset
    fn.to_tensor = lambda pic: None
    tv.datasets, tv.transforms, tr.functional = ds, tr, fn
    for m in (tv, ds, tr, fn):
        m.__spec__ = importlib.machinery.ModuleSpec(m.__name__, None)
        sys.modules[m.__name__] = m
"""

READER = (
    PRELUDE
    + """
import json, sys
from streaming import LocalDataset, StreamingDataset
got = {}
for folder in sys.argv[1:]:
    try:
        ds = StreamingDataset(local=folder, shuffle=False, batch_size=1)
    except RuntimeError as exc:  # a split without documents
        got[folder] = {"error": str(exc)}
        continue
    rows = list(ds)
    local = LocalDataset(folder)
    got[folder] = {
        "id": [int(r["id"]) for r in rows],
        "input_ids": [r["input_ids"].tolist() for r in rows],
        "dtype": str(rows[0]["input_ids"].dtype),
        "text": [r["text"] for r in rows],
        "local_id": [int(local[i]["id"]) for i in range(len(local))],
        "num_samples": ds.num_samples,
    }
print(json.dumps(got))
"""
)

WRITER = (
    PRELUDE
    + """
import json, sys
import numpy as np
from streaming import MDSWriter
spec = json.load(open(sys.argv[1]))
cols = {"id": "int64", "input_ids": "ndarray:" + spec["dtype"], "text": "str"}
limit = spec["size_limit"]
with MDSWriter(out=spec["out"], columns=cols, compression=None, hashes=[], size_limit=limit) as w:
    for tweet_id, ids, text in spec["documents"]:
        w.write({"id": tweet_id, "input_ids": np.array(ids, dtype=spec["dtype"]), "text": text})
"""
)


def _run_streaming(script: str, *args: str) -> str:
    python = mds_python()
    if python is None:
        pytest.skip("no interpreter with mosaicml-streaming (TWEETMILL_MDS_PYTHON, .venv/mds, /tmp/mdsvenv)")
    done = subprocess.run([python, "-c", script, *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    write_text_shards(out, TEXTS, train_bpe(TEXTS, vocab_size=300), num_shards=3, record_batch_rows=41)
    return out


def _expected(shards: Path) -> dict[str, dict]:
    """The trainer's split: ids and documents per MDS folder, validation in shard order."""
    data = open_shards(shards)
    train, val = split_documents(data, VAL)
    assert len(val) > 20 and len(train) > 400  # the split is not trivial
    return {
        split: {"id": data.ids[rows].tolist(), "input_ids": [data.table.document(i).tolist() for i in rows]}
        for split, rows in (("train", train), ("validation", np.sort(val)))
    }


def _text(tweet_id: int) -> str:
    return TEXTS[(tweet_id - 1000) // 7]  # write_text_shards' ids: 1000 + 7 i


@pytest.fixture
def small_shards(monkeypatch):
    monkeypatch.setattr(export_mds, "SIZE_LIMIT", SMALL_LIMIT)


def test_layout_read_back_is_the_trainers_split(shards: Path, tmp_path: Path, small_shards) -> None:
    summary = export(shards, tmp_path, "mds", val_fraction=VAL)
    want = _expected(shards)
    for split in ("train", "validation"):
        encoding, samples = read_mds(tmp_path / split)
        assert encoding == "ndarray:uint16"  # vocabulary 300
        assert [s["id"] for s in samples] == want[split]["id"]
        assert [s["input_ids"] for s in samples] == want[split]["input_ids"]
        assert all(s["text"] == _text(s["id"]) for s in samples)
    train_files = summary["splits"]["train"]["files"]
    assert len(train_files) > 3 and train_files[:2] == ["train/index.json", "train/shard.00000.mds"]
    assert sorted(p.name for p in (tmp_path / "train").iterdir()) == sorted(f[6:] for f in train_files)
    assert summary["splits"]["valid"]["documents"] == len(want["validation"]["id"])
    assert summary["splits"]["train"]["tokens"] == sum(map(len, want["train"]["input_ids"]))
    assert summary["format"] == "mds" and summary["dtype"] == "uint16"
    assert (tmp_path / TOKENIZER_NAME).read_bytes() == (shards / TOKENIZER_NAME).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["export.json", TOKENIZER_NAME, "train", "validation"]
    )


def test_streaming_reads_the_trainers_split(shards: Path, tmp_path: Path, small_shards) -> None:
    export(shards, tmp_path, "mds", val_fraction=VAL)
    want = _expected(shards)
    folders = [str(tmp_path / s) for s in ("train", "validation")]
    got = json.loads(_run_streaming(READER, *folders).splitlines()[-1])
    for split, folder in zip(("train", "validation"), folders, strict=True):
        assert got[folder]["id"] == want[split]["id"]
        assert got[folder]["local_id"] == want[split]["id"]
        assert got[folder]["num_samples"] == len(want[split]["id"])
        assert got[folder]["input_ids"] == want[split]["input_ids"]
        assert got[folder]["dtype"] == "uint16"
        assert got[folder]["text"] == [_text(i) for i in want[split]["id"]]


@pytest.mark.parametrize("limit", [SMALL_LIMIT, None])
def test_bytes_are_mdswriters(shards: Path, tmp_path: Path, monkeypatch, limit: int | None) -> None:
    """streaming's own MDSWriter, given the same documents, writes the same files byte for byte."""
    if limit:
        monkeypatch.setattr(export_mds, "SIZE_LIMIT", limit)
    export(shards, tmp_path / "ours", "mds", val_fraction=VAL)
    want = _expected(shards)["train"]
    documents = [[i, ids, _text(i)] for i, ids in zip(want["id"], want["input_ids"], strict=True)]
    spec = {"out": str(tmp_path / "theirs"), "dtype": "uint16", "size_limit": export_mds.SIZE_LIMIT}
    (tmp_path / "spec.json").write_text(json.dumps({**spec, "documents": documents}))
    _run_streaming(WRITER, str(tmp_path / "spec.json"))
    names = sorted(p.name for p in (tmp_path / "theirs").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "ours" / "train").iterdir())
    assert len(names) > (3 if limit else 1)
    for name in names:
        assert (tmp_path / "ours" / "train" / name).read_bytes() == (tmp_path / "theirs" / name).read_bytes()


def test_large_vocabulary_is_int32(tmp_path: Path) -> None:
    shards = tmp_path / "big"
    write_synthetic_shards(shards, 300, vocab_size=70_000, num_shards=2)
    export(shards, tmp_path / "out", "mds", require_tokenizer=False)
    data = open_shards(shards)
    train, _ = split_documents(data, 0.01)
    encoding, samples = read_mds(tmp_path / "out" / "train")
    assert encoding == "ndarray:int32" and max(max(s["input_ids"]) for s in samples) >= 65_536
    assert [s["input_ids"] for s in samples] == [data.table.document(i).tolist() for i in train]


def test_no_validation_and_overwrite(shards: Path, tmp_path: Path) -> None:
    export(shards, tmp_path, "hf-dataset", val_fraction=VAL)
    export(shards, tmp_path, "mds", val_fraction=0.0, overwrite=True)  # replaces the hf folders
    assert not (tmp_path / "dataset_dict.json").exists() and not list(tmp_path.glob("*/state.json"))
    assert json.loads((tmp_path / "validation" / "index.json").read_text()) == {"shards": [], "version": 2}
    assert sorted(p.name for p in (tmp_path / "validation").iterdir()) == ["index.json"]
    _, samples = read_mds(tmp_path / "train")
    assert len(samples) == open_shards(shards).num_docs
    export(shards, tmp_path, "mds", val_fraction=VAL, overwrite=True)  # replaces the mds folders
    assert len(read_mds(tmp_path / "validation")[1]) > 20
    export(shards, tmp_path, "megatron", overwrite=True)
    assert not (tmp_path / "train").exists() and (tmp_path / "train_text_document.bin").is_file()


def test_cli(shards: Path, tmp_path: Path, capsys) -> None:
    assert main(["export", str(shards), "--to", "mds", str(tmp_path / "m"), "--val-fraction", "0.1"]) == 0
    assert "train" in capsys.readouterr().out
    assert [s["id"] for s in read_mds(tmp_path / "m" / "train")[1]] == _expected(shards)["train"]["id"]
    assert main(["export", str(shards), "--to", "mds", "--dtype", "uint32", str(tmp_path / "d")]) == 2
    assert "mds picks its own" in capsys.readouterr().err
    with pytest.raises(ExportError, match="not empty"):
        export(shards, tmp_path / "m", "mds")

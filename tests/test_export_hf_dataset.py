"""``tweetmill export --to hf-dataset``, read back by Hugging Face ``datasets`` itself
(``load_from_disk`` of the DatasetDict, ``load_dataset("arrow", ...)`` of one split's files) in the
interpreter ``test_interop`` finds (``$TWEETMILL_HF_PYTHON``, else ``.venv/hf/bin/python``; skipped
without one). The expected documents and split are the trainer's (``open_shards``,
``split_documents``)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from test_interop import hf_python
from train_fixtures import synthetic_texts, train_bpe, write_text_shards
from tweetmill.gpu_train.data import open_shards, split_documents
from tweetmill.pipeline.export import ExportError, export
from tweetmill.schemas.shard_dir import TOKENIZER_NAME

VAL = 0.1

READER = """
import json, sys
import datasets
out = sys.argv[1]
dd = datasets.load_from_disk(out)
got = {"splits": list(dd), "features": {s: str(dd[s].features) for s in dd}}
for split in dd:
    ds = dd[split]
    got[split] = {"id": list(ds["id"]), "input_ids": list(ds["input_ids"]), "text": list(ds["text"])[:5]}
arrow = datasets.load_dataset("arrow", data_files=out + "/train/*.arrow", split="train")
got["arrow_train_id"] = list(arrow["id"])
import glob
files = sorted(glob.glob(out + "/train/*.arrow"))
got["from_file_train_id"] = [i for f in files for i in datasets.Dataset.from_file(f)["id"]]
print(json.dumps(got))
"""


TEXTS = synthetic_texts(600, seed=5)


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("shards")
    write_text_shards(out, TEXTS, train_bpe(TEXTS, vocab_size=300), num_shards=3, record_batch_rows=41)
    return out


def _read_with_datasets(out: Path, tmp_path: Path) -> dict:
    python = hf_python()
    if python is None:
        pytest.skip("no interpreter with `datasets` (TWEETMILL_HF_PYTHON, .venv/hf, or this one)")
    env = {**os.environ, "HF_HOME": str(tmp_path / "hf"), "HF_DATASETS_OFFLINE": "1"}
    done = subprocess.run(
        [python, "-c", READER, str(out)], capture_output=True, text=True, env=env, timeout=120
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_datasets_reads_the_trainers_documents_and_split(shards: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    summary = export(shards, out, "hf-dataset", val_fraction=VAL)
    data = open_shards(shards)
    train, val = split_documents(data, VAL)
    assert len(val) > 20 and len(train) > 400
    got = _read_with_datasets(out, tmp_path)
    assert got["splits"] == ["train", "validation"]
    for split, want in (("train", train), ("validation", np.sort(val))):  # validation: in shard order
        assert got[split]["id"] == data.ids[want].tolist()
        assert got[split]["input_ids"] == [data.table.document(i).tolist() for i in want]
        assert got[split]["text"] == [TEXTS[(i - 1000) // 7] for i in got[split]["id"][:5]]  # fixture ids
        assert "List(Value('int32'))" in got["features"][split]
    assert got["arrow_train_id"] == got["train"]["id"]
    assert got["from_file_train_id"] == got["train"]["id"]  # each file opens with Dataset.from_file
    assert summary["splits"]["train"]["documents"] == len(train)
    assert summary["splits"]["valid"]["documents"] == len(val)
    files = [f"validation/data-0000{k}-of-00003.arrow" for k in range(3)]
    assert summary["splits"]["valid"]["files"] == files
    assert (out / TOKENIZER_NAME).read_bytes() == (shards / TOKENIZER_NAME).read_bytes()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["dataset_dict.json", "export.json", TOKENIZER_NAME, "train", "validation"]
    )


def test_one_stream_file_per_shard_and_split(shards: Path, tmp_path: Path) -> None:
    export(shards, tmp_path, "hf-dataset", val_fraction=VAL)
    data = open_shards(shards)
    manifest = data.manifest
    for split in ("train", "validation"):
        names = sorted(p.name for p in (tmp_path / split).glob("*.arrow"))
        assert names == [f"data-0000{k}-of-00003.arrow" for k in range(3)]
        state = json.loads((tmp_path / split / "state.json").read_text())
        assert [f["filename"] for f in state["_data_files"]] == names
    rows = 0
    for k, entry in enumerate(manifest.shards):
        both = [pa.ipc.open_stream(tmp_path / s / f"data-0000{k}-of-00003.arrow").read_all()
                for s in ("train", "validation")]  # fmt: skip
        assert both[0].schema.names == ["id", "text", "lang", "created_at", "input_ids"]
        assert sum(t.num_rows for t in both) == entry.rows  # shard k's documents, in its files
        rows += entry.rows
    assert rows == data.num_docs


def test_no_validation_and_overwrite(shards: Path, tmp_path: Path) -> None:
    export(shards, tmp_path, "megatron", val_fraction=VAL)
    export(shards, tmp_path, "hf-dataset", val_fraction=0.0, overwrite=True)
    assert not list(tmp_path.glob("*_text_document.*"))  # the megatron export's files went
    got = _read_with_datasets(tmp_path, tmp_path / "cache")
    assert got["validation"]["id"] == [] and len(got["train"]["id"]) == open_shards(shards).num_docs
    export(shards, tmp_path, "hf-dataset", val_fraction=VAL, overwrite=True)  # replaces the folders
    assert pa.ipc.open_stream(tmp_path / "validation" / "data-00000-of-00003.arrow").read_all().num_rows > 0
    (tmp_path / "train" / "state.json").unlink()  # no longer recognisably an export's folder
    with pytest.raises(ExportError, match="in the way"):
        export(shards, tmp_path, "hf-dataset", overwrite=True)
    assert (tmp_path / "export.json").is_file()  # refused before anything was removed

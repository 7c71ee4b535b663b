"""``tweetmill export --to megatron|nanogpt``, read back by readers written here from the documented
layouts (Megatron-LM's ``MMapIndexedDataset``, nanoGPT's ``prepare.py`` files), not by the exporter.

Shards come from ``train_fixtures`` (word-salad tweets, a BPE trained on the fly, small record
batches so documents cross batch and shard boundaries). The expected documents and the split are
the trainer's: ``gpu_train.data.open_shards`` and ``split_documents``.
"""

from __future__ import annotations

import json
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
from train_fixtures import synthetic_texts, train_bpe, write_synthetic_shards, write_text_shards
from tweetmill.gpu_train.data import open_shards, split_documents
from tweetmill.pipeline.cli import main
from tweetmill.pipeline.export import ExportError, export
from tweetmill.schemas.shard_dir import TOKENIZER_NAME

VAL = 0.1

# --- independent readers, from the formats' documentation ------------------------------------------

# Megatron-LM megatron/core/datasets/indexed_dataset.py, DType enum
_MEGATRON_DTYPES = {1: np.uint8, 2: np.int8, 3: np.int16, 4: np.int32, 5: np.int64,
                    6: np.float64, 7: np.float32, 8: np.uint16}  # fmt: skip


def read_megatron(prefix: Path) -> tuple[np.dtype, list[np.ndarray], np.ndarray]:
    """(dtype, sequences, document indices) of ``prefix.idx`` / ``prefix.bin``."""
    raw = Path(f"{prefix}.idx").read_bytes()
    assert raw[:9] == b"MMIDIDX\x00\x00"
    (version,) = struct.unpack_from("<Q", raw, 9)
    assert version == 1
    (code,) = struct.unpack_from("<B", raw, 17)
    sequences, documents = struct.unpack_from("<QQ", raw, 18)
    at = 34
    lengths = np.frombuffer(raw, np.int32, sequences, at)
    pointers = np.frombuffer(raw, np.int64, sequences, at + 4 * sequences)
    doc_index = np.frombuffer(raw, np.int64, documents, at + 12 * sequences)
    assert len(raw) == at + 12 * sequences + 8 * documents  # nothing else in the file
    dtype = np.dtype(_MEGATRON_DTYPES[code])
    size = Path(f"{prefix}.bin").stat().st_size
    bin_ = np.memmap(f"{prefix}.bin", dtype=dtype, mode="r") if size else np.zeros(0, dtype)
    seqs = [np.asarray(bin_[p // dtype.itemsize :][:n]) for p, n in zip(pointers, lengths, strict=True)]
    assert size == int(lengths.astype(np.int64).sum()) * dtype.itemsize
    return dtype, seqs, doc_index


def _expected(shards: Path) -> tuple[list[np.ndarray], list[np.ndarray], np.ndarray, np.ndarray]:
    """(train documents, validation documents in table order, train indices, val indices), the trainer's."""
    data = open_shards(shards)
    train, val = split_documents(data, VAL)
    val_table_order = np.sort(val)  # the export writes validation documents in shard order
    docs = data.table.document
    return [docs(i) for i in train], [docs(i) for i in val_table_order], train, val


@pytest.fixture(scope="module")
def shards(tmp_path_factory) -> Path:
    texts = synthetic_texts(1500, seed=3)
    tok = train_bpe(texts, vocab_size=400)
    out = tmp_path_factory.mktemp("shards")
    write_text_shards(out, texts, tok, num_shards=3, record_batch_rows=97)
    return out


def _same(got: list[np.ndarray], want: list[np.ndarray]) -> None:
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g.astype(np.int64), w.astype(np.int64))


def test_megatron_documents_and_split_are_the_trainers(shards: Path, tmp_path: Path) -> None:
    summary = export(shards, tmp_path, "megatron", val_fraction=VAL)
    train_docs, val_docs, train, val = _expected(shards)
    assert len(val) > 50 and len(train) > 1000  # the split is not trivial
    for prefix, want in (("train_text_document", train_docs), ("valid_text_document", val_docs)):
        dtype, seqs, doc_index = read_megatron(tmp_path / prefix)
        assert dtype == np.uint16  # vocabulary 400 < 65500, as Megatron's DType.optimal_dtype
        _same(seqs, want)
        np.testing.assert_array_equal(doc_index, np.arange(len(want) + 1))  # one sequence per document
    assert summary["splits"]["train"]["documents"] == len(train)
    assert summary["splits"]["valid"]["documents"] == len(val)
    assert summary["splits"]["valid"]["tokens"] == sum(len(d) for d in val_docs)
    on_disk = json.loads((tmp_path / "export.json").read_text())
    assert on_disk == summary and on_disk["source_fingerprint"] == open_shards(shards).fingerprint
    assert (tmp_path / TOKENIZER_NAME).read_bytes() == (shards / TOKENIZER_NAME).read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["export.json", TOKENIZER_NAME]
        + [f"{s}_text_document.{e}" for s in ("train", "valid") for e in ("bin", "idx")]
    )


def test_nanogpt_files_are_the_concatenated_documents(shards: Path, tmp_path: Path) -> None:
    export(shards, tmp_path, "nanogpt", val_fraction=VAL)
    train_docs, val_docs, _, _ = _expected(shards)
    for name, want in (("train.bin", train_docs), ("val.bin", val_docs)):
        got = np.memmap(tmp_path / name, dtype=np.uint16, mode="r")  # as nanoGPT's get_batch reads it
        np.testing.assert_array_equal(got, np.concatenate(want))
    with open(tmp_path / "meta.pkl", "rb") as f:
        meta = pickle.load(f)
    manifest = open_shards(shards).manifest
    assert meta["vocab_size"] == manifest.tokenizer.vocab_size  # what nanoGPT's train.py reads
    assert meta["eos_id"] == manifest.tokenizer.eos_id


def test_no_validation_split(shards: Path, tmp_path: Path) -> None:
    export(shards, tmp_path, "megatron", val_fraction=0.0)
    data = open_shards(shards)
    _, seqs, _ = read_megatron(tmp_path / "train_text_document")
    _same(seqs, [data.table.document(i) for i in range(data.num_docs)])
    _, val_seqs, doc_index = read_megatron(tmp_path / "valid_text_document")
    assert val_seqs == [] and doc_index.tolist() == [0]


def test_large_vocabulary(tmp_path: Path) -> None:
    shards = tmp_path / "big"
    write_synthetic_shards(shards, 300, vocab_size=70_000, num_shards=2)
    with pytest.raises(ExportError, match="uint16") as caught:
        export(shards, tmp_path / "a", "nanogpt", require_tokenizer=False)
    assert "\n" not in str(caught.value)
    data = open_shards(shards)
    train, _ = split_documents(data, 0.01)
    export(shards, tmp_path / "b", "nanogpt", dtype="uint32", require_tokenizer=False)
    got = np.fromfile(tmp_path / "b" / "train.bin", dtype=np.uint32)
    np.testing.assert_array_equal(got, np.concatenate([data.table.document(i) for i in train]))
    export(shards, tmp_path / "c", "megatron", require_tokenizer=False)
    dtype, seqs, _ = read_megatron(tmp_path / "c" / "train_text_document")
    assert dtype == np.int32 and int(max(s.max() for s in seqs)) >= 65_536
    _same(seqs, [data.table.document(i) for i in train])


def test_refusals(shards: Path, tmp_path: Path) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export(shards, tmp_path / "full", "nanogpt")
    with pytest.raises(ExportError, match="unknown export format 'parquet'"):
        export(shards, tmp_path / "parquet", "parquet")
    no_tokenizer = tmp_path / "no_tok"
    write_synthetic_shards(no_tokenizer, 50, vocab_size=1000, num_shards=1)
    with pytest.raises(ExportError, match=TOKENIZER_NAME):
        export(no_tokenizer, tmp_path / "out", "megatron")
    export(shards, tmp_path / "again", "nanogpt")
    export(shards, tmp_path / "again", "megatron", overwrite=True)  # replaces the earlier export
    assert not (tmp_path / "again" / "train.bin").exists()
    assert json.loads((tmp_path / "again" / "export.json").read_text())["format"] == "megatron"


def test_cli(shards: Path, tmp_path: Path, capsys) -> None:
    argv = ["export", str(shards), "--to", "megatron", str(tmp_path / "m"), "--val-fraction", "0.1"]
    assert main(argv) == 0
    assert "train" in capsys.readouterr().out
    _, seqs, _ = read_megatron(tmp_path / "m" / "train_text_document")
    _same(seqs, _expected(shards)[0])
    assert main(["export", str(shards), "--to", "mds", str(tmp_path / "mds")]) == 0  # tests in
    assert (tmp_path / "mds" / "train" / "index.json").is_file()  # test_export_mds.py
    assert main(["export", str(shards), "--to", "parquet", str(tmp_path / "h")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "invalid choice" in err[0]
    assert not (tmp_path / "h").exists()
    assert main(["export", str(shards), "--to", "hf-dataset", str(tmp_path / "hf")]) == 0  # tests in
    assert (tmp_path / "hf" / "dataset_dict.json").is_file()  # test_export_hf_dataset.py
    assert main(["export", str(shards), "--to", "megatron", "--dtype", "uint32", str(tmp_path / "d")]) == 2
    assert "--dtype is for --to nanogpt" in capsys.readouterr().err


def test_megatron_cores_own_reader(shards: Path, tmp_path: Path) -> None:
    """Megatron-LM's ``IndexedDataset`` itself, where megatron-core is installed (checked with 0.16.1)."""
    indexed = pytest.importorskip("megatron.core.datasets.indexed_dataset")
    export(shards, tmp_path, "megatron", val_fraction=VAL)
    train_docs, val_docs, _, _ = _expected(shards)
    for prefix, want in (("train_text_document", train_docs), ("valid_text_document", val_docs)):
        ds = indexed.IndexedDataset(str(tmp_path / prefix))
        _same([ds[k] for k in range(len(ds))], want)

"""``tweetmill export --to hf-dataset``: the on-disk layout of a Hugging Face ``datasets.DatasetDict``
(what ``DatasetDict.save_to_disk`` writes and ``datasets.load_from_disk`` reads), written with
pyarrow alone (``datasets`` is not a dependency of tweetmill).

``OUT/dataset_dict.json`` (``{"splits": ["train", "validation"]}``) and, per split,
``OUT/<split>/data-0000K-of-0000N.arrow`` (Arrow IPC *stream* files, as ``datasets`` writes and
memory-maps them; one per source shard, so nothing is concatenated: shard ``K`` of ``N`` becomes file
``K`` of ``N`` of either split, empty when none of its documents fall in that split),
``dataset_info.json`` (the features) and ``state.json`` (the file list, a fingerprint, no format).
The files carry the ``huggingface`` schema metadata ``datasets`` writes, so ``load_dataset("arrow",
data_dir=OUT/<split>)`` reads them with the same features.

Columns: ``id`` (int64), ``text`` (string), ``lang`` (string), ``created_at`` (timestamp[ms, UTC]) and
the shard's ``tokens`` as ``input_ids`` (list<int32>, each document ending with EOS), the name
``transformers`` models and collators take. The other shard columns (filters' bookkeeping) are
left out; ``tweetmill`` keeps them in the shards.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import BinaryIO

import pyarrow as pa
from tweetmill.schemas.shard import SHARD_FIELDS

SPLIT_NAMES = {"train": "train", "valid": "validation"}  # export.json's split -> the DatasetDict's
KEPT_COLUMNS = ("id", "text", "lang", "created_at")
TOKENS_COLUMN, INPUT_IDS = "tokens", "input_ids"
DATASET_DICT_JSON = "dataset_dict.json"
DATASET_INFO_JSON = "dataset_info.json"
STATE_JSON = "state.json"


def data_file_name(index: int, count: int) -> str:
    return f"data-{index:05d}-of-{count:05d}.arrow"  # datasets' save_to_disk naming


def _value_dtype(t: pa.DataType) -> str:
    """``datasets.Value``'s dtype string for a pyarrow type (the types the kept columns have)."""
    if pa.types.is_integer(t) or pa.types.is_string(t) or pa.types.is_timestamp(t):
        return str(t)  # int64, string, timestamp[ms, tz=UTC]: the same spelling in both
    raise ValueError(f"no datasets feature written here for the arrow type {t}")


def output_schema(source: pa.Schema) -> pa.Schema:
    """The exported columns (nullable, as ``datasets`` declares every feature), with the
    ``huggingface`` metadata ``datasets`` stores in its Arrow files."""
    fields = [pa.field(name, source.field(name).type) for name in KEPT_COLUMNS]
    fields.append(pa.field(INPUT_IDS, pa.list_(pa.int32())))
    return pa.schema(fields, metadata={"huggingface": json.dumps({"info": {"features": features(fields)}})})


def features(fields: list[pa.Field]) -> dict:
    out: dict = {}
    for f in fields:
        if pa.types.is_list(f.type):
            item = {"dtype": _value_dtype(f.type.value_type), "_type": "Value"}
            out[f.name] = {"feature": item, "_type": "List"}
        else:
            out[f.name] = {"dtype": _value_dtype(f.type), "_type": "Value"}
    return out


class HFDatasetWriter:
    """One Arrow stream file per source shard and split, opened when the shard's first batch comes
    (files of shards that had no rows at all are written empty by ``close``)."""

    def __init__(self, directory: Path, num_shards: int, fingerprint: str) -> None:
        self.directory = directory
        self.num_shards = num_shards
        self.fingerprint = fingerprint
        self.schema: pa.Schema | None = None
        self.handles: list[BinaryIO] = []
        self._writers: dict[str, pa.ipc.RecordBatchStreamWriter] = {}
        self._shard = -1
        for split in SPLIT_NAMES.values():
            (directory / split).mkdir()

    @property
    def files(self) -> dict[str, list[str]]:
        names = [data_file_name(k, self.num_shards) for k in range(self.num_shards)]
        return {s: [f"{d}/{n}" for n in names] for s, d in SPLIT_NAMES.items()}

    def _open(self, shard: int) -> None:
        self._close_writers()
        for split, d in SPLIT_NAMES.items():
            f = open(self.directory / d / data_file_name(shard, self.num_shards), "wb")  # noqa: SIM115
            self.handles.append(f)
            self._writers[split] = pa.ipc.new_stream(f, self.schema)
        self._shard = shard

    def _close_writers(self) -> None:
        for w in self._writers.values():
            w.close()
        for f in self.handles:
            f.close()
        self._writers, self.handles = {}, []

    def write(self, shard: int, split: str, batch: pa.RecordBatch, tokens: pa.Array) -> None:
        """Rows of ``batch`` (a source record batch, already filtered to the split) with ``tokens``."""
        if self.schema is None:
            self.schema = output_schema(batch.schema)
        if shard != self._shard:
            self._open(shard)
        arrays = [batch.column(name) for name in KEPT_COLUMNS]
        arrays.append(tokens.cast(pa.list_(pa.int32())))  # drops the shard's non-null item flag
        self._writers[split].write_batch(pa.RecordBatch.from_arrays(arrays, schema=self.schema))

    def close(self) -> None:
        """Close the files, write empty ones for shards without rows, then the JSON files."""
        self._close_writers()
        schema = self.schema or output_schema(pa.schema(SHARD_FIELDS))
        for d in SPLIT_NAMES.values():
            for k in range(self.num_shards):
                path = self.directory / d / data_file_name(k, self.num_shards)
                if not path.exists():
                    with open(path, "wb") as f, pa.ipc.new_stream(f, schema):
                        pass
        info = {
            "citation": "",
            "description": "",
            "features": features(list(schema)),
            "homepage": "",
            "license": "",
        }
        for split, d in SPLIT_NAMES.items():
            digest = hashlib.sha256(f"{self.fingerprint}:{split}".encode()).hexdigest()[:16]
            names = [data_file_name(k, self.num_shards) for k in range(self.num_shards)]
            state = {
                "_data_files": [{"filename": n} for n in names],
                "_fingerprint": digest,
                "_format_columns": None,
                "_format_kwargs": {},
                "_format_type": None,
                "_output_all_columns": False,
                "_split": None,
            }
            _write_json(self.directory / d / DATASET_INFO_JSON, info)
            _write_json(self.directory / d / STATE_JSON, state)
        _write_json(self.directory / DATASET_DICT_JSON, {"splits": list(SPLIT_NAMES.values())})


def _write_json(path: Path, value: dict) -> None:
    path.write_text(json.dumps(value, indent=2) + "\n", encoding="utf-8")


def previous_export_paths(out: Path) -> list[Path]:
    """What an earlier hf-dataset export left in ``out``: its dataset_dict.json and split folders."""
    if not (out / DATASET_DICT_JSON).is_file():
        return []
    dirs = [out / d for d in SPLIT_NAMES.values() if (out / d / STATE_JSON).is_file()]
    return [out / DATASET_DICT_JSON, *dirs]

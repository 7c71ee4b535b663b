"""``tweetmill export --to mds``: MosaicML ``streaming``'s MDS format (what its ``MDSWriter`` writes
and ``StreamingDataset`` / ``LocalDataset`` read), written with numpy alone (``streaming`` is not a
dependency of tweetmill).

``OUT/train/`` and ``OUT/validation/``, each an MDS dataset: ``index.json`` and
``shard.00000.mds``, ``shard.00001.mds``, ... (none when the split is empty). Every document is one
sample with the columns (MDS sorts them by name):

* ``id``: ``int64``, the tweet id (8 bytes);
* ``input_ids``: ``ndarray:uint16`` when every id fits (a vocabulary of at most 65536 tokens), else
  ``ndarray:int32``: the document's tokens, ending with EOS (a one-dimensional array; dtype fixed by
  the column, shape stored per sample);
* ``text``: ``str`` (UTF-8).

Layout, as ``streaming/base/format/mds/writer.py`` (``encode_sample``, ``encode_joint_shard``) and
``encodings.py`` (``NDArray``) of mosaicml-streaming 0.13 write it, byte for byte:

* a shard: ``uint32`` sample count ``n``; ``n + 1`` ``uint32`` offsets of the samples from the start of
  the file (the last one is the file size); the shard's config as JSON (``json.dumps(...,
  sort_keys=True)``); the samples;
* a sample: ``uint32`` byte sizes of its variable-size columns (``input_ids``, ``text``), then the
  columns' bytes in column order;
* an ``ndarray:<dtype>`` value: one byte ``ndim << 2 | shape code`` (shape code 0..3: the shape stored
  as uint8, uint16, uint32 or uint64, the smallest that holds it), the shape, then the values;
* ``index.json``: ``{"shards": [...], "version": 2}`` (``sort_keys``), each shard its config plus
  ``raw_data`` (basename, bytes, hashes ``{}``), ``samples`` and ``zip_data: null`` (no compression, no
  hashes).

A shard is closed before it would pass ``SIZE_LIMIT`` bytes (64 MiB, ``MDSWriter``'s default; counted
as ``MDSWriter`` counts it: header, config, samples and 4 bytes per sample), so at most one shard
per split is in memory at a time. A document larger than the limit gets a shard of its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import BinaryIO

import numpy as np

SPLIT_NAMES = {"train": "train", "valid": "validation"}  # export.json's split -> the folder
INDEX_JSON = "index.json"
SIZE_LIMIT = 1 << 26  # MDSWriter's default size_limit
COLUMN_NAMES = ("id", "input_ids", "text")  # sorted, as MDSWriter orders them
_UINT32 = np.dtype("<u4")
_INT64 = np.dtype("<i8")
_SHAPE_DTYPES = (np.dtype("<u1"), np.dtype("<u2"), np.dtype("<u4"), np.dtype("<u8"))  # codes 0..3


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every token id fits (ids 0..65535), else int32 (the shards' own type)."""
    return np.dtype("<u2") if vocab_size <= 1 << 16 else np.dtype("<i4")


def shard_name(index: int) -> str:
    return f"shard.{index:05d}.mds"  # MDSWriter's naming


def shard_config(dtype: np.dtype, size_limit: int = SIZE_LIMIT) -> dict:
    """What ``MDSWriter.get_config`` returns for these columns (no compression, no hashes)."""
    return {
        "column_encodings": ["int64", f"ndarray:{dtype.name}", "str"],
        "column_names": list(COLUMN_NAMES),
        "column_sizes": [8, None, None],
        "compression": None,
        "format": "mds",
        "hashes": [],
        "size_limit": size_limit,
        "version": 2,
    }


def _ndarray_head(length: int) -> bytes:
    """``NDArray.encode``'s prefix for a one-dimensional array of ``length`` values (dtype in the column)."""
    if length <= 0:
        raise ValueError("MDS cannot store an empty array")
    code = next(c for c, d in enumerate(_SHAPE_DTYPES) if length <= np.iinfo(d).max)
    return bytes([(1 << 2) | code]) + np.array([length], _SHAPE_DTYPES[code]).tobytes()


def encode_samples(ids: np.ndarray, texts: list[str], offsets: np.ndarray, values: np.ndarray) -> list[bytes]:
    """The MDS bytes of each document: ``values[offsets[i]:offsets[i + 1]]``, in the column's dtype."""
    id_bytes = ids.astype(_INT64, copy=False).tobytes()
    out = []
    for i, text in enumerate(texts):
        lo, hi = int(offsets[i]), int(offsets[i + 1])
        tokens = _ndarray_head(hi - lo) + values[lo:hi].tobytes()
        raw = text.encode("utf-8")
        sizes = np.array([len(tokens), len(raw)], _UINT32).tobytes()
        out.append(sizes + id_bytes[8 * i : 8 * i + 8] + tokens + raw)
    return out


class _SplitWriter:
    """One MDS dataset folder: samples are gathered until the next would pass the size limit."""

    def __init__(self, directory: Path, dtype: np.dtype, size_limit: int) -> None:
        self.directory = directory
        self.config = shard_config(dtype, size_limit)
        self.config_data = json.dumps(self.config, sort_keys=True).encode("utf-8")
        self.size_limit = size_limit
        self.shards: list[dict] = []
        self._samples: list[bytes] = []
        self._size = 0
        self._reset()
        directory.mkdir()

    def _reset(self) -> None:
        self._samples = []
        self._size = 4 + 4 + len(self.config_data)  # MDSWriter's extra_bytes_per_shard

    def write(self, samples: list[bytes]) -> None:
        for sample in samples:
            size = len(sample) + 4  # MDSWriter's extra_bytes_per_sample: the sample's offset
            if self._samples and self.size_limit < self._size + size:
                self._flush()
            self._samples.append(sample)
            self._size += size

    def _flush(self) -> None:
        n = len(self._samples)
        sizes = np.fromiter((len(s) for s in self._samples), np.int64, n)
        offsets = np.concatenate([[0], np.cumsum(sizes)]) + 4 + 4 * (n + 1) + len(self.config_data)
        if offsets[-1] > np.iinfo(np.uint32).max:
            raise ValueError("an MDS shard past 4 GiB (uint32 offsets)")
        name = shard_name(len(self.shards))
        with open(self.directory / name, "wb") as f:
            f.write(np.array([n], _UINT32).tobytes())
            f.write(offsets.astype(_UINT32).tobytes())
            f.write(self.config_data)
            for sample in self._samples:
                f.write(sample)
        raw_data = {"basename": name, "bytes": int(offsets[-1]), "hashes": {}}
        self.shards.append({**self.config, "raw_data": raw_data, "samples": n, "zip_data": None})
        self._reset()

    def close(self) -> None:
        if self._samples:
            self._flush()
        index = {"shards": self.shards, "version": 2}
        with open(self.directory / INDEX_JSON, "w", encoding="utf-8") as f:
            json.dump(index, f, sort_keys=True)


class MDSDatasetWriter:
    """``train/`` and ``validation/`` MDS folders under ``directory``."""

    def __init__(self, directory: Path, dtype: np.dtype, size_limit: int | None = None) -> None:
        size_limit = size_limit or SIZE_LIMIT  # read at call time (tests lower it)
        self.dtype = dtype
        self.handles: list[BinaryIO] = []  # shard files are opened, written and closed at once
        self._splits = {s: _SplitWriter(directory / d, dtype, size_limit) for s, d in SPLIT_NAMES.items()}

    def write(
        self, split: str, ids: np.ndarray, texts: list[str], lengths: np.ndarray, values: np.ndarray
    ) -> None:
        offsets = np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)])
        values = values.astype(self.dtype, copy=False)
        self._splits[split].write(encode_samples(ids, texts, offsets, values))

    def close(self) -> None:
        for w in self._splits.values():
            w.close()

    @property
    def files(self) -> dict[str, list[str]]:
        names = {
            s: [INDEX_JSON] + [x["raw_data"]["basename"] for x in w.shards] for s, w in self._splits.items()
        }
        return {s: [f"{SPLIT_NAMES[s]}/{n}" for n in ns] for s, ns in names.items()}


def previous_export_paths(out: Path) -> list[Path]:
    """What an earlier mds export left in ``out``: its split folders (with an ``index.json``)."""
    if not (out / "export.json").is_file():
        return []
    return [out / d for d in SPLIT_NAMES.values() if (out / d / INDEX_JSON).is_file()]

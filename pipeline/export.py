"""``tweetmill export``: a shard directory as Megatron-LM, nanoGPT, Hugging Face datasets or MosaicML
streaming (MDS) files.

Streams shard by shard and record batch by record batch (memory flat in the corpus size: one record
batch's tokens and write buffers at a time), keeps document boundaries (every document keeps its
EOS), splits train and validation by the trainer's own rule (``gpu_train.data.val_mask``: a hash of
the tweet id, so ``--val-fraction`` holds out the very documents ``tweetmill train`` would) and
copies the tokenizer beside the files.

* ``megatron``: Megatron-LM's ``MMapIndexedDataset`` (``megatron/core/datasets/indexed_dataset.py``)
  as ``train_text_document.{bin,idx}`` and ``valid_text_document.{bin,idx}``, one sequence per
  document. ``.bin``: the tokens, uint16 when the vocabulary is below 65500 (``DType.optimal_dtype``)
  else int32. ``.idx``: ``MMIDIDX\\x00\\x00``, version ``<Q`` 1, dtype code ``<B``, sequence count
  ``<Q``, document-index count ``<Q`` (documents + 1), sequence lengths int32, sequence pointers
  int64 (byte offsets into ``.bin``), document indices int64 ``0..n``.
* ``nanogpt``: nanoGPT's ``prepare.py`` layout, ``train.bin`` and ``val.bin`` of flat uint16 token
  ids (``--dtype uint32`` for vocabularies above 65536, which nanoGPT's ``get_batch`` then has to
  read as such), and ``meta.pkl`` with ``vocab_size`` (what nanoGPT's ``train.py`` reads from it).
* ``hf-dataset``: a ``datasets.DatasetDict`` as ``save_to_disk`` writes it (splits ``train`` and
  ``validation``, one Arrow stream file per source shard), see ``export_hf_dataset``.
* ``mds``: MosaicML streaming's MDS datasets ``train/`` and ``validation/`` (``index.json`` and
  ``shard.NNNNN.mds`` files of at most 64 MiB; columns ``id``, ``input_ids``, ``text``), see
  ``export_mds``.

Validation documents are written in shard order, not in the trainer's order (sorted by tweet id):
the same documents, and none of these readers needs them in the trainer's order.

Everything is written into ``OUT/_tmp-export/`` and moved up when complete; ``export.json`` (the
source's fingerprint, the format, counts per split) is written last.
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import struct
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO

import numpy as np
import pyarrow as pa
from tweetmill.gpu_train.data import dataset_fingerprint, val_mask
from tweetmill.pipeline import export_hf_dataset as hfd
from tweetmill.pipeline import export_mds as mds
from tweetmill.schemas import check_shard_schema
from tweetmill.schemas import shard_dir as sd
from tweetmill.schemas.manifest import Manifest

FORMATS = ("megatron", "nanogpt", "mds", "hf-dataset")
DEFAULT_VAL_FRACTION = 0.01  # gpu_train.train.TrainConfig.val_fraction (that module needs torch)
EXPORT_JSON = "export.json"
TOKENIZER_CONFIG_NAME = "tokenizer_config.json"
TMP_NAME = "_tmp-export"

# Megatron-LM megatron/core/datasets/indexed_dataset.py
MEGATRON_HEADER = b"MMIDIDX\x00\x00"
MEGATRON_VERSION = 1
MEGATRON_DTYPE_CODES = {
    np.dtype(np.uint8): 1,
    np.dtype(np.int8): 2,
    np.dtype(np.int16): 3,
    np.dtype(np.int32): 4,
    np.dtype(np.int64): 5,
    np.dtype(np.float64): 6,
    np.dtype(np.float32): 7,
    np.dtype(np.uint16): 8,
}
MEGATRON_UINT16_BELOW = 65500  # DType.optimal_dtype: uint16 for a cardinality below this, else int32
MEGATRON_PREFIXES = {"train": "train_text_document", "valid": "valid_text_document"}
NANOGPT_FILES = {"train": "train.bin", "valid": "val.bin"}
NANOGPT_DTYPES = {"uint16": np.dtype(np.uint16), "uint32": np.dtype(np.uint32)}
_CHUNK = 1 << 20  # elements per write of generated arrays (document indices)


class ExportError(ValueError):
    """An export that cannot be done as asked; the message says why, in one line."""


@dataclass
class SplitCounts:
    documents: int = 0
    tokens: int = 0
    files: list[str] = field(default_factory=list)


# --- writers ----------------------------------------------------------------------------------------


class _NanoGPTWriter:
    """Flat token ids, documents end to end."""

    def __init__(self, directory: Path, name: str, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.files = [name]
        self._f = open(directory / name, "wb")  # noqa: SIM115 (closed by close())
        self.handles: list[BinaryIO] = [self._f]

    def write(self, values: np.ndarray, lengths: np.ndarray) -> None:
        self._f.write(values.astype(self.dtype, copy=False).data)

    def close(self) -> None:
        self._f.close()


class _MegatronWriter:
    """``<prefix>.bin`` and ``<prefix>.idx``: lengths are streamed into the ``.idx`` behind a header
    whose counts are filled in at the end, the pointers into a side file appended after them."""

    def __init__(self, directory: Path, prefix: str, dtype: np.dtype) -> None:
        self.dtype = dtype
        self.files = [f"{prefix}.bin", f"{prefix}.idx"]
        self._bin = open(directory / f"{prefix}.bin", "wb")  # noqa: SIM115 (closed by close())
        self._idx = open(directory / f"{prefix}.idx", "w+b")  # noqa: SIM115
        self._ptr_path = directory / f"{prefix}.idx.pointers"
        self._ptr = open(self._ptr_path, "w+b")  # noqa: SIM115
        self.handles: list[BinaryIO] = [self._bin, self._idx, self._ptr]
        self._idx.write(self._header(0, 0))
        self._count = 0
        self._byte_offset = 0

    def _header(self, sequences: int, document_indices: int) -> bytes:
        return (
            MEGATRON_HEADER
            + struct.pack("<Q", MEGATRON_VERSION)
            + struct.pack("<B", MEGATRON_DTYPE_CODES[self.dtype])
            + struct.pack("<Q", sequences)
            + struct.pack("<Q", document_indices)
        )

    def write(self, values: np.ndarray, lengths: np.ndarray) -> None:
        if len(lengths) == 0:
            return
        if int(lengths.max()) > np.iinfo(np.int32).max:
            raise ExportError("a document is longer than Megatron's int32 sequence length")
        self._bin.write(values.astype(self.dtype, copy=False).data)
        self._idx.write(lengths.astype(np.int32).data)
        nbytes = lengths.astype(np.int64) * self.dtype.itemsize
        pointers = np.cumsum(nbytes) - nbytes + self._byte_offset
        self._ptr.write(pointers.data)
        self._byte_offset += int(nbytes.sum())
        self._count += len(lengths)

    def close(self) -> None:
        self._bin.close()
        self._ptr.seek(0)
        shutil.copyfileobj(self._ptr, self._idx, 1 << 22)
        self._ptr.close()
        self._ptr_path.unlink()
        for lo in range(0, self._count + 1, _CHUNK):  # one sequence per document: 0, 1, ..., n
            self._idx.write(np.arange(lo, min(lo + _CHUNK, self._count + 1), dtype=np.int64).data)
        self._idx.seek(0)
        self._idx.write(self._header(self._count, self._count + 1))
        self._idx.close()


# --- reading the shards -----------------------------------------------------------------------------


def _opener(shard_dir: str) -> tuple[Callable[[str], AbstractContextManager], Callable[[str], bytes]]:
    """(open a shard, read a small file): memory-mapped for local paths, through Beam otherwise."""
    if "://" not in shard_dir:
        return sd.open_shard, sd.read_local
    from tweetmill.pipeline import shard_io  # Beam, only for gs:// and the like

    return shard_io.open_shard, shard_io.read_bytes


def _batches(
    shard_dir: str, manifest: Manifest, open_shard
) -> Iterator[tuple[int, pa.RecordBatch, np.ndarray, np.ndarray, np.ndarray]]:
    """(shard index, record batch, ids, offsets, token values) of every non-empty record batch of
    every shard, in manifest order, each
    shard checked against the manifest (schema, run metadata, rows, tokens) and every document
    against the tokenizer (ends with EOS, ids inside the vocabulary)."""
    vocab, eos = manifest.tokenizer.vocab_size, manifest.tokenizer.eos_id
    for k, entry in enumerate(manifest.shards):
        path = sd.join(shard_dir, entry.file)
        rows = tokens = 0
        try:
            with open_shard(path) as reader:
                try:
                    check_shard_schema(reader.schema)
                except ValueError as exc:
                    raise ExportError(f"{path}: {exc}") from exc
                for bad in sd.metadata_mismatches(reader.schema, manifest, entry.file):
                    raise ExportError(
                        f"{path}: {bad.label} {bad.got!r} differs from the manifest's {bad.want!r}"
                    )
                id_at = reader.schema.get_field_index("id")
                tokens_at = reader.schema.get_field_index("tokens")
                for i in range(reader.num_record_batches):
                    batch = reader.get_batch(i)
                    if batch.num_rows == 0:
                        continue
                    column = batch.column(tokens_at)
                    if column.null_count:
                        raise ExportError(f"{path}: record batch {i}: the tokens column has nulls")
                    offsets, values = sd.list_layout(column)
                    lengths = np.diff(offsets)
                    if (lengths <= 0).any() or (values[offsets[1:] - 1] != eos).any():
                        raise ExportError(
                            f"{path}: record batch {i}: a document does not end with the EOS id {eos}"
                        )
                    if int(values.min()) < 0 or int(values.max()) >= vocab:
                        raise ExportError(
                            f"{path}: record batch {i}: token ids span [{int(values.min())}, "
                            f"{int(values.max())}], outside the vocabulary of {vocab}"
                        )
                    rows += batch.num_rows
                    tokens += len(values)
                    yield k, batch, batch.column(id_at).to_numpy(), offsets, values
        except (OSError, pa.ArrowException) as exc:
            raise ExportError(
                f"{path}: cannot be read ({exc}); tweetmill verify {shard_dir} says why"
            ) from exc
        if rows != entry.rows or tokens != entry.tokens:
            raise ExportError(
                f"{path}: {rows} rows and {tokens} tokens, the manifest says {entry.rows} and {entry.tokens}"
            )


# --- the export -------------------------------------------------------------------------------------


def format_problem(fmt: str, vocab_size: int | None = None, dtype: str | None = None) -> str | None:
    """Why ``fmt`` (with ``dtype``) cannot be exported for ``vocab_size``, or None."""
    if fmt not in FORMATS:
        return f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}"
    if dtype is not None and fmt != "nanogpt":
        return (
            f"--dtype is for --to nanogpt; {fmt} picks its own "
            f"(uint16 below {MEGATRON_UINT16_BELOW} tokens, else int32)"
            if fmt != "mds"
            else "--dtype is for --to nanogpt; mds picks its own (uint16 up to 65536 tokens, else int32)"
        )
    if dtype is not None and dtype not in NANOGPT_DTYPES:
        return f"--dtype {dtype!r}: one of {', '.join(NANOGPT_DTYPES)}"
    too_big = vocab_size is not None and vocab_size > 1 << 16  # ids 0..65535 fit uint16
    if fmt == "nanogpt" and too_big and (dtype or "uint16") == "uint16":
        return (
            f"the vocabulary has {vocab_size} tokens, more than nanoGPT's uint16 token files hold (65536); "
            "--dtype uint32 writes uint32 files, which nanoGPT's get_batch must then read as np.uint32"
        )
    return None


def output_problem(out: str | os.PathLike, overwrite: bool) -> str | None:
    path = Path(out)
    if path.exists() and not path.is_dir():
        return f"{path}: exists and is not a directory"
    if path.is_dir() and any(path.iterdir()) and not overwrite:
        return f"{path}: not empty (--overwrite replaces what an export wrote there)"
    return None


def _tokenizer_files(
    shard_dir: str, manifest: Manifest, read: Callable[[str], bytes]
) -> dict[str, bytes] | None:
    """tokenizer.json (and tokenizer_config.json when there is one) of the run, or None."""
    try:
        raw = read(sd.join(shard_dir, sd.TOKENIZER_NAME))
    except FileNotFoundError:
        return None
    if not sd.tokenizer_matches(raw, manifest):
        raise ExportError(
            f"{sd.join(shard_dir, sd.TOKENIZER_NAME)}: not the run's tokenizer "
            "(sha256 differs from the manifest's)"
        )
    files = {sd.TOKENIZER_NAME: raw}
    with suppress(FileNotFoundError):
        files[TOKENIZER_CONFIG_NAME] = read(sd.join(shard_dir, TOKENIZER_CONFIG_NAME))
    return files


def export(
    shard_dir: str | os.PathLike,
    out: str | os.PathLike,
    fmt: str,
    *,
    val_fraction: float = DEFAULT_VAL_FRACTION,
    dtype: str | None = None,
    overwrite: bool = False,
    require_tokenizer: bool = True,
) -> dict:
    """Export ``shard_dir`` as ``fmt`` into ``out``; returns what ``export.json`` says."""
    shard_dir = os.fspath(shard_dir)
    out = Path(out)
    if not 0.0 <= val_fraction < 1.0:
        raise ExportError("--val-fraction must be in [0, 1)")
    open_shard, read = _opener(shard_dir)
    try:
        manifest = sd.read_manifest(shard_dir, read)
    except FileNotFoundError as exc:
        raise ExportError(f"{shard_dir}: no {sd.MANIFEST_NAME} (not a finished tweetmill run)") from exc
    sd.check_shard_format(manifest, sd.join(shard_dir, sd.MANIFEST_NAME))
    tok = manifest.tokenizer
    problem = format_problem(fmt, tok.vocab_size, dtype) or output_problem(out, overwrite)
    if problem:
        raise ExportError(problem)
    tokenizer = _tokenizer_files(shard_dir, manifest, read)
    if tokenizer is None and require_tokenizer:
        raise ExportError(f"{shard_dir}: no {sd.TOKENIZER_NAME} beside the shards to export with them")

    out.mkdir(parents=True, exist_ok=True)
    tmp = out / TMP_NAME
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    counts = {split: SplitCounts() for split in ("train", "valid")}
    hf = md = None
    if fmt == "mds":
        np_dtype = mds.token_dtype(tok.vocab_size)
        md = mds.MDSDatasetWriter(tmp, np_dtype)
        writers = {}
    elif fmt == "hf-dataset":
        np_dtype = np.dtype(np.int32)  # the shards' token type, kept
        hf = hfd.HFDatasetWriter(tmp, len(manifest.shards), dataset_fingerprint(manifest))
        writers = {}
    elif fmt == "megatron":
        np_dtype = np.dtype(np.uint16 if tok.vocab_size < MEGATRON_UINT16_BELOW else np.int32)
        writers = {s: _MegatronWriter(tmp, MEGATRON_PREFIXES[s], np_dtype) for s in counts}
    else:
        np_dtype = NANOGPT_DTYPES[dtype or "uint16"]
        writers = {s: _NanoGPTWriter(tmp, NANOGPT_FILES[s], np_dtype) for s in counts}
    try:
        for k, batch, ids, offsets, values in _batches(shard_dir, manifest, open_shard):
            lengths = np.diff(offsets)
            held = val_mask(ids, val_fraction)
            if not held.any():
                parts = {"train": (values, lengths)}
            else:
                token_held = np.repeat(held, lengths)
                parts = {
                    "train": (values[~token_held], lengths[~held]),
                    "valid": (values[token_held], lengths[held]),
                }
            if hf is not None:
                for split in parts:
                    rows = batch if len(parts) == 1 else batch.filter(held if split == "valid" else ~held)
                    hf.write(k, split, rows, rows.column("tokens"))
            if md is not None:
                texts = batch.column("text")
                for split, (v, n) in parts.items():
                    keep = None if len(parts) == 1 else (held if split == "valid" else ~held)
                    part_ids = ids if keep is None else ids[keep]
                    part_texts = texts if keep is None else texts.filter(pa.array(keep))
                    md.write(split, part_ids, part_texts.to_pylist(), n, v)
            for split, (v, n) in parts.items():
                if hf is None and md is None:
                    writers[split].write(v, n)
                counts[split].documents += len(n)
                counts[split].tokens += len(v)
        for w in writers.values():
            w.close()
        for split, w in writers.items():
            counts[split].files = w.files
        for w in (hf, md):
            if w is not None:
                w.close()
                for split, files in w.files.items():
                    counts[split].files = files
        if fmt == "nanogpt":
            meta = {"vocab_size": tok.vocab_size, "eos_id": tok.eos_id, "dtype": np_dtype.name}
            with open(tmp / "meta.pkl", "wb") as f:
                pickle.dump(meta, f, protocol=4)
        for name, raw in (tokenizer or {}).items():
            (tmp / name).write_bytes(raw)
        summary = {
            "format": fmt,
            "source": shard_dir,
            "source_fingerprint": dataset_fingerprint(manifest),
            "run_fingerprint": manifest.run_fingerprint,
            "tokenizer": {
                "sha256": tok.sha256,
                "vocab_size": tok.vocab_size,
                "eos_id": tok.eos_id,
                "eos_token": tok.eos_token,
                "file": sd.TOKENIZER_NAME if tokenizer else None,
            },
            "dtype": np_dtype.name,
            "val_fraction": val_fraction,
            "split_rule": "tweetmill.gpu_train.data.val_mask (tweet-id hash), as tweetmill train splits",
            "splits": {
                s: {"documents": c.documents, "tokens": c.tokens, "files": c.files} for s, c in counts.items()
            },
        }
        previous = [*hfd.previous_export_paths(out), *mds.previous_export_paths(out)] if overwrite else []
        for p in tmp.iterdir():
            if (out / p.name).is_dir() and out / p.name not in previous:
                raise ExportError(f"{out / p.name}: a directory that no earlier export wrote is in the way")
        if out.exists() and overwrite:
            for name in _previous_export_files(out):
                (out / name).unlink()
            for path in dict.fromkeys(previous):  # hf-dataset and mds share the folder names
                shutil.rmtree(path) if path.is_dir() else path.unlink()
        for p in sorted(tmp.iterdir()):
            os.replace(p, out / p.name)
        (out / EXPORT_JSON).write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    finally:
        # after a failure: closing twice is harmless
        for w in [*writers.values(), *(x for x in (hf, md) if x is not None)]:
            for f in w.handles:
                f.close()
        shutil.rmtree(tmp, ignore_errors=True)
    return summary


def _previous_export_files(out: Path) -> list[str]:
    """What an earlier export left in ``out`` (``--overwrite``): its export.json and the files it lists."""
    names = [EXPORT_JSON, "meta.pkl", sd.TOKENIZER_NAME, TOKENIZER_CONFIG_NAME]
    for split in ("train", "valid"):
        names += [NANOGPT_FILES[split]] + [f"{MEGATRON_PREFIXES[split]}.{ext}" for ext in ("bin", "idx")]
    return [n for n in names if (out / n).is_file()]

"""The GPU trainer (gpu_train/) on CPU: reader, packing, masking, training, DDP, checkpoints, CLI.

Shards come from ``train_fixtures`` (real tweets, a BPE trained on the fly). Everything is tiny and
single-threaded; set TWEETMILL_TEST_DEVICE=cuda to run the model tests on a GPU (device_check.sh).
"""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
import torch
from train_fixtures import (
    byte_tokenizer,
    flip_byte,
    load_manifest_json,
    rewrite_shard,
    with_metadata,
    write_shards,
    write_text_shards,
)
from tweetmill.gpu_train import data as data_module
from tweetmill.gpu_train.attention import (
    AttentionUnavailable,
    FlexAttention,
    SdpaAttention,
    VarlenAttention,
    document_layout,
    select_attention,
)
from tweetmill.gpu_train.checkpoint import load_checkpoint, resolve_checkpoint
from tweetmill.gpu_train.cli import main
from tweetmill.gpu_train.data import (
    WINDOW,
    BlockPacker,
    DatasetError,
    DocumentTable,
    open_shards,
    split_documents,
    val_mask,
)
from tweetmill.gpu_train.metrics import Reporter, step_flops
from tweetmill.gpu_train.model import GPT, model_config
from tweetmill.gpu_train.train import ResumeError, TrainConfig, resume_config, train
from tweetmill.schemas.shard_dir import TOKENIZER_NAME, list_layout

torch.set_num_threads(1)
DEVICE = os.environ.get("TWEETMILL_TEST_DEVICE", "cpu")
EXACT = DEVICE == "cpu"  # on a GPU, kernels may reorder sums: compare with a tolerance


@pytest.fixture(scope="session")
def shards(tmp_path_factory, corpus, tokenizer) -> Path:
    """Two shards, several record batches each."""
    out = tmp_path_factory.mktemp("shards")
    write_text_shards(out, corpus, tokenizer, num_shards=2, record_batch_rows=700)
    return out


@pytest.fixture
def shard_copy(shards, tmp_path) -> Path:
    return Path(shutil.copytree(shards, tmp_path / "shards"))


def tiny(data: Path, runs: Path, **changes) -> TrainConfig:
    base = dict(
        data=str(data), model="tiny", steps=6, seq_len=64, batch_tokens=1024, micro_batch=8,
        log_interval=1, val_interval=0, ckpt_interval=0, run_dir=str(runs), name="run", device=DEVICE,
        threads=1, warmup_steps=2,
    )  # fmt: skip
    base.update(changes)
    return TrainConfig(**base)


def checkpoint_state(path: Path) -> dict:
    return load_checkpoint(path)[1]


def assert_same_tensors(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    for k in a:
        if EXACT:
            assert torch.equal(a[k], b[k]), k
        else:
            torch.testing.assert_close(a[k], b[k], rtol=1e-4, atol=1e-5)


# ------------------------------------------------------------------------------------------------
# Reader and packing


def test_list_layout_honours_slices():
    """The one list reader of schemas/shard_dir.py (trainer, stats, verify): offsets from 0 into the
    slice's own values, zero-copy."""
    arr = pa.array([[1, 2], [3], [4, 5, 6], [7]], pa.list_(pa.int32()))
    offsets, values = list_layout(arr.slice(1, 2))
    assert offsets.tolist() == [0, 1, 4] and values.tolist() == [3, 4, 5, 6]
    assert [values[offsets[i] : offsets[i + 1]].tolist() for i in range(2)] == [[3], [4, 5, 6]]
    assert np.shares_memory(values, np.frombuffer(arr.values.buffers()[1], dtype=np.int32))
    with pytest.raises(TypeError, match="ChunkedArray"):
        list_layout(pa.chunked_array([arr]))


def test_reader_maps_shards_and_reads_real_tokens(shards, corpus, tokenizer):
    data = open_shards(shards, verify=True)
    manifest = load_manifest_json(shards)
    assert data.num_docs == manifest["totals"]["rows"] == len(corpus)
    assert data.num_tokens == manifest["totals"]["tokens"]
    assert len(data.table.sources) == 2  # one zero-copy view per shard file, not per record batch
    assert all(not s.flags.owndata for s in data.table.sources)
    # document i is tweet id 1000 + 7 i; its tokens decode back to the text
    i = int(np.flatnonzero(data.ids == 1000 + 7 * 123)[0])
    tokens = data.table.document(i)
    assert tokens[-1] == data.eos_id
    assert tokens[:-1].tolist() == tokenizer.encode([corpus[123]])[0]


def reference_stream(table: DocumentTable, docs: np.ndarray) -> np.ndarray:
    return np.concatenate([table.document(int(d)) for d in docs])


@pytest.mark.parametrize("seq_len", [5, 64, 200])
@pytest.mark.parametrize("layout", ["one_source", "sources", "separate_arrays", "no_span"])
def test_packer_matches_reference(seq_len, layout, monkeypatch):
    if layout == "no_span":  # one gather per source instead of one over the span of all
        monkeypatch.setattr(data_module, "_span", lambda sources: None)
    rng = np.random.default_rng(seq_len)
    lengths = np.concatenate([rng.integers(0, 40, 300), rng.integers(60, 300, 20), [0, 1, 2 * WINDOW]])
    rng.shuffle(lengths)
    tokens = rng.integers(0, 1000, int(lengths.sum())).astype(np.int32)
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    if layout == "one_source":  # documents reach the very end of the source: exercises the exact tail copy
        sources, src = [tokens], np.zeros(len(lengths), np.int32)
        begin = starts
    else:  # documents spread over 3 sources with gaps, as record batches inside files are
        src = (np.arange(len(lengths)) * 3 // len(lengths)).astype(np.int32)
        pool = np.zeros(len(tokens) + 3 * 1000, np.int32)
        begin = starts + 1000 * (src + 1) - 500
        for d in range(len(lengths)):
            pool[begin[d] : begin[d] + lengths[d]] = tokens[starts[d] : starts[d] + lengths[d]]
        cuts = [0, int(begin[src == 1].min()) - 100, int(begin[src == 2].min()) - 100, len(pool)]
        if layout == "separate_arrays":
            pool = pool.copy()
            sources = [pool[cuts[k] : cuts[k + 1]].copy() for k in range(3)]
        else:
            sources = [pool[cuts[k] : cuts[k + 1]] for k in range(3)]
        begin = begin - np.array(cuts)[src]
    table = DocumentTable(sources, src, begin.astype(np.int64), lengths.astype(np.int64))
    docs = np.arange(len(lengths))
    packer = BlockPacker(table, docs, seq_len, seed=7)
    n = packer.blocks_per_epoch
    for epoch in (0, 1):
        stream = reference_stream(table, packer.permutation(epoch))
        want = np.stack([stream[b * seq_len : b * seq_len + seq_len + 1] for b in range(n)])
        assert np.array_equal(packer.blocks(epoch * n, n), want)
    crossing = packer.blocks(n - 2, 4)  # a range over the epoch boundary
    assert np.array_equal(crossing, np.concatenate([packer.blocks(n - 2, 2), packer.blocks(n, 2)]))


def test_blocks_are_a_pure_function_of_seed_epoch_index(shards):
    data = open_shards(shards)
    train_docs, _ = split_documents(data, 0.01)
    a = BlockPacker(data.table, train_docs, 64, seed=1)
    b = BlockPacker(data.table, train_docs, 64, seed=1)
    n = a.blocks_per_epoch
    b.blocks(0, 50)  # warm b's cache in a different order
    for epoch, index in [(0, 0), (0, n - 1), (3, 17), (1, 5)]:
        block = a.block(epoch, index)
        assert block.shape == (65,)
        assert np.array_equal(block, b.block(epoch, index))
        assert np.array_equal(block, b.blocks(epoch * n + index, 3)[0])
    assert not np.array_equal(a.block(0, 3), a.block(1, 3))
    assert not np.array_equal(a.block(0, 3), BlockPacker(data.table, train_docs, 64, seed=2).block(0, 3))


def test_val_split_is_stable_across_runs_and_shard_counts(tmp_path, corpus, tokenizer):
    ids = np.random.default_rng(0).choice(10**15, len(corpus), replace=False).astype(np.int64)
    held = {}
    for k in (1, 3):
        write_text_shards(tmp_path / f"s{k}", corpus, tokenizer, num_shards=k, ids=ids)
        data = open_shards(tmp_path / f"s{k}")
        train_docs, val_docs = split_documents(data, 0.05)
        assert len(train_docs) + len(val_docs) == len(corpus)
        held[k] = data.ids[val_docs]
        assert np.all(np.diff(held[k]) > 0)  # sorted by id
    assert np.array_equal(held[1], held[3])
    assert 0.03 < len(held[1]) / len(corpus) < 0.07
    assert np.array_equal(val_mask(ids, 0.05), val_mask(ids.copy(), 0.05))
    assert not val_mask(ids, 0.0).any() and val_mask(ids, 1.0).all()


# ------------------------------------------------------------------------------------------------
# Document layout and masking


def test_positions_restart_per_document():
    eos = 9
    idx = torch.tensor([[1, 2, eos, 3, eos, eos, 4, 5], [eos, 1, 2, 3, 4, 5, 6, 7]])
    doc, pos = document_layout(idx, eos)
    assert doc.tolist() == [[0, 0, 0, 1, 1, 2, 3, 3], [0, 1, 1, 1, 1, 1, 1, 1]]
    assert pos.tolist() == [[0, 1, 2, 0, 1, 0, 0, 1], [0, 0, 1, 2, 3, 4, 5, 6]]


def _model(attention) -> GPT:
    torch.manual_seed(0)
    cfg = model_config("tiny", vocab_size=50, seq_len=16, eos_id=49)
    return GPT(cfg, attention).to(DEVICE).eval()


def _logits(model: GPT, idx: torch.Tensor) -> torch.Tensor:
    positions, meta = model.prepare(idx)
    with torch.no_grad():
        return model(idx, positions=positions, meta=meta)


def test_document_masking_isolates_documents():
    model = _model(SdpaAttention())
    eos = 49
    block = torch.tensor([[5, 6, 7, eos, 8, 9, 10, 11, eos, 12, 13, eos, 14, 15, 16, 17]], device=DEVICE)
    changed = block.clone()
    changed[0, 4:8] = torch.tensor([30, 31, 32, 33])  # rewrite the second document
    a, b = _logits(model, block), _logits(model, changed)
    for first, last in [(0, 4), (9, 16)]:  # documents before and after it are untouched
        torch.testing.assert_close(a[0, first:last], b[0, first:last], rtol=0, atol=1e-5)
    assert not torch.allclose(a[0, 4:8], b[0, 4:8])
    # a document in a block scores as it does alone at the start of a block
    alone = _logits(model, block[:, 9:12])
    torch.testing.assert_close(a[0, 9:12], alone[0], rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_flex_attention_matches_dense_mask():
    try:
        flex = FlexAttention(compiled=DEVICE != "cpu")
    except ImportError:
        pytest.skip("this torch has no FlexAttention")
    eos = 49
    idx = torch.randint(0, 48, (2, 16), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    idx[0, [3, 7, 8]] = eos
    idx[1, [10]] = eos
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # eager flex on CPU warns that it is unfused
        got = _logits(_model(flex), idx)
    torch.testing.assert_close(got, _logits(_model(SdpaAttention()), idx), rtol=1e-4, atol=1e-4)


def test_attention_selection_and_varlen_sequences():
    assert select_attention("auto", torch.device("cpu"), 16, 64).name == "sdpa"
    with pytest.raises(AttentionUnavailable, match="--attention varlen does not work on cpu"):
        select_attention("varlen", torch.device("cpu"), 16, 64)
    try:
        varlen = VarlenAttention()
    except ImportError:
        pytest.skip("this torch has no varlen attention")
    doc = torch.tensor([[0, 0, 1, 1, 1, 2], [0, 0, 0, 0, 0, 0]])
    cu, longest = varlen.prepare(doc)  # documents of both blocks as one ragged batch
    assert cu.tolist() == [0, 2, 5, 6, 12] and longest == 6


# ------------------------------------------------------------------------------------------------
# Training


@pytest.mark.slow
def test_training_lowers_the_loss(shards, tmp_path, capsys):
    result = train(
        tiny(shards, tmp_path, steps=40, batch_tokens=2048, micro_batch=8, log_interval=10, val_interval=40,
             val_fraction=0.02, peak_tflops=1.0, warmup_steps=4)
    )  # fmt: skip
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train_lines = [x for x in lines if "loss" in x]
    assert [x["step"] for x in train_lines] == [10, 20, 30, 40]
    assert {"lr", "grad_norm", "step_ms", "tokens_per_s", "data_wait", "mfu"} <= train_lines[0].keys()
    assert train_lines[-1]["loss"] < train_lines[0]["loss"] < np.log(512)
    assert result.val_loss is not None and result.val_loss < np.log(512) - 0.7
    out = capsys.readouterr().out  # stdout is a pipe here: one plain progress line per record
    steps = [line.split()[1] for line in out.splitlines() if " loss " in line]
    assert steps == ["10/40", "20/40", "30/40", "40/40"]
    assert "step 40/40  val_loss " in out and "MFU " in out and '"loss"' not in out


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


RECORD = {"step": 4, "loss": 2.25, "lr": 1e-3, "step_ms": 1500.0, "tokens_per_s": 52_100.0, "mfu": 0.41234567}


def test_reporter_writes_json_lines_and_plain_progress_lines(tmp_path):
    piped = io.StringIO()
    reporter = Reporter(tmp_path / "metrics.jsonl", total_steps=100, stream=piped)
    reporter.progress(3)  # no bar when stdout is a pipe or a file
    assert piped.getvalue() == ""
    reporter.log(RECORD)
    reporter.log({"step": 4, "val_loss": 2.5})
    reporter.close()
    assert piped.getvalue().splitlines() == [
        "step 4/100  loss 2.2500  lr 1.00e-03  52.1k tok/s  MFU 41.2%  ETA 2:24",  # 96 steps of 1.5 s
        "step 4/100  val_loss 2.5000",
    ]
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert lines == [{**RECORD, "mfu": 0.412346}, {"step": 4, "val_loss": 2.5}]  # for machines, as before
    # MFU only where the device's peak is known; hours in the ETA
    unknown = Reporter(None, total_steps=10_000, stream=io.StringIO())
    unknown.log({k: v for k, v in RECORD.items() if k != "mfu"})
    assert unknown.stream.getvalue() == "step 4/10000  loss 2.2500  lr 1.00e-03  52.1k tok/s  ETA 4:09:54\n"
    # 6·N·T plus 12·L·d per attended pair
    assert (
        step_flops(n_params=100, tokens=10, n_layer=2, n_embd=8, attended_pairs=55) == 6000 + 12 * 2 * 8 * 55
    )


def test_reporter_json_style_prints_the_metrics_lines(tmp_path):
    out = io.StringIO()
    reporter = Reporter(tmp_path / "metrics.jsonl", total_steps=10, stream=out, style="json")
    reporter.progress(3)
    reporter.log(RECORD)
    reporter.close()
    assert out.getvalue() == (tmp_path / "metrics.jsonl").read_text()


def test_reporter_draws_a_live_bar_on_terminals(tmp_path):
    term = _Terminal()
    reporter = Reporter(tmp_path / "metrics.jsonl", total_steps=10, stream=term)
    assert reporter.style == "rich"
    reporter.progress(3)
    reporter.log({**RECORD, "step": 4})
    reporter.progress(5)
    reporter.close()
    shown = term.getvalue()
    assert "step 4/10  loss 2.2500" in shown  # the line, above the bar
    assert "5/10" in shown and "52.1k tok/s" in shown and "MFU 41.2%" in shown and "ETA 0:08" in shown


def test_reporter_draws_a_plain_bar_without_rich(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "rich.progress", None)  # a GPU machine with only torch
    term = _Terminal()
    reporter = Reporter(None, total_steps=10, stream=term)
    reporter.progress(3)
    reporter.log({**RECORD, "step": 4})
    reporter.close()
    assert "[#########" in term.getvalue() and "] 3/10" in term.getvalue()
    assert "\r\x1b[Kstep 4/10  loss 2.2500" in term.getvalue()  # the bar cleared for the line


_WRITTEN: list[tuple[str, float, int]] = []


class _SummaryWriter:
    """Stands in for ``torch.utils.tensorboard.SummaryWriter`` (tensorboard is an optional extra)."""

    def __init__(self, log_dir: str) -> None:
        self.log_dir = log_dir
        _WRITTEN.clear()

    def add_scalar(self, tag: str, value: float, global_step: int) -> None:
        _WRITTEN.append((tag, value, global_step))

    def close(self) -> None:
        _WRITTEN.append(("closed", 0, 0))


def test_reporter_writes_tensorboard_events_when_asked(tmp_path, monkeypatch):
    fake = type(sys)("torch.utils.tensorboard")
    fake.SummaryWriter = _SummaryWriter
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", fake)
    reporter = Reporter(None, total_steps=10, stream=io.StringIO(), tensorboard=tmp_path / "tb")
    reporter.log({"step": 4, "loss": 2.25, "lr": 1e-3, "tokens_per_s": float("nan")})
    reporter.log({"step": 4, "val_loss": 2.5})
    reporter.close()
    assert _WRITTEN == [
        ("train/loss", 2.25, 4),  # NaN tokens/s left out: TensorBoard would plot a gap anyway
        ("train/lr", 1e-3, 4),
        ("val/loss", 2.5, 4),
        ("closed", 0, 0),
    ]


def test_tensorboard_without_the_package_is_one_line(shards, tmp_path, capsys, caplog):
    monkeypatch = pytest.MonkeyPatch()
    with monkeypatch.context() as m:
        m.setitem(sys.modules, "torch.utils.tensorboard", None)  # not installed
        code = main([str(shards), "--model", "tiny", "--steps", "1", "--run-dir", str(tmp_path),
                     "--device", "cpu", "--tensorboard", str(tmp_path / "tb")])  # fmt: skip
    assert code == 2
    assert [r.getMessage() for r in caplog.records if r.levelname == "ERROR"] == [
        "--tensorboard needs TensorBoard: pip install tensorboard"
    ]
    assert not (tmp_path / "tb").exists() and not list(tmp_path.iterdir())  # nothing ran


def test_resume_continues_exactly(shards, tmp_path):
    straight = train(tiny(shards, tmp_path / "a"))
    first = train(tiny(shards, tmp_path / "b", stop_at=3))
    assert first.step == 3
    resumed = train(resume_config(str(tmp_path / "b" / "latest")))
    assert resumed.step == 6 and resumed.run_dir == first.run_dir
    a, b = checkpoint_state(straight.checkpoint), checkpoint_state(resumed.checkpoint)
    assert a["loader"] == b["loader"] == {"consumed_blocks": 6 * 16}
    assert_same_tensors(a["model"], b["model"])
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert_same_tensors(sa, sb)


def test_resume_refuses_other_data_or_geometry(shards, tmp_path, corpus, tokenizer):
    train(tiny(shards, tmp_path, steps=2))
    with pytest.raises(ResumeError, match="batch-tokens"):
        train(resume_config(str(tmp_path / "latest"), batch_tokens=2048))
    with pytest.raises(ResumeError, match="seq-len"):
        train(resume_config(str(tmp_path / "latest"), seq_len=32))
    other = tmp_path / "other"
    write_text_shards(other, corpus[:2000], tokenizer, num_shards=2)
    with pytest.raises(ResumeError, match="shard set changed"):
        train(resume_config(str(tmp_path / "latest"), data=str(other)))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _ddp_worker(rank: int, world: int, port: int, cfg: dict) -> None:
    os.environ.update(
        RANK=str(rank),
        WORLD_SIZE=str(world),
        LOCAL_RANK=str(rank),
        MASTER_ADDR="127.0.0.1",
        MASTER_PORT=str(port),
    )
    train(TrainConfig(**cfg))


@pytest.mark.slow
def test_ddp_two_ranks_equals_one_rank_accumulating(shards, tmp_path):
    """2 gloo ranks x 1 micro-batch and 1 rank x 2 micro-batches of the same global batch agree."""
    import torch.multiprocessing as mp

    ddp = tiny(shards, tmp_path / "ddp", steps=3, device="cpu")
    mp.spawn(_ddp_worker, args=(2, _free_port(), ddp.__dict__), nprocs=2, join=True)
    single = train(tiny(shards, tmp_path / "one", steps=3, device="cpu"))
    a = checkpoint_state(resolve_checkpoint(tmp_path / "ddp" / "latest"))
    b = checkpoint_state(single.checkpoint)
    assert a["loader"] == b["loader"]
    for k in a["model"]:
        assert torch.equal(a["model"][k], b["model"][k]), k


# ------------------------------------------------------------------------------------------------
# Refusing bad shard directories


def _flip_token_byte(root: Path) -> None:
    data = open_shards(root)
    doc = int(np.flatnonzero(data.table.doc_len >= 3)[0])
    assert data.table.doc_source[doc] == 0  # the first shard's view
    flip_byte(
        root / "shard-00000-of-00002.arrow", int(data.table.doc_start[doc]) * 4
    )  # lowest byte of a token
    del data


def _corrupt(root: Path, case: str) -> None:
    if case == "flipped_byte":
        _flip_token_byte(root)
        open_shards(root)  # structurally fine: only --verify can tell
    elif case == "format_version":
        rewrite_shard(root, 1, lambda t: with_metadata(t, {"tweetmill.format_version": "99"}))
    elif case == "column_type":
        rewrite_shard(root, 1, lambda t: t.set_column(t.schema.get_field_index("num_tokens"), "num_tokens",
                                                       t.column("num_tokens").cast(pa.int64())))  # fmt: skip
    elif case == "tokenizer_mismatch":
        rewrite_shard(root, 1, lambda t: with_metadata(t, {"tweetmill.tokenizer_sha256": "f" * 64}))
    elif case == "missing_shard":
        (root / "shard-00001-of-00002.arrow").unlink()
    elif case == "extra_shard":
        shutil.copy(root / "shard-00000-of-00002.arrow", root / "shard-00002-of-00003.arrow")
    elif case == "rows_mismatch":
        doc = load_manifest_json(root)
        doc["shards"][0]["rows"] += 1
        (root / "manifest.json").write_text(json.dumps(doc))
    elif case == "truncated":
        path = root / "shard-00000-of-00002.arrow"
        path.write_bytes(path.read_bytes()[:-100])
    elif case == "no_manifest":
        (root / "manifest.json").unlink()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("flipped_byte", r"sha256 \w+ differs from the manifest"),
        ("format_version", "format version 99 is not supported"),
        ("column_type", "'num_tokens' has type int64, expected int32"),
        ("tokenizer_mismatch", "tokenizer sha256 'f+' differs from shard-00000-of-00002.arrow's"),
        ("missing_shard", "missing: shard-00001-of-00002.arrow"),
        ("extra_shard", "not in the manifest: shard-00002-of-00003.arrow"),
        ("rows_mismatch", "rows, the manifest says"),
        ("truncated", "not an Arrow IPC file|bytes, the manifest says"),
        ("no_manifest", "no manifest.json"),
    ],
)
def test_bad_shards_are_refused(shard_copy, case, message):
    _corrupt(shard_copy, case)
    with pytest.raises(DatasetError, match=message):  # only a flipped byte needs --verify to be seen
        open_shards(shard_copy, verify=case == "flipped_byte")


def test_shards_must_end_documents_with_eos(tmp_path):
    tok = byte_tokenizer()
    offsets = np.array([0, 3, 6])
    values = np.array([65, 66, 256, 67, 68, 69], np.int32)  # the second document lacks its EOS
    write_shards(
        tmp_path, ids=np.array([1, 2]), offsets=offsets, values=values, tokenizer=tok.info, num_shards=1
    )
    with pytest.raises(DatasetError, match="do not end with the EOS"):
        open_shards(tmp_path)


# ------------------------------------------------------------------------------------------------
# Command line


@pytest.mark.slow
def test_trainer_imports_only_torch_numpy_pyarrow_and_schemas():
    """GPU machines often have nothing else: no Beam, no pipeline or transforms modules. And the
    tweetmill CLI can build the train/generate parsers where torch is not installed."""
    code = (
        "import argparse, sys\n"
        "from tweetmill.gpu_train import cli\n"
        "cli.add_train_arguments(argparse.ArgumentParser())\n"
        "cli.add_generate_arguments(argparse.ArgumentParser())\n"
        "assert 'torch' not in sys.modules\n"
        "import tweetmill.gpu_train.train\n"
        "bad = [m for m in sys.modules if m.split('.')[0] in ('apache_beam', 'tokenizers', 'pytest')\n"
        "       or m.startswith(('tweetmill.pipeline', 'tweetmill.transforms'))]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_cli_train_resume_generate(shards, tmp_path, capsys, caplog):
    runs = tmp_path / "runs"
    common = ["--run-dir", str(runs), "--device", DEVICE, "--threads", "1", "--log-interval", "1"]
    common += ["--micro-batch", "8"]
    first = [str(shards), "--model", "tiny", "--steps", "2", "--batch-tokens", "1024", "--name", "cli"]
    assert main(first + common) == 0
    out = capsys.readouterr().out  # progress lines (stdout is not a terminal here)
    assert [line.split()[1] for line in out.splitlines() if " loss " in line] == ["1/2", "2/2"]
    assert (runs / "latest").read_text().strip() == "cli/step-00000002.pt"
    assert (runs / "cli" / TOKENIZER_NAME).is_file()

    assert main(["--resume", str(runs / "latest"), "--steps", "3", *common]) == 0
    assert "step 3/3  loss " in capsys.readouterr().out
    assert (runs / "cli" / "latest").read_text().strip() == "step-00000003.pt"

    assert main(["--resume", str(runs / "latest"), "--batch-tokens", "2048", *common]) == 2
    assert "checkpoint's run used 1024" in caplog.text

    gen = ["generate", str(runs / "latest"), "--max-new-tokens", "8", "--device", DEVICE]
    assert main([*gen, "--prompt", "I love"]) == 0
    assert capsys.readouterr().out.startswith("I love")  # decoded with the shard set's tokenizer
    gen[1] = str(runs / "cli")  # a run directory works too; ids in, text out
    assert main([*gen, "--prompt-ids", "5,6,7"]) == 0
    assert capsys.readouterr().out.strip()

"""``export-hf`` and the shard directory's ``tokenizer_config.json``: a checkpoint trained here on real
tweets loads in ``transformers`` (no missing keys, the same logits and greedy continuations), the
tokenizers declare EOS and pad, and what GPT-2 cannot express is refused."""

from __future__ import annotations

import importlib.util
import json
import struct
from pathlib import Path

import pytest
import torch
from train_fixtures import write_text_shards
from tweetmill.gpu_train.checkpoint import load_checkpoint
from tweetmill.gpu_train.export_hf import (
    ExportError,
    check_equivalent,
    gpt2_state_dict,
    write_safetensors,
)
from tweetmill.gpu_train.model import GPT, MLP, GPTConfig
from tweetmill.gpu_train.train import TrainConfig, train
from tweetmill.pipeline.cli import main as tweetmill_main
from tweetmill.schemas.shard_dir import TOKENIZER_CONFIG_NAME, TOKENIZER_NAME, tokenizer_config

torch.set_num_threads(1)
needs_transformers = pytest.mark.skipif(
    importlib.util.find_spec("transformers") is None,
    reason="transformers is not installed (pip install transformers)",
)
BUNDLED = Path(__file__).resolve().parents[1] / "transforms" / "assets" / "tweet-bpe-16k.json"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, corpus, tokenizer) -> Path:
    """A tiny model trained for a few CPU steps on real tweets (seconds)."""
    root = tmp_path_factory.mktemp("export")
    write_text_shards(root / "shards", corpus[:1200], tokenizer, num_shards=2)
    cfg = TrainConfig(
        data=str(root / "shards"), model="tiny", steps=30, seq_len=64, batch_tokens=1024, micro_batch=16,
        log_interval=30, val_interval=0, ckpt_interval=0, run_dir=str(root / "runs"), name="run",
        device="cpu", threads=1, warmup_steps=3,
    )  # fmt: skip
    return train(cfg, progress="json").run_dir


@pytest.fixture(scope="module")
def exported(run_dir, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("hf") / "model"
    assert tweetmill_main(["export-hf", str(run_dir), str(out)]) == 0
    return out


def _tweetmill_model(run_dir: Path) -> GPT:
    _, ckpt = load_checkpoint(run_dir)
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    return model.eval()


@needs_transformers
@pytest.mark.slow
def test_export_loads_in_transformers_with_the_same_logits_and_greedy_text(
    exported, run_dir, corpus, tokenizer
):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert sorted(p.name for p in exported.iterdir()) == sorted(
        ["config.json", "generation_config.json", "model.safetensors", "special_tokens_map.json",
         TOKENIZER_CONFIG_NAME, TOKENIZER_NAME]
    )  # fmt: skip
    hf, info = AutoModelForCausalLM.from_pretrained(exported, output_loading_info=True)
    assert not any(info[k] for k in ("missing_keys", "unexpected_keys", "mismatched_keys")), info
    assert type(hf).__name__ == "GPT2LMHeadModel"
    hf.eval()
    hf_tok = AutoTokenizer.from_pretrained(exported)
    eos = tokenizer.info.eos_id
    assert (hf_tok.eos_token, hf_tok.eos_token_id) == (tokenizer.info.eos_token, eos)
    assert hf_tok.pad_token_id == eos  # the fixture BPE has no pad token: EOS pads
    assert hf_tok.model_max_length == 64

    ours = _tweetmill_model(run_dir)
    vocab = ours.cfg.vocab_size
    tweets = corpus[1200:1216]  # real tweets the model did not train on
    worst = 0.0
    for text, ids in zip(tweets, tokenizer.encode(tweets), strict=True):
        ids = ids[:64]
        assert hf_tok(text)["input_ids"][:64] == ids  # no special tokens added on encode
        x = torch.tensor([ids])
        with torch.no_grad():
            diff = (ours(x)[..., :vocab] - hf(x).logits).abs().max().item()
        worst = max(worst, diff)
    assert worst < 1e-4, worst
    print(f"max |logit difference| over {len(tweets)} tweets: {worst:.3g}")

    batch = hf_tok(tweets[:4], return_tensors="pt", padding=True)  # right-padded with EOS, masked
    with torch.no_grad():
        logits = hf(**batch).logits
        for i, mask in enumerate(batch["attention_mask"]):
            n = int(mask.sum())
            alone = ours(batch["input_ids"][i : i + 1, :n])[0, :, :vocab]
            assert (alone - logits[i, :n]).abs().max().item() < 1e-4

    generated = 0
    for prompt in ([eos], tokenizer.encode(["I love"])[0], tokenizer.encode([tweets[0]])[0][:5]):
        want = ours.generate(prompt, max_new_tokens=8, temperature=0)
        x = torch.tensor([prompt])
        with torch.no_grad():
            got = hf.generate(x, attention_mask=torch.ones_like(x), do_sample=False, max_new_tokens=8)
        got = got[0, len(prompt) :].tolist()
        if eos in got:
            got = got[: got.index(eos)]
        assert got == want, (prompt, got, want)
        generated += len(want)
    assert generated > 0  # not only EOS at once


def test_safetensors_writer_round_trips(tmp_path):
    safetensors = pytest.importorskip("safetensors.torch", reason="safetensors is not installed")
    tensors = {
        "a": torch.randn(3, 5),
        "b.bias": torch.zeros(7),
        "c": torch.arange(6.0).view(2, 3).t().contiguous(),
    }
    for dtype, torch_dtype in (("float32", torch.float32), ("bfloat16", torch.bfloat16)):
        path = tmp_path / f"{dtype}.safetensors"
        write_safetensors(path, tensors, dtype, note="x")
        raw = path.read_bytes()
        (size,) = struct.unpack("<Q", raw[:8])
        assert size % 8 == 0 and json.loads(raw[8 : 8 + size])["__metadata__"] == {
            "format": "pt",
            "note": "x",
        }
        loaded = safetensors.load_file(path)
        assert loaded.keys() == tensors.keys()
        for k, t in tensors.items():
            assert loaded[k].dtype == torch_dtype and torch.equal(loaded[k], t.to(torch_dtype))


def _tiny_checkpoint(**config_changes) -> tuple[dict, dict]:
    cfg = GPTConfig(vocab_size=100, n_layer=2, n_head=2, n_embd=16, block_size=16, eos_id=0)
    torch.manual_seed(0)
    model = GPT(cfg)
    return {**cfg.to_dict(), **config_changes}, model.state_dict()


def test_the_conversion_is_checked_against_gpt2s_computation():
    config, state = _tiny_checkpoint()
    hf = gpt2_state_dict(config, state)
    assert "lm_head.weight" not in hf and hf["transformer.wte.weight"].shape == (100, 16)  # padding dropped
    assert hf["transformer.h.0.attn.c_attn.weight"].shape == (16, 48)  # Conv1D: [in, out]
    assert check_equivalent(config, state, hf) < 1e-5


def test_an_option_gpt2_lacks_is_refused():
    config, state = _tiny_checkpoint(norm="rmsnorm")
    with pytest.raises(ExportError, match="norm have no faithful transformers GPT-2 equivalent"):
        gpt2_state_dict(config, state)
    config, state = _tiny_checkpoint()
    state["h.0.mlp.c_fc.bias"] = torch.zeros(64)
    with pytest.raises(
        ExportError, match=r"not the GPT-2 layout this exports \(unexpected h.0.mlp.c_fc.bias\)"
    ):
        gpt2_state_dict(config, state)


def test_a_different_computation_is_refused(monkeypatch):
    """E.g. model.py switching to exact GELU: same weights, not GPT-2's gelu_new; refused, not exported."""
    config, state = _tiny_checkpoint()
    hf = gpt2_state_dict(config, state)

    def exact_gelu(self, x):
        return self.c_proj(torch.nn.functional.gelu(self.c_fc(x) * 30))

    monkeypatch.setattr(MLP, "forward", exact_gelu)
    with pytest.raises(ExportError, match="does not compute what GPT-2 computes"):
        check_equivalent(config, state, hf)


def test_cli_refuses_in_one_line(tmp_path, capsys, run_dir):
    _, ckpt = load_checkpoint(run_dir)
    ckpt["model_config"] = {**ckpt["model_config"], "rope": True}
    torch.save(ckpt, tmp_path / "odd.pt")
    assert tweetmill_main(["export-hf", str(tmp_path / "odd.pt"), str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: model option(s) rope have no faithful"), err
    assert not (tmp_path / "out").exists()
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert tweetmill_main(["export-hf", str(run_dir), str(tmp_path / "full")]) == 2
    assert "not empty; pass --overwrite" in capsys.readouterr().err


@needs_transformers
def test_shard_dir_tokenizer_config_declares_eos_and_pad(tmp_path, tokenizer):
    from tokenizers import Tokenizer
    from transformers import AutoTokenizer
    from tweetmill.transforms.write import tokenizer_config_bytes

    bundled = tmp_path / "bundled"
    bundled.mkdir()
    (bundled / TOKENIZER_NAME).write_bytes(BUNDLED.read_bytes())
    (bundled / TOKENIZER_CONFIG_NAME).write_bytes(
        tokenizer_config_bytes(BUNDLED.read_bytes(), "<|endoftext|>")
    )
    tok = AutoTokenizer.from_pretrained(bundled)
    assert (tok.eos_token, tok.eos_token_id, tok.pad_token, tok.pad_token_id) == (
        "<|endoftext|>",
        0,
        "<|pad|>",
        1,
    )
    text = "I love #coffee @user https://t.co/x 😀"
    assert (
        tok(text)["input_ids"] == Tokenizer.from_file(str(BUNDLED)).encode(text, add_special_tokens=False).ids
    )

    user = tmp_path / "user"  # a tokenizer without a pad token: EOS pads
    user.mkdir()
    (user / TOKENIZER_NAME).write_bytes(tokenizer.json_bytes)
    config = tokenizer_config(tokenizer.json_bytes, "<|endoftext|>")
    assert config["pad_token"] == config["eos_token"] == "<|endoftext|>"
    (user / TOKENIZER_CONFIG_NAME).write_text(json.dumps(config))
    tok = AutoTokenizer.from_pretrained(user)
    assert tok.pad_token_id == tok.eos_token_id == tokenizer.info.eos_id


@needs_transformers
@pytest.mark.slow
def test_a_pipeline_run_writes_tokenizer_config_and_verifies(tmp_path):
    from conftest import REPO_ROOT
    from transformers import AutoTokenizer
    from tweetmill.pipeline.build import run
    from tweetmill.pipeline.options import RunConfig
    from tweetmill.pipeline.verify import verify
    from tweetmill.schemas.shard_dir import read_manifest

    out = tmp_path / "out"
    sample = REPO_ROOT / "examples" / "sample" / "data" / "*.csv"
    run(RunConfig(inputs=(str(sample),), output=str(out), num_shards=2, near_dedup=None))
    assert read_manifest(out).side_files[:2] == [TOKENIZER_NAME, TOKENIZER_CONFIG_NAME]
    report = verify(str(out))
    assert report.ok, report.problems
    tok = AutoTokenizer.from_pretrained(out)
    assert (tok.eos_token, tok.pad_token) == ("<|endoftext|>", "<|pad|>")

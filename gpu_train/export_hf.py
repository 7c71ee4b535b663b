"""``export-hf``: a trained checkpoint as a Hugging Face ``transformers`` model directory.

The model (``model.py``) is GPT-2 without biases, so it becomes a ``GPT2LMHeadModel`` exactly:
biases are zeros, ``nn.Linear`` weights are transposed into GPT-2's ``Conv1D`` layout, the MLP's
tanh GELU is ``gelu_new``, LayerNorm eps 1e-5, attention scaled by 1/sqrt(head_dim), learned
absolute positions, tied input/output embeddings (the embedding's padding rows past the tokenizer's
vocabulary are dropped: no input uses them and generation then cannot produce them). The directory
holds ``model.safetensors`` (written here: no ``safetensors`` package needed), ``config.json``,
``generation_config.json`` and the training tokenizer with its special tokens declared, for
``AutoModelForCausalLM.from_pretrained(OUT)`` and ``AutoTokenizer.from_pretrained(OUT)``.

What cannot be expressed that way is refused, not approximated: a model configuration field this
converter does not know (a future architecture option), weights that are not exactly GPT-2's, and,
checked on every export, a forward pass of the converted weights through GPT-2's computation that
differs from this trainer's model (e.g. after a change to ``model.py``).

Document masking: training attends within a tweet only and restarts positions after every EOS; the
exported model has plain causal attention with positions from 0. The two agree exactly on one
document per sequence, which is how the model is meant to be used (and how ``generate`` uses it):
feed one tweet per sequence, never several packed with EOS between them, and start a new tweet from
EOS alone. Torch and the standard library only (GPU machines may have nothing else).
"""

from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import logging
import math
import struct
import sys
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tweetmill.gpu_train.checkpoint import CheckpointError, load_checkpoint
from tweetmill.schemas.shard_dir import TOKENIZER_CONFIG_NAME, TOKENIZER_NAME, tokenizer_config

log = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
GENERATION_CONFIG_NAME = "generation_config.json"
SPECIAL_TOKENS_MAP_NAME = "special_tokens_map.json"
LAYER_NORM_EPS = 1e-5  # torch's nn.LayerNorm default, which model.py uses; GPT-2's too
# GPTConfig fields this converter maps; any other field is an architecture option it does not know.
KNOWN_CONFIG = {"vocab_size", "n_layer", "n_head", "n_embd", "block_size", "eos_id", "dropout"}
DTYPES = {
    "float32": (torch.float32, "F32"),
    "bfloat16": (torch.bfloat16, "BF16"),
    "float16": (torch.float16, "F16"),
}
CHECK_TOLERANCE = 1e-4  # max |logit difference| (relative to the largest logit, at least 1) at export


class ExportError(ValueError):
    """The checkpoint cannot be exported faithfully, or the output cannot be written; one line why."""


def user_errors() -> tuple[type[Exception], ...]:
    return (ExportError, CheckpointError)


# ---------------------------------------------------------------------------------------------
# Weights


def _per_layer(n_layer: int) -> list[str]:
    names = ["ln_1.weight", "attn.c_attn.weight", "attn.c_proj.weight", "ln_2.weight"]
    names += ["mlp.c_fc.weight", "mlp.c_proj.weight"]
    return [f"h.{i}.{name}" for i in range(n_layer) for name in names]


def check_exportable(model_config: dict[str, Any], state: dict[str, Tensor]) -> None:
    """Raise ``ExportError`` unless the configuration and weights are exactly this GPT-2 layout."""
    unknown = sorted(set(model_config) - KNOWN_CONFIG)
    if unknown:
        raise ExportError(
            f"model option(s) {', '.join(unknown)} have no faithful transformers GPT-2 equivalent; "
            "refusing to export a different model"
        )
    n_layer, n_embd = model_config["n_layer"], model_config["n_embd"]
    if n_embd % model_config["n_head"]:
        raise ExportError(f"n_embd {n_embd} is not a multiple of n_head {model_config['n_head']}")
    expected = {"wte.weight", "wpe.weight", "ln_f.weight", "lm_head.weight", *_per_layer(n_layer)}
    extra, missing = sorted(set(state) - expected), sorted(expected - set(state))
    if extra or missing:
        what = f"unexpected {', '.join(extra[:3])}" if extra else f"missing {', '.join(missing[:3])}"
        raise ExportError(f"the checkpoint's weights are not the GPT-2 layout this exports ({what})")
    if state["lm_head.weight"].data_ptr() != state["wte.weight"].data_ptr() and not torch.equal(
        state["lm_head.weight"], state["wte.weight"]
    ):
        raise ExportError("the output layer is not tied to the token embedding (GPT-2 ties them)")
    if state["wte.weight"].shape[0] < model_config["vocab_size"]:
        raise ExportError("the token embedding has fewer rows than the vocabulary")


def gpt2_state_dict(model_config: dict[str, Any], state: dict[str, Tensor]) -> dict[str, Tensor]:
    """``GPT2LMHeadModel`` weights (fp32, ``transformer.`` prefix, no ``lm_head``: tied)."""
    check_exportable(model_config, state)
    out: dict[str, Tensor] = {
        "transformer.wte.weight": state["wte.weight"][: model_config["vocab_size"]],
        "transformer.wpe.weight": state["wpe.weight"],
    }
    for name in (*_per_layer(model_config["n_layer"]), "ln_f.weight"):
        weight = state[name].float()  # LayerNorm [C], or nn.Linear [out, in]: Conv1D is [in, out]
        out[f"transformer.{name}"] = weight if weight.ndim == 1 else weight.t()
        out[f"transformer.{name.removesuffix('weight')}bias"] = torch.zeros(weight.shape[0])
    return {k: v.float().contiguous() for k, v in out.items()}


def gpt2_logits(hf: dict[str, Tensor], n_layer: int, n_head: int, idx: Tensor) -> Tensor:
    """GPT-2's forward pass (as ``transformers`` computes it) on the converted weights: [S, vocab]."""
    S = idx.shape[0]

    def ln(x: Tensor, name: str) -> Tensor:
        return F.layer_norm(x, x.shape[-1:], hf[f"{name}.weight"], hf[f"{name}.bias"], LAYER_NORM_EPS)

    def conv1d(x: Tensor, name: str) -> Tensor:
        return x @ hf[f"{name}.weight"] + hf[f"{name}.bias"]

    x = hf["transformer.wte.weight"][idx] + hf["transformer.wpe.weight"][:S]
    mask = torch.ones(S, S, dtype=torch.bool).tril()
    for i in range(n_layer):
        p = f"transformer.h.{i}"
        q, k, v = conv1d(ln(x, f"{p}.ln_1"), f"{p}.attn.c_attn").chunk(3, dim=-1)
        q, k, v = (t.view(S, n_head, -1).transpose(0, 1) for t in (q, k, v))
        scores = (q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])).masked_fill(~mask, float("-inf"))
        y = (scores.softmax(-1) @ v).transpose(0, 1).reshape(S, -1)
        x = x + conv1d(y, f"{p}.attn.c_proj")
        h = conv1d(ln(x, f"{p}.ln_2"), f"{p}.mlp.c_fc")
        gelu_new = 0.5 * h * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (h + 0.044715 * h.pow(3))))
        x = x + conv1d(gelu_new, f"{p}.mlp.c_proj")
    return ln(x, "transformer.ln_f") @ hf["transformer.wte.weight"].t()


def check_equivalent(model_config: dict[str, Any], state: dict[str, Tensor], hf: dict[str, Tensor]) -> float:
    """Max |logit difference| between this trainer's model and GPT-2's computation on the converted
    weights, on one pseudo-random document; ``ExportError`` beyond ``CHECK_TOLERANCE``."""
    from tweetmill.gpu_train.model import GPT, GPTConfig

    model = GPT(GPTConfig(**model_config))
    model.load_state_dict(state)
    model.float().eval()
    gen = torch.Generator().manual_seed(0)
    S = min(model_config["block_size"], 32)
    idx = torch.randint(0, model_config["vocab_size"], (S,), generator=gen)
    with torch.no_grad():
        ours = model(idx[None])[0, :, : model_config["vocab_size"]]
        theirs = gpt2_logits(hf, model_config["n_layer"], model_config["n_head"], idx)
    diff = float((ours - theirs).abs().max())
    if not diff <= CHECK_TOLERANCE * max(1.0, float(ours.abs().max())):
        raise ExportError(
            f"the model does not compute what GPT-2 computes (logits differ by {diff:.3g}); model.py "
            "has an architecture transformers' GPT-2 lacks: refusing to export a different model"
        )
    return diff


def write_safetensors(
    path: Path, tensors: dict[str, Tensor], dtype: str = "float32", **metadata: str
) -> None:
    """The safetensors format: 8-byte little-endian header length, JSON header (dtype, shape,
    data offsets; ``__metadata__``), padded with spaces to 8 bytes, then the raw little-endian data."""
    if sys.byteorder != "little":
        raise ExportError("writing safetensors needs a little-endian machine")
    torch_dtype, code = DTYPES[dtype]
    header: dict[str, Any] = {"__metadata__": {"format": "pt", **metadata}}
    offset = 0
    for name, t in tensors.items():
        size = t.numel() * torch_dtype.itemsize
        header[name] = {"dtype": code, "shape": list(t.shape), "data_offsets": [offset, offset + size]}
        offset += size
    raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
    raw += b" " * (-len(raw) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for t in tensors.values():
            f.write(t.detach().to("cpu", torch_dtype).contiguous().view(torch.uint8).numpy().tobytes())


# ---------------------------------------------------------------------------------------------
# Configuration and tokenizer


def hf_config(model_config: dict[str, Any], eos_id: int, pad_id: int, dtype: str) -> dict[str, Any]:
    c = model_config
    dropout = c.get("dropout", 0.0)
    return {
        "architectures": ["GPT2LMHeadModel"],
        "model_type": "gpt2",
        "vocab_size": c["vocab_size"],
        "n_positions": c["block_size"],
        "n_embd": c["n_embd"],
        "n_layer": c["n_layer"],
        "n_head": c["n_head"],
        "n_inner": 4 * c["n_embd"],
        "activation_function": "gelu_new",
        "layer_norm_epsilon": LAYER_NORM_EPS,
        "resid_pdrop": dropout,
        "embd_pdrop": dropout,
        "attn_pdrop": 0.0,  # model.py has no attention dropout
        "initializer_range": 0.02,
        "scale_attn_weights": True,
        "scale_attn_by_inverse_layer_idx": False,
        "reorder_and_upcast_attn": False,
        "tie_word_embeddings": True,
        "use_cache": True,
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "dtype": dtype,
    }


def generation_config(model_config: dict[str, Any], eos_id: int, pad_id: int) -> dict[str, Any]:
    """``tweetmill generate``'s defaults: sampling at temperature 0.8 among the top 50, 64 new tokens."""
    return {
        "bos_token_id": eos_id,
        "eos_token_id": eos_id,
        "pad_token_id": pad_id,
        "do_sample": True,
        "temperature": 0.8,
        "top_k": 50,
        "max_new_tokens": 64,
    }


def find_tokenizer_bytes(ckpt_file: Path, ckpt: dict[str, Any], explicit: str | None = None) -> bytes:
    """The raw ``tokenizer.json`` the model was trained with (sha256 as in the checkpoint): ``explicit``,
    the run directory's copy, the shard directory's, or the bundled one the manifest names."""
    info = ckpt["dataset"]
    want = info["tokenizer_sha256"]
    if explicit:
        candidates = [Path(explicit)]
    else:
        data_dir = Path(info["path"])
        candidates = [ckpt_file.parent / TOKENIZER_NAME, data_dir / TOKENIZER_NAME]
        source = info.get("tokenizer_source") or ""
        spec = importlib.util.find_spec("tweetmill.transforms") if source.startswith("bundled:") else None
        for loc in (spec.submodule_search_locations or []) if spec else []:
            candidates.append(Path(loc) / "assets" / f"{source.removeprefix('bundled:')}.json")
        if source and not source.startswith("bundled:"):
            candidates += [Path(source), data_dir / source]
    for path in candidates:
        if path.is_file():
            raw = path.read_bytes()
            if hashlib.sha256(raw).hexdigest() == want:
                return raw
            log.warning("%s: sha256 differs from the training tokenizer's; skipped", path)
        elif explicit:
            raise ExportError(f"--tokenizer {explicit}: no such file")
    raise ExportError(
        f"the training tokenizer (sha256 {want[:16]}) was not found beside the checkpoint or the shards; "
        "pass it with --tokenizer"
    )


def _token_id(tokenizer_json: bytes, token: str) -> int:
    doc = json.loads(tokenizer_json)
    for added in doc.get("added_tokens") or []:
        if added.get("content") == token:
            return int(added["id"])
    vocab = (doc.get("model") or {}).get("vocab") or {}
    if isinstance(vocab, dict) and token in vocab:
        return int(vocab[token])
    raise ExportError(f"the tokenizer has no token {token!r}")


# ---------------------------------------------------------------------------------------------
# The command


def export_hf(
    checkpoint: str | Path,
    out: str | Path,
    *,
    tokenizer: str | None = None,
    dtype: str = "float32",
    overwrite: bool = False,
) -> dict[str, Any]:
    """Write the ``transformers`` directory ``out``; returns a summary (files, step, check difference)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"{out} exists and is not a directory")
    if out.is_dir() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"{out} is not empty; pass --overwrite to replace its files")
    file, ckpt = load_checkpoint(checkpoint)
    mcfg, state = ckpt["model_config"], ckpt["model"]
    hf = gpt2_state_dict(mcfg, state)
    diff = check_equivalent(mcfg, state, hf)
    raw_tokenizer = find_tokenizer_bytes(file, ckpt, tokenizer)
    eos_token = ckpt["dataset"]["eos_token"]
    tok_config = tokenizer_config(raw_tokenizer, eos_token, model_max_length=mcfg["block_size"])
    eos_id, pad_id = _token_id(raw_tokenizer, eos_token), _token_id(raw_tokenizer, tok_config["pad_token"])
    if eos_id != ckpt["dataset"]["eos_id"]:
        raise ExportError(
            f"the tokenizer's {eos_token} is id {eos_id}, the shards' EOS {ckpt['dataset']['eos_id']}"
        )
    if tok_config["pad_token"] == eos_token:
        log.warning(
            "the tokenizer has no pad token: EOS (%s) pads; mask padding with attention_mask", eos_token
        )
    special = {k: tok_config[k] for k in ("bos_token", "eos_token", "pad_token")}
    out.mkdir(parents=True, exist_ok=True)
    step = str(ckpt.get("step", ""))
    write_safetensors(out / WEIGHTS_NAME, hf, dtype, tweetmill_checkpoint=file.name, tweetmill_step=step)
    files = {
        CONFIG_NAME: hf_config(mcfg, eos_id, pad_id, dtype),
        GENERATION_CONFIG_NAME: generation_config(mcfg, eos_id, pad_id),
        TOKENIZER_CONFIG_NAME: tok_config,
        SPECIAL_TOKENS_MAP_NAME: special,
    }
    for name, doc in files.items():
        (out / name).write_text(json.dumps(doc, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    (out / TOKENIZER_NAME).write_bytes(raw_tokenizer)
    return {"out": str(out), "checkpoint": str(file), "step": ckpt.get("step"), "max_logit_diff": diff,
            "files": sorted([WEIGHTS_NAME, TOKENIZER_NAME, *files])}  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("checkpoint", help="checkpoint file, run directory, or latest pointer (e.g. runs/latest)")
    a("out", help="directory to write (transformers' from_pretrained reads it)")
    a("--tokenizer", help="tokenizer.json (default: the run's copy, then the shard directory's)")
    a("--dtype", choices=sorted(DTYPES), default="float32", help="weights' dtype (default float32)")
    a("--overwrite", action="store_true", help="replace the files of a non-empty OUT")


def run(args: argparse.Namespace) -> int:
    """The ``export-hf`` command; raises one of ``user_errors()`` for a mistake the user can fix."""
    summary = export_hf(
        args.checkpoint, args.out, tokenizer=args.tokenizer, dtype=args.dtype, overwrite=args.overwrite
    )
    print(
        f"exported {summary['checkpoint']} (step {summary['step']}) to {summary['out']} as GPT2LMHeadModel "
        f"(logits within {summary['max_logit_diff']:.1e} of the checkpoint's)"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m tweetmill.gpu_train.export_hf CHECKPOINT OUT`` (machines without the pipeline)."""
    parser = argparse.ArgumentParser(prog="python -m tweetmill.gpu_train.export_hf", description=__doc__)
    add_arguments(parser)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        return run(parser.parse_args(argv))
    except user_errors() as exc:
        log.error("%s", exc)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""A compact GPT (nanoGPT's layout) with document-aware attention for packed tweets.

Blocks hold many tweets back to back, each ending with EOS. Attention is causal *within* a
document only, and positions restart at every document, so a tweet is modelled exactly as if it
were alone in its block (and as ``generate`` later sees it). The document layout is derived on the
device from the EOS tokens of the input, so the loader ships nothing but token ids.

Attention backends (``select_attention``), all computing the same thing:

* ``flex``  — FlexAttention with a block-sparse document mask (CUDA; compiled kernel).
* ``varlen`` — FlashAttention varlen over the documents of a micro-batch (CUDA, newer torch).
* ``sdpa``  — scaled_dot_product_attention with a dense block-diagonal causal mask (everywhere).

``auto`` tries them in that order on CUDA (each must reproduce the dense reference on a small
problem before it is used) and uses ``sdpa`` on CPU.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tweetmill.gpu_train.presets import BACKENDS, PRESETS

log = logging.getLogger(__name__)

VOCAB_MULTIPLE = 64  # pad the embedding to a multiple of 64 rows: faster matmuls, same model


@dataclass
class GPTConfig:
    vocab_size: int  # the tokenizer's (from the shards' metadata)
    n_layer: int
    n_head: int
    n_embd: int
    block_size: int  # largest position + 1 (positions restart per document, so <= seq_len)
    eos_id: int | None = None  # document separator; None: plain causal attention
    dropout: float = 0.0

    @property
    def padded_vocab(self) -> int:
        return -(-self.vocab_size // VOCAB_MULTIPLE) * VOCAB_MULTIPLE

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def model_config(preset: str, *, vocab_size: int, seq_len: int, eos_id: int | None) -> GPTConfig:
    if preset not in PRESETS:
        raise ValueError(f"unknown model preset {preset!r}; choose from {', '.join(PRESETS)}")
    p = PRESETS[preset]
    return GPTConfig(
        vocab_size=vocab_size,
        n_layer=p.n_layer,
        n_head=p.n_head,
        n_embd=p.n_embd,
        block_size=seq_len,
        eos_id=eos_id,
    )


# ---------------------------------------------------------------------------------------------
# Document layout and attention backends


def document_layout(idx: Tensor, eos_id: int) -> tuple[Tensor, Tensor]:
    """(document index, position within document) of every token of ``idx`` [B, S].

    A document starts at the beginning of the block and after every EOS.
    """
    B, S = idx.shape
    starts = torch.zeros_like(idx, dtype=torch.bool)
    starts[:, 1:] = idx[:, :-1] == eos_id
    doc = starts.cumsum(1, dtype=torch.int32)
    ar = torch.arange(S, device=idx.device).expand(B, S)
    first = torch.where(starts, ar, 0).cummax(1).values
    return doc, ar - first


class Attention:
    """Causal attention restricted to documents. ``prepare`` runs once per batch, outside compile."""

    name = "base"

    def prepare(self, doc: Tensor) -> Any:
        raise NotImplementedError

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, meta: Any) -> Tensor:  # q,k,v: [B, H, S, D]
        raise NotImplementedError


class SdpaAttention(Attention):
    """Dense [B, 1, S, S] block-diagonal causal mask: works everywhere, memory grows with S²."""

    name = "sdpa"

    def prepare(self, doc: Tensor) -> Tensor:
        S = doc.shape[1]
        causal = torch.ones(S, S, dtype=torch.bool, device=doc.device).tril()
        return ((doc[:, :, None] == doc[:, None, :]) & causal)[:, None]

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, meta: Tensor) -> Tensor:
        return F.scaled_dot_product_attention(q, k, v, attn_mask=meta)


class FlexAttention(Attention):
    """FlexAttention: only the 128x128 tiles that intersect a document are computed."""

    name = "flex"

    def __init__(self, compiled: bool) -> None:
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        self._create = create_block_mask
        self._compiled = compiled
        # Eager flex_attention materializes the scores; the compiled one is the fused kernel.
        self._attend = torch.compile(flex_attention, dynamic=False) if compiled else flex_attention

    def prepare(self, doc: Tensor) -> Any:
        B, S = doc.shape

        def same_document_causal(b, h, q_idx, kv_idx):
            return (q_idx >= kv_idx) & (doc[b, q_idx] == doc[b, kv_idx])

        return self._create(same_document_causal, B, None, S, S, device=doc.device, _compile=self._compiled)

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, meta: Any) -> Tensor:
        return self._attend(q, k, v, block_mask=meta)


class VarlenAttention(Attention):
    """FlashAttention over the concatenated documents of a micro-batch (no padding, no mask)."""

    name = "varlen"

    def __init__(self) -> None:
        from torch.nn.attention.varlen import varlen_attn

        self._varlen = varlen_attn

    def prepare(self, doc: Tensor) -> tuple[Tensor, int]:
        B, S = doc.shape
        starts = torch.ones_like(doc, dtype=torch.bool)
        starts[:, 1:] = doc[:, 1:] != doc[:, :-1]  # every block starts a new sequence too
        begin = torch.nonzero(starts.flatten()).flatten().to(torch.int32)
        cu = torch.cat([begin, torch.tensor([B * S], dtype=torch.int32, device=doc.device)])
        max_len = int((cu[1:] - cu[:-1]).max())
        return cu, max_len

    def __call__(self, q: Tensor, k: Tensor, v: Tensor, meta: tuple[Tensor, int]) -> Tensor:
        cu, max_len = meta
        B, H, S, D = q.shape

        def flat(t: Tensor) -> Tensor:
            return t.transpose(1, 2).reshape(B * S, H, D)

        out = self._varlen(flat(q), flat(k), flat(v), cu, cu, max_len, max_len, window_size=(-1, 0))
        return out.view(B, S, H, D).transpose(1, 2)


class AttentionUnavailable(RuntimeError):
    """The requested attention backend does not work on this device / torch build."""


def make_attention(name: str, device: torch.device, *, compiled: bool = True) -> Attention:
    if name == "sdpa":
        return SdpaAttention()
    if name == "flex":
        return FlexAttention(compiled=compiled and device.type == "cuda")
    if name == "varlen":
        return VarlenAttention()
    raise ValueError(f"unknown attention backend {name!r}; choose from {', '.join(BACKENDS)}")


def select_attention(requested: str, device: torch.device, head_dim: int, seq_len: int) -> Attention:
    """The requested backend, or for ``auto`` the first that works here and matches the reference.

    An explicitly requested backend that fails its check raises; ``auto`` logs why and moves on.
    """
    if requested != "auto":
        try:
            backend = make_attention(requested, device)
            _check_backend(backend, device, head_dim, seq_len)
        except (ImportError, RuntimeError, NotImplementedError) as exc:
            first = (str(exc).splitlines() or [type(exc).__name__])[0][:300]
            raise AttentionUnavailable(f"--attention {requested} does not work on {device}: {first}") from exc
        return backend
    candidates = ["flex", "varlen", "sdpa"] if device.type == "cuda" else ["sdpa"]
    for name in candidates:
        try:
            backend = make_attention(name, device)
            _check_backend(backend, device, head_dim, seq_len)
        except Exception as exc:  # an unavailable kernel surfaces as any error type
            log.info("attention backend %s unavailable here: %s", name, str(exc).splitlines()[0][:200])
            continue
        log.info("attention backend: %s", name)
        return backend
    raise RuntimeError("no attention backend works on this device")


def reference_attention(q: Tensor, k: Tensor, v: Tensor, doc: Tensor) -> Tensor:
    """Plain fp32 softmax attention with the document mask: the definition the backends must match."""
    S = q.shape[2]
    mask = (doc[:, :, None] == doc[:, None, :]) & torch.ones(S, S, dtype=torch.bool, device=q.device).tril()
    scores = (q.float() @ k.float().transpose(-1, -2)) / math.sqrt(q.shape[-1])
    scores = scores.masked_fill(~mask[:, None], float("-inf"))
    return torch.softmax(scores, -1) @ v.float()


def _check_backend(backend: Attention, device: torch.device, head_dim: int, seq_len: int) -> None:
    """Forward and backward on random documents must match ``reference_attention``."""
    gen = torch.Generator(device="cpu").manual_seed(0)
    B, H, S = 2, 2, min(seq_len, 256)
    dtype = torch.bfloat16 if device.type == "cuda" else torch.float32
    q, k, v = (
        torch.randn(B, H, S, head_dim, generator=gen).to(device, dtype).requires_grad_() for _ in range(3)
    )
    lengths = torch.randint(1, 40, (B, S), generator=gen)
    doc = (torch.arange(S)[None, :] >= lengths.cumsum(1)[:, :, None]).sum(1).to(device, torch.int32)
    doc[1] = 0  # one block that is a single document
    out = backend(q, k, v, backend.prepare(doc))
    ref = reference_attention(q, k, v, doc)
    tol = 3e-2 if dtype == torch.bfloat16 else 1e-4
    if not torch.allclose(out.float(), ref, atol=tol, rtol=tol):
        raise RuntimeError(
            f"{backend.name}: output differs from the reference by {(out.float() - ref).abs().max():.3g}"
        )
    grads = torch.autograd.grad(out.float().square().sum(), (q, k, v))
    ref_grads = torch.autograd.grad(ref.square().sum(), (q, k, v))
    for g, r in zip(grads, ref_grads, strict=True):
        scale = r.abs().max().clamp_min(1.0)
        if not torch.allclose(g.float() / scale, r.float() / scale, atol=5 * tol, rtol=5 * tol):
            raise RuntimeError(f"{backend.name}: gradient differs from the reference")


# ---------------------------------------------------------------------------------------------
# The model


class CausalSelfAttention(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.n_head = cfg.n_head
        self.c_attn = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor, attention: Attention | None, meta: Any) -> Tensor:
        B, S, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, S, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if attention is None or meta is None:  # one document (generation)
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:
            y = attention(q, k, v, meta)
        y = y.transpose(1, 2).contiguous().view(B, S, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.c_fc = nn.Linear(cfg.n_embd, 4 * cfg.n_embd, bias=False)
        self.c_proj = nn.Linear(4 * cfg.n_embd, cfg.n_embd, bias=False)
        self.dropout = cfg.dropout

    def forward(self, x: Tensor) -> Tensor:
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")), self.dropout, self.training)


class Block(nn.Module):
    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.attn = CausalSelfAttention(cfg)
        self.ln_2 = nn.LayerNorm(cfg.n_embd, bias=False)
        self.mlp = MLP(cfg)

    def forward(self, x: Tensor, attention: Attention | None, meta: Any) -> Tensor:
        x = x + self.attn(self.ln_1(x), attention, meta)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, cfg: GPTConfig, attention: Attention | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.attention = attention if attention is not None else SdpaAttention()
        self.wte = nn.Embedding(cfg.padded_vocab, cfg.n_embd)
        self.wpe = nn.Embedding(cfg.block_size, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, bias=False)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.padded_vocab, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying
        self.apply(self._init_weights)
        for name, p in self.named_parameters():  # GPT-2: scale residual projections by depth
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * cfg.n_layer))

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self, *, non_embedding: bool = True) -> int:
        """Parameters (tied embedding counted once); without position embeddings by default, as MFU wants."""
        n = sum(p.numel() for p in self.parameters())
        return n - self.wpe.weight.numel() if non_embedding else n

    def prepare(self, idx: Tensor) -> tuple[Tensor, Any]:
        """(positions, attention metadata) for a batch; run outside torch.compile."""
        if self.cfg.eos_id is None:
            pos = torch.arange(idx.shape[1], device=idx.device).expand(idx.shape)
            return pos, None
        doc, pos = document_layout(idx, self.cfg.eos_id)
        return pos, self.attention.prepare(doc)

    def forward(
        self, idx: Tensor, targets: Tensor | None = None, positions: Tensor | None = None, meta: Any = None
    ) -> Tensor:
        """Logits [B, S, padded_vocab], or the mean cross-entropy when ``targets`` is given.

        Without ``positions``/``meta`` the whole input is one document (generation).
        """
        if positions is None:
            positions = torch.arange(idx.shape[1], device=idx.device)[None]
        x = self.wte(idx) + self.wpe(positions)
        x = F.dropout(x, self.cfg.dropout, self.training)
        for block in self.h:
            x = block(x, self.attention, meta)
        logits = self.lm_head(self.ln_f(x))
        if targets is None:
            return logits
        return F.cross_entropy(logits.float().view(-1, logits.size(-1)), targets.reshape(-1).long())

    @torch.no_grad()
    def generate(
        self,
        prompt: list[int],
        *,
        max_new_tokens: int,
        temperature: float = 0.8,
        top_k: int | None = 50,
        generator: torch.Generator | None = None,
    ) -> list[int]:
        """Sample one document continuing ``prompt``; stops at EOS (not returned) or ``max_new_tokens``."""
        device = self.wte.weight.device
        out = list(prompt)
        for _ in range(max_new_tokens):
            ctx = out[-self.cfg.block_size :] if out else [self.cfg.eos_id or 0]
            logits = self(torch.tensor([ctx], device=device))[0, -1, : self.cfg.vocab_size].float()
            if temperature <= 0:
                nxt = int(logits.argmax())
            else:
                logits = logits / temperature
                if top_k is not None and top_k < logits.numel():
                    kth = torch.topk(logits, top_k).values[-1]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = torch.softmax(logits, -1).cpu()
                nxt = int(torch.multinomial(probs, 1, generator=generator))
            if nxt == self.cfg.eos_id:
                break
            out.append(nxt)
        return out[len(prompt) :]

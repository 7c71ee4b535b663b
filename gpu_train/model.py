"""A compact GPT (nanoGPT's layout) with document-aware attention for packed tweets.

Blocks hold many tweets back to back, each ending with EOS. Attention is causal *within* a
document only, and positions restart at every document, so a tweet is modelled exactly as if it
were alone in its block (and as ``generate`` later sees it). The document layout is derived on the
device from the EOS tokens of the input, so the loader ships nothing but token ids. The attention
backends (flex, varlen, sdpa) and their selection are in ``attention.py``.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from tweetmill.gpu_train.attention import (
    Attention,
    AttentionUnavailable,  # noqa: F401  (re-exported: the CLI's user errors)
    SdpaAttention,
    document_layout,
    select_attention,  # noqa: F401  (re-exported: train.py picks the backend through the model)
)
from tweetmill.gpu_train.presets import PRESETS

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

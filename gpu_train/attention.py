"""Document-aware attention for packed tweets: the backends the model can run on, all computing the same.

Blocks hold many tweets back to back, each ending with EOS. Attention is causal *within* a
document only (``document_layout`` derives the documents on the device from the EOS tokens), so a
tweet is modelled exactly as if it were alone in its block. Backends (``select_attention``):

* ``flex``  — FlexAttention with a block-sparse document mask (CUDA; compiled kernel).
* ``varlen`` — FlashAttention varlen over the documents of a micro-batch (CUDA, newer torch).
* ``sdpa``  — scaled_dot_product_attention with a dense block-diagonal causal mask (everywhere).

``auto`` tries them in that order on CUDA (each must reproduce ``reference_attention`` on a small
problem before it is used) and uses ``sdpa`` on CPU.
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from tweetmill.gpu_train.presets import BACKENDS

log = logging.getLogger(__name__)


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

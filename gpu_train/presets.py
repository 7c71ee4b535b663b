"""Model presets and attention backend names: plain data, importable without torch.

The tweetmill CLI builds its ``train`` parser from these even where torch is not installed.
"""

from __future__ import annotations

from dataclasses import dataclass

BACKENDS = ("auto", "flex", "varlen", "sdpa")


@dataclass(frozen=True)
class Preset:
    n_layer: int
    n_head: int
    n_embd: int
    seq_len: int
    batch_tokens: int  # global tokens per optimizer step
    micro_batch: int  # blocks per rank per forward pass
    lr: float


PRESETS: dict[str, Preset] = {
    # For tests and CPU smoke runs: trains in seconds.
    "tiny": Preset(n_layer=2, n_head=2, n_embd=64, seq_len=64, batch_tokens=1024, micro_batch=16, lr=3e-3),
    # nanoGPT's "baby GPT": a real model that still trains on one small GPU.
    "gpt-small": Preset(6, 6, 384, seq_len=512, batch_tokens=65_536, micro_batch=64, lr=1e-3),
    "gpt2-124m": Preset(12, 12, 768, seq_len=1024, batch_tokens=524_288, micro_batch=32, lr=6e-4),
    "gpt2-350m": Preset(24, 16, 1024, seq_len=1024, batch_tokens=524_288, micro_batch=16, lr=3e-4),
}

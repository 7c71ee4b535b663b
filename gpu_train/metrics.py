"""Throughput accounting (model FLOPs, MFU) and the metrics stream (JSON lines + a terminal bar)."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import IO, Any

import torch

# Dense bf16 tensor-core peak per GPU, TFLOP/s (vendor datasheets, without sparsity). Longest match
# wins, so "H100 PCIe" beats "H100". Unknown devices report no MFU unless --peak-tflops is given.
PEAK_BF16_TFLOPS: dict[str, float] = {
    "H200": 989.0,
    "GH200": 989.0,
    "H100": 989.0,  # SXM
    "H100 NVL": 835.0,
    "H100 PCIe": 756.0,
    "H800": 989.0,
    "B200": 2250.0,
    "A100": 312.0,
    "A800": 312.0,
    "L40S": 362.0,
    "L40": 181.0,
    "L4": 121.0,
    "RTX 4090": 165.0,
}


def peak_flops(device: torch.device, override_tflops: float | None = None) -> float | None:
    """Peak FLOP/s of one device, or None when unknown (CPU, unlisted GPU)."""
    if override_tflops is not None:
        return override_tflops * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    matches = [k for k in PEAK_BF16_TFLOPS if k in name]
    return PEAK_BF16_TFLOPS[max(matches, key=len)] * 1e12 if matches else None


def step_flops(n_params: int, tokens: int, n_layer: int, n_embd: int, attended_pairs: int) -> float:
    """Training FLOPs of a step: ``6·N·T + 12·L·d·P``.

    * ``6·N·T``: forward (2) plus backward (4) multiply-adds per parameter and token; ``N`` counts
      all parameters but the position embedding (a lookup), the tied embedding once (it is the
      output projection's matmul); ``T`` is the tokens of the step.
    * ``12·L·d·P``: attention scores and weighted values, 2·d FLOPs each per (query, key) pair
      forward, times 3 with backward, in ``L`` layers; ``P`` counts the pairs actually attended
      (causal, within a document: Σ n(n+1)/2 over document segments). PaLM's ``12·L·d·S`` per
      token would count the full S×S square even though tweets attend to ~30 keys.

    Useful work only: a dense-mask backend computing all S² scores gets no credit for the extra.
    """
    return 6.0 * n_params * tokens + 12.0 * n_layer * n_embd * attended_pairs


class Reporter:
    """Writes one JSON object per line to ``<run>/metrics.jsonl`` and ``stream``; a bar on a terminal."""

    def __init__(self, path: Path | None, total_steps: int, stream: IO[str] | None = None) -> None:
        self.stream = stream if stream is not None else sys.stdout
        self.file = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115
        self.total = total_steps
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self._bar_shown = False

    def log(self, record: dict[str, Any]) -> None:
        line = json.dumps({k: _plain(v) for k, v in record.items()}, allow_nan=False)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()
        if self._bar_shown:
            self.stream.write("\r\033[K")
            self._bar_shown = False
        self.stream.write(line + "\n")
        self.stream.flush()

    def progress(self, step: int, loss: float | None, tokens_per_s: float | None) -> None:
        if not self.tty:
            return
        width = 30
        done = int(width * step / max(self.total, 1))
        text = f"\r[{'#' * done}{'.' * (width - done)}] {step}/{self.total}"
        if loss is not None:
            text += f" loss {loss:.4f}"
        if tokens_per_s:
            text += f" {tokens_per_s / 1e3:.1f}k tok/s"
        self.stream.write(text + "\033[K")
        self.stream.flush()
        self._bar_shown = True

    def close(self) -> None:
        if self._bar_shown:
            self.stream.write("\n")
            self._bar_shown = False
        if self.file is not None:
            self.file.close()
            self.file = None


def _plain(value: Any) -> Any:
    """JSON-safe: floats rounded to 6 significant digits, NaN/inf as strings."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return float(f"{value:.6g}")
    return value

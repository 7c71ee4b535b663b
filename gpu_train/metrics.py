"""Throughput accounting (model FLOPs, MFU) and the metrics stream: JSON lines for machines, progress
lines (and a live bar on a terminal) for a person, TensorBoard events when asked."""

from __future__ import annotations

import json
import math
import sys
import time
from pathlib import Path
from typing import IO, Any

import torch
from tweetmill.gpu_train.cli import PROGRESS_STYLES, TENSORBOARD_MISSING

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
    """Where a run's metrics go. ``<run>/metrics.jsonl`` gets one JSON object per line, for machines,
    whatever the style; TensorBoard event files too with ``tensorboard`` (a directory); and ``stream``
    (stdout) a display for a person, by ``style``:

    * ``rich``: one line per logged step, under a live bar with step/total, loss, tokens/s, MFU (where
      the device's peak is known) and ETA; the default on a terminal (a plain bar without Rich);
    * ``plain``: the same lines, no bar; the default when ``stream`` is a pipe or a file;
    * ``json``: the metrics.jsonl lines themselves.
    """

    def __init__(
        self,
        path: Path | None,
        total_steps: int,
        stream: IO[str] | None = None,
        *,
        style: str = "auto",
        start_step: int = 0,
        tensorboard: str | Path | None = None,
    ) -> None:
        if style not in PROGRESS_STYLES:
            raise ValueError(f"unknown progress style {style!r}")
        self.stream = stream if stream is not None else sys.stdout
        self.total = total_steps
        self.step = start_step
        self.last: dict[str, Any] = {}  # the latest training record: loss, tokens/s, MFU, step time
        tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.style = ("rich" if tty else "plain") if style == "auto" else style
        self._bar = (_RichBar.make(self.stream, total_steps, start_step) or _TextBar(self.stream, total_steps)
                     if self.style == "rich" else None)  # fmt: skip
        self._tb = None
        if tensorboard is not None:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError as exc:
                raise ImportError(TENSORBOARD_MISSING) from exc
            self._tb = SummaryWriter(str(tensorboard))
        self.file = open(path, "a", encoding="utf-8") if path is not None else None  # noqa: SIM115

    def log(self, record: dict[str, Any]) -> None:
        """One metrics record: a training window (``loss``...) or a validation (``val_loss``)."""
        line = json.dumps({k: _plain(v) for k, v in record.items()}, allow_nan=False)
        if self.file is not None:
            self.file.write(line + "\n")
            self.file.flush()
        if self._tb is not None:
            for key, value in record.items():
                if key != "step" and isinstance(value, (int, float)) and math.isfinite(value):
                    tag = "val/loss" if key == "val_loss" else f"train/{key}"
                    self._tb.add_scalar(tag, value, global_step=record["step"])
        if "loss" in record:
            self.last = record
            self.step = record["step"]
        text = line if self.style == "json" else self.line(record)
        if self._bar is not None:
            self._bar.print(text)
            self._bar.update(self.step, self.summary(), force=True)
        else:
            self.stream.write(text + "\n")
            self.stream.flush()

    def progress(self, step: int) -> None:
        """A step done: the live bar moves (nothing to do in the other styles)."""
        self.step = step
        if self._bar is not None:
            self._bar.update(step, self.summary())

    def line(self, record: dict[str, Any]) -> str:
        """A record as a person reads it: ``step 40/100  loss 3.2100  lr 1.00e-03  52.1k tok/s ...``."""
        head = f"step {record.get('step', self.step)}/{self.total}"
        if "val_loss" in record:
            return f"{head}  val_loss {record['val_loss']:.4f}"
        if "loss" not in record:
            return head + "  " + json.dumps({k: _plain(v) for k, v in record.items() if k != "step"})
        parts = [head, self.summary(record)]
        return "  ".join(p for p in parts if p)

    def summary(self, record: dict[str, Any] | None = None) -> str:
        """Loss, learning rate (of a record), tokens/s, MFU and ETA, as far as known."""
        last = self.last if record is None else record
        parts = []
        if "loss" in last:
            parts.append(f"loss {last['loss']:.4f}")
        if record is not None and "lr" in record:
            parts.append(f"lr {record['lr']:.2e}")
        if last.get("tokens_per_s"):
            parts.append(f"{_si(last['tokens_per_s'])} tok/s")
        if last.get("mfu") is not None:
            parts.append(f"MFU {last['mfu']:.1%}")
        step = last.get("step", self.step) if record is not None else self.step
        if last.get("step_ms") and step < self.total:
            parts.append(f"ETA {_duration((self.total - step) * last['step_ms'] / 1e3)}")
        return "  ".join(parts)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self.file is not None:
            self.file.close()
            self.file = None


class _RichBar:
    """Rich's progress bar on a terminal; lines printed above it. Redrawn at most 10 times a second
    (no refresh thread), and at every logged step."""

    def __init__(self, progress: Any, total: int, start: int) -> None:
        self.progress = progress
        self.task = progress.add_task("train", total=total, completed=start, summary="")
        self.drawn = 0.0
        progress.start()

    @classmethod
    def make(cls, stream: IO[str], total: int, start: int) -> _RichBar | None:
        """None where Rich is not installed (a GPU machine with only the trainer's dependencies)."""
        try:
            from rich.console import Console
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
        except ImportError:
            return None
        progress = Progress(
            TextColumn("step"),
            MofNCompleteColumn(),
            BarColumn(),
            TextColumn("{task.fields[summary]}", markup=False),
            console=Console(file=stream, highlight=False),
            auto_refresh=False,
        )
        return cls(progress, total, start)

    def print(self, text: str) -> None:
        self.progress.console.print(text, markup=False, highlight=False, soft_wrap=True)

    def update(self, step: int, summary: str, *, force: bool = False) -> None:
        now = time.monotonic()
        draw = force or now - self.drawn >= 0.1
        self.progress.update(self.task, completed=step, summary=summary, refresh=draw)
        if draw:
            self.drawn = now

    def close(self) -> None:
        self.progress.refresh()
        self.progress.stop()


class _TextBar:
    """A ``\\r`` bar for terminals without Rich."""

    def __init__(self, stream: IO[str], total: int) -> None:
        self.stream, self.total, self.shown = stream, total, False

    def print(self, text: str) -> None:
        self.stream.write(("\r\033[K" if self.shown else "") + text + "\n")
        self.shown = False

    def update(self, step: int, summary: str, *, force: bool = False) -> None:
        width = 30
        done = int(width * step / max(self.total, 1))
        self.stream.write(f"\r[{'#' * done}{'.' * (width - done)}] {step}/{self.total}  {summary}\033[K")
        self.stream.flush()
        self.shown = True

    def close(self) -> None:
        if self.shown:
            self.stream.write("\n")
            self.shown = False


def _si(value: float) -> str:
    """``52100`` as ``52.1k``, ``1.5e6`` as ``1.50M``."""
    for factor, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if value >= factor:
            return f"{value / factor:.3g}{suffix}"
    return f"{value:.3g}"


def _duration(seconds: float) -> str:
    """``83`` as ``1:23``, ``3723`` as ``1:02:03``."""
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _plain(value: Any) -> Any:
    """JSON-safe: floats rounded to 6 significant digits, NaN/inf as strings."""
    if isinstance(value, float):
        if not math.isfinite(value):
            return str(value)
        return float(f"{value:.6g}")
    return value

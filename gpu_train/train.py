"""The training loop: shards in, checkpoints and metrics out. Read ``train`` top to bottom.

Single process (CPU or one GPU) or ``torchrun`` (DDP: nccl on CUDA, gloo on CPU). Every rank sees
its arithmetic slice of each global batch (see ``loader``), gradients are accumulated over
micro-batches and all-reduced once, on the last one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
import shutil
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
from torch import nn
from tweetmill.gpu_train.checkpoint import (
    CheckpointError,
    load_checkpoint,
    restore_rng_state,
    rng_state,
    save_checkpoint,
)
from tweetmill.gpu_train.data import BlockPacker, ShardSet, open_shards, split_documents
from tweetmill.gpu_train.loader import StepLoader
from tweetmill.gpu_train.metrics import Reporter, peak_flops, step_flops
from tweetmill.gpu_train.model import GPT, model_config, select_attention
from tweetmill.gpu_train.presets import PRESETS
from tweetmill.schemas.shard_dir import TOKENIZER_NAME

log = logging.getLogger(__name__)

# What a resumed run may not change: it would no longer continue the same run.
RESUME_LOCKED = ("model", "seq_len", "batch_tokens", "seed", "val_fraction")
# Settings of one invocation, not carried over by ``resume_config``.
PER_INVOCATION = ("stop_at", "time_limit_s", "verify")
# What it may change, with a warning: the rest of the run then differs from an uninterrupted one.
RESUME_WARNED = ("steps", "lr", "min_lr_ratio", "warmup_steps", "weight_decay", "beta1", "beta2", "grad_clip")


class ResumeError(CheckpointError):
    """Resuming would not continue the checkpoint's run (different data or batch geometry)."""


class ConfigError(ValueError):
    """Settings that cannot work together (e.g. a batch that does not split over the ranks)."""


@dataclass
class TrainConfig:
    """Everything a run depends on. ``None`` fields take the model preset's value (``resolved``)."""

    data: str  # shard directory (with manifest.json)
    model: str = "gpt-small"  # preset name, see model.PRESETS
    steps: int = 1000  # optimizer steps in the whole run (the LR schedule's length)
    seq_len: int | None = None  # tokens per block (inputs); blocks hold seq_len + 1
    batch_tokens: int | None = None  # global tokens per optimizer step (all ranks, all micro-steps)
    micro_batch: int | None = None  # blocks per rank per forward pass (accumulation fills the rest)
    lr: float | None = None
    min_lr_ratio: float = 0.1  # cosine decays to lr * min_lr_ratio at ``steps``
    warmup_steps: int | None = None  # default: 5% of steps, at most 1000
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0  # 0 disables clipping
    seed: int = 1337  # model init and data order
    val_fraction: float = 0.01  # share of tweet ids held out (by id hash)
    val_interval: int = 250  # steps between validations (0: only at the end)
    val_tokens: int = 1 << 20  # at most this many validation tokens per evaluation
    log_interval: int = 10
    ckpt_interval: int = 1000  # steps between checkpoints (0: only at the end)
    keep_checkpoints: int = 2
    run_dir: str = "runs"  # root of run directories
    name: str | None = None  # run name (default: <model>-<time>)
    resume: str | None = None  # checkpoint, run directory or ``latest`` pointer
    device: str = "auto"  # auto, cpu, cuda, cuda:N
    compile: bool = False
    attention: str = "auto"  # auto, flex, varlen, sdpa
    verify: bool = False  # check shard sha256 against the manifest before training
    peak_tflops: float | None = None  # per device, for MFU (default: looked up for known GPUs)
    stop_at: int | None = None  # stop (with a checkpoint) after this step, e.g. to fit a time slot
    time_limit_s: float | None = None  # stop (with a checkpoint) once this much time has passed
    threads: int | None = None  # torch CPU threads

    def resolved(self) -> TrainConfig:
        p = PRESETS.get(self.model)
        if p is None:
            raise ConfigError(f"unknown model preset {self.model!r}; choose from {', '.join(PRESETS)}")
        for name in ("steps", "log_interval"):
            if getattr(self, name) < 1:
                raise ConfigError(f"--{name.replace('_', '-')} must be at least 1")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError("--val-fraction must be in [0, 1)")
        seq_len = self.seq_len or p.seq_len
        return dataclasses.replace(
            self,
            seq_len=seq_len,
            batch_tokens=self.batch_tokens or max(seq_len, p.batch_tokens // seq_len * seq_len),
            micro_batch=self.micro_batch,  # chosen with the world size, see ``batch_geometry``
            lr=self.lr if self.lr is not None else p.lr,
            warmup_steps=self.warmup_steps
            if self.warmup_steps is not None
            else max(1, min(self.steps // 20, 1000)),
        )


@dataclass
class TrainResult:
    step: int
    run_dir: Path
    checkpoint: Path | None
    train_loss: float | None  # mean over the last logging window
    val_loss: float | None


def resume_config(resume: str, **overrides: Any) -> TrainConfig:
    """The checkpoint's config with ``overrides`` applied (``None`` values ignored), resuming from it."""
    _, payload = load_checkpoint(resume)
    saved = dict(payload["config"])
    for key in PER_INVOCATION:  # how the stopped invocation was limited is not part of the run
        saved[key] = None if key != "verify" else False
    saved.update({k: v for k, v in overrides.items() if v is not None})
    saved["resume"] = resume
    return TrainConfig(**saved)


def train(cfg: TrainConfig, *, progress: str = "auto", tensorboard: str | None = None) -> TrainResult:
    """Train per ``cfg``; under torchrun every rank calls this. Rank 0 reports: ``progress`` is the
    style of its display on stdout (``metrics.Reporter``), ``tensorboard`` a directory for events."""
    cfg = cfg.resolved()
    rank, world, local_rank = (
        int(os.environ.get(k, d)) for k, d in (("RANK", 0), ("WORLD_SIZE", 1), ("LOCAL_RANK", 0))
    )
    device = _device(cfg.device, local_rank if world > 1 else None)
    own_group = False
    if world > 1 and not dist.is_initialized():
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)
        own_group = True
    if rank != 0:
        logging.getLogger("tweetmill").setLevel(logging.WARNING)
    try:
        return _train(cfg, rank, world, device, progress=progress, tensorboard=tensorboard)
    finally:
        if own_group:
            dist.destroy_process_group()


def _train(
    cfg: TrainConfig, rank: int, world: int, device: torch.device, *, progress: str, tensorboard: str | None
) -> TrainResult:
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    if device.type == "cuda":
        torch.set_float32_matmul_precision("high")  # TF32 for the few fp32 matmuls

    # --- data -----------------------------------------------------------------------------------
    data = open_shards(cfg.data, verify=cfg.verify)
    ckpt_file, ckpt = load_checkpoint(cfg.resume) if cfg.resume else (None, None)
    if ckpt is not None:
        check_resume(ckpt, cfg, data)
    global_blocks, micro = batch_geometry(cfg, world)
    train_docs, val_docs = split_documents(data, cfg.val_fraction)
    packer = BlockPacker(data.table, train_docs, cfg.seq_len, cfg.seed)
    val_packer = (
        BlockPacker(data.table, val_docs, cfg.seq_len, cfg.seed, shuffle=False) if len(val_docs) else None
    )
    if packer.blocks_per_epoch < global_blocks:
        log.warning(
            "one epoch (%d blocks) is smaller than a global batch (%d)",
            packer.blocks_per_epoch,
            global_blocks,
        )

    # --- model and optimizer --------------------------------------------------------------------
    torch.manual_seed(cfg.seed)  # identical initial weights on every rank
    mcfg = model_config(cfg.model, vocab_size=data.vocab_size, seq_len=cfg.seq_len, eos_id=data.eos_id)
    attention = select_attention(cfg.attention, device, mcfg.n_embd // mcfg.n_head, cfg.seq_len)
    model = GPT(mcfg, attention).to(device)
    optimizer = make_optimizer(model, cfg, device)
    step, consumed, tokens_seen = 0, 0, 0
    if ckpt is not None:
        model.load_state_dict(ckpt["model"])
        optimizer.load_state_dict(ckpt["optimizer"])
        step, consumed, tokens_seen = ckpt["step"], ckpt["loader"]["consumed_blocks"], ckpt["tokens_seen"]
        restore_rng_state(ckpt["rng"])
        run_dir = ckpt_file.parent
        log.info("resumed %s at step %d (%d blocks consumed)", ckpt_file, step, consumed)
    else:
        run_dir = Path(cfg.run_dir) / (cfg.name or f"{cfg.model}-{time.strftime('%Y%m%d-%H%M%S')}")
    forward: nn.Module = torch.compile(model) if cfg.compile else model
    if world > 1:
        forward = nn.parallel.DistributedDataParallel(
            forward, device_ids=[device.index] if device.type == "cuda" else None
        )
    autocast = (
        torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else contextlib.nullcontext()
    )

    loader = StepLoader(
        packer, global_blocks=global_blocks, micro_blocks=micro, rank=rank, world=world, device=device,
        vocab_size=data.vocab_size, consumed_blocks=consumed,
    )  # fmt: skip
    if rank == 0:
        _write_run_files(run_dir, cfg, mcfg.to_dict(), data)
    n_params = model.num_params()
    peak = peak_flops(device, cfg.peak_tflops)
    tokens_per_step = global_blocks * cfg.seq_len
    log.info(
        "model %s: %.2fM parameters, vocab %d (padded %d); %d ranks x %d micro-steps x %d blocks "
        "of %d tokens; %d train / %d val documents; %d blocks per epoch",
        cfg.model, n_params / 1e6, mcfg.vocab_size, mcfg.padded_vocab, world, loader.accum, micro,
        cfg.seq_len, len(train_docs), len(val_docs), packer.blocks_per_epoch,
    )  # fmt: skip

    # --- the loop -------------------------------------------------------------------------------
    meter = StepMeter(device, world, tokens_per_step, n_params, mcfg.n_layer, mcfg.n_embd, peak)
    started = time.perf_counter()
    stop_at = min(cfg.steps, cfg.stop_at) if cfg.stop_at is not None else cfg.steps
    reporter = (
        Reporter(run_dir / "metrics.jsonl", stop_at, style=progress, start_step=step, tensorboard=tensorboard)
        if rank == 0
        else None
    )
    train_loss: float | None = None
    val_loss: float | None = None
    checkpoint: Path | None = None
    grad_norm = torch.zeros((), device=device)
    if step >= stop_at:
        log.info("nothing to do: the run is at step %d of %d", step, stop_at)
    try:
        while step < stop_at:
            lr = lr_at(step, cfg)
            for group in optimizer.param_groups:
                group["lr"] = lr
            micro_batches, wait = loader.next()
            for i, blocks in enumerate(micro_batches):
                x, y = blocks[:, :-1], blocks[:, 1:]
                positions, meta = model.prepare(x)
                last = i == len(micro_batches) - 1
                with contextlib.nullcontext() if world == 1 or last else forward.no_sync():  # sync once
                    with autocast:
                        loss = forward(x, y, positions, meta)
                    (loss / len(micro_batches)).backward()
                meter.add(loss, positions)
            if cfg.grad_clip > 0:
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            loader.advance()
            step += 1
            tokens_seen += tokens_per_step
            meter.step_done(wait)
            if reporter:
                reporter.progress(step)

            # Logging, validation and checkpoints: every rank reaches them at the same steps.
            final = step >= stop_at
            if step % cfg.log_interval == 0 or final:
                record = meter.flush(step=step, lr=lr, grad_norm=float(grad_norm), tokens=tokens_seen)
                record["epoch"] = loader.consumed_blocks / packer.blocks_per_epoch
                train_loss = record["loss"]
                if reporter:
                    reporter.log(record)
                if not final and _out_of_time(started, cfg.time_limit_s, world, device):
                    log.info("time limit of %.0f s reached at step %d", cfg.time_limit_s, step)
                    stop_at, final = step, True
            with meter.paused():  # keep validation and checkpoints out of the throughput figures
                if val_packer is not None and ((cfg.val_interval and step % cfg.val_interval == 0) or final):
                    val_loss = evaluate(model, val_packer, cfg, micro, rank, world, device, autocast)
                    if reporter:
                        reporter.log({"step": step, "val_loss": val_loss})
                if rank == 0 and ((cfg.ckpt_interval and step % cfg.ckpt_interval == 0) or final):
                    payload = _payload(cfg, mcfg.to_dict(), data, model, optimizer, loader, step, tokens_seen)
                    checkpoint = save_checkpoint(run_dir, step, payload, keep=cfg.keep_checkpoints)
                    log.info("checkpoint %s", checkpoint)
    finally:
        loader.close()
        if reporter:
            reporter.close()
    return TrainResult(step, run_dir, checkpoint, train_loss, val_loss)


class StepMeter:
    """A logging window's loss, attended pairs and time, kept on the device until ``flush`` syncs once."""

    def __init__(self, device, world, tokens_per_step, n_params, n_layer, n_embd, peak) -> None:
        self.device, self.world, self.tokens_per_step = device, world, tokens_per_step
        self.n_params, self.n_layer, self.n_embd, self.peak = n_params, n_layer, n_embd, peak
        self.loss = torch.zeros((), device=device)
        self.pairs = torch.zeros((), device=device, dtype=torch.int64)
        self._reset()

    def _reset(self) -> None:
        self.start, self.steps, self.micro, self.wait, self.excluded = time.perf_counter(), 0, 0, 0.0, 0.0
        self.loss.zero_()
        self.pairs.zero_()

    def add(self, loss: torch.Tensor, positions: torch.Tensor) -> None:
        self.loss += loss.detach()
        self.pairs += (positions + 1).sum()  # attended (query, key) pairs: Σ n(n+1)/2 per document
        self.micro += 1

    def step_done(self, wait: float) -> None:
        self.steps += 1
        self.wait += wait

    @contextlib.contextmanager
    def paused(self):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.excluded += time.perf_counter() - t0

    def flush(self, **fields: Any) -> dict[str, Any]:
        """The window's metrics record (mean over ranks), then a new window."""
        stats = torch.stack([self.loss / self.micro, self.pairs.float()])
        if self.world > 1:
            dist.all_reduce(stats)
        loss_sum, pairs = stats.tolist()  # waits for the window's work: the timing below is real
        elapsed = time.perf_counter() - self.start - self.excluded
        tokens = self.tokens_per_step * self.steps
        record = {
            "step": fields.pop("step"),
            "loss": loss_sum / self.world,
            **fields,
            "step_ms": 1e3 * elapsed / self.steps,
            "tokens_per_s": tokens / elapsed,
            "data_wait": self.wait / elapsed,
        }
        if self.peak:
            flops = step_flops(self.n_params, tokens, self.n_layer, self.n_embd, int(pairs))
            record["mfu"] = flops / (elapsed * self.peak * self.world)
        self._reset()
        return record


def _out_of_time(started: float, limit: float | None, world: int, device: torch.device) -> bool:
    """Rank 0's clock decides, so all ranks stop at the same step."""
    if limit is None:
        return False
    flag = torch.tensor([time.perf_counter() - started > limit], device=device)
    if world > 1:
        dist.broadcast(flag, 0)
    return bool(flag)


# -------------------------------------------------------------------------------------------------
# Pieces of the loop


def batch_geometry(cfg: TrainConfig, world: int) -> tuple[int, int]:
    """(blocks per global batch, blocks per micro-batch) — the geometry must divide evenly."""
    if cfg.batch_tokens % cfg.seq_len:
        raise ConfigError(f"--batch-tokens {cfg.batch_tokens} is not a multiple of --seq-len {cfg.seq_len}")
    global_blocks = cfg.batch_tokens // cfg.seq_len
    if global_blocks % world:
        raise ConfigError(f"a global batch of {global_blocks} blocks does not split over {world} ranks")
    per_rank = global_blocks // world
    if cfg.micro_batch is not None:
        if per_rank % cfg.micro_batch:
            raise ConfigError(
                f"--micro-batch {cfg.micro_batch} does not divide the {per_rank} blocks "
                f"each of {world} rank(s) trains on per step"
            )
        return global_blocks, cfg.micro_batch
    cap = PRESETS[cfg.model].micro_batch
    micro = max(d for d in range(1, min(cap, per_rank) + 1) if per_rank % d == 0)
    return global_blocks, micro


def lr_at(step: int, cfg: TrainConfig) -> float:
    """Linear warmup to ``lr``, then cosine decay to ``lr * min_lr_ratio`` at ``steps``."""
    if step < cfg.warmup_steps:
        return cfg.lr * (step + 1) / cfg.warmup_steps
    progress = min(1.0, (step - cfg.warmup_steps) / max(1, cfg.steps - cfg.warmup_steps))
    low = cfg.lr * cfg.min_lr_ratio
    return low + 0.5 * (1.0 + math.cos(math.pi * progress)) * (cfg.lr - low)


def make_optimizer(model: nn.Module, cfg: TrainConfig, device: torch.device) -> torch.optim.AdamW:
    """AdamW; weight decay on matrices only (not norms); fused kernel on CUDA."""
    params = [p for p in model.parameters() if p.requires_grad]
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": cfg.weight_decay},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), fused=device.type == "cuda")


@torch.no_grad()
def evaluate(
    model: GPT,
    packer: BlockPacker,
    cfg: TrainConfig,
    micro: int,
    rank: int,
    world: int,
    device: torch.device,
    autocast: Any,
) -> float:
    """Mean loss over the first ``val_tokens`` of the validation stream, batches dealt to ranks.

    Batches all have ``micro`` blocks (the training shape: no recompilation), or fewer when the
    validation set is smaller than one batch.
    """
    blocks = min(packer.blocks_per_epoch, max(1, cfg.val_tokens // cfg.seq_len))
    size = min(micro, blocks)
    total = torch.zeros(2, device=device, dtype=torch.float64)
    model.eval()
    for i in range(rank, blocks // size, world):
        batch = torch.from_numpy(packer.blocks(i * size, size)).to(device)
        x, y = batch[:, :-1], batch[:, 1:]
        positions, meta = model.prepare(x)
        with autocast:
            loss = model(x, y, positions, meta)
        total += torch.stack(
            [loss.double() * y.numel(), torch.tensor(y.numel(), device=device, dtype=torch.float64)]
        )
    model.train()
    if world > 1:
        dist.all_reduce(total)
    return float(total[0] / total[1]) if float(total[1]) else float("nan")


def check_resume(ckpt: dict[str, Any], cfg: TrainConfig, data: ShardSet) -> None:
    """Refuse to resume with other data or batch geometry; warn about other changed settings."""
    saved = ckpt["config"]
    was = ckpt["dataset"]
    if was["fingerprint"] != data.fingerprint:
        raise ResumeError(
            f"the shard set changed: the checkpoint was trained on {was['path']} (fingerprint "
            f"{was['fingerprint'][:16]}), {data.root} has fingerprint {data.fingerprint[:16]}. "
            "Resume on the same shards, or start a new run."
        )
    for key in RESUME_LOCKED:
        if saved.get(key) != getattr(cfg, key):
            raise ResumeError(
                f"--{key.replace('_', '-')} is {getattr(cfg, key)!r} but the checkpoint's run used "
                f"{saved.get(key)!r}; a resumed run keeps its model and batch geometry "
                "(start a new run to change them)"
            )
    for key in RESUME_WARNED:
        if saved.get(key) != getattr(cfg, key):
            log.warning("resuming with %s changed from %r to %r", key, saved.get(key), getattr(cfg, key))


def _device(name: str, local_rank: int | None) -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise RuntimeError("--device cuda but torch sees no CUDA device")
        if device.index is None:
            device = torch.device("cuda", local_rank or 0)
    return device


def _payload(
    cfg: TrainConfig,
    model_cfg: dict[str, Any],
    data: ShardSet,
    model: GPT,
    optimizer: torch.optim.Optimizer,
    loader: StepLoader,
    step: int,
    tokens_seen: int,
) -> dict[str, Any]:
    """Everything a resume needs, as tensors and plain values (``weights_only`` loadable)."""
    return {
        "step": step,
        "tokens_seen": tokens_seen,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "loader": loader.state_dict(),
        "rng": rng_state(),
        "config": asdict(cfg),
        "model_config": model_cfg,
        "dataset": _dataset_info(data),
    }


def _dataset_info(data: ShardSet) -> dict[str, Any]:
    tok = data.manifest.tokenizer
    return {
        "fingerprint": data.fingerprint,
        "path": str(data.root.resolve()),
        "tokenizer_sha256": tok.sha256,
        "tokenizer_source": tok.source,
        "vocab_size": tok.vocab_size,
        "eos_id": tok.eos_id,
        "eos_token": tok.eos_token,
        "documents": data.num_docs,
        "tokens": data.num_tokens,
    }


def _write_run_files(run_dir: Path, cfg: TrainConfig, model_cfg: dict[str, Any], data: ShardSet) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    info = {"config": asdict(cfg), "model": model_cfg, "dataset": _dataset_info(data)}
    (run_dir / "config.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
    tokenizer = data.root / TOKENIZER_NAME
    if tokenizer.is_file() and not (run_dir / TOKENIZER_NAME).exists():
        shutil.copyfile(tokenizer, run_dir / TOKENIZER_NAME)

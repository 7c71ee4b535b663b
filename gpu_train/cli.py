"""``train`` and ``generate`` commands. The tweetmill CLI mounts them as subcommands; ``main`` serves
``python -m tweetmill.gpu_train`` and torchrun.

Importing this module and building parsers needs no torch (it is an optional dependency of
tweetmill); the ``run_*`` functions import the trainer when called.

Train options default to ``None`` so that, on ``--resume``, only what the user typed overrides the
checkpoint's configuration (and a changed batch geometry can be refused rather than silently used).
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import logging
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tweetmill.gpu_train.presets import BACKENDS, PRESETS

if TYPE_CHECKING:
    from tweetmill.gpu_train.train import TrainConfig

log = logging.getLogger("tweetmill.gpu_train.cli")


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("data", nargs="?", help="shard directory with manifest.json (default with --resume: the checkpoint's)")
    a("--model", choices=sorted(PRESETS), help="model preset (default gpt-small)")
    a("--steps", type=int, help="optimizer steps of the whole run (default 1000)")
    a("--seq-len", type=int, help="tokens per block (default: the preset's)")
    a("--batch-tokens", type=int, help="global tokens per optimizer step, all ranks together")
    a(
        "--micro-batch",
        type=int,
        help="blocks per rank per forward pass (gradient accumulation makes up the rest)",
    )
    a("--lr", type=float, help="peak learning rate (default: the preset's)")
    a("--min-lr-ratio", type=float, help="final learning rate as a share of --lr (default 0.1)")
    a("--warmup-steps", type=int, help="linear warmup steps (default 5%% of --steps, at most 1000)")
    a("--weight-decay", type=float)
    a("--grad-clip", type=float, help="max gradient norm, 0 to disable (default 1.0)")
    a("--seed", type=int, help="model init and data order (default 1337)")
    a("--val-fraction", type=float, help="share of tweet ids held out for validation (default 0.01)")
    a("--val-interval", type=int, help="steps between validations, 0 for only at the end (default 250)")
    a("--val-tokens", type=int, help="validation tokens per evaluation (default 1Mi)")
    a("--log-interval", type=int, help="steps between metric lines (default 10)")
    a("--ckpt-interval", type=int, help="steps between checkpoints, 0 for only at the end (default 1000)")
    a("--keep-checkpoints", type=int, help="checkpoints kept per run (default 2)")
    a("--run-dir", help="root of run directories (default runs)")
    a("--name", help="run name (default <model>-<date>-<time>)")
    a("--resume", help="checkpoint, run directory or latest pointer (e.g. runs/latest) to continue")
    a("--device", help="auto, cpu, cuda or cuda:N (default auto)")
    a("--compile", action=argparse.BooleanOptionalAction, default=None, help="torch.compile the model")
    a("--attention", choices=BACKENDS, help="document attention kernel (default auto)")
    a(
        "--verify",
        action="store_true",
        default=None,
        help="check every shard's sha256 against the manifest first",
    )
    a("--peak-tflops", type=float, help="peak TFLOP/s of one device, for MFU (default: known GPUs)")
    a("--stop-at", type=int, help="stop after this step (with a checkpoint), to fit a time slot")
    a(
        "--time-limit",
        dest="time_limit_s",
        type=float,
        help="stop after this many seconds (with a checkpoint)",
    )
    a("--threads", type=int, help="torch CPU threads")
    a("--log-level", default="INFO", help="logging level (default INFO)")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The ``TrainConfig`` the arguments ask for (the checkpoint's, updated, with ``--resume``)."""
    from tweetmill.gpu_train.train import ConfigError, TrainConfig, resume_config

    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in vars(args).items() if k in fields - {"resume"} and v is not None}
    if args.resume:
        return resume_config(args.resume, **given)
    if not args.data:
        raise ConfigError("give a shard directory (or --resume a checkpoint)")
    return TrainConfig(**given)


def run_train(args: argparse.Namespace) -> int:
    from tweetmill.gpu_train.checkpoint import CheckpointError
    from tweetmill.gpu_train.data import DatasetError
    from tweetmill.gpu_train.model import AttentionUnavailable
    from tweetmill.gpu_train.train import ConfigError, train

    _setup_logging(getattr(args, "log_level", "INFO"))
    try:
        result = train(config_from_args(args))
    except (DatasetError, CheckpointError, ConfigError, AttentionUnavailable) as exc:
        log.error("%s", exc)
        return 2
    if result.checkpoint is not None:
        log.info("done at step %d: %s", result.step, result.checkpoint)
    return 0


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("checkpoint", help="checkpoint file, run directory, or latest pointer (e.g. runs/latest)")
    a("--prompt", default="", help="text to continue (default: start a new tweet)")
    a("--prompt-ids", help="comma-separated token ids, instead of --prompt (no tokenizer needed)")
    a("--max-new-tokens", type=int, default=64)
    a("--temperature", type=float, default=0.8, help="0 for greedy decoding")
    a("--top-k", type=int, default=50)
    a("--num-samples", "-n", type=int, default=1)
    a("--seed", type=int, default=0)
    a("--device", default="auto")
    a("--tokenizer", help="tokenizer.json (default: the run's copy, then the shard directory's)")
    a("--data", help="shard directory whose tokenizer to use (default: the one trained on)")
    a("--log-level", default="WARNING")


def run_generate(args: argparse.Namespace) -> int:
    import torch
    from tweetmill.gpu_train.checkpoint import CheckpointError, load_checkpoint
    from tweetmill.gpu_train.model import GPT, GPTConfig

    _setup_logging(getattr(args, "log_level", "WARNING"))
    try:
        file, ckpt = load_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        log.error("%s", exc)
        return 2
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    tokenizer = find_tokenizer(file, ckpt, explicit=args.tokenizer, data=args.data)
    if args.prompt_ids:
        prompt = [int(t) for t in args.prompt_ids.split(",") if t.strip()]
        if any(not 0 <= t < model.cfg.vocab_size for t in prompt):
            log.error("--prompt-ids must lie in [0, %d)", model.cfg.vocab_size)
            return 2
    elif args.prompt and tokenizer is None:
        log.error("no tokenizer to encode --prompt with; pass --tokenizer or --prompt-ids")
        return 2
    else:
        prompt = tokenizer.encode(args.prompt, add_special_tokens=False).ids if args.prompt else []
    gen = torch.Generator().manual_seed(args.seed)
    for i in range(args.num_samples):
        ids = model.generate(
            prompt,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            generator=gen,
        )
        if args.num_samples > 1:
            print(f"--- sample {i + 1}")
        if tokenizer is not None:
            print(tokenizer.decode(prompt + ids))
        else:
            print(" ".join(map(str, prompt + ids)))
    return 0


def find_tokenizer(
    ckpt_file: Path, ckpt: dict[str, Any], *, explicit: str | None = None, data: str | None = None
):
    """The training tokenizer as a ``tokenizers.Tokenizer``, or None (then ids are printed).

    Looks at ``explicit``, the run directory's copy, the shard directory's ``tokenizer.json`` and the
    manifest's ``tokenizer.source``; a file counts only if its sha256 is the one the shards were
    tokenized with (an explicit file that differs is used with a warning).
    """
    try:
        from tokenizers import Tokenizer
    except ImportError:
        log.warning("the tokenizers library is not installed: printing token ids")
        return None
    info = ckpt["dataset"]
    want = info["tokenizer_sha256"]
    if explicit:
        raw = Path(explicit).read_bytes()
        if hashlib.sha256(raw).hexdigest() != want:
            log.warning("%s is not the tokenizer the model was trained with (sha256 differs)", explicit)
        return Tokenizer.from_str(raw.decode("utf-8"))
    data_dir = Path(data or info["path"])
    candidates = [ckpt_file.parent / "tokenizer.json", data_dir / "tokenizer.json"]
    source = info.get("tokenizer_source") or ""
    if source.startswith("bundled:"):
        spec = importlib.util.find_spec("tweetmill.transforms")  # locates the package; does not import it
        if spec is not None and spec.submodule_search_locations:
            for loc in spec.submodule_search_locations:
                candidates.append(Path(loc) / "assets" / f"{source.removeprefix('bundled:')}.json")
    elif source:
        candidates += [Path(source), data_dir / source]
    for path in candidates:
        if path.is_file():
            raw = path.read_bytes()
            if hashlib.sha256(raw).hexdigest() == want:
                return Tokenizer.from_str(raw.decode("utf-8"))
            log.warning("%s: sha256 differs from the training tokenizer's; skipped", path)
    log.warning("training tokenizer (sha256 %s) not found: printing token ids", want[:16])
    return None


def main(argv: list[str] | None = None) -> int:
    """``[train] DATA [options]`` or ``generate CHECKPOINT [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:
        parser = argparse.ArgumentParser(
            prog="python -m tweetmill.gpu_train generate", description="Sample text"
        )
        add_generate_arguments(parser)
        return run_generate(parser.parse_args(argv[1:]))
    if argv[:1] == ["train"]:
        argv = argv[1:]
    parser = argparse.ArgumentParser(
        prog="python -m tweetmill.gpu_train", description="Train a GPT on tweetmill shards (or: generate ...)"
    )
    add_train_arguments(parser)
    return run_train(parser.parse_args(argv))


def _setup_logging(level: str) -> None:
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("tweetmill").setLevel(level.upper())

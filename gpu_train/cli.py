"""``train`` and ``generate`` commands. The tweetmill CLI mounts them as subcommands; ``main`` serves
``python -m tweetmill.gpu_train`` and torchrun.

Importing this module and building parsers needs no torch (it is an optional dependency of
tweetmill); the ``run_*`` functions import the trainer when called.

Train options default to ``None`` so that, on ``--resume``, only what the user typed overrides the
checkpoint's configuration (and a changed batch geometry can be refused rather than silently used).

A mistake the user can fix (a value out of range, ``--device cuda`` without CUDA, a missing
checkpoint, tokenizer or shard directory) raises one of ``user_errors()``: ``main`` logs it as one
line and returns 2, the tweetmill CLI prints it as ``error: ...`` (exit 2). Nothing here imports
the pipeline: GPU machines may not have Beam.
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import importlib.util
import logging
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tweetmill.gpu_train.presets import BACKENDS, PRESETS

# How a run reports (metrics.Reporter, which imports torch; defined here, so a parser needs none).
PROGRESS_STYLES = ("auto", "rich", "plain", "json")
TENSORBOARD_MISSING = "--tensorboard needs TensorBoard: pip install tensorboard"

if TYPE_CHECKING:
    from tweetmill.gpu_train.train import TrainConfig

log = logging.getLogger("tweetmill.gpu_train.cli")
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class UsageError(ValueError):
    """A command-line mistake found before anything runs; ``problems`` holds one line each."""

    def __init__(self, *problems: str):
        super().__init__("\n".join(problems))
        self.problems = list(problems)


def user_errors() -> tuple[type[Exception], ...]:
    """The exceptions that mean the user can fix something, not a bug (imports the trainer: torch)."""
    from tweetmill.gpu_train.checkpoint import CheckpointError
    from tweetmill.gpu_train.data import DatasetError
    from tweetmill.gpu_train.model import AttentionUnavailable
    from tweetmill.gpu_train.train import ConfigError

    return (UsageError, DatasetError, CheckpointError, ConfigError, AttentionUnavailable)


# Option values, checked by argparse (one line each). ``tweetmill run`` uses these too: the pipeline
# may import this torch-free module, while this package must not import the pipeline.


def int_at_least(low: int) -> Callable[[str], int]:
    """An integer ``>= low`` (1: a positive count, 0: a count that may be zero)."""

    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {value!r}") from None
        if number < low:
            what = "a positive integer" if low == 1 else f"an integer >= {low}"
            raise argparse.ArgumentTypeError(f"must be {what}, got {value}")
        return number

    return parse


def number_in(
    low: float, high: float = math.inf, *, low_open: bool = False, high_open: bool = False
) -> Callable[[str], float]:
    """A finite number above ``low`` (``> low`` if ``low_open``) and below ``high``."""
    if high == math.inf:
        wanted = f"a number {'>' if low_open else '>='} {low:g}"
    else:
        wanted = f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"

    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
        above = number > low if low_open else number >= low
        below = number < high if high_open else number <= high
        if not (math.isfinite(number) and above and below):
            raise argparse.ArgumentTypeError(f"must be {wanted}, got {value}")
        return number

    return parse


_count = int_at_least(1)
_count0 = int_at_least(0)


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("data", nargs="?", help="shard directory with manifest.json (default with --resume: the checkpoint's)")
    a("--model", choices=sorted(PRESETS), help="model preset (default gpt-small)")
    a("--steps", type=_count, help="optimizer steps of the whole run (default 1000)")
    a("--seq-len", type=_count, help="tokens per block (default: the preset's)")
    a("--batch-tokens", type=_count, help="global tokens per optimizer step, all ranks together")
    a(
        "--micro-batch",
        type=_count,
        help="blocks per rank per forward pass (gradient accumulation makes up the rest)",
    )
    a("--lr", type=number_in(0, low_open=True), help="peak learning rate (default: the preset's)")
    a("--min-lr-ratio", type=number_in(0, 1), help="final learning rate as a share of --lr (default 0.1)")
    a("--warmup-steps", type=_count0, help="linear warmup steps (default 5%% of --steps, at most 1000)")
    a("--weight-decay", type=number_in(0), help="AdamW weight decay of the weight matrices (default 0.1)")
    a("--grad-clip", type=number_in(0), help="max gradient norm, 0 to disable (default 1.0)")
    a("--seed", type=int, help="model init and data order (default 1337)")
    a(
        "--val-fraction",
        type=number_in(0, 1, high_open=True),
        help="share of tweet ids held out for validation (default 0.01)",
    )
    a("--val-interval", type=_count0, help="steps between validations, 0 for only at the end (default 250)")
    a("--val-tokens", type=_count, help="validation tokens per evaluation (default 1Mi)")
    a("--log-interval", type=_count, help="steps between metric lines (default 10)")
    a("--ckpt-interval", type=_count0, help="steps between checkpoints, 0 for only at the end (default 1000)")
    a("--keep-checkpoints", type=_count, help="checkpoints kept per run (default 2)")
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
    a(
        "--peak-tflops",
        type=number_in(0, low_open=True),
        help="peak TFLOP/s of one device, for MFU (default: known GPUs)",
    )
    a("--stop-at", type=_count, help="stop after this step (with a checkpoint), to fit a time slot")
    a(
        "--time-limit",
        dest="time_limit_s",
        type=number_in(0, low_open=True),
        help="stop after this many seconds (with a checkpoint)",
    )
    a("--threads", type=_count, help="torch CPU threads")
    a(
        "--progress",
        choices=PROGRESS_STYLES,
        default="auto",
        help="what stdout shows: rich, a live bar with step, loss, tokens/s, MFU and ETA above one line per "
        "logged step; plain, those lines only; json, the metrics.jsonl lines (default auto: rich on a "
        "terminal, plain otherwise)",
    )
    a(
        "--tensorboard",
        metavar="DIR",
        help="also write the metrics as TensorBoard events to DIR (needs: pip install tensorboard)",
    )


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


def device_problem(name: str, *, origin: str = "") -> str | None:
    """Why ``--device name`` cannot be used here (None: it can); ``origin`` says where the name came
    from when the user did not type it (a resumed checkpoint's configuration)."""
    import torch

    if name == "auto":
        return None
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        return f"--device {name}{origin}: not a device name (auto, cpu, cuda or cuda:N)"
    if device.type == "cuda":
        if not torch.cuda.is_available():
            why = "this torch is built without CUDA" if torch.version.cuda is None else "torch sees no GPU"
            return f"--device {name}{origin}: {why}; use --device cpu (or auto)"
        count = torch.cuda.device_count()
        if device.index is not None and device.index >= count:
            return f"--device {name}{origin}: only {count} CUDA device(s) here, cuda:0 … cuda:{count - 1}"
    if device.type == "mps" and not torch.backends.mps.is_available():
        return f"--device {name}{origin}: MPS is not available here; use --device cpu (or auto)"
    return None


def run_train(args: argparse.Namespace) -> int:
    """Train; raises one of ``user_errors()`` for a mistake the user can fix."""
    from tweetmill.gpu_train.train import train

    config = config_from_args(args)
    origin = " (the resumed run's; --device overrides it)" if args.resume and args.device is None else ""
    problems = [device_problem(config.device, origin=origin)]
    if args.tensorboard:
        try:
            import torch.utils.tensorboard  # noqa: F401  (the optional tensorboard package)
        except ImportError:
            problems.append(TENSORBOARD_MISSING)
    if any(problems):
        raise UsageError(*filter(None, problems))
    result = train(config, progress=args.progress, tensorboard=args.tensorboard)
    if result.checkpoint is not None:
        log.info("done at step %d: %s", result.step, result.checkpoint)
    return 0


def add_generate_arguments(parser: argparse.ArgumentParser) -> None:
    a = parser.add_argument
    a("checkpoint", help="checkpoint file, run directory, or latest pointer (e.g. runs/latest)")
    a("--prompt", default="", help="text to continue (default: start a new tweet)")
    a("--prompt-ids", help="comma-separated token ids, instead of --prompt (no tokenizer needed)")
    a("--max-new-tokens", type=_count, default=64, help="tokens to generate per sample (default 64)")
    a("--temperature", type=number_in(0), default=0.8, help="0 for greedy decoding (default 0.8)")
    a("--top-k", type=_count0, default=50, help="sample among the k likeliest tokens, 0 for all (default 50)")
    a("--num-samples", "-n", type=_count, default=1, help="how many samples (default 1)")
    a("--seed", type=int, default=0, help="the same seed draws the same samples (default 0)")
    a("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    a("--tokenizer", help="tokenizer.json (default: the run's copy, then the shard directory's)")
    a("--data", help="shard directory whose tokenizer to use (default: the one trained on)")


def _prompt_ids(text: str) -> list[int]:
    try:
        return [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise UsageError(f"--prompt-ids: expected comma-separated integers, got {text!r}") from None


def run_generate(args: argparse.Namespace) -> int:
    """Generate; raises one of ``user_errors()`` for a mistake the user can fix, all of those found
    before the checkpoint is loaded at once."""
    import torch
    from tweetmill.gpu_train.checkpoint import CheckpointError, load_checkpoint, resolve_checkpoint
    from tweetmill.gpu_train.model import GPT, GPTConfig

    problems = [p for p in (device_problem(args.device),) if p]
    try:
        resolve_checkpoint(args.checkpoint)
    except CheckpointError as exc:
        problems.append(str(exc))
    try:
        if args.tokenizer:
            _read_tokenizer(args.tokenizer)
    except UsageError as exc:
        problems += exc.problems
    try:
        if args.prompt_ids:
            _prompt_ids(args.prompt_ids)
    except UsageError as exc:
        problems += exc.problems
    if problems:
        raise UsageError(*problems)
    file, ckpt = load_checkpoint(args.checkpoint)
    if args.device == "auto":
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(args.device)
    model = GPT(GPTConfig(**ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(device).eval()
    tokenizer = find_tokenizer(file, ckpt, explicit=args.tokenizer, data=args.data)
    if args.prompt_ids:
        prompt = _prompt_ids(args.prompt_ids)
        if any(not 0 <= t < model.cfg.vocab_size for t in prompt):
            raise UsageError(f"--prompt-ids must lie in [0, {model.cfg.vocab_size})")
    elif args.prompt and tokenizer is None:
        raise UsageError("no tokenizer to encode --prompt with; pass --tokenizer or --prompt-ids")
    else:
        prompt = tokenizer.encode(args.prompt, add_special_tokens=False).ids if args.prompt else []
    gen = torch.Generator().manual_seed(args.seed)
    for i in range(args.num_samples):
        ids = model.generate(
            prompt,
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k or None,
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
    from tweetmill.schemas.shard_dir import TOKENIZER_NAME

    try:
        from tokenizers import Tokenizer
    except ImportError:
        log.warning("the tokenizers library is not installed: printing token ids")
        return None
    info = ckpt["dataset"]
    want = info["tokenizer_sha256"]
    if explicit:
        raw, tokenizer = _read_tokenizer(explicit)
        if hashlib.sha256(raw).hexdigest() != want:
            log.warning("%s is not the tokenizer the model was trained with (sha256 differs)", explicit)
        return tokenizer
    data_dir = Path(data or info["path"])
    candidates = [ckpt_file.parent / TOKENIZER_NAME, data_dir / TOKENIZER_NAME]
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


def _read_tokenizer(path: str) -> tuple[bytes, Any]:
    """``(raw bytes, Tokenizer)`` of an explicit ``--tokenizer`` file (Tokenizer None without the
    tokenizers library); ``UsageError`` when it cannot be read or is not a tokenizer.json."""
    try:
        raw = Path(path).read_bytes()
    except FileNotFoundError:
        raise UsageError(f"--tokenizer {path}: no such file") from None
    except OSError as exc:
        raise UsageError(f"--tokenizer {path}: cannot be read: {exc.strerror or exc}") from None
    try:
        from tokenizers import Tokenizer
    except ImportError:
        return raw, None
    try:
        return raw, Tokenizer.from_str(raw.decode("utf-8"))
    except Exception as exc:  # tokenizers raises a bare Exception on malformed JSON
        raise UsageError(f"--tokenizer {path}: not a tokenizer.json ({exc})") from None


def main(argv: list[str] | None = None) -> int:
    """``[train] DATA [options]`` or ``generate CHECKPOINT [options]``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["generate"]:
        parser = argparse.ArgumentParser(
            prog="python -m tweetmill.gpu_train generate", description="Sample text"
        )
        add_generate_arguments(parser)
        command, level, argv = run_generate, "WARNING", argv[1:]
    else:
        if argv[:1] == ["train"]:
            argv = argv[1:]
        parser = argparse.ArgumentParser(
            prog="python -m tweetmill.gpu_train",
            description="Train a GPT on tweetmill shards (or: generate ...)",
        )
        add_train_arguments(parser)
        command, level = run_train, "INFO"
    parser.add_argument(
        "--log-level",
        type=str.upper,
        choices=LOG_LEVELS,
        default=level,
        help=f"logging level (default {level})",
    )
    args = parser.parse_args(argv)
    _setup_logging(args.log_level)
    try:
        return command(args)
    except user_errors() as exc:
        for line in str(exc).splitlines():
            log.error("%s", line)
        return 2


class _Stderr(logging.StreamHandler):
    """To the current ``sys.stderr``, which Rich's live progress bar redirects above itself."""

    stream = property(lambda self: sys.stderr, lambda self, _: None)


def _setup_logging(level: str) -> None:
    """Logging of ``main`` (``python -m tweetmill.gpu_train``, torchrun); the tweetmill CLI sets up its
    own (``pipeline/logs.py``), which this package does not import."""
    root = logging.getLogger()
    if not root.handlers:
        logging.basicConfig(
            level=logging.WARNING,
            format="%(asctime)s %(levelname)s %(name)s: %(message)s",
            handlers=[_Stderr()],
        )
    logging.getLogger("tweetmill").setLevel(level.upper())

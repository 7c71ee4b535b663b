"""The subcommands that train on shards: train, generate (from ``gpu_train``, which needs torch),
fetch (shards on a Beam filesystem into the local cache) and export-hf.
"""

from __future__ import annotations

import argparse
import importlib.util

from tweetmill.pipeline.cli_corpus import SHARDS_HELP
from tweetmill.pipeline.errors import EXIT_OK, UserError

TRAIN_COMMANDS = ("train", "generate")  # from gpu_train; need torch


def _train_command(name: str):
    """Subcommands from gpu_train, imported only when used (torch is an optional extra)."""

    def handler(args: argparse.Namespace, _: list[str]) -> int:
        from tweetmill.gpu_train import cli as train_cli

        if name == "train":
            from tweetmill.pipeline.shard_cache import is_remote

            if is_remote(args.data):  # gs://...: the trainer reads a local copy (and never imports Beam)
                args.data = _cached_shards(args.data, args)
        try:
            return getattr(train_cli, f"run_{name}")(args) or EXIT_OK
        except train_cli.user_errors() as exc:
            raise UserError(*getattr(exc, "problems", [str(exc)])) from exc

    return handler


def _cached_shards(source: str, args: argparse.Namespace) -> str:
    """The local cache directory holding ``source``'s shards, synced (pipeline/shard_cache.py)."""
    from tweetmill.pipeline.shard_cache import CacheError, sync
    from tweetmill.schemas.shard_dir import ShardDirError

    try:
        result = sync(source, args.cache_dir, max_bytes=args.cache_max_bytes, full_check=bool(args.verify))
    except (CacheError, ShardDirError, OSError) as exc:
        raise UserError(str(exc)) from exc
    return str(result.path)


def _cmd_fetch(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.pipeline.shard_cache import is_remote

    print(_cached_shards(args.shards, args) if is_remote(args.shards) else args.shards)
    return EXIT_OK


def _cache_arguments(cmd: argparse.ArgumentParser) -> None:
    from tweetmill.pipeline.shard_cache import parse_size

    def size(text: str) -> int:
        try:
            return parse_size(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    cmd.add_argument(
        "--cache-dir",
        metavar="DIR",
        help="local copy of shards on gs:// or another Beam filesystem (default: "
        "$TWEETMILL_CACHE/<key>, else ~/.cache/tweetmill/shards/<key>; key: the manifest's sha256)",
    )
    cmd.add_argument(
        "--cache-max-bytes",
        type=size,
        metavar="SIZE",
        help="bound of all cached shard sets beside it, e.g. 50G: the least recently used are evicted "
        "first; a shard set larger on its own is refused",
    )


def fetch_arguments(cmd: argparse.ArgumentParser) -> None:
    cmd.description = (
        "Copy the shards, tokenizer.json and tokenizer_config.json of a shard directory on a Beam "
        "filesystem into a local cache, each checked by sha256 against the manifest, and print the "
        "local path (a local SHARDS is printed as is), e.g. for torchrun -m tweetmill.gpu_train "
        '"$(tweetmill fetch gs://bucket/shards)". A second call fetches only what is missing or changed.'
    )
    cmd.add_argument("shards", help=SHARDS_HELP)
    _cache_arguments(cmd)
    cmd.add_argument("--verify", action="store_true", help="hash the cached files again, not just stat them")
    cmd.set_defaults(handler=_cmd_fetch)


def gpu_train_arguments(name: str):
    def add(cmd: argparse.ArgumentParser) -> None:
        if importlib.util.find_spec("torch") is None:
            raise UserError(f"tweetmill {name} needs torch: pip install 'tweetmill[train]'")
        from tweetmill.gpu_train import cli as train_cli

        getattr(train_cli, f"add_{name}_arguments")(cmd)
        if name == "train":
            _cache_arguments(cmd)
        cmd.set_defaults(handler=_train_command(name))

    return add


def export_hf_arguments(cmd: argparse.ArgumentParser) -> None:
    if importlib.util.find_spec("torch") is None:
        raise UserError("tweetmill export-hf needs torch: pip install 'tweetmill[train]'")
    from tweetmill.gpu_train.export_hf import add_arguments

    cmd.description = (
        "Write CHECKPOINT as a transformers GPT2LMHeadModel directory (safetensors, config, tokenizer) "
        "for AutoModelForCausalLM / AutoTokenizer.from_pretrained(OUT); see docs/export.md."
    )
    add_arguments(cmd)
    cmd.set_defaults(handler=_cmd_export_hf)


def _cmd_export_hf(args: argparse.Namespace, _: list[str]) -> int:
    from tweetmill.gpu_train import export_hf

    try:
        return export_hf.run(args) or EXIT_OK
    except export_hf.user_errors() as exc:
        raise UserError(str(exc)) from exc

"""Checks that run before anything else: a mistake in an input, a shard directory or an output path is
reported at once, every problem on its own line, instead of failing a pipeline minutes later.

``expand_input`` follows the read stage's rules (``transforms/read.py``: ``directory_of``,
``directory_units``), so the check and the run agree on what a pattern stands for: a file is
itself; a glob is the files it matches (Beam's syntax: ``*`` within one directory, ``**`` across
directories); a directory is every file below it, recursively, except hidden ones (a name starting
with ``.``, file or folder, below the given directory: ``.git``, editor swap files, ``.DS_Store``).
On object stores (``gs://``...) a "directory" is a prefix.
"""

from __future__ import annotations

import logging
import os
import re
from typing import TYPE_CHECKING

from apache_beam.io.filesystem import BeamIOError
from apache_beam.io.filesystems import FileSystems
from tweetmill.transforms.read import directory_of

if TYPE_CHECKING:
    from tweetmill.transforms.tokenize import TokenizerSpec

log = logging.getLogger(__name__)

_GLOB = re.compile(r"[*?\[]")  # what makes FileSystems.match list instead of looking one path up
_SHOWN = 3  # unreadable files named in one problem line


def is_local(path: str) -> bool:
    return FileSystems.get_scheme(path) is None


def _is_hidden_below(path: str, base: str) -> bool:
    """Whether a component of ``path`` below ``base`` starts with a dot."""
    rest = path[len(base) :] if path.startswith(base) else path
    return any(part.startswith(".") for part in re.split(r"[/\\]", rest) if part)


def _match(pattern: str) -> list[str]:
    """Paths of the files ``pattern`` matches, sorted; directories (and object-store folder
    placeholders, names ending in '/') excluded.

    Beam lists a local glob from the directory before its first wildcard; a bare ``*.json`` has
    none, so it is matched as ``./*.json`` and given back without the ``./``.
    """
    bare = is_local(pattern) and not os.path.dirname(_GLOB.split(pattern, 1)[0])
    paths = [m.path for m in FileSystems.match(["./" + pattern if bare else pattern])[0].metadata_list]
    if bare:
        paths = [p.removeprefix("./") for p in paths]
    if is_local(pattern):
        return sorted(p for p in paths if not os.path.isdir(p))
    return sorted(p for p in paths if not p.endswith("/"))


def expand_input(pattern: str) -> list[str]:
    """The files (Beam-readable paths, sorted) that an input pattern stands for.

    A directory gives every non-hidden file below it, recursively; a glob its matching files; a
    file itself. Nothing matching gives ``[]`` (``input_problems`` says why). Listing errors
    (``BeamIOError``, an unknown scheme's ``ValueError``) propagate.
    """
    if _GLOB.search(pattern):
        return _match(pattern)
    if directory_of(pattern) is not None:  # the rule the read stage applies
        base = pattern.rstrip("/\\") or pattern  # "/" stays "/"
        files = _match(base.rstrip("/\\") + "/**")
        return [p for p in files if not _is_hidden_below(p, base)]
    return [pattern] if FileSystems.exists(pattern) else []


def _readable(path: str) -> bool:
    """Local files: may this process open them? Remote ones are assumed readable (listing worked)."""
    return not is_local(path) or os.access(path, os.R_OK)


def input_problems(patterns: list[str]) -> list[str]:
    """One line per problem with the inputs, all of them (empty: the inputs are fine).

    A glob that matches no file, a path that does not exist, a directory with no readable
    non-hidden file, files that cannot be read, a path no Beam filesystem can list.
    """
    problems: list[str] = []
    for pattern in patterns:
        try:
            files = expand_input(pattern)
        except (BeamIOError, ValueError, OSError) as exc:
            problems.append(f"{pattern}: cannot be listed: {exc}")
            continue
        if not files:
            if _GLOB.search(pattern):
                problems.append(f"{pattern}: no file matches this pattern")
            elif is_local(pattern) and os.path.isdir(pattern):
                problems.append(
                    f"{pattern}: no file in this directory (hidden files and folders, names starting "
                    "with '.', are skipped)"
                )
            else:
                problems.append(f"{pattern}: no such file or directory")
            continue
        unreadable = [f for f in files if not _readable(f)]
        if files == [pattern] and unreadable:
            problems.append(f"{pattern}: not readable (permission denied)")
        elif len(unreadable) == len(files):
            problems.append(f"{pattern}: none of its {len(files)} file(s) is readable (permission denied)")
        elif unreadable:
            shown = ", ".join(unreadable[:_SHOWN]) + (" …" if len(unreadable) > _SHOWN else "")
            problems.append(f"{pattern}: {len(unreadable)} file(s) not readable (permission denied): {shown}")
    return problems


def shard_dir_problem(shard_dir: str, *, parse: bool = True) -> str | None:
    """Why ``shard_dir`` is not a finished tweetmill shard directory (None: it has a manifest, and
    with ``parse`` one that parses; ``verify`` reports an unparseable one itself)."""
    from tweetmill.schemas.manifest import MANIFEST_NAME, Manifest

    manifest = FileSystems.join(shard_dir, MANIFEST_NAME)
    try:
        found = FileSystems.exists(manifest)
        if not found and is_local(shard_dir):
            exists, is_file = os.path.exists(shard_dir), os.path.isfile(shard_dir)
        elif not found:
            exists = bool(FileSystems.match([shard_dir.rstrip("/") + "/**"], limits=[1])[0].metadata_list)
            is_file = False
    except (BeamIOError, ValueError, OSError) as exc:  # ValueError: no filesystem for the scheme
        return f"{shard_dir}: cannot be read: {exc}"
    if found:
        if not parse:
            return None
        try:
            with FileSystems.open(manifest, compression_type="uncompressed") as f:
                Manifest.from_json(f.read().decode("utf-8"))
        except (ValueError, KeyError, TypeError) as exc:  # JSON, UTF-8 or fields: a damaged manifest
            return f"{manifest}: unreadable ({exc}); tweetmill verify {shard_dir} checks the whole directory"
        except (BeamIOError, OSError) as exc:
            return f"{manifest}: cannot be read: {exc}"
        return None
    if not exists:
        return f"{shard_dir}: no such directory (give the --output directory of a tweetmill run)"
    if is_file:
        return f"{shard_dir}: is a file; give the shard directory (the --output of tweetmill run) instead"
    return (
        f"{shard_dir}: no {MANIFEST_NAME}, so not a finished tweetmill shard directory "
        "(the run writes it last: was it interrupted, or is this another directory?)"
    )


def output_file_problem(path: str, option: str) -> str | None:
    """Why the local file ``path`` (the value of ``option``) cannot be written (None: it can, or it
    is remote, where only the write itself can tell)."""
    if not is_local(path):
        return None
    if os.path.isdir(path):
        return f"{option} {path}: is a directory; give a file name"
    parent = os.path.dirname(os.path.abspath(path))
    while not os.path.exists(parent):  # written with its missing directories created
        parent = os.path.dirname(parent)
    if not os.path.isdir(parent):
        return f"{option} {path}: {parent} is a file, not a directory"
    target = path if os.path.exists(path) else parent
    if not os.access(target, os.W_OK):
        return f"{option} {path}: no permission to write {target}"
    return None


def as_beam_pattern(path: str) -> str:
    """A pattern ``FileSystems.match`` reads as exactly ``path`` (or a few look-alikes): its glob
    characters, which a file name may hold, each replaced by ``?`` (any one character)."""
    return _GLOB.sub("?", path)


def tokenizer_problem(spec: TokenizerSpec) -> str | None:
    """Why ``--tokenizer`` cannot be used (None: it loads, with an end-of-document token). Loading it
    here costs nothing later: ``load_tokenizer`` keeps it for the run in this process."""
    from tweetmill.transforms.tokenize import load_tokenizer

    try:
        load_tokenizer(spec)
    except FileNotFoundError:
        return f"--tokenizer {spec.source}: no such file"
    except (OSError, BeamIOError) as exc:
        return f"--tokenizer {spec.source}: cannot be read: {exc}"
    except ValueError as exc:  # not a tokenizer.json, or no end-of-document token: says which
        return f"--tokenizer: {exc}"
    return None

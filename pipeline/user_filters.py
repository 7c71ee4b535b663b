"""Filters from the user's own modules: ``--filter mypkg.filters:NoCrypto`` or an entry point name.

A user filter is a ``tweetmill.transforms.stage.Stage`` subclass (usually a ``TweetFilter``) in any
importable module, or registered by a package under the ``tweetmill.filters`` entry point group.
Its options come from ``--filter-arg NAME.FIELD=VALUE`` or a JSON/TOML ``--filter-config`` file
(``{"no_crypto": {"words": ["bitcoin"]}}``), checked like built-in options. It runs after the
built-in filters, before deduplication; its drops are counted under its own ``name``; its module's
source is part of the run fingerprint, so editing the filter changes the run's identity.

On a remote runner (Dataflow) the filter's module travels inside the pickled job (Beam's default
cloudpickle pickler, by value), so the workers need no copy of it; modules it imports in turn must be
installed there (``--requirements_file``, ``--extra_package``).
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import inspect
import json
import re
from dataclasses import dataclass
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from tweetmill.transforms.stage import Stage

ENTRY_POINT_GROUP = "tweetmill.filters"
_STAGE_NAME = re.compile(r"[a-z][a-z0-9_]{0,63}")


@dataclass(frozen=True)
class UserFilter:
    """A user filter as the run configuration records it (and fingerprints it)."""

    ref: str  # "module:Class" or an entry point name
    name: str
    config: dict[str, Any]
    source_sha256: str  # of the module's source file: a changed filter is a different run

    def load(self) -> Stage:
        from tweetmill.pipeline.stage_options import config_from_values

        stage_cls = load_filter_class(self.ref)
        return stage_cls(config_from_values(stage_cls, self.config, where=f"--filter {self.ref}"))


def _resolve(ref: str) -> tuple[str, str]:
    if ":" in ref:
        module, _, attr = ref.partition(":")
        return module, attr
    found = [ep for ep in entry_points(group=ENTRY_POINT_GROUP) if ep.name == ref]
    if not found:
        names = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        known = (
            f"installed: {', '.join(names)}"
            if names
            else f"no package registers {ENTRY_POINT_GROUP} entry points"
        )
        raise ValueError(f"--filter {ref}: not module:Class and not an installed filter name ({known})")
    module, _, attr = found[0].value.partition(":")
    return module, attr


def load_filter_class(ref: str) -> type[Stage]:
    """The filter class ``ref`` names; ``ValueError`` in one line when it cannot be used."""
    module_name, attr = _resolve(ref)
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(
            f"--filter {ref}: cannot import {module_name} ({exc}); is it on PYTHONPATH?"
        ) from None
    stage_cls = getattr(module, attr, None)
    if not (inspect.isclass(stage_cls) and issubclass(stage_cls, Stage)):
        raise ValueError(
            f"--filter {ref}: {module_name}.{attr} is not a tweetmill Stage subclass (see docs/stages.md)"
        )
    name = getattr(stage_cls, "name", None)
    if not isinstance(name, str) or not _STAGE_NAME.fullmatch(name):
        raise ValueError(f"--filter {ref}: its name must be snake case (a-z, 0-9, _), got {name!r}")
    if not stage_cls.reasons:
        raise ValueError(f"--filter {ref}: it declares no drop reasons (class attribute reasons)")
    if not dataclasses.is_dataclass(stage_cls.Config):
        raise ValueError(f"--filter {ref}: its Config must be a frozen dataclass")
    return stage_cls


def _source_sha256(stage_cls: type) -> str:
    try:
        source = Path(inspect.getfile(stage_cls)).read_bytes()
    except (OSError, TypeError):
        source = inspect.getsource(stage_cls).encode()
    return hashlib.sha256(source).hexdigest()


def read_filter_config(path: str) -> dict[str, dict[str, Any]]:
    """``--filter-config``: a JSON or TOML file with one table of options per filter name."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ValueError(f"--filter-config {path}: {exc.strerror or exc}") from None
    try:
        if path.endswith(".toml"):
            try:
                import tomllib
            except ModuleNotFoundError:  # Python 3.10
                raise ValueError(
                    f"--filter-config {path}: TOML needs Python 3.11 or newer; use JSON"
                ) from None
            doc = tomllib.loads(text)
        else:
            doc = json.loads(text)
    except ValueError as exc:
        raise ValueError(
            f"--filter-config {path}: not valid {'TOML' if path.endswith('.toml') else 'JSON'} ({exc})"
        ) from None
    if not isinstance(doc, dict) or not all(isinstance(v, dict) for v in doc.values()):
        raise ValueError(f"--filter-config {path}: expected one table of options per filter name")
    return doc


def parse_filter_args(pairs: list[str]) -> dict[str, dict[str, str]]:
    """``NAME.FIELD=VALUE`` pairs, by filter name."""
    options: dict[str, dict[str, str]] = {}
    for pair in pairs:
        key, eq, value = pair.partition("=")
        name, dot, field = key.partition(".")
        if not (eq and dot and name and field):
            raise ValueError(
                f"--filter-arg {pair!r}: expected NAME.FIELD=VALUE, e.g. no_crypto.words=bitcoin,eth"
            )
        options.setdefault(name.strip(), {})[field.strip()] = value
    return options


def user_filters(
    refs: list[str], args: list[str], config_file: str | None, reserved: set[str]
) -> tuple[UserFilter, ...]:
    """The run's user filters, loaded and checked once now, so a mistake is one line before the run."""
    from tweetmill.pipeline.stage_options import config_from_values

    options: dict[str, dict[str, Any]] = read_filter_config(config_file) if config_file else {}
    for name, values in parse_filter_args(args).items():
        options.setdefault(name, {}).update(values)
    loaded: list[UserFilter] = []
    for ref in refs:
        stage_cls = load_filter_class(ref)
        if stage_cls.name in reserved or any(f.name == stage_cls.name for f in loaded):
            raise ValueError(f"--filter {ref}: the stage name {stage_cls.name!r} is already taken; rename it")
        values = options.pop(stage_cls.name, {})
        config = config_from_values(stage_cls, values, where=f"--filter {ref}")
        loaded.append(UserFilter(ref, stage_cls.name, dataclasses.asdict(config), _source_sha256(stage_cls)))
    if options:
        raise ValueError(
            f"options given for filters that are not used: {', '.join(sorted(options))} (add --filter)"
        )
    return tuple(loaded)


def pickle_by_value(stage: Stage) -> None:
    """Ship the filter's module inside the pickled job, so remote workers need no copy of it."""
    from apache_beam.internal.cloudpickle import cloudpickle

    module = inspect.getmodule(type(stage))
    if module is not None and not module.__name__.startswith("tweetmill."):
        cloudpickle.register_pickle_by_value(module)

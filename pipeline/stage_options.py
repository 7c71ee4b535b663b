"""Command-line options derived from the stages' config dataclasses, so a stage's flags live with it.

Each field declared with ``transforms.stage.option`` becomes one option of ``tweetmill run`` (its
name, help, default and accepted range from the field); the parsed values become the stage's frozen
``Config``. The same parsing serves ``--filter-arg NAME.FIELD=VALUE`` and ``--filter-config FILE``
for filters from the user's own modules.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import typing
from collections.abc import Callable, Iterable
from typing import Any

from tweetmill.gpu_train.cli import int_at_least, number_in


def option_fields(config_cls: type) -> list[tuple[dataclasses.Field, Any]]:
    """The fields of a stage config that are command-line options, with their resolved types."""
    hints = typing.get_type_hints(config_cls)
    return [(f, hints[f.name]) for f in dataclasses.fields(config_cls) if "help" in f.metadata]


def flag_of(field: dataclasses.Field) -> str:
    return field.metadata.get("flag") or "--" + field.name.replace("_", "-")


def value_parser(field: dataclasses.Field, hint: Any) -> Callable[[str], Any]:
    """The ``type=`` function for a field: its type, its range, its choices; one-line errors."""
    meta = field.metadata
    low, high = meta.get("low"), meta.get("high")
    if hint is bool:
        return _boolean
    if hint is int:
        return int_at_least(int(low) if low is not None else -(2**63))
    if hint is float:
        return number_in(
            -math.inf if low is None else low,
            math.inf if high is None else high,
            low_open=bool(meta.get("low_open")),
        )
    if typing.get_origin(hint) is tuple:
        return _string_list
    choices = meta.get("choices")
    if choices:
        return _one_of(tuple(choices))
    return str


def _boolean(value: str) -> bool:
    lowered = value.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected true or false, got {value!r}")


def _string_list(value: str) -> tuple[str, ...]:
    return tuple(item.strip() for item in value.split(",") if item.strip())


def _one_of(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(value: str) -> str:
        if value not in choices:
            raise argparse.ArgumentTypeError(f"expected one of {', '.join(choices)}, got {value!r}")
        return value

    return parse


def _dest(stage_name: str, field: dataclasses.Field) -> str:
    return f"stage__{stage_name}__{field.name}"


def add_stage_arguments(parser: argparse.ArgumentParser, stages: Iterable[type]) -> None:
    """One argument group per stage that has options, its flags derived from its ``Config``."""
    for stage in stages:
        fields = option_fields(stage.Config)
        if not fields:
            continue
        group = parser.add_argument_group(f"{stage.name}: {stage.description}")
        for field, hint in fields:
            dest, help_text = _dest(stage.name, field), field.metadata["help"]
            if hint is bool:
                # A flag that sets the field to the opposite of its default.
                action = "store_false" if field.default else "store_true"
                group.add_argument(
                    flag_of(field), dest=dest, action=action, default=field.default, help=help_text
                )
                continue
            group.add_argument(
                flag_of(field),
                dest=dest,
                type=value_parser(field, hint),
                default=field.default,
                metavar=_metavar(field, hint),
                help=f"{help_text} (default: {field.default})".replace("%", "%%"),
            )


def _metavar(field: dataclasses.Field, hint: Any) -> str:
    choices = field.metadata.get("choices")
    if choices:
        return "{" + ",".join(choices) + "}"
    return {int: "N", float: "X"}.get(hint, field.name.upper())


def stage_config_from_args(args: argparse.Namespace, stage: type) -> Any:
    """The stage's ``Config`` with the values ``add_stage_arguments`` parsed."""
    values = {
        field.name: getattr(args, _dest(stage.name, field))
        for field, _ in option_fields(stage.Config)
        if hasattr(args, _dest(stage.name, field))
    }
    return stage.Config(**values)


def config_from_values(stage: type, values: dict[str, Any], *, where: str) -> Any:
    """A stage's ``Config`` from name → value pairs (strings from the command line, or typed values
    from a config file), each checked like its command-line option; ``ValueError`` in one line."""
    fields = dict((f.name, (f, hint)) for f, hint in option_fields(stage.Config))
    typed: dict[str, Any] = {}
    for name, value in values.items():
        if name not in fields:
            known = ", ".join(sorted(fields)) or "none"
            raise ValueError(f"{where}: {stage.name} has no option {name!r} (its options: {known})")
        field, hint = fields[name]
        text = ",".join(map(str, value)) if isinstance(value, list | tuple) else str(value)
        try:
            typed[name] = value_parser(field, hint)(text)
        except argparse.ArgumentTypeError as exc:
            raise ValueError(f"{where}: {stage.name}.{name} {exc}") from None
    return stage.Config(**typed)

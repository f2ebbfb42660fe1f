"""Checks of ``recon`` options shared by the commands.

Each check refuses bad input as argparse does (one line naming the option, exit 2)
or reports what it changed: a value outside a setting's range is clamped and the
note names the option, the value given and the value used.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from typing import Any

from rich.console import Console
from rich.markup import escape

from engine.errors import ConfigError
from engine.settings import SourceSettings, clamp

err = Console(stderr=True)

SIMULATOR_ONLY = ("calendar", "latency_ms")
"""Options of ``recon run`` that only the simulator source reads."""


def finite_float(value: str) -> float:
    """An argparse type: a float that is neither NaN nor infinite."""
    try:
        number = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {value!r}") from None
    if not math.isfinite(number):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {value!r}")
    return number


def district_ids(value: str) -> str:
    """An argparse type: a comma-separated list of at least one district id.

    The value is returned as given; :func:`split_ids` splits it, and each id is
    checked where it is used (a bad one is a ConfigError, exit 2).
    """
    if not split_ids(value):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated district ids such as 1,2,F, got {value!r}"
        )
    return value


def split_ids(value: str | None) -> list[str]:
    """The ids of a comma-separated list, blanks dropped."""
    return [d.strip() for d in (value or "").split(",") if d.strip()]


class Clamped(argparse.Action):
    """Store a number brought into its setting's range, with a note if it changed.

    ``setting="group.field"`` names the setting whose range applies.
    """

    def __init__(self, option_strings: Sequence[str], dest: str, *, setting: str,
                 **kwargs: Any) -> None:  # fmt: skip
        group, _, field = setting.partition(".")
        self.group, self.field = group, field
        super().__init__(option_strings, dest, **kwargs)

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: Any,
        option_string: str | None = None,
    ) -> None:
        label = option_string or self.dest
        setattr(namespace, self.dest, clamped(label, self.group, self.field, values))


def clamped(option: str, group: str, field: str, value: float) -> float:
    """``value`` within the range of setting ``group.field``; a note if it changed."""
    used, note = clamp(group, field, value, label=option)
    if note:
        err.print(f"[yellow]note:[/] {escape(note)}")
    return type(value)(used)


def check_simulator_options(args: argparse.Namespace, source: SourceSettings) -> None:
    """Refuse options only the simulator reads when the source is a folder or a URL."""
    if source.source == "sim":
        return
    given = [name for name in SIMULATOR_ONLY if getattr(args, name, None) is not None]
    if given:
        option = "--" + given[0].replace("_", "-")
        raise ConfigError(
            option,
            getattr(args, given[0]),
            f"applies to the simulator only; the source is {source.source!r}",
        )


__all__ = [
    "Clamped",
    "check_simulator_options",
    "clamped",
    "district_ids",
    "finite_float",
    "split_ids",
]

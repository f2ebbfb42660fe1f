"""What the cache stores: immutable values, so a reader can never change another's copy."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, time, timedelta
from decimal import Decimal
from enum import Enum
from types import MappingProxyType
from typing import Any

# datetime and bool are covered as subclasses of date and int
_SCALARS = (str, bytes, int, float, complex, type(None), Decimal, Enum, date, time, timedelta)


def freeze(value: Any) -> Any:
    """``value`` itself if immutable, else an immutable copy; ``TypeError`` if impossible."""
    if isinstance(value, _SCALARS) or _is_frozen_dataclass(value):
        return value
    if isinstance(value, tuple | list):
        items = tuple(freeze(v) for v in value)
        same = isinstance(value, tuple) and all(a is b for a, b in zip(items, value, strict=True))
        return value if same else items
    if isinstance(value, Mapping):
        return MappingProxyType({k: freeze(v) for k, v in value.items()})
    if isinstance(value, set | frozenset):
        return frozenset(freeze(v) for v in value)
    raise TypeError(
        f"cannot cache a {type(value).__name__}: use a frozen dataclass, tuple, mapping or scalar"
    )


def _is_frozen_dataclass(value: Any) -> bool:
    params = getattr(type(value), "__dataclass_params__", None)
    return params is not None and bool(params.frozen)

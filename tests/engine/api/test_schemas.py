"""The alias rule and the models derived from engine dataclasses, without a server."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Annotated

import pytest
from pydantic import Field, ValidationError

from engine.api.schemas import (
    As,
    Out,
    StorageCacheOut,
    camel,
    camel_keys,
    derive,
    patch_of,
    view,
)

API = Path(__file__).resolve().parents[3] / "engine" / "api"


@dataclass(frozen=True)
class Sample:
    """A sample engine value."""

    operation: str
    mean_ms: float
    at: datetime
    figures: dict[str, float]
    internal: int = 0

    @property
    def double_ms(self) -> float:
        return 2 * self.mean_ms


SampleOut = derive(
    Sample,
    name="SampleOut",
    rename={"operation": "operation_name"},
    omit=("internal",),
    types={"figures": (dict[str, float], Field(description="by name"))},
    add={"double_ms": float, "note": str},
)
VALUE = Sample("job.check", 1.5, datetime(2025, 7, 1, 12), {"rss_mb": 1.0})


@pytest.mark.parametrize(
    ("name", "alias"),
    [
        ("share_of_time", "shareOfTime"),
        ("p95_duration", "p95Duration"),
        ("membership", "membership"),
        ("memory_usage_mb", "memoryUsageMB"),  # the seed's spelling
        ("memory_threshold_mb", "memoryThresholdMB"),  # from BatchSettings' seed names
        ("index_cache_timeout_ms", "indexCacheTimeoutMs"),
    ],
)
def test_camel_is_the_one_rule(name: str, alias: str) -> None:
    assert camel(name) == alias


def test_camel_keys() -> None:
    assert camel_keys({"rss_mb": 1, "threads": 2}) == {"rssMb": 1, "threads": 2}


def test_derive_takes_the_dataclass_fields_under_the_rule() -> None:
    found = view(SampleOut, VALUE, note="hi").model_dump(by_alias=True)
    assert found == {
        "operationName": "job.check",
        "meanMs": 1.5,
        "at": datetime(2025, 7, 1, 12, tzinfo=UTC),  # always with its offset
        "figures": {"rss_mb": 1.0},
        "doubleMs": 3.0,  # a property, read from the value
        "note": "hi",
    }
    schema = SampleOut.model_json_schema(mode="serialization")
    assert schema["description"] == "A sample engine value."
    assert schema["properties"]["figures"]["description"] == "by name"
    assert set(schema["required"]) == set(found)  # every answer carries every field


def test_view_of_a_mapping_reads_the_engine_names() -> None:
    values = {"operation": "x", "mean_ms": 1, "at": VALUE.at, "figures": {}, "double_ms": 2}
    found = view(SampleOut, values, note="")
    assert found.model_dump(by_alias=True)["operationName"] == "x"


def test_a_missing_field_is_an_error() -> None:
    with pytest.raises(ValidationError, match="note"):
        view(SampleOut, VALUE)


def test_as_shows_an_engine_type_through_its_model() -> None:
    class Envelope(Out):
        samples: list[Annotated[Sample, As(SampleOut)]]

    offset = timezone(timedelta(hours=2))
    other = Sample("a", 1.0, datetime(2025, 7, 1, tzinfo=offset), {})
    found = Envelope(samples=[view(SampleOut, other, note="")]).model_dump(by_alias=True)
    assert found["samples"][0]["operationName"] == "a"
    assert found["samples"][0]["at"].utcoffset() == timedelta(hours=2)  # an offset is kept
    schema = Envelope.model_json_schema(mode="serialization")
    assert "SampleOut" in schema["$defs"]


def test_patch_of_makes_every_field_optional_and_refuses_others() -> None:
    Patch = patch_of(Sample, name="SamplePatch", doc="d")
    assert Patch.model_validate({"meanMs": 2}).model_dump(exclude_none=True) == {"mean_ms": 2}
    with pytest.raises(ValidationError):
        Patch.model_validate({"mean_ms": 2})  # camelCase names only, as in the seed
    with pytest.raises(ValidationError):
        Patch.model_validate({"other": 1})


def test_the_api_package_speaks_to_the_database_only_through_the_storage() -> None:
    pattern = re.compile(r"^\s*(from|import)\s+(sqlalchemy|sqlite3|psycopg)\b", re.M)
    offenders = [p.name for p in API.rglob("*.py") if pattern.search(p.read_text())]
    assert offenders == []


def test_storage_figures_validate_under_either_spelling() -> None:
    snake = {
        "enable_in_memory_cache": True,
        "size": 1,
        "index_size": 2,
        "cache_max_size": 3,
        "hits": 4,
        "misses": 5,
        "hit_rate": 0.5,
        "pending_writes": 6,
        "roundtrips": 7,
    }
    from_snake = StorageCacheOut.model_validate(snake)
    assert StorageCacheOut.model_validate(camel_keys(snake)) == from_snake
    assert from_snake.model_dump(by_alias=True)["pendingWrites"] == 6

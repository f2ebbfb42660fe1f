"""The API's public shape is pinned: paths, methods, parameters, and every request and
response field with its type, as the seed had them (``openapi_fields.json``).

Component schema *names*, titles and descriptions may change; what a client sends and
reads may not. Regenerate the fixture only for a deliberate API change::

    python -m tests.engine.api.test_openapi_pin > tests/engine/api/openapi_fields.json
"""

from __future__ import annotations

import json
import sys
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from engine.api.app import create_app
from engine.app.console import Console
from engine.settings import Settings

FIXTURE = Path(__file__).with_name("openapi_fields.json")
KEPT = (
    "type", "format", "enum", "const", "pattern", "default",
    "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
    "minLength", "maxLength", "minItems", "maxItems",
)  # fmt: skip
"""What a client relies on; titles, descriptions and examples are documentation."""


def shape(schema: Any, components: Mapping[str, Any]) -> Any:
    """``schema`` with every ``$ref`` resolved and only the keys of :data:`KEPT` and structure."""
    if not isinstance(schema, Mapping):
        return schema
    if "$ref" in schema:
        return shape(components[schema["$ref"].rsplit("/", 1)[1]], components)
    out: dict[str, Any] = {k: schema[k] for k in KEPT if k in schema}
    if "properties" in schema:
        out["properties"] = {k: shape(v, components) for k, v in schema["properties"].items()}
        out["required"] = sorted(schema.get("required", []))
    for key in ("items", "additionalProperties"):
        if key in schema:
            out[key] = shape(schema[key], components)
    if "anyOf" in schema:
        options = [shape(s, components) for s in schema["anyOf"]]
        out["anyOf"] = sorted(options, key=lambda s: json.dumps(s, sort_keys=True))
    return out


def operation_shape(op: Mapping[str, Any], components: Mapping[str, Any]) -> dict[str, Any]:
    body = op.get("requestBody", {})
    return {
        "parameters": sorted(
            (
                {
                    "name": p["name"],
                    "in": p["in"],
                    "required": p.get("required", False),
                    "schema": shape(p["schema"], components),
                }
                for p in op.get("parameters", [])
            ),
            key=lambda p: (p["in"], p["name"]),
        ),
        "body": {
            "required": body.get("required", False),
            "content": {
                t: shape(c["schema"], components) for t, c in body.get("content", {}).items()
            },
        },
        "responses": {
            code: {t: shape(c.get("schema"), components) for t, c in r.get("content", {}).items()}
            for code, r in op["responses"].items()
        },
        "security": op.get("security", []),
    }


def api_shape(document: Mapping[str, Any]) -> dict[str, Any]:
    """Every path and method of an OpenAPI document, reduced to what clients rely on."""
    components = document.get("components", {}).get("schemas", {})
    return {
        f"{method.upper()} {path}": operation_shape(op, components)
        for path, methods in document["paths"].items()
        for method, op in methods.items()
    }


def current_document(folder: Path) -> Any:
    """The OpenAPI document of today's app (on a throwaway database in ``folder``)."""
    settings = Settings().with_values("storage", db_url=f"sqlite:///{folder / 'pin.db'}")
    console = Console(settings)
    try:
        return create_app(console).openapi()
    finally:
        console.close()


def test_paths_fields_and_types_are_the_seeds(tmp_path: Path) -> None:
    document = current_document(tmp_path)
    expected = json.loads(FIXTURE.read_text())
    found = json.loads(json.dumps(api_shape(document)))  # tuples as lists, like the fixture
    assert sorted(found) == sorted(expected)
    for operation, want in expected.items():
        assert found[operation] == want, operation


if __name__ == "__main__":  # regenerate: python -m ... [openapi.json], default today's app
    if len(sys.argv) > 1:
        source = json.loads(Path(sys.argv[1]).read_text())
    else:
        with tempfile.TemporaryDirectory() as folder:
            source = current_document(Path(folder))
    json.dump(api_shape(source), sys.stdout, indent=1, sort_keys=True)
    print()

"""The layout's rules, checked on the source (ARCHITECTURE.md, issue #15).

- Only ``engine/store/`` talks to the database: no other module of ``engine/``
  or ``dashboard/`` imports SQLAlchemy, sqlite3 or psycopg, or holds SQL text.
- ``engine/`` never imports streamlit: the dashboard depends on the engine,
  never the other way round.
- No class longer than :data:`MAX_CLASS_LINES` lines and no function whose body
  is longer than :data:`MAX_FUNCTION_LINES` lines in ``engine/`` or ``dashboard/``.
- The statistics the engine returns (:data:`RESULTS`) are frozen, slotted, snake_case
  dataclasses all the way down, and the API derives its models from them.

Each check parses the files (``ast``), so a name in a comment or docstring
does not count, and lists every offender in its failure message.
"""

from __future__ import annotations

import ast
import dataclasses
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any, get_args, get_type_hints

import pytest

from engine.cache import CacheService
from engine.domain.models import BatchStatus, ItemState, JobStatus
from engine.monitor.core import Monitor
from engine.store.storage import Storage

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("engine", "dashboard")
STORE = ROOT / "engine" / "store"
DATABASE_MODULES = frozenset({"sqlalchemy", "sqlite3", "psycopg", "psycopg2"})
MAX_CLASS_LINES = 300
MAX_FUNCTION_LINES = 40
# A string that starts like a statement is SQL text, wherever it is built.
_SQL = re.compile(
    r"^\s*(SELECT\s.+\sFROM\s|INSERT\s+(OR\s+\w+\s+)?INTO\s|UPDATE\s+\w+\s+SET\s|DELETE\s+FROM\s"
    r"|CREATE\s+(UNIQUE\s+)?(TABLE|INDEX)\s|ALTER\s+TABLE\s|DROP\s+(TABLE|INDEX)\s|PRAGMA\s)",
    re.DOTALL,
)


def _sources(*packages: str) -> Iterator[Path]:
    for package in packages:
        yield from sorted((ROOT / package).rglob("*.py"))


@cache
def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _where(path: Path, node: ast.AST) -> str:
    return f"{path.relative_to(ROOT)}:{getattr(node, 'lineno', 0)}"


def _imports(path: Path) -> Iterator[tuple[str, ast.AST]]:
    """Top-level package of every absolute import in ``path``, with its node."""
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.partition(".")[0], node
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            yield node.module.partition(".")[0], node


def _outside_store() -> Iterator[Path]:
    return (p for p in _sources(*PACKAGES) if not p.is_relative_to(STORE))


def test_only_the_store_imports_a_database_driver() -> None:
    offenders = [
        f"{_where(path, node)} imports {name}"
        for path in _outside_store()
        for name, node in _imports(path)
        if name in DATABASE_MODULES
    ]
    assert not offenders, "database access outside engine/store/:\n" + "\n".join(offenders)


def test_only_the_store_writes_sql() -> None:
    offenders = [
        f"{_where(path, node)}: {node.value.strip().splitlines()[0][:60]!r}"
        for path in _outside_store()
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and _SQL.match(node.value)
    ]
    assert not offenders, "SQL text outside engine/store/:\n" + "\n".join(offenders)


def test_the_engine_never_imports_streamlit() -> None:
    offenders = [
        _where(path, node)
        for path in _sources("engine")
        for name, node in _imports(path)
        if name == "streamlit"
    ]
    assert not offenders, "engine/ imports streamlit:\n" + "\n".join(offenders)


def _body_lines(node: ast.FunctionDef | ast.AsyncFunctionDef) -> int:
    """Lines of the body after the docstring (a signature or docstring is not logic)."""
    body = node.body
    if (
        len(body) > 1
        and isinstance(body[0], ast.Expr)
        and isinstance(body[0].value, ast.Constant)
        and isinstance(body[0].value.value, str)
    ):
        body = body[1:]
    end = node.end_lineno or node.lineno
    return end - body[0].lineno + 1


def _too_long() -> Iterator[str]:
    for path in _sources(*PACKAGES):
        for node in ast.walk(_tree(path)):
            if isinstance(node, ast.ClassDef):
                lines = (node.end_lineno or node.lineno) - node.lineno + 1
                if lines > MAX_CLASS_LINES:
                    yield f"{_where(path, node)} class {node.name}: {lines} lines"
            elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                lines = _body_lines(node)
                if lines > MAX_FUNCTION_LINES:
                    yield f"{_where(path, node)} def {node.name}: body of {lines} lines"


def test_classes_and_functions_stay_small() -> None:
    offenders = list(_too_long())
    assert not offenders, (
        f"classes over {MAX_CLASS_LINES} lines or function bodies over "
        f"{MAX_FUNCTION_LINES} lines (split them by reason to change):\n" + "\n".join(offenders)
    )


@pytest.mark.parametrize(
    ("source", "lines"),
    [
        ('def f():\n    """Doc."""\n    a = 1\n    return a\n', 2),
        ("def f():\n    return 1\n", 1),
        ('def f():\n    """Only a docstring."""\n', 1),
    ],
)
def test_a_function_body_is_counted_without_its_docstring(source: str, lines: int) -> None:
    node = ast.parse(source).body[0]
    assert isinstance(node, ast.FunctionDef)
    assert _body_lines(node) == lines


@pytest.mark.parametrize(
    ("text", "sql"),
    [
        ("SELECT id FROM jobs WHERE month = ?", True),
        ("  INSERT OR REPLACE INTO t (a) VALUES (1)", True),
        ("PRAGMA user_version", True),
        ("Select a month from the list", False),
        ("update the settings", False),
        ("jobs", False),
    ],
)
def test_sql_text_is_recognised(text: str, sql: bool) -> None:
    assert bool(_SQL.match(text)) is sql


# --- one vocabulary ----------------------------------------------------------------------------

_VOCABULARY = frozenset(s.value for enum in (JobStatus, BatchStatus, ItemState) for s in enum)


def _literals(node: ast.expr) -> Iterator[str]:
    """The string constants of a comparison's operand (a tuple, list or set of them too)."""
    items = node.elts if isinstance(node, ast.Tuple | ast.List | ast.Set) else [node]
    for item in items:
        if isinstance(item, ast.Constant) and isinstance(item.value, str):
            yield item.value


def test_statuses_are_compared_through_their_enums() -> None:
    """``status == JobStatus.FAILED``, never ``status == "failed"``: one vocabulary, so a
    renamed or added state is found by the type checker, not by a user."""
    offenders = [
        f"{_where(path, node)}: {word!r}"
        for path in _sources(*PACKAGES)
        for node in ast.walk(_tree(path))
        if isinstance(node, ast.Compare)
        for operand in (node.left, *node.comparators)
        for word in _literals(operand)
        if word in _VOCABULARY
    ]
    assert not offenders, (
        "a status compared with a bare string (use JobStatus, BatchStatus or ItemState):\n"
        + "\n".join(offenders)
    )


# --- the storage mode --------------------------------------------------------------------------

COMPOSITION_ROOT = ROOT / "engine" / "app" / "console.py"
# Settings define the mode; the benchmarks build settings for each step they compare.
_MODE_DEFINED = (ROOT / "engine" / "settings.py", ROOT / "engine" / "bench")
_MODES = frozenset({"naive", "optimized"})


def _asks_for_the_mode(node: ast.AST) -> bool:
    """A comparison with a mode name or a ``.mode``, or a call of ``.parts()`` (the
    storage parts the mode stands for)."""
    if isinstance(node, ast.Call):
        return isinstance(node.func, ast.Attribute) and node.func.attr == "parts"
    if not isinstance(node, ast.Compare):
        return False
    operands = (node.left, *node.comparators)
    return any(isinstance(o, ast.Attribute) and o.attr == "mode" for o in operands) or any(
        word in _MODES for o in operands for word in _literals(o)
    )


def test_only_the_composition_root_asks_for_the_storage_mode() -> None:
    """naive vs optimized is chosen once, by choosing implementations in
    :mod:`engine.app.console`; every other part is given what it needs."""
    offenders = [
        _where(path, node)
        for path in _sources(*PACKAGES)
        if path != COMPOSITION_ROOT and not any(path.is_relative_to(d) for d in _MODE_DEFINED)
        for node in ast.walk(_tree(path))
        if _asks_for_the_mode(node)
    ]
    assert not offenders, "the storage mode asked for outside the composition root:\n" + "\n".join(
        offenders
    )


@pytest.mark.parametrize(
    ("source", "asks"),
    [
        ("settings.mode == 'naive'", True),
        ("'optimized' != storage.mode", True),
        ("settings.storage.mode in ('naive', 'optimized')", True),
        ("'caches' in settings.parts()", True),
        ("f'{storage.mode} mode'", False),
        ("step == 'warm-up'", False),
    ],
)
def test_asking_for_the_mode_is_recognised(source: str, asks: bool) -> None:
    tree = ast.parse(source, mode="eval")
    assert any(_asks_for_the_mode(node) for node in ast.walk(tree)) is asks


@pytest.mark.parametrize(
    ("source", "words"),
    [
        ("info.status == 'running'", ["running"]),
        ("row['status'] in ('active', 'pending')", ["active", "pending"]),
        ("status is JobStatus.FAILED", []),
        ("counts.get('failed')", []),
    ],
)
def test_a_bare_status_is_recognised(source: str, words: list[str]) -> None:
    tree = ast.parse(source, mode="eval")
    found = [
        word
        for node in ast.walk(tree)
        if isinstance(node, ast.Compare)
        for operand in (node.left, *node.comparators)
        for word in _literals(operand)
    ]
    assert found == words


# --- engine results -----------------------------------------------------------------------------

RESULTS = {
    "CacheService.config": CacheService.config,
    "CacheService.history": CacheService.history,
    "CacheService.sample": CacheService.sample,
    "CacheService.simulate": CacheService.simulate,
    "CacheService.stats": CacheService.stats,
    "Monitor.history": Monitor.history,
    "Monitor.resource_history": Monitor.resource_history,
    "Monitor.stats": Monitor.stats,
    "Monitor.report": Monitor.report,
    "Monitor.resources": Monitor.resources,
    "Storage.cache_stats": Storage.cache_stats,
}
"""Statistics the CLI, the API and the dashboard show: engine values, not mappings."""
_SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")


def _dataclasses_in(hint: Any) -> Iterator[type]:
    """The dataclasses a type hint names, at any depth (``list[X]``, ``dict[str, X]``, ...)."""
    if isinstance(hint, type) and dataclasses.is_dataclass(hint):
        yield hint
    for arg in get_args(hint):
        yield from _dataclasses_in(arg)


def _result_problems(cls: type) -> Iterator[str]:
    params = cls.__dataclass_params__  # type: ignore[attr-defined]
    if not params.frozen or "__slots__" not in vars(cls):
        yield f"{cls.__qualname__} is not frozen and slotted"
    hints = get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if not _SNAKE.match(f.name):
            yield f"{cls.__qualname__}.{f.name} is not snake_case"
        if Any in (hints[f.name], *get_args(hints[f.name])):
            yield f"{cls.__qualname__}.{f.name} holds Any (a mapping in disguise?)"


@pytest.mark.parametrize("name", sorted(RESULTS))
def test_engine_results_are_frozen_snake_case_dataclasses(name: str) -> None:
    """Engine results are snake_case dataclasses, all the way down; camelCase exists only
    in engine/api (issue #15)."""
    found = list(_dataclasses_in(get_type_hints(RESULTS[name])["return"]))
    assert found, f"{name} returns no dataclass"
    problems: list[str] = []
    seen: set[type] = set()
    while found:
        cls = found.pop()
        if cls not in seen:
            seen.add(cls)
            problems += _result_problems(cls)
            found += [d for hint in get_type_hints(cls).values() for d in _dataclasses_in(hint)]
    assert not problems, "\n".join(problems)


def test_api_models_of_engine_results_are_derived() -> None:
    """No response model names an engine field by hand: ``derive`` is the one place a
    seed name is mapped to the engine's (its ``rename`` tables)."""
    offenders = [
        f"{path.relative_to(ROOT)}:{n}"
        for path in _sources("engine/api")
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if "validation_alias=" in line and "merge_field_infos" not in line
    ]
    assert not offenders, "a hand-written alias (derive the model instead):\n" + "\n".join(
        offenders
    )

"""One settings object for the whole engine.

Values come, lowest precedence first, from the defaults below, an optional TOML
settings file, ``RECON_*`` environment variables and command-line options.
Every field keeps the seed's camelCase name (``seed``) for the UI and the API,
and fields a user may set carry a safe ``range``; :func:`clamp` brings a value
into range and says what it changed.

Environment variables: ``RECON_DB_URL`` and ``RECON_API_TOKEN`` as shortcuts,
and ``RECON_<GROUP>_<FIELD>`` for any field, e.g. ``RECON_BATCH_MAX_CONCURRENT_JOBS=8``.
"""

from __future__ import annotations

import dataclasses
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from engine.errors import ConfigError

DEFAULT_DB_URL = "sqlite:///data/recon.db"
# A real district's club export (~300 clubs) is under 100 kB; this is 200 times that.
DEFAULT_MAX_EXPORT_BYTES = 20_000_000


def _f(
    default: Any, seed: str, lo: float | None = None, hi: float | None = None, doc: str = ""
) -> Any:
    meta = {"seed": seed, "range": (lo, hi) if lo is not None else None, "doc": doc}
    return field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    db_url: str = _f(DEFAULT_DB_URL, "dbUrl", doc="SQLAlchemy URL; SQLite file by default")
    mode: str = _f("optimized", "mode", doc="naive (commit per write) or optimized")
    enable_in_memory_cache: bool = _f(True, "enableInMemoryCache")
    cache_max_size: int = _f(1000, "cacheMaxSize", 10, 100_000)
    batch_size: int = _f(10, "batchSize", 1, 10_000, "deferred writes flushed at this many")
    max_write_delay_ms: int = _f(
        500, "maxWriteDelayMs", 10, 60_000, "deferred writes wait at most this long"
    )
    index_cache_timeout_ms: int = _f(30_000, "indexCacheTimeout", 100, 3_600_000)
    lease_ttl_s: float = _f(
        30.0, "leaseTtlS", 1, 3600, "a month whose process died can be worked again after this"
    )


@dataclass(frozen=True, kw_only=True)
class CacheSettings:
    max_size: int = _f(500, "maxSize", 1, 1_000_000)
    ttl_ms: int = _f(300_000, "ttlMs", 1_000, 86_400_000)
    enable_prefetch: bool = _f(True, "enablePrefetch")
    prefetch_threshold: int = _f(10, "prefetchThreshold", 1, 10_000)
    cleanup_interval_ms: int = _f(60_000, "cleanupIntervalMs", 1_000, 3_600_000)


@dataclass(frozen=True, kw_only=True)
class BatchSettings:
    max_concurrent_jobs: int = _f(5, "maxConcurrentJobs", 1, 20)
    batch_size: int = _f(20, "batchSize", 1, 1_000, "finished items written per storage flush")
    retry_attempts: int = _f(3, "retryAttempts", 0, 10)
    retry_delay_ms: int = _f(5_000, "retryDelayMs", 100, 600_000)
    timeout_ms: int = _f(300_000, "timeoutMs", 1_000, 1_800_000)
    enable_resource_throttling: bool = _f(True, "enableResourceThrottling")
    memory_threshold_mb: int = _f(1024, "memoryThresholdMB", 128, 4096)


@dataclass(frozen=True, kw_only=True)
class ReconSettings:
    max_reconciliation_days: int = _f(15, "maxReconciliationDays", 1, 60)
    june_reconciliation_days: int = _f(30, "juneReconciliationDays", 1, 60)
    stability_period_days: int = _f(3, "stabilityPeriodDays", 1, 30)
    check_frequency_hours: int = _f(24, "checkFrequencyHours", 1, 168)
    auto_extension_enabled: bool = _f(True, "autoExtensionEnabled")
    max_extension_days: int = _f(5, "maxExtensionDays", 0, 30)
    membership_threshold_pct: float = _f(1.0, "membershipThresholdPct", 0.0, 100.0)
    club_count_threshold: int = _f(1, "clubCountThreshold", 0, 1000)
    distinguished_threshold_pct: float = _f(2.0, "distinguishedThresholdPct", 0.0, 100.0)
    payments_threshold_pct: float = _f(1.0, "paymentsThresholdPct", 0.0, 100.0)


@dataclass(frozen=True, kw_only=True)
class MonitorSettings:
    window_ms: int = _f(300_000, "timeWindow", 1_000, 30 * 86_400_000)
    sample_interval_s: float = _f(5.0, "sampleIntervalS", 0.1, 3600)
    aggregate_interval_s: float = _f(10.0, "aggregateIntervalS", 1, 3600)
    retention_days: int = _f(7, "retentionDays", 1, 365)


@dataclass(frozen=True, kw_only=True)
class SourceSettings:
    source: str = _f("sim", "source", doc="'sim', a folder path, or an http(s) URL")
    seed: int = _f(42, "seed", doc="simulator seed")
    latency_ms: float = _f(0.0, "latencyMs", 0, 60_000, "simulated latency per fetch")
    failure_rate: float = _f(0.0, "failureRate", 0.0, 1.0, "share of simulated transient failures")
    calendar_file: str | None = _f(None, "calendar", doc="JSON: data month -> last closing date")
    http_timeout_s: float = _f(30.0, "httpTimeoutS", 0.1, 600)
    max_export_bytes: int = _f(
        DEFAULT_MAX_EXPORT_BYTES,
        "maxExportBytes",
        100_000,
        500_000_000,
        "larger exports are refused as unreadable",
    )


@dataclass(frozen=True, kw_only=True)
class ApiSettings:
    host: str = _f("127.0.0.1", "host")
    port: int = _f(8000, "port", 1, 65535)
    token: str | None = _f(None, "token", doc="bearer token required by POST endpoints")
    max_body_bytes: int = _f(1_000_000, "maxBodyBytes", 1_000, 100_000_000)


@dataclass(frozen=True, kw_only=True)
class WatchSettings:
    embedded: bool = _f(
        True,
        "embedded",
        doc="the dashboard watches the month closing now (simulator) unless a watcher runs",
    )


@dataclass(frozen=True, kw_only=True)
class Settings:
    storage: StorageSettings = field(default_factory=StorageSettings)
    cache: CacheSettings = field(default_factory=CacheSettings)
    batch: BatchSettings = field(default_factory=BatchSettings)
    recon: ReconSettings = field(default_factory=ReconSettings)
    monitor: MonitorSettings = field(default_factory=MonitorSettings)
    source: SourceSettings = field(default_factory=SourceSettings)
    api: ApiSettings = field(default_factory=ApiSettings)
    watch: WatchSettings = field(default_factory=WatchSettings)

    def with_values(self, group: str, **values: Any) -> Settings:
        """A copy with fields of one group replaced (after type checks and clamping)."""
        current = getattr(self, group)
        checked = {k: _coerce(group, current, k, v) for k, v in values.items() if v is not None}
        return replace(self, **{group: replace(current, **checked)})


GROUPS = tuple(f.name for f in fields(Settings))


def describe(settings: Settings) -> list[dict[str, Any]]:
    """Every field with its value, default, seed name and range (for UI and API)."""
    out = []
    for group in GROUPS:
        obj = getattr(settings, group)
        default = type(obj)()
        for f in fields(obj):
            out.append(
                {
                    "group": group,
                    "field": f.name,
                    "seed": f.metadata["seed"],
                    "value": getattr(obj, f.name),
                    "default": getattr(default, f.name),
                    "range": f.metadata["range"],
                    "doc": f.metadata["doc"],
                }
            )
    return out


def clamp(group: str, name: str, value: float) -> tuple[float, str | None]:
    """Bring ``value`` into the field's documented range; return it and a note if changed."""
    rng = _field(group, name).metadata["range"]
    if rng is None:
        return value, None
    lo, hi = rng
    clamped = min(max(value, lo), hi)
    if clamped != value:
        return (
            clamped,
            f"{_field(group, name).metadata['seed']} {value} clamped to {clamped} "
            f"(range {lo}-{hi})",
        )
    return value, None


def _field(group: str, name: str) -> dataclasses.Field[Any]:
    if group not in GROUPS:
        raise ConfigError(
            "group", group, f"unknown settings group; expected one of {', '.join(GROUPS)}"
        )
    for f in fields(getattr(Settings(), group)):
        if f.name == name or f.metadata["seed"] == name:
            return f
    raise ConfigError(f"{group}.{name}", None, "unknown setting")


def _coerce(group: str, obj: Any, name: str, value: Any) -> Any:
    f = _field(group, name)
    current = getattr(obj, f.name)
    kind = type(f.default) if f.default is not None else str
    try:
        if kind is bool and isinstance(value, str):
            if value.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                raise ValueError(value)
            value = value.lower() in ("1", "true", "yes", "on")
        elif kind in (int, float):
            if isinstance(value, bool):
                raise TypeError("a bool is not a number")
            value = kind(value)
        elif kind is str or current is None:
            value = str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{group}.{f.name}", value, f"expected {kind.__name__}") from exc
    if f.name == "mode" and value not in ("naive", "optimized"):
        raise ConfigError("storage.mode", value, "expected 'naive' or 'optimized'")
    if kind in (int, float):
        value, _ = clamp(group, f.name, value)
        value = kind(value)
    return value


def load(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build settings: defaults, then the TOML file, then ``RECON_*`` env, then overrides."""
    settings = Settings()
    env = os.environ if env is None else env
    path = path or env.get("RECON_SETTINGS")
    if path:
        settings = _apply(settings, _read_toml(Path(path)))
    settings = _apply(settings, _from_env(env))
    return _apply(settings, overrides or {})


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text())
    except FileNotFoundError as exc:
        raise ConfigError("settings file", str(path), "file not found") from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("settings file", str(path), f"invalid TOML: {exc}") from exc
    for group, values in data.items():
        if group not in GROUPS or not isinstance(values, dict):
            raise ConfigError(
                f"{path}: [{group}]", values, f"expected a table among {', '.join(GROUPS)}"
            )
    return data


def _from_env(env: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    shortcuts = {"RECON_DB_URL": ("storage", "db_url"), "RECON_API_TOKEN": ("api", "token")}
    for key, value in env.items():
        if key in shortcuts:
            group, name = shortcuts[key]
            out.setdefault(group, {})[name] = value
            continue
        if not key.startswith("RECON_") or key in ("RECON_SETTINGS", "RECON_TODAY"):
            continue
        rest = key[len("RECON_") :].lower()
        found = next((g for g in GROUPS if rest.startswith(g + "_")), None)
        if found is None:
            raise ConfigError(
                key, value, f"unknown variable; expected RECON_<{'|'.join(GROUPS).upper()}>_<FIELD>"
            )
        out.setdefault(found, {})[rest[len(found) + 1 :]] = value
    return out


def _apply(settings: Settings, values: Mapping[str, Mapping[str, Any]]) -> Settings:
    for group, fields_ in values.items():
        settings = settings.with_values(group, **dict(fields_))
    return settings

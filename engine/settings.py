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
import math
import os
import threading
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from engine.errors import ConfigError

DEFAULT_DB_URL = "sqlite:///data/recon.db"
# A real district's club export (~300 clubs) is under 100 kB; this is 200 times that.
DEFAULT_MAX_EXPORT_BYTES = 20_000_000
# What the optimized mode adds to the naive one, in the order `recon bench` adds them.
OPTIMIZATIONS = ("concurrency", "shared_summary", "batched_writes", "caches")
RUNNERS = ("threads", "procrastinate")
"""The batch runners: a thread pool in the process, or procrastinate workers."""


def _f(
    default: Any, seed: str, lo: float | None = None, hi: float | None = None, doc: str = ""
) -> Any:
    meta = {"seed": seed, "range": (lo, hi) if lo is not None else None, "doc": doc}
    return field(default=default, metadata=meta)


@dataclass(frozen=True, kw_only=True)
class StorageSettings:
    db_url: str = _f(DEFAULT_DB_URL, "dbUrl", doc="SQLAlchemy URL; SQLite file by default")
    mode: str = _f("optimized", "mode", doc="naive (commit per write) or optimized")
    optimizations: str = _f(
        "auto",
        "optimizations",
        doc="auto (all in optimized mode, none in naive) or a comma list of "
        + ", ".join(OPTIMIZATIONS),
    )
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

    def parts(self) -> frozenset[str]:
        """The :data:`OPTIMIZATIONS` in use: ``optimizations``, or all of them in
        optimized mode and none in naive mode when it is ``auto``."""
        if self.optimizations == "auto":
            return frozenset(OPTIMIZATIONS if self.mode == "optimized" else ())
        return frozenset(p.strip() for p in self.optimizations.split(",") if p.strip())


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
    runner: str = _f(
        "threads",
        "runner",
        doc="threads (in the process that starts a batch) or procrastinate (recon worker "
        "processes; needs a postgresql+psycopg:// database)",
    )
    stall_timeout_s: float = _f(
        10.0,
        "stallTimeoutS",
        6,
        3600,
        "a worker silent this long (3 heartbeats at least) is lost: others retry its items",
    )


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
class NotifySettings:
    """Alerts (engine.notify): events are always stored; posted when a webhook is set."""

    webhook_url: str | None = _f(None, "webhookUrl", doc="events are POSTed here as JSON (off)")
    timeout_s: float = _f(5.0, "webhookTimeoutS", 0.1, 120, "one delivery attempt at most")
    retry_delay_ms: int = _f(
        1_000, "retryDelayMs", 100, 600_000, "first retry; doubled at each failure"
    )
    max_retry_delay_ms: int = _f(300_000, "maxRetryDelayMs", 1_000, 86_400_000)
    evaluate_interval_s: float = _f(
        30.0, "evaluateIntervalS", 1, 3600, "performance alerts evaluated this often"
    )
    cache_hit_rate_threshold: float = _f(
        0.7, "cacheHitRateThreshold", 0.0, 1.0, "alert when the hit rate falls below this"
    )
    cache_min_reads: int = _f(200, "cacheMinReads", 1, 10_000_000, "reads a hit-rate window needs")
    p95_threshold_ms: float = _f(
        10_000.0, "p95ThresholdMs", 1, 3_600_000, "alert when an operation's p95 exceeds this"
    )
    p95_thresholds: str = _f(
        "", "p95Thresholds", doc="per operation, e.g. 'source.fetch=2000,job.check=5000'"
    )
    p95_min_calls: int = _f(20, "p95MinCalls", 1, 1_000_000, "calls a p95 needs")
    memory_alert_pct: float = _f(
        80.0, "memoryAlertPct", 1, 100, "alert above this % of memoryThresholdMB"
    )


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
    notify: NotifySettings = field(default_factory=NotifySettings)
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


def clamp(
    group: str, name: str, value: float, *, label: str | None = None
) -> tuple[float, str | None]:
    """Bring ``value`` into the field's documented range; return it and a note if changed.

    The note names the field by its seed name, or by ``label`` (a command-line
    option, say) with whole numbers shown as such.
    """
    f = _field(group, name)
    rng = f.metadata["range"]
    if rng is None:
        return value, None
    lo, hi = rng
    clamped = min(max(value, lo), hi)
    if clamped == value:
        return value, None
    if isinstance(f.default, int):
        clamped = int(clamped)
    named = label or f.metadata["seed"]
    shown = [_number(v) for v in (value, clamped, lo, hi)]
    return clamped, f"{named} {shown[0]} clamped to {shown[1]} (range {shown[2]}-{shown[3]})"


def _number(value: float) -> str:
    """A number as a user writes it: ``20``, not ``20.0``."""
    return f"{value:.0f}" if float(value).is_integer() else f"{value:g}"


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
    _check(group, f.name, value)
    if kind in (int, float):
        value, _ = clamp(group, f.name, value)
        value = kind(value)
    return value


DEFAULT = "default"
FILE = "file"
ENVIRONMENT = "environment"
COMMAND_LINE = "command line"
CHANGED_HERE = "changed here"
ORIGINS = (DEFAULT, FILE, ENVIRONMENT, COMMAND_LINE, CHANGED_HERE)
"""Where a value came from, lowest precedence first."""


@dataclass(frozen=True)
class Loaded:
    """Settings with where each value came from."""

    settings: Settings
    origins: Mapping[str, str]
    """``"group.field"`` -> one of :data:`ORIGINS`, for the fields not at their default."""
    path: Path | None
    """The settings file read, if any."""

    def origin(self, group: str, name: str) -> str:
        return self.origins.get(f"{group}.{name}", DEFAULT)


def _check(group: str, name: str, value: Any) -> None:
    """Refuse values no clamping can fix."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{group}.{name}", value, "expected a finite number")
    if name == "mode" and value not in ("naive", "optimized"):
        raise ConfigError("storage.mode", value, "expected 'naive' or 'optimized'")
    if name == "optimizations":
        _check_optimizations(value)
    if (group, name) == ("batch", "runner") and value not in RUNNERS:
        raise ConfigError("batch.runner", value, "expected 'threads' or 'procrastinate'")
    if (group, name) == ("source", "source"):
        _check_source_url(value)


def _check_source_url(value: str) -> None:
    """An http(s) source must be a URL a client can open: a host, and a numeric port."""
    if not value.startswith(("http://", "https://")):
        return
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - reading it checks it
    except ValueError as exc:
        raise ConfigError("source", value, f"not a valid URL: {exc}") from exc
    if not parts.hostname:
        raise ConfigError("source", value, "not a valid URL: no host")


def _check_optimizations(value: str) -> None:
    unknown = {p.strip() for p in value.split(",") if p.strip()} - set(OPTIMIZATIONS)
    if value != "auto" and unknown:
        expected = ", ".join(OPTIMIZATIONS)
        raise ConfigError("storage.optimizations", value, f"expected auto or some of {expected}")


def load(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Settings:
    """Build settings: defaults, then the TOML file, then ``RECON_*`` env, then overrides."""
    return load_traced(path, env, overrides).settings


def load_traced(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Mapping[str, Any]] | None = None,
) -> Loaded:
    """As :func:`load`, keeping where each value came from (``overrides``: the command line)."""
    settings = Settings()
    env = os.environ if env is None else env
    path = path or env.get("RECON_SETTINGS")
    origins: dict[str, str] = {}
    layers = [
        (FILE, _read_toml(Path(path)) if path else {}),
        (ENVIRONMENT, _from_env(env)),
        (COMMAND_LINE, overrides or {}),
    ]
    for origin, values in layers:
        settings = _apply(settings, values)
        for group, fields_ in values.items():
            for name, value in fields_.items():
                if value is not None:
                    origins[f"{group}.{_field(group, name).name}"] = origin
    return Loaded(settings, origins, Path(path) if path else None)


class LiveSettings:
    """The process's settings as they are now, and where each value came from.

    Thread-safe: every session of a dashboard shares one. :meth:`change` is for
    the values a running engine applies (the caller applies them); the parts
    built at the start keep the values they were built with.
    """

    def __init__(self, loaded: Loaded) -> None:
        self._lock = threading.Lock()
        self._settings = loaded.settings
        self._origins = dict(loaded.origins)
        self.path = loaded.path

    @property
    def current(self) -> Settings:
        with self._lock:
            return self._settings

    def origin(self, group: str, name: str) -> str:
        with self._lock:
            return self._origins.get(f"{group}.{name}", DEFAULT)

    def change(self, group: str, name: str, value: Any) -> Settings:
        """Set one value (checked and clamped); it is marked :data:`CHANGED_HERE`."""
        with self._lock:
            self._settings = self._settings.with_values(group, **{name: value})
            self._origins[f"{group}.{_field(group, name).name}"] = CHANGED_HERE
            return self._settings


def _read_toml(path: Path) -> dict[str, dict[str, Any]]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError("settings file", str(path), "file not found") from exc
    except IsADirectoryError as exc:
        raise ConfigError("settings file", str(path), "is a folder, not a TOML file") from exc
    except UnicodeDecodeError as exc:
        raise ConfigError("settings file", str(path), "not a text (UTF-8 TOML) file") from exc
    except OSError as exc:
        raise ConfigError("settings file", str(path), f"cannot read: {exc.strerror}") from exc
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

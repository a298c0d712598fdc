"""Settings from ``TASKPLANER_*`` environment variables, validated once at start.

Every limit the app enforces is a named setting here, so an operator can see and change it.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from pathlib import Path


class ConfigError(ValueError):
    """A setting has a value the app cannot run with; the message names the variable."""


MiB = 1024 * 1024


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("data")
    host: str = "127.0.0.1"
    port: int = 8080
    threads: int = 8
    secret_key: str | None = None
    password: str | None = None
    # Limits
    max_upload_bytes: int = 25 * MiB
    max_json_bytes: int = 1 * MiB
    max_image_pixels: int = 50_000_000
    max_decode_bytes: int = 128 * MiB  # memory one image may take to decode (images.py)
    max_parallel_uploads: int = 2
    max_query_chars: int = 1000
    max_query_terms: int = 32
    max_ranked_matches: int = 1000
    upkeep_hours: int = 24  # the server's upkeep: index merge, blob gc (0: never)
    max_page_size: int = 200
    default_page_size: int = 50
    max_title_chars: int = 500
    max_body_chars: int = 500_000
    max_import_bytes: int = 2048 * MiB
    min_free_bytes: int = 100 * MiB
    thumbnail_px: int = 480
    # Connections (web/server.py)
    connection_limit: int = 1000
    max_connections_per_client: int = 64
    header_timeout_seconds: int = 10
    idle_timeout_seconds: int = 30
    # Sessions and login throttling
    session_days: int = 30
    login_max_failures: int = 5
    login_window_seconds: int = 300
    # Deployment
    trusted_proxy: str | None = None
    secure_cookies: bool | None = None  # None: Secure when the request arrived over HTTPS
    metrics_token: str | None = None
    metrics_public: bool = False
    sqlite_synchronous: str = "FULL"
    sqlite_cache_kib: int = 512  # page cache of each connection: one per thread (db.py)

    @property
    def db_path(self) -> Path:
        return self.data_dir / "taskplaner.db"

    @property
    def blob_dir(self) -> Path:
        return self.data_dir / "blobs"

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"


_INT_SETTINGS = {
    "port": (1, 65535),
    "threads": (1, 256),
    "max_upload_bytes": (1024, 1 << 40),
    "max_json_bytes": (1024, 64 * MiB),
    "max_import_bytes": (MiB, 1 << 40),
    "max_image_pixels": (1, 1_000_000_000),
    "max_decode_bytes": (8 * MiB, 1 << 36),
    "max_parallel_uploads": (1, 64),
    "max_query_chars": (10, 100_000),
    "max_ranked_matches": (100, 10_000_000),
    "upkeep_hours": (0, 8760),
    "max_page_size": (1, 10_000),
    "min_free_bytes": (0, 1 << 50),
    "session_days": (1, 3650),
    "login_max_failures": (1, 1000),
    "login_window_seconds": (1, 86400),
    "thumbnail_px": (32, 4096),
    "connection_limit": (10, 1000),
    "max_connections_per_client": (1, 1000),
    "header_timeout_seconds": (1, 600),
    "idle_timeout_seconds": (1, 3600),
    "sqlite_cache_kib": (64, 1 << 22),
}


_TEXT_SETTINGS = {"host", "secret_key", "password", "metrics_token", "trusted_proxy"}
_OTHER_SETTINGS = {"data_dir", "metrics_public", "secure_cookies", "sqlite_synchronous"}
ENV_SETTINGS = frozenset(_INT_SETTINGS) | _TEXT_SETTINGS | _OTHER_SETTINGS  # TASKPLANER_<NAME>


def _parse_bool(name: str, raw: str) -> bool:
    low = raw.strip().lower()
    if low in {"1", "true", "yes", "on"}:
        return True
    if low in {"0", "false", "no", "off"}:
        return False
    raise ConfigError(f"TASKPLANER_{name.upper()} must be true or false, got {raw!r}")


def from_env(env: dict[str, str] | None = None) -> Settings:
    """Build settings from ``TASKPLANER_*`` variables; raise ConfigError with the variable name."""
    env = dict(os.environ if env is None else env)
    kw: dict[str, object] = {}
    prefix = "TASKPLANER_"
    for key, raw in env.items():
        if not key.startswith(prefix):
            continue
        name = key[len(prefix):].lower()
        if name in _INT_SETTINGS:
            lo, hi = _INT_SETTINGS[name]
            try:
                value = int(raw)
            except ValueError:
                raise ConfigError(f"{key} must be a whole number, got {raw!r}") from None
            if not lo <= value <= hi:
                raise ConfigError(f"{key} must be between {lo} and {hi}, got {value}")
            kw[name] = value
        elif name == "data_dir":
            kw[name] = Path(raw)
        elif name in _TEXT_SETTINGS:
            kw[name] = raw or None
        elif name == "metrics_public":
            kw[name] = _parse_bool(name, raw)
        elif name == "secure_cookies":
            kw[name] = None if raw.strip().lower() == "auto" else _parse_bool(name, raw)
        elif name == "sqlite_synchronous":
            if raw.upper() not in {"FULL", "NORMAL"}:
                raise ConfigError(f"{key} must be FULL or NORMAL, got {raw!r}")
            kw[name] = raw.upper()
    settings = Settings(**kw)  # type: ignore[arg-type]
    validate(settings)
    return settings


def validate(s: Settings) -> None:
    if s.secret_key is not None and len(s.secret_key) < 32:
        raise ConfigError("TASKPLANER_SECRET_KEY must be at least 32 characters")
    if s.password is not None and len(s.password) < 8:
        raise ConfigError("TASKPLANER_PASSWORD must be at least 8 characters")
    if s.metrics_token is not None and len(s.metrics_token) < 16:
        raise ConfigError("TASKPLANER_METRICS_TOKEN must be at least 16 characters")
    if s.trusted_proxy is not None and s.trusted_proxy != "*":
        try:
            ipaddress.ip_address(s.trusted_proxy)
        except ValueError:
            raise ConfigError(
                f"TASKPLANER_TRUSTED_PROXY must be an IP address or '*', got {s.trusted_proxy!r}"
            ) from None
    if s.default_page_size > s.max_page_size:
        raise ConfigError("TASKPLANER_MAX_PAGE_SIZE must be at least the default page size (50)")

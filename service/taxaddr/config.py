"""The one settings object, read from ``TAXADDR_*`` environment variables (and ``.env``)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from taxaddr.errors import ConfigError


class Settings(BaseSettings):
    """Typed configuration. Production (``env=prod``) refuses insecure defaults."""

    model_config = SettingsConfigDict(env_prefix="TAXADDR_", env_file=".env", extra="ignore")

    env: Literal["dev", "test", "prod"] = "dev"
    database_url: str = "sqlite:///var/taxaddr.db"
    keys_dir: Path = Path("keys/dev")
    keystore: Literal["file", "pkcs11"] = "file"
    pkcs11_module: str | None = None
    pkcs11_token_label: str | None = None
    pkcs11_pin: str | None = None

    policy_engine: Literal["embedded", "opa"] = "embedded"
    policy_dir: Path = Path("policies")
    opa_url: str | None = None
    opa_timeout_ms: int = Field(default=250, ge=1, le=60_000)

    host: str = "127.0.0.1"
    port: int = Field(default=8443, ge=1, le=65535)
    tls: bool = True
    # Server worker processes sharing the listening socket; 0 = one per CPU core.
    workers: int = Field(default=0, ge=0, le=64)
    rate_limit: int = Field(default=600, ge=0)
    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # The HTTP edge (api/server.py): request line + headers, answered 431 past either limit;
    # a connection must complete each request's headers (the first: counted from accept,
    # TLS handshake included) within header_timeout_seconds or it is closed.
    max_header_bytes: int = Field(default=16 * 1024, ge=1024, le=1024 * 1024)
    max_headers: int = Field(default=100, ge=8, le=1000)
    header_timeout_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Open connections one client certificate may hold at one worker process.
    max_connections_per_client: int = Field(default=64, ge=1)
    # A worker whose event loop has not reported for this long is killed and replaced.
    worker_heartbeat_timeout_seconds: float = Field(default=10.0, gt=0, le=600)
    # Longest wait for the SQLite writers' turn before 503 database_unavailable.
    writer_lock_timeout_seconds: float = Field(default=2.0, gt=0, le=60)

    case_max_lifetime_days: int = Field(default=180, ge=1)
    case_clock_skew_seconds: int = Field(default=60, ge=0, le=3600)
    case_max_token_bytes: int = Field(default=16 * 1024, ge=512)

    audit_origin: str = "taxaddr.local/audit"
    # Dual control: dangerous trust changes need a second admin (required in prod).
    dual_control: bool = False
    # Witnesses (C2SP tlog-witness): JSON list of {"vkey", "url"}; offline proofs need
    # witness_quorum cosignatures; checkpoints go to witnesses at most this often.
    witnesses: str = "[]"
    witness_quorum: int = Field(default=0, ge=0, le=64)
    checkpoint_interval: float = Field(default=10.0, gt=0, le=86400)
    log_level: str = "INFO"

    @model_validator(mode="after")
    def _refuse_insecure_production(self) -> Settings:
        if self.env != "prod":
            return self
        problems = []
        if self.database_url.startswith("sqlite"):
            problems.append("SQLite database")
        if self.keystore == "file" and "dev" in self.keys_dir.parts:
            problems.append("dev keys directory")
        if not self.tls:
            problems.append("plaintext HTTP")
        if self.policy_engine == "opa" and not self.opa_url:
            problems.append("policy engine 'opa' without TAXADDR_OPA_URL")
        if not self.dual_control:
            problems.append("single control of trust changes (set TAXADDR_DUAL_CONTROL=true)")
        if problems:
            raise ValueError("TAXADDR_ENV=prod refuses: " + ", ".join(problems))
        return self

    @model_validator(mode="after")
    def _opa_needs_url(self) -> Settings:
        if self.policy_engine == "opa" and not self.opa_url:
            raise ValueError("TAXADDR_POLICY_ENGINE=opa needs TAXADDR_OPA_URL")
        return self


def worker_count(settings: Settings) -> int:
    """How many server processes ``taxaddr serve`` runs (an in-memory database: one)."""
    if ":memory:" in settings.database_url or settings.database_url.rstrip("/") == "sqlite:":
        return 1
    return settings.workers or max(1, os.cpu_count() or 1)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Read settings once; invalid settings are a :class:`ConfigError`."""
    try:
        return Settings()
    except ValueError as exc:
        raise ConfigError(_first_line(exc)) from None


def _first_line(exc: Exception) -> str:
    errors = getattr(exc, "errors", None)
    if callable(errors):
        parts = [_describe(err) for err in errors()]
        return "invalid settings: " + "; ".join(parts)
    return f"invalid settings: {exc}"


def _describe(err: dict[str, object]) -> str:
    loc_parts = err.get("loc", ())
    loc = ".".join(str(p) for p in loc_parts) if isinstance(loc_parts, tuple) else ""
    msg = str(err.get("msg", "invalid"))
    return f"{loc}: {msg}" if loc else msg

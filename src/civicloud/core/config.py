"""Typed settings, read from ``CIVICLOUD_*`` environment variables (and an optional ``.env``).

Built once by the composition root (``civicloud.app``) and passed down; nothing here opens files,
engines or sockets at import time.
"""

from __future__ import annotations

import socket
from collections.abc import Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import (
    BaseModel,
    Field,
    SecretStr,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, SettingsConfigDict


class WebSettings(BaseModel):
    """HTTP and browser-facing settings."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=1, le=65535)
    #: Largest request body accepted, in bytes; larger bodies answer 413.
    max_body_bytes: int = Field(default=1_048_576, ge=1024)
    #: ``None`` means automatic: cookies are ``Secure`` unless the request came over plain HTTP
    #: to a loopback address (the one-machine demo). ``True`` forces ``Secure`` everywhere.
    cookie_secure: bool | None = None
    session_hours: int = Field(default=12, ge=1, le=24 * 30)
    default_language: str = "zh"
    #: The IANA time zone the pages show times in (stored times are UTC).
    time_zone: str = "Asia/Shanghai"
    #: When set, ``GET /metrics`` needs ``Authorization: Bearer <token>``; when not, it answers
    #: clients on this machine (loopback) only.
    metrics_token: SecretStr | None = None
    #: The reverse proxies whose ``X-Forwarded-For`` is believed (comma-separated addresses or
    #: networks, ``*`` for any): the client address every per-address limit counts. A proxy
    #: on another machine must be named here, or every client would count as the proxy.
    trusted_proxies: str = Field(default="127.0.0.1,::1", min_length=1, max_length=2000)
    #: Requests whose units of work write to the database at once, per process; the rest wait
    #: their turn (without holding a thread or a connection). ``None``: 1 on SQLite, which
    #: writes one transaction at a time anyway, 24 on PostgreSQL.
    db_writers: int | None = Field(default=None, ge=1, le=32)
    #: Requests reading the database at once, per process. With at most 32 writers, the slots
    #: stay below the web layer's 48 worker threads (``web.admission``).
    db_readers: int = Field(default=8, ge=1, le=15)
    #: How long a request may wait for its turn at the database before it is answered 503 with
    #: ``Retry-After`` (seconds).
    queue_seconds: float = Field(default=30.0, ge=1.0, le=600.0)
    #: Requests that may wait for the database at once, per process; more are answered 503 at
    #: once.
    max_queued: int = Field(default=2000, ge=1)

    @field_validator("time_zone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(
                f"unknown time zone {value!r} (an IANA name, e.g. Asia/Shanghai)"
            ) from exc
        return value


class AuthSettings(BaseModel):
    """Identity settings."""

    api_key_days: int = Field(default=90, ge=1, le=3650)
    min_password_length: int = Field(default=10, ge=8)
    #: Failed sign-ins one client address may make in 10 minutes, over all accounts (each
    #: account is also locked after its own few failures).
    failed_sign_ins_per_client: int = Field(default=30, ge=1)
    # argon2id costs; the defaults follow RFC 9106's second recommended option, scaled down in
    # memory so that a two-core machine still logs a user in within a few tens of milliseconds.
    argon2_time_cost: int = Field(default=3, ge=1)
    argon2_memory_kib: int = Field(default=65_536, ge=8)
    argon2_parallelism: int = Field(default=2, ge=1)


def _default_mqtt_client_id() -> str:
    host = "".join(c if c.isalnum() or c in "-_." else "-" for c in socket.gethostname())
    return f"civicloud-{host or 'server'}"[:128]


class MqttSettings(BaseModel):
    """The core's one MQTT connection (``core.mqtt``), which the modules subscribe through."""

    #: Empty turns MQTT off; ``mqtt://HOST:1883``, or ``mqtts://HOST:8883`` for TLS.
    url: str = Field(default="", max_length=500)
    username: str = Field(default="", max_length=500)
    password: SecretStr | None = None
    #: PEM: the CA that signed the broker's certificate (unset: the system's CAs), and this
    #: server's certificate and key when the broker asks clients for one. ``mqtts://`` only.
    ca_file: Path | None = None
    client_cert_file: Path | None = None
    client_key_file: Path | None = None
    #: The name the broker keeps this server's session (subscriptions and queued messages)
    #: under: stable across restarts, and different for every server of the installation.
    client_id: str = Field(
        default_factory=_default_mqtt_client_id,
        min_length=1,
        max_length=128,
        pattern=r"^[A-Za-z0-9_.:-]+$",
    )
    keepalive: int = Field(default=60, ge=5, le=65535)
    #: How long the broker keeps the session while this server is away (stopped, restarting,
    #: cut off): messages published meanwhile wait for it. 0 ends the session at disconnect.
    session_expiry_seconds: int = Field(default=86_400, ge=0, le=4_294_967_294)
    #: The wait before reconnecting doubles from the least to the most, in seconds.
    reconnect_min_seconds: int = Field(default=1, ge=1, le=3600)
    reconnect_max_seconds: int = Field(default=60, ge=1, le=3600)
    #: Tries a handler gets at one message before it is acknowledged anyway (and logged as an
    #: error), so that one message a handler cannot take never holds up those behind it.
    handler_attempts: int = Field(default=3, ge=1, le=100)

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        value = value.strip()
        if not value:
            return value
        expected = "mqtt://HOST:PORT, or mqtts://HOST:PORT for TLS"
        parts = urlsplit(value)
        if parts.scheme not in ("mqtt", "mqtts"):
            raise ValueError(f"mqtt url must be {expected} (got scheme {parts.scheme!r})")
        if parts.username is not None or parts.password is not None:
            raise ValueError("mqtt url: give the user name and password as username and password")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"mqtt url must be {expected}: bad port") from exc
        if not parts.hostname or port == 0:
            raise ValueError(f"mqtt url must be {expected}: no host")
        if parts.path not in ("", "/") or parts.query or parts.fragment:
            raise ValueError(f"mqtt url must be {expected}, without a path or query")
        return value

    @model_validator(mode="after")
    def _usable_tls(self) -> MqttSettings:
        files = {
            "ca_file": self.ca_file,
            "client_cert_file": self.client_cert_file,
            "client_key_file": self.client_key_file,
        }
        for name, path in files.items():
            if path is not None and not path.is_file():
                raise ValueError(f"mqtt {name} not found: {path}")
        if any(files.values()) and not self.url.startswith("mqtts://"):
            raise ValueError("mqtt ca_file and client certificates need an mqtts:// url")
        if (self.client_cert_file is None) != (self.client_key_file is None):
            raise ValueError("mqtt client_cert_file and client_key_file go together")
        if self.password is not None and not self.username:
            raise ValueError("mqtt password given without a username")
        if self.reconnect_min_seconds > self.reconnect_max_seconds:
            raise ValueError("mqtt reconnect_min_seconds is more than reconnect_max_seconds")
        return self


class Settings(BaseSettings):
    """All of civicloud's settings. ``CIVICLOUD_DATA_DIR``, ``CIVICLOUD_DATABASE_URL``, ``CIVICLOUD_WEB__PORT``…"""

    model_config = SettingsConfigDict(
        env_prefix="CIVICLOUD_", env_nested_delimiter="__", env_file=".env", extra="ignore"
    )

    data_dir: Path = Path("./civicloud-data")
    #: Empty means SQLite in ``data_dir``; PostgreSQL as ``postgresql+psycopg://user:pw@host/db``.
    database_url: str = ""
    log_level: str = "INFO"
    #: JSON log lines (the default) or plain text for a terminal.
    log_json: bool = True
    #: How long this process reuses hot, rarely changing reads (resolved credentials, tenants)
    #: without asking the database. Changes made through this process apply at once; changes
    #: made by another process apply within this many seconds. 0 turns the caches off.
    cache_seconds: float = Field(default=10.0, ge=0, le=300)
    #: The key audit records are sealed with (an HMAC): the same on every server of one
    #: installation. Unset, it is ``audit.key`` in ``data_dir``, made on first start.
    audit_key: SecretStr | None = None
    web: WebSettings = WebSettings()
    auth: AuthSettings = AuthSettings()
    mqtt: MqttSettings = MqttSettings()
    #: Modules this installation does not run, comma-separated (``CIVICLOUD_DISABLED_MODULES``):
    #: their routes, pages, commands, jobs and listeners are left out; their tables stay.
    disabled_modules: str = Field(default="", max_length=500, pattern=r"^[a-z0-9, ]*$")

    @field_validator("database_url")
    @classmethod
    def _known_driver(cls, value: str) -> str:
        if value and not value.startswith(("sqlite", "postgresql+psycopg://")):
            raise ValueError(
                "database_url must be sqlite:///PATH or postgresql+psycopg://USER:PASSWORD@HOST/DB"
            )
        return value

    @property
    def switched_off(self) -> frozenset[str]:
        """The names in ``disabled_modules``."""
        return frozenset(part.strip() for part in self.disabled_modules.split(",") if part.strip())

    def section(self, name: str) -> BaseModel | None:
        """Module ``name``'s settings section (``CIVICLOUD_<NAME>__*``), when it has one."""
        found = getattr(self, name, None) if name in type(self).model_fields else None
        return found if isinstance(found, BaseModel) else None

    @property
    def effective_database_url(self) -> str:
        """The configured database URL, or SQLite inside the data directory."""
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'civicloud.db').resolve()}"

    def with_data_dir(self, data_dir: Path | None) -> Settings:
        """A copy whose data directory is ``data_dir`` (when given)."""
        if data_dir is None:
            return self
        return self.model_copy(update={"data_dir": data_dir})


def assemble_settings(sections: Mapping[str, type[BaseModel]]) -> type[Settings]:
    """The installation's settings class: core's, plus one section per module (``{name: class}``),
    each read from ``CIVICLOUD_<NAME>__*`` like core's own sections."""
    clashing = sorted(set(sections) & set(Settings.model_fields))
    if clashing:
        raise ValueError(f"module sections clash with core settings: {', '.join(clashing)}")
    fields: dict[str, Any] = {name: (kind, kind()) for name, kind in sections.items()}
    assembled: type[Settings] = create_model(
        "InstallationSettings", __base__=Settings, __module__=__name__, **fields
    )
    return assembled

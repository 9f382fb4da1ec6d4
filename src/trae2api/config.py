"""Settings from the environment and an optional ``.env``, validated once at start-up.

Every failure becomes a ``ConfigError`` that names the variable and says where its value comes
from (the seed guide; the wording is ``config_errors.py``'s); this module must not start anything
or touch the network.
"""

from __future__ import annotations

import datetime
import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from trae2api.config_errors import config_error, invalid_variables
from trae2api.errors import ConfigError

ReasoningMode = Literal["reasoning_content", "think", "drop"]

_ACCOUNT_VARIABLES = ("APP_ID", "CLIENT_ID", "REFRESH_TOKEN")
# Protocol §8 CHOICE: the default multi_media item; "$name" values are filled per image.
DEFAULT_MULTI_MEDIA_ITEM = {
    "type": "image",
    "uri": "$uri",
    "width": "$width",
    "height": "$height",
    "format": "$format",
}
_ITEM_EXAMPLE = '{"type": "image", "uri": "$uri", "width": "$width", "height": "$height"}'
# Trae's product app id, what peers send on the agent dialect (dialect §2).
AGENT_APP_ID = "6eefa01c-1036-4c7e-9ca5-d891f63bfcd8"
# Dialect §7: the CN exchange host, with the older one as fallback (tried only when the first
# cannot have seen the refresh token; upstream/exchange.py).
_CN_EXCHANGE = "https://api.trae.com.cn,https://api.trae.cn"
# (chat and catalogue host, exchange host) per dialect and region (protocol §1, dialect §1, §7).
# ``auto`` keeps the original's (legacy) BASE_URL and finds the agent host through AGENT_BASE_URL.
_REGION_HOSTS = {
    "legacy": {
        "sg": ("https://trae-api-sg.mchost.guru", "https://api-sg-central.trae.ai"),
        "us": ("https://trae-api-us.mchost.guru", "https://api-sg-central.trae.ai"),
        "cn": ("https://trae-api-cn.mchost.guru", _CN_EXCHANGE),
    },
    "auto": {
        "sg": ("https://trae-api-sg.mchost.guru", "https://api.trae.ai"),
        "us": ("https://trae-api-us.mchost.guru", "https://api.trae.ai"),
        "cn": ("https://trae-api-cn.mchost.guru", _CN_EXCHANGE),
    },
    "agent": {
        "sg": ("https://coresg-normal.trae.ai", "https://api.trae.ai"),
        "us": ("https://coreva-normal.trae.ai", "https://api.trae.ai"),
        "cn": ("https://trae-api-cn.mchost.guru", _CN_EXCHANGE),
    },
}
# Dialect §7 CHOICE: every pool seen in the public record, in every region. Which pools an
# account has depends on its plan, not its region; a pool the account lacks is skipped.
DEFAULT_POOLS = "chat_v3,solo_work_remote,solo_work_lite"
# Dialect §7: seen working in Aug–Sep 2026; codes before 20260801 select an empty model table.
DEFAULT_IDE_VERSION = "0.1.61"
DEFAULT_IDE_VERSION_CODE = "20260820"
_URL_FIELDS = ("base_url", "agent_base_url", "get_file_id_url", "upload_file_url")


class Settings(BaseSettings):
    """Every variable trae2api reads; names are the seed's where the seed had one."""

    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
        case_sensitive=False,
        env_ignore_empty=True,  # "VAR=" in .env means "use the default", as in .env.example
    )

    app_id: str = ""
    client_id: str = ""
    refresh_token: SecretStr = SecretStr("")
    user_id: str = ""
    auth_token: Annotated[list[SecretStr], NoDecode] = Field(default_factory=list)

    base_url: str = "https://trae-api-sg.mchost.guru"
    # Where ``auto`` looks for the agent dialect when BASE_URL lacks it (dialect §1).
    agent_base_url: str = "https://coresg-normal.trae.ai"
    # One URL or a comma list tried in order (dialect §7: CN falls back to api.trae.cn).
    refresh_token_url: str = "https://api.trae.ai"  # noqa: S105 (a URL)
    get_file_id_url: str = "https://imagex-ap-singapore-1.bytevcloudapi.com"
    upload_file_url: str = "https://tos-sg16-share.vodupload.com"

    upstream_dialect: Literal["auto", "legacy", "agent"] = "auto"
    trae_region: Literal["sg", "us", "cn"] = "sg"
    # Comma list of pools (dialect §7); the catalogue is their union, the first pool wins.
    trae_function: str = DEFAULT_POOLS
    # Seconds between two re-detections of the dialect in ``auto`` mode (selector.py).
    dialect_recheck_interval: float = Field(default=300.0, ge=0)

    host: str = "127.0.0.1"
    port: int = Field(default=17080, ge=1, le=65535)
    data_dir: Path = Path("./data")
    ide_version: str = Field(default=DEFAULT_IDE_VERSION, min_length=1)
    ide_version_code: str = DEFAULT_IDE_VERSION_CODE
    reasoning_mode: ReasoningMode = "reasoning_content"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    log_format: Literal["auto", "json", "console"] = "auto"

    max_image_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    allow_private_image_urls: bool = False
    inline_remote_images: bool = True
    image_fetch_timeout: float = Field(default=10.0, gt=0)
    image_fetch_ca_bundle: Path | None = None  # extra CAs for https image URLs (PEM file)
    image_cache_ttl: float = Field(default=7 * 86400.0, ge=0)
    # Protocol §8 UNKNOWNs, kept configurable with the documented defaults.
    imagex_region: str | None = None
    imagex_service_name: str = Field(default="imagex", min_length=1)
    upload_token_path: str = Field(default="/api/ide/v1/get_upload_token", pattern=r"^/")
    multi_media_item: Annotated[dict[str, Any], NoDecode] = Field(
        default_factory=lambda: dict(DEFAULT_MULTI_MEDIA_ITEM)
    )

    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    max_body_bytes: int = Field(default=20 * 1024 * 1024, ge=1024)
    queue_timeout: float = Field(default=120.0, gt=0)
    keepalive_interval: float = Field(default=15.0, gt=0)
    models_ttl: float = Field(default=300.0, ge=0)
    model_aliases: Annotated[dict[str, str], NoDecode] = Field(default_factory=dict)
    upstream_connect_timeout: float = Field(default=10.0, gt=0)
    upstream_read_timeout: float = Field(default=120.0, gt=0)
    upstream_retries: int = Field(default=2, ge=0, le=10)
    # GATE-B (issue 10), dialect §7: warn under this many ide credits; seconds between balance
    # queries (0: never ask the account host).
    credits_low_threshold: float = Field(default=50.0, ge=0)
    credits_refresh_interval: float = Field(default=900.0, ge=0)
    refresh_margin: float = Field(default=600.0, ge=0)
    ready_window: float = Field(default=300.0, gt=0)
    # Access control and operations (README "Security" and "Operations").
    api_keys_file: Path | None = None  # "name: key" per line; see api/keys.py
    rate_limit_rpm: float = Field(default=0.0, ge=0)  # per client key; 0 turns it off
    rate_limit_burst: int = Field(default=0, ge=0)  # 0 means max(1, RATE_LIMIT_RPM / 6)
    metrics_enabled: bool = True
    shutdown_grace: float = Field(default=20.0, ge=0)
    redis_url: str | None = Field(
        default=None, validation_alias=AliasChoices("redis_url", "redis_conn_string")
    )
    # Replicas (README "Several replicas"): Redis keys, and the cross-process refresh lock.
    redis_key_prefix: str = Field(default="trae2api:", min_length=1)
    refresh_lock_ttl: float = Field(default=10.0, gt=0)
    refresh_lock_wait: float = Field(default=30.0, gt=0)

    @field_validator("host", "app_id", "client_id", "user_id", "ide_version", mode="before")
    @classmethod
    def _strip(cls, value: Any) -> Any:
        return value.strip() if isinstance(value, str) else value

    @field_validator("log_level", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _region_presets(self) -> Settings:
        # Agent dialect §1: TRAE_REGION fills the hosts; explicit URLs always win.
        presets = _REGION_HOSTS[self.upstream_dialect][self.trae_region]
        for name, url in zip(("base_url", "refresh_token_url"), presets, strict=True):
            if name not in self.model_fields_set:
                setattr(self, name, url)
        if "agent_base_url" not in self.model_fields_set:
            self.agent_base_url = _REGION_HOSTS["agent"][self.trae_region][0]
        if self.upstream_dialect != "legacy" and "app_id" not in self.model_fields_set:
            self.app_id = self.app_id or AGENT_APP_ID
        return self

    @field_validator("ide_version_code", mode="before")
    @classmethod
    def _check_version_code(cls, value: Any) -> Any:
        # Dialect §7: the code selects the model table and must be a real date YYYYMMDD.
        text = value.strip() if isinstance(value, str) else str(value)
        if not _is_date_code(text):
            raise ValueError(
                f"must be an 8-digit date YYYYMMDD such as {DEFAULT_IDE_VERSION_CODE} (the "
                f"build date of a current Trae release; older codes select an empty model table)"
            )
        return text

    @field_validator("trae_function")
    @classmethod
    def _check_pools(cls, value: str) -> str:
        pools = [pool.strip() for pool in value.split(",")]
        if not all(pools):
            raise ValueError("must be a pool name or a comma list such as " + DEFAULT_POOLS)
        return ",".join(pools)

    @field_validator("refresh_token_url")
    @classmethod
    def _check_exchange_urls(cls, value: str) -> str:
        return ",".join(_checked_url(url.strip()) for url in value.split(","))

    @field_validator(
        "reasoning_mode", "log_format", "upstream_dialect", "trae_region", mode="before"
    )
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @field_validator("auth_token", mode="before")
    @classmethod
    def _split_keys(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [key.strip() for key in value.split(",") if key.strip()]
        return value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("model_aliases", mode="before")
    @classmethod
    def _parse_aliases(cls, value: Any) -> Any:
        # "client-name=trae-name,other=trae-other": the alias table is data (protocol §4).
        if not isinstance(value, str):
            return value
        pairs = [item.strip() for item in value.split(",") if item.strip()]
        if any("=" not in pair for pair in pairs):
            raise ValueError("use the form client-name=trae-name[,client-name=trae-name]")
        return dict(pair.split("=", 1) for pair in pairs)

    @field_validator("multi_media_item", mode="before")
    @classmethod
    def _parse_item(cls, value: Any) -> Any:
        # A JSON object; string values "$uri", "$width", "$height", "$format", "$md5" are filled.
        if isinstance(value, str):
            try:
                value = json.loads(value)
            except json.JSONDecodeError:
                raise ValueError("must be a JSON object such as " + _ITEM_EXAMPLE) from None
        if not isinstance(value, dict) or "$uri" not in value.values():
            raise ValueError('must be a JSON object with a "$uri" value, e.g. ' + _ITEM_EXAMPLE)
        return value

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str | None) -> str | None:
        if value is not None and not _valid_redis_url(value.strip()):
            raise ValueError(
                "must be a Redis URL such as redis://localhost:6379/0 (rediss:// for TLS, "
                "redis://:password@host:6379/0 with a password, unix:///run/redis.sock)"
            )
        return value.strip() if value is not None else None

    @field_validator(*_URL_FIELDS)
    @classmethod
    def _check_url(cls, value: str) -> str:
        return _checked_url(value)

    @property
    def client_keys(self) -> list[str]:
        return [key.get_secret_value() for key in self.auth_token]

    @property
    def pools(self) -> tuple[str, ...]:
        """TRAE_FUNCTION as a list, duplicates dropped (dialect §7)."""
        return tuple(dict.fromkeys(self.trae_function.split(",")))

    @property
    def exchange_urls(self) -> tuple[str, ...]:
        """REFRESH_TOKEN_URL as the hosts to try, in order (dialect §7)."""
        return tuple(self.refresh_token_url.split(","))

    @property
    def binds_loopback(self) -> bool:
        return is_loopback(self.host)


def _checked_url(value: str) -> str:
    if not value.startswith(("http://", "https://")) or value[-3:] == "://":
        raise ValueError("must be an http(s) URL such as https://trae-api-sg.mchost.guru")
    return value.rstrip("/")


def _is_date_code(text: str) -> bool:
    """An 8-digit ``YYYYMMDD`` that names a real day (dialect §7)."""
    if len(text) != 8 or not text.isascii() or not text.isdigit():
        return False
    try:
        datetime.date(int(text[:4]), int(text[4:6]), int(text[6:]))
    except ValueError:
        return False
    return True


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost: the addresses only this machine can reach."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _valid_redis_url(url: str) -> bool:
    """redis://, rediss:// with a host (port and /db optional, both numbers) or unix://path."""
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or parts.port > 0  # .port raises on a non-number
    except ValueError:
        return False
    if parts.scheme == "unix":
        return bool(parts.path)
    db = parts.path.lstrip("/")
    return (
        parts.scheme in ("redis", "rediss")
        and bool(parts.hostname)
        and port_ok
        and (db == "" or db.isdigit())
    )


def load_settings(
    env_file: str | Path | None = ".env", *, account: bool = False, **overrides: Any
) -> Settings:
    """Read the settings; ``overrides`` (CLI flags, demo values) win over the environment.

    ``account=True`` (``trae2api serve``) also requires the account variables. Every missing
    or malformed variable is reported at once, in one ``ConfigError``.
    """
    try:
        settings: Settings | None = Settings(_env_file=env_file, **overrides)  # type: ignore[call-arg]
        invalid: dict[str, str] = {}
    except ValidationError as exc:
        invalid = invalid_variables(exc)
        settings = _with_defaults(env_file, overrides, invalid) if account else None
    missing = _missing_account(settings) if account and settings is not None else []
    if invalid or missing:
        raise config_error(missing, invalid, nothing_set=_nothing_set(settings, missing))
    assert settings is not None
    return settings


def _with_defaults(
    env_file: str | Path | None, overrides: dict[str, Any], invalid: dict[str, str]
) -> Settings | None:
    """The settings with every refused value replaced by its default, to check the rest."""
    fields = Settings.model_fields
    defaults = {
        name.lower(): fields[name.lower()].get_default(call_default_factory=True)
        for name in invalid
        if name.lower() in fields
    }
    try:
        return Settings(_env_file=env_file, **{**overrides, **defaults})  # type: ignore[call-arg]
    except ValidationError:
        return None


def _missing_account(settings: Settings) -> list[str]:
    values = {
        "APP_ID": settings.app_id,
        "CLIENT_ID": settings.client_id,
        "REFRESH_TOKEN": settings.refresh_token.get_secret_value(),
    }
    return [variable for variable in _ACCOUNT_VARIABLES if not values[variable].strip()]


def _nothing_set(settings: Settings | None, missing: list[str]) -> bool:
    """No account variable the operator must set is set: a newcomer, point at the demo."""
    return settings is not None and {"CLIENT_ID", "REFRESH_TOKEN"} <= set(missing)


def require_safe_bind(settings: Settings, *, insecure_no_auth: bool) -> None:
    """Refuse to serve a non-loopback address without client keys unless told to."""
    if settings.binds_loopback or settings.client_keys or settings.api_keys_file:
        return
    if insecure_no_auth:
        return
    raise ConfigError(
        "AUTH_TOKEN",
        f"is not set, but HOST={settings.host} lets other machines reach the gateway and "
        f"spend your Trae account. Set AUTH_TOKEN to a long random key (clients send it as "
        f"'Authorization: Bearer <key>'), bind HOST=127.0.0.1, or pass --insecure-no-auth.",
    )

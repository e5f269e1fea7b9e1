"""Configuration: one typed `Settings`, read from `CVCO_*` environment variables.

Build it once per entry point with `load_settings()`; tests build `Settings(...)` with keyword arguments.
"""

from __future__ import annotations

import functools
import ipaddress
import json
import os
import re
import sys
from collections.abc import Mapping
from typing import Annotated, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from pydantic_settings.exceptions import SettingsError

Algorithm = Literal["HMAC-SHA-256", "SHA-1"]
Mode = Literal["TEST", "PRODUCTION"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

DEFAULT_PLATFORM_URL = "https://sogecommerce.societegenerale.eu/vads-payment/"

PLACEHOLDER = "REPLACE_WITH"
"""How the placeholders of deploy/.env.example and the k8s Secret begin: a value holding it was never filled in."""

OTHER_VARIABLES = frozenset({"CVCO_TEST_REDIS_URL", "CVCO_FULL_RELIABILITY"})
"""`CVCO_*` variables read by the test suite, not by the settings: not reported as unknown."""


def _refuse_placeholder(value: SecretStr | None) -> SecretStr | None:
    if value is not None and PLACEHOLDER in value.get_secret_value():
        raise ValueError(f"still holds a {PLACEHOLDER}_... placeholder of the example configuration")
    return value


class ShopConfig(BaseModel):
    """One shop (`vads_site_id`): its keys, the signature algorithms and the modes it accepts."""

    model_config = {"extra": "forbid", "frozen": True}

    test_key: SecretStr | None = None
    production_key: SecretStr | None = None
    algorithms: tuple[Algorithm, ...] = ("HMAC-SHA-256",)
    modes: tuple[Mode, ...] = ("TEST", "PRODUCTION")

    @field_validator("test_key", "production_key", mode="before")
    @classmethod
    def _trimmed(cls, value: object) -> object:
        # the platform's SDK ignores spaces around a key: a key pasted with one must still verify
        return value.strip() if isinstance(value, str) else value

    @field_validator("test_key", "production_key")
    @classmethod
    def _filled_in(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value)

    @model_validator(mode="after")
    def _keys_for_modes(self) -> ShopConfig:
        if not self.algorithms:
            raise ValueError("algorithms must name at least one of HMAC-SHA-256, SHA-1")
        if not self.modes:
            raise ValueError("modes must name at least one of TEST, PRODUCTION")
        for mode in self.modes:
            if not self.key_for(mode):
                raise ValueError(f"mode {mode} is accepted but its {mode.lower()}_key is missing or empty")
        return self

    def key_for(self, mode: str) -> str | None:
        """The shop key for a `vads_ctx_mode`, or None when that mode has no key."""
        secret = {"TEST": self.test_key, "PRODUCTION": self.production_key}.get(mode)
        return secret.get_secret_value() if secret else None


def _comma_list(value: object) -> object:
    if isinstance(value, str):
        return [item.strip() for item in value.split(",") if item.strip()]
    return value


def _json_object(value: object, example: str) -> object:
    """A JSON object given as text (an environment variable), parsed; other values as they are."""
    if not isinstance(value, str):
        return value
    try:
        parsed = json.loads(value)
    except json.JSONDecodeError as e:
        raise ValueError(f"not valid JSON ({e.msg} at character {e.pos})") from e
    if not isinstance(parsed, dict):
        raise ValueError(f"must be a JSON object: {example}")
    return parsed


def _network(item: object) -> object:
    if not isinstance(item, str):
        return item
    try:
        return ipaddress.ip_network(item)
    except ValueError as e:
        raise ValueError(f"{item!r} is not a network such as 10.0.0.0/8 ({e})") from None


EMAIL_ADDRESS = re.compile(r"[^@\s,<>]+@[^@\s,<>]+")


def _email_address(value: str) -> str:
    if not EMAIL_ADDRESS.fullmatch(value):
        raise ValueError(f"{value!r} is not an e-mail address such as ops@example.com")
    return value


def _host_port(item: str) -> tuple[str, int]:
    host, _, port = item.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{item!r} is not host:port")
    return host.strip("[]"), int(port)


class Settings(BaseSettings):
    """Every `CVCO_*` variable of the contract, plus the project's own tunables (documented in the README)."""

    model_config = SettingsConfigDict(env_prefix="CVCO_", extra="ignore", frozen=True)

    # --- the contract's variables -------------------------------------------------------------------
    redis_url: str = "redis://127.0.0.1:6379/0"
    redis_sentinels: Annotated[list[tuple[str, int]], NoDecode] = Field(
        default_factory=list, description="Sentinels (host:port) that name the primary; empty: the URL's host"
    )
    redis_sentinel_master: str = "mymaster"
    redis_min_replicas: int = Field(0, ge=0, description="replicas that must hold a job before its 200")
    shops: Annotated[dict[str, ShopConfig], NoDecode] = Field(default_factory=dict)
    stream: str = Field("cvco:events", min_length=1)
    smtp_url: SecretStr | None = None
    alert_to: Annotated[list[str], NoDecode] = Field(default_factory=list)
    alert_from: str = "cvco-ipn@localhost"
    session_timeout_s: int = Field(600, ge=1)
    session_grace_s: int = Field(300, ge=0)
    max_tries: int = Field(5, ge=1, le=100)
    api_token: SecretStr | None = None
    platform_url: str = DEFAULT_PLATFORM_URL

    # --- the project's own tunables -----------------------------------------------------------------
    queue_name: str = Field("cvco:queue", min_length=1)
    redis_timeout_s: float = Field(2.0, gt=0, description="Redis slower than this means 503 at the receiver")
    redis_ca_file: str | None = Field(
        None, description="CA bundle that signs a rediss:// server's certificate"
    )
    body_timeout_s: float = Field(5.0, gt=0, description="a request body not received within this: 408")
    trusted_proxies: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list, description="CIDRs whose X-Forwarded-For is believed"
    )
    ipn_allowlist: Annotated[list[IPNetwork], NoDecode] = Field(
        default_factory=list, description="CIDRs allowed to POST /ipn; empty allows all"
    )
    stream_maxlen: int = Field(1_000_000, ge=1000, description="approximate cap of the event stream")
    stream_retention_s: int = Field(
        30 * 86400, ge=3600, description="events older than this are trimmed from the stream (XTRIM MINID ~)"
    )
    forensics_maxlen: int = Field(1000, ge=1, description="rejected requests kept, per reason")
    forensics_max_age_s: int = Field(7 * 86400, ge=60, description="age after which they expire")
    failed_max: int = Field(100_000, ge=10, description="parked jobs kept before the oldest are dropped")
    discarded_max: int = Field(10_000, ge=10, description="discarded jobs' audit records kept at most")
    discarded_max_age_s: int = Field(
        90 * 86400, ge=86400, description="age after which a discarded job's audit record expires"
    )
    failed_max_bytes: int = Field(512 * 1024 * 1024, ge=1024 * 1024, description="same, in bytes")
    alert_window_s: int = Field(900, ge=1, description="at most one mail per alert kind and shop per window")
    sigfail_alert_threshold: int = Field(20, ge=1)
    sigfail_alert_window_s: int = Field(300, ge=1)
    queue_age_alert_s: int = Field(300, ge=1, description="oldest queued job older than this raises an alert")
    job_timeout_s: int = Field(
        10, ge=1, description="arq job timeout: a killed worker's job returns after it"
    )
    refund_wait_s: int = Field(
        7200, ge=0, description="a Back Office refund seen before its payment waits this long for it"
    )
    refund_retry_s: int = Field(60, ge=1, description="how often a waiting refund looks for its payment")
    console_users: Annotated[dict[str, str], NoDecode] = Field(
        default_factory=dict, description="console sign-in: name -> hash (`cvco-ipn console hash-password`)"
    )
    console_secret: SecretStr | None = Field(
        None,
        description="signs the console's session cookies; unset: a random key, sessions end at a restart",
    )
    console_idle_s: int = Field(1800, ge=60, description="a console session unused this long signs in again")

    @field_validator("shops", mode="before")
    @classmethod
    def _parse_shops(cls, value: object) -> object:
        return _json_object(value, '{"<8-digit shop id>": {"test_key": ...}}')

    @field_validator("console_users", mode="before")
    @classmethod
    def _parse_users(cls, value: object) -> object:
        return _json_object(value, '{"<name>": "<hash from cvco-ipn console hash-password>"}')

    @field_validator("shops")
    @classmethod
    def _shop_ids(cls, value: dict[str, ShopConfig]) -> dict[str, ShopConfig]:
        for shop_id in value:
            if not (len(shop_id) == 8 and shop_id.isascii() and shop_id.isdigit()):
                raise ValueError(f"shop id {shop_id!r} is not the 8-digit vads_site_id")
        return value

    @field_validator("alert_to", mode="before")
    @classmethod
    def _split_recipients(cls, value: object) -> object:
        return _comma_list(value)

    @field_validator("trusted_proxies", "ipn_allowlist", mode="before")
    @classmethod
    def _split_networks(cls, value: object) -> object:
        value = _comma_list(value)
        return [_network(item) for item in value] if isinstance(value, list) else value

    @field_validator("alert_to")
    @classmethod
    def _recipients(cls, value: list[str]) -> list[str]:
        return [_email_address(item) for item in value]

    @field_validator("alert_from")
    @classmethod
    def _sender(cls, value: str) -> str:
        return _email_address(value)

    @field_validator("api_token", "console_secret")
    @classmethod
    def _token_filled_in(cls, value: SecretStr | None) -> SecretStr | None:
        return _refuse_placeholder(value)

    @field_validator("platform_url")
    @classmethod
    def _platform_url(cls, value: str) -> str:
        url = urlsplit(value)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise ValueError(f"{value!r} is not an http:// or https:// URL")
        return value

    @field_validator("redis_sentinels", mode="before")
    @classmethod
    def _parse_sentinels(cls, value: object) -> object:
        value = _comma_list(value)
        if not isinstance(value, list):
            return value
        return [_host_port(item) if isinstance(item, str) else item for item in value]

    @field_validator("redis_ca_file")
    @classmethod
    def _ca_file_exists(cls, value: str | None) -> str | None:
        if value is not None and not os.path.isfile(value):
            raise ValueError(f"no such file: {value}")
        return value

    @field_validator("smtp_url")
    @classmethod
    def _smtp_url(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return value
        url = urlsplit(value.get_secret_value())
        try:
            port = url.port
        except ValueError:
            port = None
        if url.scheme not in ("smtp", "smtps") or not url.hostname or port is None:
            raise ValueError("must look like smtp://host:port or smtps://user:pass@host:port")
        return value

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


def describe_validation_error(error: ValidationError, prefix: str = "CVCO_") -> str:
    """One line: the first broken variable, by its environment name, and why."""
    first = error.errors()[0]
    location = [str(part) for part in first["loc"]]
    name = prefix + location[0].upper() if location else "configuration"
    # a union's members (`lax-or-strict[...]`, `function-plain[...]`) name pydantic's internals, not the value
    detail = ".".join(part for part in location[1:] if "[" not in part)
    message = first["msg"].removeprefix("Value error, ")
    more = f" (and {error.error_count() - 1} more)" if error.error_count() > 1 else ""
    return f"{name}{'[' + detail + ']' if detail else ''}: {message}{more}"


def load_settings(*, require_shops: bool = False, without_shops: bool = False) -> Settings:
    """Settings from the environment; a bad value exits 2 with a one-line reason on stderr.

    `without_shops`: for commands that never verify a signature (operator commands), `CVCO_SHOPS` is not
    read at all, so a broken one does not stop them.
    """
    try:
        settings = Settings(shops={}) if without_shops else Settings()
    except (ValidationError, SettingsError) as e:
        reason = describe_validation_error(e) if isinstance(e, ValidationError) else str(e)
        sys.stderr.write(f"cvco-ipn: bad configuration: {reason}\n")
        raise SystemExit(2) from None
    if require_shops and not settings.shops:
        sys.stderr.write("cvco-ipn: bad configuration: CVCO_SHOPS is not set; it names the shops and keys\n")
        raise SystemExit(2)
    _warn_unknown_variables(tuple(unknown_variables(os.environ)))
    return settings


@functools.cache
def _warn_unknown_variables(names: tuple[str, ...]) -> None:
    """Once per process, however often the settings are loaded."""
    for name in names:
        sys.stderr.write(f"cvco-ipn: warning: {name} is not a setting of cvco-ipn (a typo?); ignored\n")


def unknown_variables(environment: Mapping[str, str]) -> list[str]:
    """The `CVCO_*` names in `environment` that no setting reads, such as a misspelt `CVCO_MAXTRIES`."""
    known = {"CVCO_" + name.upper() for name in Settings.model_fields} | OTHER_VARIABLES
    return sorted(name for name in environment if name.startswith("CVCO_") and name not in known)

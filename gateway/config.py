"""Settings: one YAML file, overridden by ``SHARE_GATEWAY_*`` env vars, overridden by CLI flags.

This is the only module that reads the environment. ``load()`` validates
everything once and raises ``ConfigError`` listing every problem together.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import json
import os
import re
import string
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

ENV_PREFIX = "SHARE_GATEWAY_"
ENV_NESTING = "__"


class ConfigError(Exception):
    """Invalid configuration; ``problems`` lists every one found, as ``key: message``."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


def _split_list(value: Any) -> Any:
    """Accept ``a,b`` strings and JSON lists (env vars, CLI flags) as lists."""
    if isinstance(value, str):
        if value.strip().startswith("["):
            return json.loads(value)
        return [part.strip() for part in value.split(",") if part.strip()]
    if isinstance(value, list | tuple):
        out: list[Any] = []
        for item in value:
            out.extend(_split_list(item) if isinstance(item, str) else [item])
        return out
    return value


def _read_pem(value: str | None) -> str | None:
    """PEM text as given, or read from the file it names."""
    if value is None or "-----BEGIN" in value:
        return value
    path = Path(value)
    if not path.is_file():
        raise ValueError("must be PEM text or the path of a readable PEM file")
    return path.read_text()


Pem = Annotated[str | None, AfterValidator(_read_pem)]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
NetworkList = Annotated[list[Network], NoDecode, BeforeValidator(_split_list)]
StrList = Annotated[list[str], NoDecode, BeforeValidator(_split_list)]


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class JwtSettings(_Section):
    """``auth.jwt``: exactly one key source (``secret``, ``public_key`` or ``jwks_url``)."""

    secret: SecretStr | None = None
    public_key: Pem = Field(default=None, description="PEM text or a path to a PEM file")
    jwks_url: str | None = None
    issuer: str | None = None
    audience: StrList = Field(default_factory=list)
    user_claim: str = "sub"
    algorithms: StrList = Field(default_factory=list)
    leeway_seconds: float = Field(default=30.0, ge=0)
    jwks_cache_seconds: int = Field(default=300, ge=1)
    jwks_refresh_cooldown_seconds: float = Field(
        default=30.0, ge=0, description="min seconds between JWKS re-fetches for unknown kids"
    )

    @field_validator("jwks_url")
    @classmethod
    def _http_url(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in ("http", "https"):
            raise ValueError("must be an http(s) URL")
        return value


class TrustedHeaderSettings(_Section):
    """``auth.trusted_header``: an auth proxy's user header, trusted only from ``trusted_cidrs``."""

    name: str = "X-Forwarded-User"
    trusted_cidrs: NetworkList = Field(default_factory=list)


class AuthSettings(_Section):
    """``auth``: how callers are identified (DESIGN.md "identify")."""

    mode: Literal["jwt", "trusted-header", "none"] = "none"
    default_user: str = "admin@kagent.dev"
    jwt: JwtSettings = Field(default_factory=JwtSettings)
    trusted_header: TrustedHeaderSettings = Field(default_factory=TrustedHeaderSettings)

    @model_validator(mode="after")
    def _mode_has_what_it_needs(self) -> AuthSettings:
        problems = []
        if self.mode == "jwt":
            sources = [self.jwt.secret, self.jwt.public_key, self.jwt.jwks_url]
            if sum(s is not None for s in sources) != 1:
                problems.append(
                    "auth.mode jwt needs exactly one of auth.jwt.secret, "
                    "auth.jwt.public_key, auth.jwt.jwks_url"
                )
        if self.mode == "trusted-header" and not self.trusted_header.trusted_cidrs:
            problems.append(
                "auth.mode trusted-header needs auth.trusted_header.trusted_cidrs "
                "(the auth proxy's addresses); none are trusted by default"
            )
        if problems:
            raise ValueError("; ".join(problems))
        return self


class SharesSettings(_Section):
    """``shares``: how share tokens are accepted and cached."""

    allow_query_param: bool = True
    query_param: str = "share"
    allow_anonymous: bool = False
    max_expires_in: int | None = Field(default=None, ge=1, description="seconds")
    cache_ttl: float = Field(default=5.0, ge=0, description="in-process cache TTL, seconds")
    cache_size: int = Field(default=10_000, ge=1)
    negative_ttl: float = Field(default=5.0, ge=0, description="unknown-token TTL, seconds")
    ownership_cache_ttl: float = Field(default=10.0, ge=0, description="seconds")
    redis_ttl: float = Field(default=60.0, gt=0, description="Redis share-cache TTL, seconds")
    guess_limit: int = Field(default=20, ge=0, description="invalid tokens per window before 429 (0: off)")
    guess_window: float = Field(default=60.0, gt=0, description="seconds")
    live_check_interval: float = Field(
        default=10.0,
        gt=0,
        description="seconds between checks of live shared streams against the store (missed revocations)",
    )
    session_id_pattern: str = Field(
        default=r"^[A-Za-z0-9][A-Za-z0-9._:@-]{0,127}$",
        description="session, context and task ids a share token may be used with",
    )
    link_template: str | None = Field(
        default=None,
        description="URL of a created share: {public_url}, {session_id}, {token} and the profile's "
        "placeholders (kagent: {namespace}, {name}); default: the profile's template",
    )
    token_storage: Literal["hashed", "encrypted"] = Field(
        default="hashed",
        description="hashed: tokens are shown once; encrypted: also kept AES-GCM-encrypted so the "
        "owner's list shows them again (needs token_keys or token_key_file)",
    )
    token_keys: Annotated[list[SecretStr], NoDecode, BeforeValidator(_split_list)] = Field(
        default_factory=list,
        description="base64 32-byte keys for encrypted token storage: the first encrypts, all decrypt",
    )
    token_key_file: str | None = Field(
        default=None,
        description="file of base64 32-byte keys, one a line, after token_keys ('#' lines ignored)",
    )

    @field_validator("session_id_pattern")
    @classmethod
    def _regex(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a regular expression: {exc}") from None
        return value

    @field_validator("link_template", mode="before")
    @classmethod
    def _template(cls, value: Any) -> Any:
        """``""`` means "the profile's"; otherwise only ``{name}`` placeholders, no format specs."""
        if value == "":
            return None
        if isinstance(value, str):
            try:
                fields = [f for f in string.Formatter().parse(value) if f[1] is not None]
            except ValueError as exc:
                raise ValueError(f"not a URL template: {exc}") from None
            for _, name, spec, conversion in fields:
                if not name or not name.isidentifier() or spec or conversion:
                    raise ValueError(
                        f"placeholder {{{name}{'!' + conversion if conversion else ''}"
                        f"{':' + spec if spec else ''}}}: only {{name}} placeholders are allowed"
                    )
        return value

    @staticmethod
    def decode_token_key(text: str) -> bytes:
        """A base64 (standard or URL-safe, padding optional) 32-byte key; ``ValueError`` otherwise."""
        text = text.strip().replace("-", "+").replace("_", "/")
        try:
            key = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("is not base64") from None
        if len(key) != 32:
            raise ValueError(f"decodes to {len(key)} bytes, not 32")
        return key

    def token_key_bytes(self) -> list[bytes]:
        """Every token key, decoded: ``token_keys`` in order, then the lines of ``token_key_file``.

        The first encrypts. Raises ``ValueError`` listing every bad key by
        position (never its value), or the unreadable file.
        """
        keys, problems = [], []
        for index, secret in enumerate(self.token_keys):
            try:
                keys.append(self.decode_token_key(secret.get_secret_value()))
            except ValueError as exc:
                problems.append(f"shares.token_keys[{index}] {exc}")
        if self.token_key_file is not None:
            try:
                lines = Path(self.token_key_file).read_text().splitlines()
            except (OSError, UnicodeDecodeError) as exc:
                lines = []
                problems.append(f"shares.token_key_file: not a readable text file ({type(exc).__name__})")
            for number, line in enumerate(lines, 1):
                if line.strip() and not line.lstrip().startswith("#"):
                    try:
                        keys.append(self.decode_token_key(line))
                    except ValueError as exc:
                        problems.append(f"shares.token_key_file line {number}: the key {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return keys

    @model_validator(mode="after")
    def _token_keys(self) -> SharesSettings:
        """Keys must decode; encrypted storage needs one."""
        keys = self.token_key_bytes()
        if self.token_storage == "encrypted" and not keys:
            raise ValueError(
                "shares.token_storage encrypted needs a key in shares.token_keys or shares.token_key_file"
            )
        return self


class TimeoutSettings(_Section):
    """``timeouts`` in seconds; there is no total timeout so streams may last."""

    connect: float = Field(default=5.0, gt=0)
    read_idle: float = Field(default=300.0, gt=0)
    probe: float = Field(default=5.0, gt=0)
    redis: float = Field(default=0.25, gt=0, description="per Redis command, seconds")
    redis_retry: float = Field(default=5.0, gt=0, description="skip Redis this long after a failure")
    keepalive: float = Field(default=60.0, gt=0, description="idle client connections are closed after")


class LimitSettings(_Section):
    """``limits``: sizes in bytes, counts of headers."""

    max_parsed_body: int = Field(default=1 << 20, ge=1024, description="A2A bodies read with a token")
    max_body: int = Field(default=16 << 20, ge=1024, description="any forwarded request body")
    max_learned_response: int = Field(default=4 << 20, ge=1024)
    max_headers: int = Field(default=100, ge=10, le=1000)
    max_header_size: int = Field(default=8190, ge=1024, le=65536, description="request line or one header")
    max_ws_frame: int = Field(default=1 << 20, ge=1024, description="WebSocket frame of a share holder")
    ws_frames_per_second: float = Field(default=50.0, gt=0, description="a share holder's WebSocket frames")
    ws_frame_burst: int = Field(default=200, ge=1, description="frames a share holder may send at once")


class AccessSettings(_Section):
    """``access``: asynchronous recording of who opened which share."""

    flush_interval: float = Field(default=1.0, gt=0, description="seconds")
    max_pending: int = Field(default=100_000, ge=1, description="distinct (share, user) pairs")
    batch_size: int = Field(default=500, ge=1)


class AssertionSettings(_Section):
    """``upstream_auth.jwt``: the JWT the gateway signs for the effective user (``jwt-assertion``)."""

    private_key: Pem = Field(default=None, description="EC P-256 PEM text or a path to one")
    issuer: str = "share-gateway"
    audience: str | None = None
    ttl_seconds: float = Field(default=60.0, ge=5)
    user_claim: str = "sub"


class UpstreamAuthSettings(_Section):
    """``upstream_auth``: how the upstream learns the effective user (default: the profile's)."""

    mode: Literal["profile", "header", "bearer", "jwt-assertion", "query"] = "profile"
    header: str | None = Field(default=None, description="identity header name (default: the profile's)")
    token: SecretStr | None = None
    token_file: str | None = None
    jwt: AssertionSettings = Field(default_factory=AssertionSettings)

    @model_validator(mode="after")
    def _token_source(self) -> UpstreamAuthSettings:
        if self.token is not None and self.token_file is not None:
            raise ValueError("set upstream_auth.token or upstream_auth.token_file, not both")
        if self.token_file is not None and not Path(self.token_file).is_file():
            raise ValueError("upstream_auth.token_file: not a readable file")
        return self


class LogSettings(_Section):
    """``log``: level and renderer (``auto`` = console on a TTY, JSON otherwise)."""

    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"


def parse_listen(value: str) -> tuple[str, int]:
    """``host:port`` / ``:port`` / ``[v6]:port`` → ``(host, port)``; raises ``ValueError``."""
    host, sep, port = value.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) <= 65535:
        raise ValueError("must be host:port")
    host = host.strip("[]") or "0.0.0.0"  # noqa: S104 - a listener binds where it is told
    return host, int(port)


STORE_SCHEMES = ("sqlite", "postgresql", "postgres")
REDIS_SCHEMES = ("redis", "rediss", "redis+sentinel")


class Settings(BaseSettings):
    """All settings. Keys match DESIGN.md; see ``share-gateway check-config --help``."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_nested_delimiter=ENV_NESTING,
        frozen=True,
        extra="forbid",
    )

    listen: str = "0.0.0.0:8080"
    admin_listen: str = "0.0.0.0:9090"
    upstream: str | None = None
    profile: str = "kagent"
    store: str = "sqlite:///share-gateway.db"
    redis: str | None = None
    redis_prefix: str = Field(default="share-gateway", pattern=r"^[A-Za-z0-9_.:-]{1,64}$")
    public_url: str | None = None
    trusted_proxies: NetworkList = Field(default_factory=list)
    trusted_agents: NetworkList = Field(
        default_factory=list,
        description="CIDRs of the upstream's own agents: identity carriers from them pass untouched",
    )
    shutdown_grace: float = Field(default=20.0, ge=0, description="seconds")
    workers: int = Field(default=1, ge=1, le=64, description="processes sharing the ports (SO_REUSEPORT)")
    default_owner: str | None = Field(
        default=None, description="owner of sessions the gateway has no record of (gateway-recorded profiles)"
    )
    admins: StrList = Field(
        default_factory=list,
        description="users who may change board-wide settings (action admin: sideshow's PUT /api/theme)",
    )
    auth: AuthSettings = Field(default_factory=AuthSettings)
    upstream_auth: UpstreamAuthSettings = Field(default_factory=UpstreamAuthSettings)
    shares: SharesSettings = Field(default_factory=SharesSettings)
    timeouts: TimeoutSettings = Field(default_factory=TimeoutSettings)
    limits: LimitSettings = Field(default_factory=LimitSettings)
    access: AccessSettings = Field(default_factory=AccessSettings)
    log: LogSettings = Field(default_factory=LogSettings)

    @field_validator("listen", "admin_listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value

    @field_validator("upstream", "public_url", "redis", mode="before")
    @classmethod
    def _empty_is_unset(cls, value: Any) -> Any:
        """``""`` (an empty env var or Helm value) means "not set"."""
        return None if value == "" else value

    @field_validator("upstream", "public_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("must be an http(s) URL with a host")
        if parts.query or parts.fragment:
            raise ValueError("must not have a query or fragment")
        return value.rstrip("/")

    @field_validator("store")
    @classmethod
    def _store(cls, value: str) -> str:
        scheme = urlsplit(value).scheme
        if scheme not in STORE_SCHEMES:
            raise ValueError("must be sqlite:///relative.db, sqlite:////absolute.db or postgresql://…")
        return value

    @field_validator("redis")
    @classmethod
    def _redis(cls, value: str | None) -> str | None:
        if value is not None and urlsplit(value).scheme not in REDIS_SCHEMES:
            raise ValueError("must be a redis://, rediss:// or redis+sentinel:// URL")
        return value

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Precedence: CLI flags (init) > environment > YAML file > defaults.
        return (init_settings, env_settings, YamlConfigSettingsSource(settings_cls))

    @property
    def listen_address(self) -> tuple[str, int]:
        return parse_listen(self.listen)

    @property
    def admin_address(self) -> tuple[str, int]:
        return parse_listen(self.admin_listen)

    def explicit(self, key: str) -> bool:
        """Whether dotted ``key`` (``"auth.mode"``) was set by the YAML file, the env or a flag.

        pydantic records the fields each source supplied in ``model_fields_set``
        of every nested model; a default never counts. Raises ``KeyError`` for
        a key that is no setting.
        """
        node: Any = self
        given = True
        for part in key.split("."):
            if not isinstance(node, BaseModel) or part not in type(node).model_fields:
                raise KeyError(key)
            given = given and part in node.model_fields_set
            node = getattr(node, part)
        return given

    def redacted(self) -> dict[str, Any]:
        """The effective settings as plain data with every secret masked."""
        data = self.model_dump(mode="json")
        for key in ("store", "redis"):
            if data.get(key):
                data[key] = redact_url(data[key])
        if data["auth"]["jwt"]["secret"] is not None:
            data["auth"]["jwt"]["secret"] = "***"
        if data["upstream_auth"]["token"] is not None:
            data["upstream_auth"]["token"] = "***"
        if data["upstream_auth"]["jwt"]["private_key"] is not None:
            data["upstream_auth"]["jwt"]["private_key"] = "***"
        data["shares"]["token_keys"] = ["***" for _ in data["shares"]["token_keys"]]
        return data


def is_loopback_host(host: str) -> bool:
    """Whether a listener on ``host`` is reachable only from this machine.

    ``localhost``, 127.0.0.0/8 and ``::1`` (also as ``::ffff:127.x.y.z``) are;
    ``0.0.0.0``, ``::``, an empty host and every other name are not.
    """
    if host.lower().rstrip(".") == "localhost":
        return True
    address = ip_literal(host)
    return address is not None and address.is_loopback


def ip_literal(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """An IP address literal (an IPv6 zone dropped, IPv4-mapped IPv6 as IPv4), or ``None``."""
    try:
        address = ipaddress.ip_address(text.split("%", 1)[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def exposure_problems(settings: Settings) -> list[str]:
    """Why serving ``settings`` would hand the owner's identity to the network, one line each.

    ``auth.mode: none`` makes every caller ``auth.default_user`` (DESIGN.md
    "identify"). On a non-loopback ``listen`` that is refused unless
    ``auth.mode`` was set explicitly (YAML, env or flag; the default does not
    count); ``shares.allow_anonymous: true`` with it needs both set explicitly.
    ``serve`` treats these as configuration errors, ``check-config`` as warnings.
    """
    host, _ = settings.listen_address
    if settings.auth.mode != "none" or is_loopback_host(host):
        return []
    where = f"listen {settings.listen} is not loopback"
    safer = "set auth.mode to jwt or trusted-header"
    problems = []
    if not settings.explicit("auth.mode"):
        problems.append(
            f"auth.mode: not set, so it defaults to none and, as {where}, anyone who can reach it "
            f"acts as {settings.auth.default_user}, the owner of every session; {safer}, "
            "or set auth.mode: none explicitly to accept that"
        )
    if settings.shares.allow_anonymous and not (
        settings.explicit("auth.mode") and settings.explicit("shares.allow_anonymous")
    ):
        problems.append(
            f"shares.allow_anonymous: true with auth.mode none ({where}) must be chosen explicitly; "
            f"{safer}, or set both auth.mode: none and shares.allow_anonymous: true explicitly"
        )
    return problems


def redact_url(url: str) -> str:
    """Mask the password in a URL (``postgresql://u:***@host/db``)."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)[1]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def leaf_keys(model: type[BaseModel] = Settings, prefix: str = "") -> Iterator[tuple[str, str]]:
    """Every settable key as ``("auth.jwt.secret", description)``, for CLI flags and docs."""
    for name, info in model.model_fields.items():
        annotation = info.annotation
        key = f"{prefix}{name}"
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            yield from leaf_keys(annotation, f"{key}.")
        else:
            yield key, info.description or ""


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    nested: dict[str, Any] = {}
    for dotted, value in flat.items():
        node = nested
        *parents, last = dotted.split(".")
        for part in parents:
            node = node.setdefault(part, {})
        node[last] = value
    return nested


def _unknown_env(environ: Mapping[str, str]) -> list[str]:
    """Top-level ``SHARE_GATEWAY_*`` names that are no setting (nested ones pydantic reports)."""
    known = {k.split(".")[0].upper() for k, _ in leaf_keys()} | {"CONFIG"}
    problems = []
    for name in environ:
        rest = name[len(ENV_PREFIX) :] if name.startswith(ENV_PREFIX) else None
        if rest and ENV_NESTING not in rest and not rest.startswith("TEST_") and rest not in known:
            problems.append(f"{name}: unknown setting")
    return problems


def _upstream_given(config_file: str | os.PathLike[str] | None, overrides: Mapping[str, Any]) -> bool:
    if overrides.get("upstream") or os.environ.get(ENV_PREFIX + "UPSTREAM"):
        return True
    if config_file is None:
        return False
    try:
        data = yaml.safe_load(Path(config_file).read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(data, dict) and bool(data.get("upstream"))


def load(
    config_file: str | os.PathLike[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    require_upstream: bool = False,
    refuse_exposed: bool = False,
) -> Settings:
    """Load and validate settings once.

    ``config_file`` is a YAML file (default: ``$SHARE_GATEWAY_CONFIG`` if set);
    ``overrides`` maps dotted keys (``"auth.mode"``) to values from CLI flags.
    ``refuse_exposed`` (``serve``) adds ``exposure_problems()`` to the errors.
    Raises ``ConfigError`` with every problem found, never a partial result.
    """
    if config_file is None:
        config_file = os.environ.get(ENV_PREFIX + "CONFIG") or None
    overrides = overrides or {}
    problems: list[str] = []
    if require_upstream and not _upstream_given(config_file, overrides):
        problems.append("upstream: required (the agent server's base URL)")
    if config_file is not None and not Path(config_file).is_file():
        raise ConfigError([f"config file {config_file}: not found"])
    problems.extend(_unknown_env(os.environ))

    class _FromFile(Settings):
        model_config = SettingsConfigDict(yaml_file=None if config_file is None else str(config_file))

    try:
        settings: Settings = _FromFile(**_nest(overrides))
    except ValidationError as exc:
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "config"
            msg = err["msg"].removeprefix("Value error, ")
            problems.append(f"{loc}: {msg}")
        raise ConfigError(problems) from None
    except (OSError, ValueError) as exc:  # unreadable or malformed YAML
        raise ConfigError([*problems, f"config file {config_file}: {exc}"]) from None
    if refuse_exposed:
        problems.extend(exposure_problems(settings))
    if problems:
        raise ConfigError(problems)
    return settings

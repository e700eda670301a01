"""Settings from command-line flags and HEARTH_* environment variables.

Precedence: flag, then environment variable, then default. Common settings are
shared by every service; each service declares its own `Option`s, which
become `--kebab-name` flags and `HEARTH_<SERVICE>_<NAME>` variables.
See docs/configuration.md for the full list.
"""

from __future__ import annotations

import argparse
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from hearth.files import private_dir

log = logging.getLogger("hearth.config")

_N = TypeVar("_N", int, float)


class ConfigError(ValueError):
    """Raised for a setting that cannot be parsed."""


@dataclass(frozen=True)
class Option:
    """A service-specific setting."""

    name: str  # snake_case; flag --name-with-dashes; env HEARTH_<SERVICE>_<NAME>
    parse: Callable[[str], object]
    default: object
    help: str
    secret: bool = False  # never printed or logged


def parse_hostports(text: str) -> tuple[tuple[str, int], ...]:
    """'1.2.3.4, ::1, 127.0.0.1:5353' -> ((host, port), ...); default port 53."""
    out = []
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        try:
            out.append(_hostport(item))
        except ValueError as e:
            raise ConfigError(f"nameserver must be host[:port], got {item!r}") from e
    return tuple(out)


def _hostport(item: str) -> tuple[str, int]:
    if item.startswith("["):
        host, _, rest = item[1:].partition("]")
        port = int(rest[1:]) if rest.startswith(":") else 53
    elif item.count(":") == 1:
        host, _, p = item.partition(":")
        port = int(p)
    else:
        host, port = item, 53
    if not host or not 0 < port < 65536:
        raise ValueError("bad host or port")
    return host, port


def parse_http_hosts(text: str) -> dict[str, tuple[str, int]]:
    """'example.com=127.0.0.1:8080,b.test=127.0.0.1:9' -> {hostname: (host, port)}."""
    out: dict[str, tuple[str, int]] = {}
    for item in (s.strip() for s in text.split(",")):
        if not item:
            continue
        name, eq, target = item.partition("=")
        host, colon, port = target.rpartition(":")
        if not eq or not colon or not (port.isascii() and port.isdigit()) or not name:
            raise ConfigError(f"HEARTH_HTTP_HOSTS entry must be hostname=host:port, got {item!r}")
        out[name.strip().lower()] = (host.strip("[]"), int(port))
    return out


@dataclass(frozen=True)
class Settings:
    """Settings every service understands."""

    host: str = "127.0.0.1"
    port: int = 0
    data_dir: Path = Path("data")
    public_url: str = ""  # empty: http://host:port
    log_level: str = "info"
    dns_nameservers: tuple[tuple[str, int], ...] = ()
    plc_url: str = "https://plc.directory"
    http_hosts: Mapping[str, tuple[str, int]] = field(default_factory=dict)
    resolver_timeout: float = 5.0
    allow_private_hosts: bool = False  # resolve did:web/handle hosts at private addresses
    # Connection limits (hearth.netlimits): 0 turns one off.
    header_timeout: float = 10.0
    body_timeout: float = 30.0
    send_timeout: float = 30.0
    max_connections_per_address: int = 128
    max_sockets: int = 0  # 0: three quarters of the file-descriptor limit
    log_repeat_burst: int = 10  # identical warnings logged per window before collapsing
    log_repeat_window: float = 60.0

    @property
    def url(self) -> str:
        """The service's public base URL (no trailing slash)."""
        if self.public_url:
            return self.public_url.rstrip("/")
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"


@dataclass(frozen=True)
class ServiceConfig:
    """What a service's `create_app` receives."""

    service: str
    settings: Settings
    options: Mapping[str, object] = field(default_factory=dict)

    def get_int(self, name: str) -> int:
        value = self.options[name]
        assert isinstance(value, int)
        return value

    def get_float(self, name: str) -> float:
        value = self.options[name]
        assert isinstance(value, int | float)
        return float(value)

    def get_str(self, name: str) -> str:
        value = self.options[name]
        assert isinstance(value, str)
        return value

    def get_bool(self, name: str) -> bool:
        value = self.options[name]
        assert isinstance(value, bool)
        return value

    @property
    def service_dir(self) -> Path:
        """`<data-dir>/<service>`, created (mode 0700) on first use."""
        return private_dir(self.settings.data_dir / self.service)


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off", ""):
        return False
    raise ConfigError(f"not a boolean: {text!r}")


def positive_int(text: str) -> int:
    """An `Option` parser for counts and capacities: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise ValueError("must be at least 1")
    return value


def env_name(service: str | None, name: str) -> str:
    prefix = "HEARTH_" if service is None else f"HEARTH_{service.upper()}_"
    return prefix + name.upper()


def add_common_arguments(parser: argparse.ArgumentParser, *, with_port: bool = True) -> None:
    parser.add_argument("--host", help="address to bind (env HEARTH_HOST, default 127.0.0.1)")
    if with_port:
        parser.add_argument("--port", type=int, help="port to bind (env HEARTH_<SERVICE>_PORT)")
        parser.add_argument(
            "--public-url",
            help="public base URL; the service DID is its did:web (default: bound address)",
        )
    parser.add_argument("--data-dir", help="state directory (env HEARTH_DATA_DIR, default ./data)")
    parser.add_argument("--log-level", help="debug|info|warning|error (env HEARTH_LOG_LEVEL)")
    parser.add_argument(
        "--header-timeout",
        help="seconds a client has to send a request head (env HEARTH_HEADER_TIMEOUT, default 10)",
    )
    parser.add_argument(
        "--body-timeout",
        help="seconds a client has to send a request body (env HEARTH_BODY_TIMEOUT, default 30)",
    )
    parser.add_argument(
        "--send-timeout",
        help="seconds an answer may stay unread by the client before the connection is dropped "
        "(env HEARTH_SEND_TIMEOUT, default 30)",
    )
    parser.add_argument(
        "--max-connections-per-address",
        help="open connections of one client address to one service, 0: no cap "
        "(env HEARTH_MAX_CONNECTIONS_PER_ADDRESS, default 128)",
    )
    parser.add_argument(
        "--max-sockets",
        help="open client connections of the whole process, 0: from the file-descriptor limit "
        "(env HEARTH_MAX_SOCKETS)",
    )


def add_service_arguments(parser: argparse.ArgumentParser, options: tuple[Option, ...]) -> None:
    for opt in options:
        parser.add_argument(
            "--" + opt.name.replace("_", "-"),
            dest="opt_" + opt.name,
            help=f"{opt.help} (default {'<secret>' if opt.secret else opt.default!r})",
        )


def build_settings(
    args: argparse.Namespace,
    service: str | None,
    default_port: int,
    env: Mapping[str, str] | None = None,
) -> Settings:
    env = os.environ if env is None else env

    def pick(flag: object, *names: str) -> str | None:
        if flag is not None:
            return str(flag)
        for n in names:
            if n in env:
                return env[n]
        return None

    def svc_env(name: str) -> str:
        return env_name(service, name) if service else "HEARTH__UNSET"

    port = pick(getattr(args, "port", None), svc_env("port"))
    try:
        http_hosts = parse_http_hosts(env.get("HEARTH_HTTP_HOSTS", ""))
        nameservers = parse_hostports(env.get("HEARTH_DNS_NAMESERVERS", ""))
        return Settings(
            host=pick(args.host, svc_env("host"), "HEARTH_HOST") or "127.0.0.1",
            port=int(port) if port is not None else default_port,
            data_dir=Path(pick(args.data_dir, "HEARTH_DATA_DIR") or "data"),
            public_url=pick(getattr(args, "public_url", None), svc_env("public_url")) or "",
            log_level=(pick(args.log_level, "HEARTH_LOG_LEVEL") or "info").lower(),
            dns_nameservers=nameservers,
            plc_url=env.get("HEARTH_PLC_URL", "https://plc.directory").rstrip("/"),
            http_hosts=http_hosts,
            resolver_timeout=float(env.get("HEARTH_RESOLVER_TIMEOUT", "5")),
            allow_private_hosts=parse_bool(env.get("HEARTH_ALLOW_PRIVATE_HOSTS", "")),
            header_timeout=_non_negative(
                float(pick(getattr(args, "header_timeout", None), "HEARTH_HEADER_TIMEOUT") or 10),
                "header timeout",
            ),
            body_timeout=_non_negative(
                float(pick(getattr(args, "body_timeout", None), "HEARTH_BODY_TIMEOUT") or 30),
                "body timeout",
            ),
            send_timeout=_non_negative(
                float(pick(getattr(args, "send_timeout", None), "HEARTH_SEND_TIMEOUT") or 30),
                "send timeout",
            ),
            max_connections_per_address=_non_negative(
                int(
                    pick(
                        getattr(args, "max_connections_per_address", None),
                        "HEARTH_MAX_CONNECTIONS_PER_ADDRESS",
                    )
                    or 128
                ),
                "max connections per address",
            ),
            max_sockets=_non_negative(
                int(pick(getattr(args, "max_sockets", None), "HEARTH_MAX_SOCKETS") or 0),
                "max sockets",
            ),
            log_repeat_burst=_non_negative(
                int(env.get("HEARTH_LOG_REPEAT_BURST", "10")), "log repeat burst"
            ),
            log_repeat_window=_non_negative(
                float(env.get("HEARTH_LOG_REPEAT_WINDOW", "60")), "log repeat window"
            ),
        )
    except ValueError as e:
        raise ConfigError(str(e)) from e


def _non_negative(value: _N, what: str) -> _N:
    if value < 0:
        raise ConfigError(f"{what} must be >= 0, got {value}")
    return value


def build_options(
    args: argparse.Namespace | None,
    service: str,
    options: tuple[Option, ...],
    env: Mapping[str, str] | None = None,
) -> dict[str, object]:
    env = os.environ if env is None else env
    out: dict[str, object] = {}
    for opt in options:
        raw = getattr(args, "opt_" + opt.name, None) if args is not None else None
        if raw is None:
            raw = env.get(env_name(service, opt.name))
        if raw is None:
            out[opt.name] = opt.default
            continue
        try:
            out[opt.name] = opt.parse(raw)
        except ValueError as e:
            raise ConfigError(f"{service} {opt.name}: {e}") from e
    return out

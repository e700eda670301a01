"""`hearth` command line: `hearth up` runs the whole stack, `hearth <service>` one service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import logging
import signal
import socket
import sys
from collections.abc import Generator, Mapping, Sequence
from pathlib import Path
from typing import Any

import uvicorn

import hearth
from hearth.config import (
    ConfigError,
    ServiceConfig,
    Settings,
    add_common_arguments,
    add_service_arguments,
    build_options,
    build_settings,
)
from hearth.connguard import Listener, guarded_http_protocol
from hearth.frontend import create_frontend_app, max_proxy_answer, max_proxy_body
from hearth.http import with_cors
from hearth.logs import configure_logging
from hearth.netlimits import (
    ConnectionTable,
    NetLimits,
    SocketBudget,
    raise_fd_limit,
    sockets_for_fd_limit,
)
from hearth.service import Service, load_services

log = logging.getLogger("hearth")

FRONTEND_PORT = 8700


class _Server(uvicorn.Server):
    """A uvicorn server on a socket we bound, leaving signal handling to us,
    so several share one loop; connections are accepted by a `Listener`
    (admission per address and process), not by `loop.create_server`."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket, table: ConnectionTable) -> None:
        super().__init__(config)
        self.sock = sock
        self.table = table
        self.listener: Listener | None = None

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def serve_bound(self) -> None:
        await self.serve(sockets=[self.sock])

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets=[])  # the lifespan; no listening here
        config = self.config
        loop = asyncio.get_running_loop()

        def protocol() -> asyncio.Protocol:
            made: asyncio.Protocol = config.http_protocol_class(  # type: ignore[call-arg]
                config=config,
                server_state=self.server_state,
                app_state=self.lifespan.state,
                _loop=loop,
            )
            return made

        self.listener = Listener(self.sock, protocol, self.table)
        self.listener.start()

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.listener is not None:
            self.listener.close()
        await super().shutdown(sockets=sockets)


def _bind(host: str, port: int) -> socket.socket:
    """Listen on host:port now, so a busy port is a clear error before anything starts."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        # Accepted sockets inherit this; without it a response written in two
        # parts waits for the peer's delayed ACK (~40 ms per request).
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.bind((host, port))
        sock.listen(2048)
    except OSError as e:
        sock.close()
        raise ConfigError(f"cannot listen on {host}:{port}: {e.strerror or e}") from e
    sock.setblocking(False)
    return sock


def _bound_settings(settings: Settings) -> tuple[Settings, socket.socket]:
    """Bind the service's address; a port of 0 becomes the port the system chose."""
    sock = _bind(settings.host, settings.port)
    return dataclasses.replace(settings, port=sock.getsockname()[1]), sock


def _socket_budget(settings: Settings) -> SocketBudget:
    """The process's cap on open client connections, shared by all its servers."""
    fd_limit = raise_fd_limit()
    budget = SocketBudget(settings.max_sockets or sockets_for_fd_limit(fd_limit))
    log.info(
        "at most %d client connections in all (descriptor limit %d), %s per address",
        budget.limit,
        fd_limit,
        settings.max_connections_per_address or "any number",
    )
    return budget


def _make_server(
    app: Any,
    sock: socket.socket,
    extra: Mapping[str, Any],
    settings: Settings,
    budget: SocketBudget,
) -> _Server:
    limits = NetLimits(
        header_timeout=settings.header_timeout,
        body_timeout=settings.body_timeout,
        send_timeout=settings.send_timeout,
        max_per_address=settings.max_connections_per_address,
        max_sockets=budget.limit,
    )
    protocol = guarded_http_protocol(limits)
    options: dict[str, Any] = {
        "access_log": False,  # our middleware logs paths without query strings
        "log_config": None,
        "lifespan": "on",
        "ws_per_message_deflate": False,
        "server_header": False,
        # Admission per address and process, header and body deadlines.
        "http": protocol,
    }
    options.update(extra)
    table = ConnectionTable(limits.max_per_address, budget)
    return _Server(uvicorn.Config(with_cors(app), **options), sock, table)


async def _serve_all(servers: list[_Server]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("stopping")
        for s in servers:
            s.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(s.serve_bound()) for s in servers]
    try:
        # If one server stops (or fails to start), stop the others.
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        stop()
        results = await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
        for s in servers:
            s.sock.close()
    if any(isinstance(r, BaseException) for r in results) or not all(s.started for s in servers):
        raise SystemExit(1)


def _service_config(
    svc: Service, args: argparse.Namespace | None, common: argparse.Namespace
) -> tuple[ServiceConfig, socket.socket]:
    settings, sock = _bound_settings(build_settings(common, svc.name, svc.default_port))
    try:
        return ServiceConfig(svc.name, settings, build_options(args, svc.name, svc.options)), sock
    except ConfigError:
        sock.close()
        raise


def cmd_up(args: argparse.Namespace, services: dict[str, Service]) -> None:
    servers = []
    urls = {}
    data_dir = None
    budget = _socket_budget(build_settings(args, None, 0))
    for svc in services.values():
        config, sock = _service_config(svc, None, args)
        app = svc.create_app(config)
        servers.append(
            _make_server(app, sock, svc.uvicorn_options(config), config.settings, budget)
        )
        urls[svc.name] = config.settings.url
        data_dir = config.settings.data_dir
    try:
        max_body, max_answer = max_proxy_body(), max_proxy_answer()
    except ValueError as e:
        raise ConfigError(f"frontend: {e}") from e
    fe_settings, fe_sock = _bound_settings(build_settings(args, "frontend", FRONTEND_PORT))
    frontend = create_frontend_app(urls, max_body=max_body, max_answer=max_answer)
    servers.insert(0, _make_server(frontend, fe_sock, {}, fe_settings, budget))
    print(f"Hearth {hearth.__version__} (data in {(data_dir or Path('data')).resolve()})")
    print(f"  frontend    {fe_settings.url}")
    for name, url in urls.items():
        print(f"  {name:<11} {url}")
    print("Ctrl-C stops everything.", flush=True)
    asyncio.run(_serve_all(servers))


def cmd_service(svc: Service, args: argparse.Namespace) -> None:
    config, sock = _service_config(svc, args, args)
    app = svc.create_app(config)
    budget = _socket_budget(config.settings)
    server = _make_server(app, sock, svc.uvicorn_options(config), config.settings, budget)
    print(f"{svc.name} {hearth.__version__} on {config.settings.url}", flush=True)
    asyncio.run(_serve_all([server]))


def build_parser(services: dict[str, Service]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="hearth", description="Hearth chat and sync stack")
    parser.add_argument("--version", action="version", version=f"hearth {hearth.__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    up = sub.add_parser("up", help="run every service on 127.0.0.1 with embedded defaults")
    add_common_arguments(up, with_port=False)
    for svc in services.values():
        p = sub.add_parser(svc.name, help=svc.summary)
        add_common_arguments(p)
        add_service_arguments(p, svc.options)
    return parser


def main(argv: Sequence[str] | None = None) -> None:
    services = load_services()
    args = build_parser(services).parse_args(argv)
    try:
        settings = build_settings(args, None if args.command == "up" else args.command, 0)
        configure_logging(
            settings.log_level,
            repeat_burst=settings.log_repeat_burst,
            repeat_window=settings.log_repeat_window,
        )
        if args.command == "up":
            cmd_up(args, services)
        else:
            cmd_service(services[args.command], args)
    except ConfigError as e:
        print(f"hearth: configuration error: {e}", file=sys.stderr)
        raise SystemExit(2) from e
    except KeyboardInterrupt:
        pass

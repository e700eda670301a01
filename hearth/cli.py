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
from hearth.frontend import create_frontend_app
from hearth.http import with_cors
from hearth.logs import configure_logging
from hearth.service import Service, load_services

log = logging.getLogger("hearth")

FRONTEND_PORT = 8700


class _Server(uvicorn.Server):
    """A uvicorn server on a socket we bound, leaving signal handling to us,
    so several share one loop."""

    def __init__(self, config: uvicorn.Config, sock: socket.socket) -> None:
        super().__init__(config)
        self.sock = sock

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield

    async def serve_bound(self) -> None:
        await self.serve(sockets=[self.sock])


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


def _make_server(app: Any, sock: socket.socket, extra: Mapping[str, Any]) -> _Server:
    options: dict[str, Any] = {
        "access_log": False,  # our middleware logs paths without query strings
        "log_config": None,
        "lifespan": "on",
        "ws_per_message_deflate": False,
        "server_header": False,
    }
    options.update(extra)
    return _Server(uvicorn.Config(with_cors(app), **options), sock)


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
    for svc in services.values():
        config, sock = _service_config(svc, None, args)
        app = svc.create_app(config)
        servers.append(_make_server(app, sock, svc.uvicorn_options(config)))
        urls[svc.name] = config.settings.url
        data_dir = config.settings.data_dir
    fe_settings, fe_sock = _bound_settings(build_settings(args, "frontend", FRONTEND_PORT))
    servers.insert(0, _make_server(create_frontend_app(urls), fe_sock, {}))
    print(f"Hearth {hearth.__version__} (data in {(data_dir or Path('data')).resolve()})")
    print(f"  frontend    {fe_settings.url}")
    for name, url in urls.items():
        print(f"  {name:<11} {url}")
    print("Ctrl-C stops everything.", flush=True)
    asyncio.run(_serve_all(servers))


def cmd_service(svc: Service, args: argparse.Namespace) -> None:
    config, sock = _service_config(svc, args, args)
    app = svc.create_app(config)
    server = _make_server(app, sock, svc.uvicorn_options(config))
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
        configure_logging(
            build_settings(args, None if args.command == "up" else args.command, 0).log_level
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

"""`hearth` command line: `hearth up` runs the whole stack, `hearth <service>` one service."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import Generator, Sequence
from typing import Any

import uvicorn

import hearth
from hearth.config import (
    ConfigError,
    ServiceConfig,
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
    """A uvicorn server that leaves signal handling to us, so several share one loop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        yield


def _uvicorn_config(app: Any, host: str, port: int, extra: dict[str, Any]) -> uvicorn.Config:
    app = with_cors(app)
    options: dict[str, Any] = {
        "host": host,
        "port": port,
        "access_log": False,  # our middleware logs paths without query strings
        "log_config": None,
        "lifespan": "on",
        "ws_per_message_deflate": False,
        "server_header": False,
    }
    options.update(extra)
    return uvicorn.Config(app, **options)


async def _serve_all(servers: list[_Server]) -> None:
    loop = asyncio.get_running_loop()

    def stop() -> None:
        log.info("stopping")
        for s in servers:
            s.should_exit = True

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    tasks = [asyncio.create_task(s.serve()) for s in servers]
    try:
        # If one server fails to start, stop the others and report.
        done, _pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        if any(not s.started for s in servers) or any(t.exception() for t in done):
            stop()
        await asyncio.gather(*tasks, return_exceptions=True)
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    failed = [s for s in servers if not s.started]
    if failed:
        raise SystemExit(1)


def _service_config(
    svc: Service, args: argparse.Namespace | None, common: argparse.Namespace
) -> ServiceConfig:
    settings = build_settings(common, svc.name, svc.default_port)
    return ServiceConfig(svc.name, settings, build_options(args, svc.name, svc.options))


def cmd_up(args: argparse.Namespace, services: dict[str, Service]) -> None:
    configs = [_service_config(svc, None, args) for svc in services.values()]
    servers = []
    urls = {}
    for svc, config in zip(services.values(), configs, strict=True):
        app = svc.create_app(config)
        st = config.settings
        servers.append(
            _Server(_uvicorn_config(app, st.host, st.port, dict(svc.uvicorn_options(config))))
        )
        urls[svc.name] = st.url
    fe_settings = build_settings(args, "frontend", FRONTEND_PORT)
    servers.insert(
        0,
        _Server(_uvicorn_config(create_frontend_app(urls), fe_settings.host, fe_settings.port, {})),
    )
    print(f"Hearth {hearth.__version__} (data in {configs[0].settings.data_dir.resolve()})")
    print(f"  frontend    {fe_settings.url}")
    for name, url in urls.items():
        print(f"  {name:<11} {url}")
    print("Ctrl-C stops everything.", flush=True)
    asyncio.run(_serve_all(servers))


def cmd_service(svc: Service, args: argparse.Namespace) -> None:
    config = _service_config(svc, args, args)
    app = svc.create_app(config)
    st = config.settings
    server = _Server(_uvicorn_config(app, st.host, st.port, dict(svc.uvicorn_options(config))))
    print(f"{svc.name} {hearth.__version__} on {st.url}", flush=True)
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

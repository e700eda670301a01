"""Run one keyserver in its own process, exactly as `hearth keyserver` builds it
(settings and options from HEARTH_* variables), on a port-0 socket whose port
it prints as the first line of stdout. Usage: python -m tests.keyserver.launch DATA_DIR
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from hearth.config import ServiceConfig, build_options, build_settings
from hearth.service import load_services
from tests.servers import bound_socket, serve_app


async def main(data_dir: str) -> None:
    svc = load_services()["keyserver"]
    sock = bound_socket()
    port = sock.getsockname()[1]
    args = argparse.Namespace(
        host="127.0.0.1", port=port, public_url=None, data_dir=data_dir, log_level=None
    )
    config = ServiceConfig(
        svc.name, build_settings(args, svc.name, port), build_options(None, svc.name, svc.options)
    )
    async with serve_app(svc.create_app(config), sock):
        print(port, flush=True)
        await asyncio.Event().wait()  # until killed


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))

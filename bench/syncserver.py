"""Hearth syncserver versus @automerge/automerge-repo-sync-server, side by side.

Both servers run as separate processes on loopback, each with a fresh data
directory, and face the same clients (tests/syncserver_js/client.mjs: real
automerge-repo clients, plus a plain-Automerge client for the per-change rounds):

1. rounds:  one client makes N changes (default 10,000), a full sync round after each
2. fetch:   a fresh automerge-repo client finds that N-change document
3. many:    D documents (default 1,000) of C changes (default 100) from K clients (default 10)

For each: wall time, server CPU seconds (/proc utime+stime), bytes on the wire
(client socket counters, frames included) and server resident memory, then the
ratios Hearth / JS. Run `scripts/install-test-deps.sh` first.

    .venv/bin/python bench/syncserver.py [--changes 10000] [--docs 1000] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import sys
import tempfile
import time
import urllib.request
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.common import cpu_seconds, free_port  # noqa: E402

JS_DIR = ROOT / "tests" / "syncserver_js"
JS_SERVER = (
    JS_DIR / "node_modules" / "@automerge" / "automerge-repo-sync-server" / "src" / "index.js"
)
HEARTH = Path(sys.executable).parent / "hearth"


def memory_kib(pid: int) -> dict[str, int]:
    out = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "VmHWM"):
            out[key] = int(value.split()[0])
    return out


@dataclass
class Server:
    name: str
    proc: asyncio.subprocess.Process
    url: str  # ws://…
    http: str
    token: str = ""

    @property
    def pid(self) -> int:
        return self.proc.pid


async def wait_http(url: str, proc: asyncio.subprocess.Process) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.returncode is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        try:
            await asyncio.to_thread(urllib.request.urlopen, url, None, 2)
            return
        except OSError:
            await asyncio.sleep(0.05)
    raise RuntimeError(f"{url} did not come up")


@contextlib.asynccontextmanager
async def hearth_server(data_dir: Path) -> AsyncIterator[Server]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        str(HEARTH),
        "syncserver",
        "--port",
        str(port),
        "--data-dir",
        str(data_dir),
        # Every client is 127.0.0.1: no per-address token budget in the bench.
        env={
            **os.environ,
            "HEARTH_LOG_LEVEL": "warning",
            "HEARTH_SYNCSERVER_AUTH_RATE": "0",
            "HEARTH_MAX_CONNECTIONS_PER_ADDRESS": "0",
        },
        stdout=asyncio.subprocess.DEVNULL,
    )
    http = f"http://127.0.0.1:{port}"
    try:
        await wait_http(http + "/xrpc/_health", proc)
        server = Server("hearth", proc, f"ws://127.0.0.1:{port}/", http)
        server.token = await asyncio.to_thread(hearth_token, http)
        server.url += f"?token={server.token}"
        yield server
    finally:
        await stop(proc)


def hearth_token(http: str) -> str:
    from hearth.jwt import Signer, mint_service_jwt

    with urllib.request.urlopen(http + "/.well-known/did.json") as r:
        did = json.load(r)["id"]
    signer = Signer.generate()
    jwt = mint_service_jwt(signer, iss=signer.did_key, aud=did, lxm="chat.hearth.v1.sync.token")
    req = urllib.request.Request(
        http + "/xrpc/chat.hearth.v1.sync.token", headers={"authorization": f"Bearer {jwt}"}
    )
    with urllib.request.urlopen(req) as r:
        token: str = json.load(r)["token"]
        return token


@contextlib.asynccontextmanager
async def js_server(data_dir: Path) -> AsyncIterator[Server]:
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        "node",
        str(JS_SERVER),
        cwd=data_dir,
        env={**os.environ, "PORT": str(port), "DATA_DIR": str(data_dir / "amrg")},
        stdout=asyncio.subprocess.DEVNULL,
    )
    http = f"http://127.0.0.1:{port}"
    try:
        await wait_http(http + "/", proc)
        yield Server("js", proc, f"ws://127.0.0.1:{port}/", http)
    finally:
        await stop(proc)


async def stop(proc: asyncio.subprocess.Process) -> None:
    if proc.returncode is None:
        proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), 10)
        except TimeoutError:
            proc.kill()
            await proc.wait()


@dataclass
class Driver:
    """The Node client driver (JSON lines over stdin/stdout)."""

    proc: asyncio.subprocess.Process
    pending: dict[int, asyncio.Future[dict[str, Any]]] = field(default_factory=dict)
    next_id: int = 0
    reader: asyncio.Task[None] | None = None

    @classmethod
    @contextlib.asynccontextmanager
    async def start(cls) -> AsyncIterator[Driver]:
        proc = await asyncio.create_subprocess_exec(
            "node",
            str(JS_DIR / "client.mjs"),
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=64 * 1024 * 1024,
        )
        driver = cls(proc)
        assert proc.stdout is not None
        first = json.loads(await proc.stdout.readline())
        assert first == {"event": "ready"}, first
        driver.reader = asyncio.create_task(driver.read())
        try:
            yield driver
        finally:
            assert proc.stdin is not None
            proc.stdin.close()
            await proc.wait()
            driver.reader.cancel()

    async def read(self) -> None:
        assert self.proc.stdout is not None
        while line := await self.proc.stdout.readline():
            obj = json.loads(line)
            if "event" in obj and obj["event"] not in ("ready", "acked"):
                print(f"  client driver: {obj}", flush=True)
            fut = self.pending.pop(obj.get("id", -1), None)
            if fut is not None:
                fut.set_result(obj)
        for fut in self.pending.values():
            if not fut.done():
                fut.set_exception(RuntimeError("the Node client driver exited"))

    async def call(self, op: str, **args: Any) -> dict[str, Any]:
        self.next_id += 1
        fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[self.next_id] = fut
        assert self.proc.stdin is not None
        self.proc.stdin.write((json.dumps({"id": self.next_id, "op": op, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        reply = await fut
        if not reply["ok"]:
            raise RuntimeError(f"{op}: {reply['error']}")
        return reply


@dataclass
class Result:
    wall: float
    cpu: float
    wire: int
    rss_kib: int


async def measure(server: Server, work: Any) -> tuple[Result, dict[str, Any]]:
    cpu0 = cpu_seconds(server.pid)
    t0 = time.perf_counter()
    extra = await work
    wall = time.perf_counter() - t0
    cpu = cpu_seconds(server.pid) - cpu0
    return Result(wall, cpu, int(extra.pop("_wire", 0)), memory_kib(server.pid)["VmRSS"]), extra


async def run_workloads(
    server: Server, driver: Driver, args: argparse.Namespace, tag: str
) -> dict[str, Result]:
    results: dict[str, Result] = {}

    async def rounds() -> dict[str, Any]:
        r = await driver.call("rounds", url=server.url, changes=args.changes)
        return {"_wire": r["wire"]["sent"] + r["wire"]["received"], "url": r["url"]}

    results["rounds"], info = await measure(server, rounds())

    async def fetch() -> dict[str, Any]:
        name = f"fetch-{server.name}"
        await driver.call("open", client=name, url=server.url)
        before = await driver.call("wire")
        found = await driver.call("find", client=name, url=info["url"], timeoutMs=600_000)
        assert found["available"] and found["n"] == args.changes - 1, found
        after = await driver.call("wire")
        await driver.call("close", client=name)
        return {"_wire": after["sent"] + after["received"] - before["sent"] - before["received"]}

    results["fetch"], _ = await measure(server, fetch())

    names = [f"many-{server.name}-{k}" for k in range(args.clients)]
    for name in names:
        await driver.call("open", client=name, url=server.url)
    before = await driver.call("wire")

    async def many() -> dict[str, Any]:
        await asyncio.gather(
            *(
                driver.call("uploadMany", client=name, tag=f"{tag}-{k}")
                for k, name in enumerate(names)
            )
        )
        after = await driver.call("wire")
        return {"_wire": after["sent"] + after["received"] - before["sent"] - before["received"]}

    results["many"], _ = await measure(server, many())
    for name in names:
        await driver.call("close", client=name)
    return results


def fmt_row(label: str, h: Result, j: Result) -> list[str]:
    def ratio(a: float, b: float) -> str:
        return f"{a / b:.2f}" if b else "-"

    return [
        f"{label}: wall {h.wall:.2f} s vs {j.wall:.2f} s (x{ratio(h.wall, j.wall)}), "
        f"server CPU {h.cpu:.2f} s vs {j.cpu:.2f} s (x{ratio(h.cpu, j.cpu)}), "
        f"wire {h.wire / 1e6:.2f} MB vs {j.wire / 1e6:.2f} MB (x{ratio(h.wire, j.wire)}), "
        f"RSS {h.rss_kib / 1024:.0f} MiB vs {j.rss_kib / 1024:.0f} MiB"
    ]


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--changes", type=int, default=10_000)
    parser.add_argument("--docs", type=int, default=1_000)
    parser.add_argument("--doc-changes", type=int, default=100)
    parser.add_argument("--clients", type=int, default=10)
    parser.add_argument("--quick", action="store_true", help="1,000 changes, 100 documents")
    parser.add_argument("--json", action="store_true", help="print results as JSON too")
    args = parser.parse_args()
    if args.quick:
        args.changes, args.docs = 1_000, 100
    if not (JS_DIR / "node_modules").is_dir() or shutil.which("node") is None:
        raise SystemExit("run scripts/install-test-deps.sh first (needs node and npm)")
    per_client = max(1, args.docs // args.clients)
    docs = per_client * args.clients
    print(
        f"syncserver bench: {args.changes} changes in rounds; fetch; "
        f"{docs} docs x {args.doc_changes} changes from {args.clients} clients",
        flush=True,
    )
    all_results: dict[str, dict[str, Result]] = {}
    peaks: dict[str, int] = {}
    async with Driver.start() as driver:
        for k in range(args.clients):
            await driver.call(
                "prepareMany", tag=f"docs-{k}", count=per_client, changes=args.doc_changes
            )
        for name, starter in (("hearth", hearth_server), ("js", js_server)):
            with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as tmp:
                async with starter(Path(tmp)) as server:
                    all_results[name] = await run_workloads(server, driver, args, "docs")
                    peaks[name] = memory_kib(server.pid)["VmHWM"]
            print(f"  {name} done", flush=True)
    h, j = all_results["hearth"], all_results["js"]
    lines = ["Hearth / JS (lower is better for Hearth):"]
    for label in ("rounds", "fetch", "many"):
        lines += fmt_row(label, h[label], j[label])
    lines.append(
        f"peak RSS: hearth {peaks['hearth'] / 1024:.0f} MiB, js {peaks['js'] / 1024:.0f} MiB"
    )
    print("\n".join(lines))
    if args.json:
        print(
            json.dumps(
                {
                    name: {k: vars(v) for k, v in res.items()} | {"peak_kib": peaks[name]}
                    for name, res in all_results.items()
                }
            )
        )


if __name__ == "__main__":
    asyncio.run(main())

"""Peer-to-peer scenarios, each run in its own network namespace by tests/p2p.

    unshare -n python -m tests.p2p.scenarios NAME '{"arg": ...}'

prints `SCENARIO-RESULT {json}`. A scenario starts a real router (and coturn
where needed) inside the namespace, runs real peers against it, and reports
what happened; the pytest side asserts on the report.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import logging
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from hearth.jwt import Signer
from peer.link import PeerConfig, PeerLink
from peer.peer import Peer
from peer.sync import DocumentSync
from router.client import RouterClient, did_key_auth
from syncserver.automerge import Document
from tests.p2p.harness import RESULT_PREFIX, add_veth, setup_loopback
from tests.router.conftest import RunningRouter, start_router, stop_router
from tests.timing import MS

WAIT = 60_000 * MS  # any single wait for something that should happen
DOC = "p2p-doc-6c1b0f2e"
RAW = "raw"  # envelope docId of the numbered messages in ice_fail


@dataclass
class Node:
    client: RouterClient
    peer: Peer
    sync: DocumentSync  # unused (no documents) when the node was made with on_message

    async def close(self) -> None:
        await self.peer.close()
        await self.client.close()


@dataclass
class Env:
    router: RunningRouter
    tmp: Path

    async def node(
        self,
        config: PeerConfig,
        document: Document | None = None,
        on_message: Callable[[PeerLink, str, bytes], None] | None = None,
    ) -> Node:
        """A started peer listening to DOC: Automerge sync of `document`, or raw
        messages to `on_message` if given."""
        client = RouterClient(self.router.url, did_key_auth(Signer.generate(), self.router.did))
        await client.start()
        peer = Peer(client, config)
        sync = DocumentSync(peer)
        if on_message is None:
            sync.add(DOC, document if document is not None else Document())
        else:
            peer.on_message = on_message
            peer.on_link = None
        await peer.start()
        await peer.listen(DOC)
        return Node(client, peer, sync)

    async def metrics(self) -> dict[str, float]:
        async with httpx.AsyncClient() as http:
            text = (await http.get(self.router.url + "/metrics")).text
        out: dict[str, float] = {}
        for name in (
            "hearth_router_relayed_bytes",
            "hearth_router_relayed_frames",
            "hearth_router_signal_bytes",
            "hearth_router_signal_frames",
        ):
            m = re.search(rf"^{name}(?:_total)? (\S+)$", text, re.M)
            out[name] = float(m.group(1)) if m else -1.0
        return out

    async def closed_causes(self) -> dict[str, float]:
        """hearth_router_connections_closed_total by cause."""
        async with httpx.AsyncClient() as http:
            text = (await http.get(self.router.url + "/metrics")).text
        pattern = r'^hearth_router_connections_closed_total\{cause="(\w+)"\} (\S+)$'
        return {m.group(1): float(m.group(2)) for m in re.finditer(pattern, text, re.M)}


@contextlib.asynccontextmanager
async def router_env(**options: object) -> AsyncIterator[Env]:
    with tempfile.TemporaryDirectory() as tmp:
        router, task = await start_router(Path(tmp), **options)
        try:
            yield Env(router, Path(tmp))
        finally:
            await stop_router(router, task)


async def until(cond: Callable[[], bool], event: Callable[[], asyncio.Event]) -> None:
    """Wait (bounded by WAIT) until `cond()`, re-checking whenever `event()` fires."""
    async with asyncio.timeout(WAIT):
        while not cond():
            ev = event()
            ev.clear()
            if cond():
                return
            await ev.wait()


def load_changes(path: str) -> list[bytes]:
    return [base64.b64decode(c) for c in json.loads(Path(path).read_text())]


def config(**kw: Any) -> PeerConfig:
    base: dict[str, Any] = {
        "ice_timeout": 30_000 * MS,
        "relay_delay": 60_000 * MS,
        "retry_min": 500 * MS,
        "retry_max": 2_000 * MS,
        "rto": 2_000 * MS,
    }
    base.update(kw)
    return PeerConfig(**base)


# ------------------------------------------------------------------ scenarios


async def sync_1000(changes_file: str) -> dict[str, Any]:
    """Two peers, a channel, a 1,000-change document from A to B."""
    add_veth()
    changes = load_changes(changes_file)
    async with router_env() as env:
        a = await env.node(config(), Document.from_chunks(changes))
        b = await env.node(config())
        heads = a.sync.docs[DOC].heads
        await until(lambda: b.sync.docs[DOC].heads == heads, lambda: b.sync.changed)
        result = {
            "changes": len(changes),
            "a_len": len(a.sync.docs[DOC]),
            "b_len": len(b.sync.docs[DOC]),
            "equal_heads": b.sync.docs[DOC].heads == heads,
            "b_save_equal": b.sync.docs[DOC].save() == a.sync.docs[DOC].save(),
            "a": a.peer.stats(),
            "b": b.peer.stats(),
            "sync_messages": [a.sync.messages_sent, b.sync.messages_sent],
            "metrics": await env.metrics(),
        }
        await a.close()
        await b.close()
        return result


async def mesh(changes_file: str, peers: int) -> dict[str, Any]:
    """Several peers join at once; one channel per pair; every document converges."""
    add_veth()
    changes = load_changes(changes_file)
    half = len(changes) // 2
    async with router_env() as env:
        # two writers with different halves, the others empty, all joining together
        docs = [Document.from_chunks(changes[:half]), Document.from_chunks(changes[half:])]
        docs += [Document() for _ in range(peers - 2)]
        nodes = await asyncio.gather(*(env.node(config(), d) for d in docs))
        full = Document.from_chunks(changes).heads
        for node in nodes:
            await until(
                lambda node=node: node.sync.docs[DOC].heads == full,
                lambda node=node: node.sync.changed,
            )
        stats = [n.peer.stats() for n in nodes]
        result = {
            "converged": all(n.sync.docs[DOC].heads == full for n in nodes),
            "links": [
                sorted((link["connId"], link["offerer"], link["path"]) for link in s["links"])
                for s in stats
            ],
            "conn_ids": [s["connId"] for s in stats],
            "stats": stats,
            "metrics": await env.metrics(),
        }
        for node in nodes:
            await node.close()
        return result


async def ice_fail(n1: int, after_open: int) -> dict[str, Any]:
    """No usable addresses: ICE fails, the relay carries everything; then a channel takes over."""
    got: list[int] = []
    got_event = asyncio.Event()

    def on_message(_link: PeerLink, doc: str, data: bytes) -> None:
        assert doc == RAW, doc
        got.append(int(data))
        got_event.set()

    cfg = config(relay_delay=0.0, ice_timeout=3_000 * MS, retry_min=300 * MS, retry_max=1_000 * MS)
    async with router_env() as env:
        a = await env.node(cfg, on_message=on_message)
        b = await env.node(cfg, on_message=on_message)
        link = await asyncio.wait_for(a.peer.wait_link(), WAIT)
        blink = await asyncio.wait_for(b.peer.wait_link(), WAIT)
        for i in range(n1):
            a.peer.send(link.conn_id, RAW, b"%d" % i)
        await until(lambda: len(got) >= n1, lambda: got_event)
        await until(lambda: link.attempts_failed >= 1, lambda: link.changed)
        phase1 = {"a": link.stats(), "b": blink.stats(), "metrics": await env.metrics()}

        # the network appears; keep sending while the next attempt opens a channel
        add_veth()
        sent = n1
        sent_at_open = -1
        async with asyncio.timeout(WAIT):
            while sent_at_open < 0 or sent < sent_at_open + after_open:
                if sent_at_open < 0 and link.channel_open_event.is_set():
                    sent_at_open = sent
                for _ in range(5):
                    a.peer.send(link.conn_id, RAW, b"%d" % sent)
                    sent += 1
                await asyncio.sleep(2 * MS)  # pace the sender so the switch happens mid-stream
        await until(lambda: len(got) >= sent, lambda: got_event)
        result = {
            "sent": sent,
            "sent_at_open": sent_at_open,
            "in_order": got == list(range(sent)),
            "received": len(got),
            "phase1": phase1,
            "a": link.stats(),
            "b": blink.stats(),
            "metrics": await env.metrics(),
        }
        await a.close()
        await b.close()
        return result


def start_coturn(tmp: Path, port: int, secret: str) -> subprocess.Popen[bytes]:
    log = tmp / "turn.log"
    return subprocess.Popen(
        [
            "turnserver",
            "--listening-ip=127.0.0.1",
            "--relay-ip=127.0.0.1",
            f"--listening-port={port}",
            "--min-port=49160",
            "--max-port=49200",
            "--use-auth-secret",
            f"--static-auth-secret={secret}",
            "--realm=hearth.test",
            "--allow-loopback-peers",
            "--no-cli",
            "--no-tls",
            "--no-dtls",
            "--no-software-attribute",
            "--no-stdout-log",
            f"--log-file={log}",
            "--simple-log",
            f"--pidfile={tmp / 'turn.pid'}",
            "--fingerprint",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


async def turn_allocate(port: int, username: str, password: str) -> str:
    """'ok' if coturn grants a relay allocation with these credentials, else the error."""
    from aioice.turn import create_turn_endpoint

    try:
        transport, _ = await asyncio.wait_for(
            create_turn_endpoint(
                asyncio.DatagramProtocol,
                ("127.0.0.1", port),
                username,
                password,
            ),
            5_000 * MS,
        )
    except Exception as e:
        return f"{type(e).__name__}: {e}"
    transport.close()
    return "ok"


async def turn(secret: str, changes_file: str) -> dict[str, Any]:
    """Relay-only peers through coturn with the router's TURN REST credentials."""
    from router.ice import turn_credential

    add_veth()
    port = 3478  # a fresh namespace: nothing else can hold it
    with tempfile.TemporaryDirectory() as tmpdir:
        tmp = Path(tmpdir)
        coturn = start_coturn(tmp, port, secret)
        try:
            async with router_env(
                turn_urls=(f"turn:127.0.0.1:{port}?transport=udp",),
                turn_secret=secret,
                turn_ttl=600,
            ) as env:
                a = await env.node(config(ice_transport_policy="relay"))
                servers = await a.peer._ice_servers()
                creds = servers[0]
                # coturn may still be starting: retry the good credentials a while
                good = ""
                for _attempt in range(100):
                    good = await turn_allocate(port, creds["username"], creds["credential"])
                    if good == "ok":
                        break
                    await asyncio.sleep(100 * MS)
                expired = turn_credential(secret, a.peer.did, time.time() - 3600, 60)
                forged = turn_credential("not-the-secret", a.peer.did, time.time(), 600)
                checks = {
                    "router_credentials": good,
                    "expired": await turn_allocate(port, expired.username, expired.credential),
                    "forged": await turn_allocate(port, forged.username, forged.credential),
                }
                changes = load_changes(changes_file)[:100]
                doc_a = a.sync.docs[DOC]
                a.sync.apply_local(DOC, b"".join(changes))
                b = await env.node(config(ice_transport_policy="relay"))
                heads = doc_a.heads
                await until(lambda: b.sync.docs[DOC].heads == heads, lambda: b.sync.changed)
                link = await asyncio.wait_for(a.peer.wait_link(), WAIT)
                pair_types = _nominated_types(link)
                result = {
                    "servers": servers,
                    "checks": checks,
                    "equal_heads": b.sync.docs[DOC].heads == heads,
                    "nominated": pair_types,
                    "a": a.peer.stats(),
                    "b": b.peer.stats(),
                    "metrics": await env.metrics(),
                }
                await a.close()
                await b.close()
                return result
        finally:
            coturn.terminate()
            coturn.wait(10)


def _nominated_types(link: PeerLink) -> list[list[str]]:
    """(local, remote) candidate types of the ICE pair in use (aioice internals)."""
    pc = link._pc
    if pc is None or pc.sctp is None:
        return []
    connection = pc.sctp.transport.transport._connection
    return [
        [pair.local_candidate.type, pair.remote_candidate.type]
        for pair in connection._nominated.values()
    ]


async def vanish(changes_file: str, vanish_at: int) -> dict[str, Any]:
    """B disappears mid-transfer; A notices; B comes back with what it had and catches up."""
    add_veth()
    changes = load_changes(changes_file)
    batch = 25
    async with router_env() as env:
        a = await env.node(config())
        doc_b = Document()
        b = await env.node(config(), doc_b)
        first_link = await asyncio.wait_for(a.peer.wait_link(), WAIT)
        await asyncio.wait_for(first_link.wait_channel(), WAIT)
        fed = 0
        while len(doc_b) < vanish_at:
            a.sync.apply_local(DOC, b"".join(changes[fed : fed + batch]))
            fed += batch
            await until(lambda fed=fed: len(doc_b) >= fed, lambda: b.sync.changed)
        # feed more and vanish while it is in flight
        a.sync.apply_local(DOC, b"".join(changes[fed : fed + batch * 4]))
        fed += batch * 4
        had_before = len(doc_b)
        await b.close()
        await until(lambda: not a.peer.links, lambda: a.peer.changed)
        noticed = a.peer.closed_links[-1]
        a.sync.apply_local(DOC, b"".join(changes[fed:]))
        had = len(doc_b)
        b2 = await env.node(config(), doc_b)
        heads = a.sync.docs[DOC].heads
        await until(lambda: doc_b.heads == heads, lambda: b2.sync.changed)
        link2 = await asyncio.wait_for(a.peer.wait_link(), WAIT)
        result = {
            "changes": len(changes),
            "b_had_at_vanish": had_before,
            "b_had_on_return": had,
            "b_final": len(doc_b),
            "equal_heads": doc_b.heads == heads,
            "noticed": noticed,
            "first_conn": first_link.conn_id,
            "second_conn": link2.conn_id,
            "b2": b2.peer.stats(),
            "metrics": await env.metrics(),
        }
        await a.close()
        await b2.close()
        return result


async def child_peer(url: str, router_did: str, target: int) -> dict[str, Any]:
    """A peer in a process of its own, so that it can be killed with SIGKILL.

    Syncs DOC from empty; prints `CONN <connId>`, then `HAVE <n>` whenever its
    document grows, and once it holds `target` changes `DONE <json>` (stats and
    heads); exits when its stdin closes.
    """
    client = RouterClient(url, did_key_auth(Signer.generate(), router_did))
    await client.start()
    peer = Peer(client, config())
    sync = DocumentSync(peer)
    doc = Document()
    sync.add(DOC, doc)
    await peer.start()
    await peer.listen(DOC)
    print(f"CONN {client.conn_id}", flush=True)
    reported = -1
    while reported < target:
        sync.changed.clear()
        if len(doc) == reported:
            await sync.changed.wait()
        reported = len(doc)
        print(f"HAVE {reported}", flush=True)
    done = {"stats": peer.stats(), "heads": [h.hex() for h in doc.heads]}
    print("DONE " + json.dumps(done, default=str), flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
    await peer.close()
    await client.close()
    return {}


class Child:
    """`child_peer` running in a subprocess (same network namespace)."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self.have = 0

    @classmethod
    async def start(cls, env: Env, target: int) -> Child:
        args = {"url": env.router.url, "router_did": env.router.did, "target": target}
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-W",
            "error",
            "-m",
            "tests.p2p.scenarios",
            "child_peer",
            json.dumps(args),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    async def expect(self, prefix: str) -> str:
        """The rest of the next line starting with `prefix` (HAVE lines update `have`)."""
        stdout = self.proc.stdout
        assert stdout is not None
        async with asyncio.timeout(WAIT):
            while True:
                line = (await stdout.readline()).decode()
                if not line:
                    raise AssertionError(f"child peer exited ({await self.proc.wait()})")
                if line.startswith("HAVE "):
                    self.have = int(line.split()[1])
                if line.startswith(prefix):
                    return line[len(prefix) :].strip()

    async def until_have(self, n: int) -> None:
        while self.have < n:
            await self.expect("HAVE ")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            assert self.proc.stdin is not None
            self.proc.stdin.close()
            await asyncio.wait_for(self.proc.wait(), WAIT)


async def vanish_kill(changes_file: str, vanish_at: int, how: str) -> dict[str, Any]:
    """B, a process of its own, vanishes mid-transfer; A notices; a new B catches up.

    `how`: "kill" (SIGKILL: the kernel closes its sockets) or "freeze" (SIGSTOP:
    its sockets stay open and silent, so only the router's idle timeout, short
    here, or ICE consent can tell), then SIGKILL.
    """
    add_veth()
    changes = load_changes(changes_file)
    batch = 25
    options: dict[str, object] = {}
    if how == "freeze":
        options = {"ping_interval": 300 * MS, "idle_timeout": 2_000 * MS}
    async with router_env(**options) as env:
        a = await env.node(config())
        b = await Child.start(env, len(changes))
        first_conn = await b.expect("CONN ")
        first_link = await asyncio.wait_for(a.peer.wait_link(), WAIT)
        await asyncio.wait_for(first_link.wait_channel(), WAIT)
        fed = 0
        while b.have < vanish_at:
            a.sync.apply_local(DOC, b"".join(changes[fed : fed + batch]))
            fed += batch
            await b.until_have(fed)
        # feed more and kill B while it is in flight: no close frame, no goodbye
        a.sync.apply_local(DOC, b"".join(changes[fed : fed + batch * 4]))
        fed += batch * 4
        if how == "freeze":
            b.proc.send_signal(signal.SIGSTOP)
            await until(lambda: not a.peer.links, lambda: a.peer.changed)
            b.proc.kill()
            killed = await b.proc.wait()
        else:
            b.proc.kill()
            killed = await b.proc.wait()
            await until(lambda: not a.peer.links, lambda: a.peer.changed)
        noticed = a.peer.closed_links[-1]
        closed_by = await env.closed_causes()
        a.sync.apply_local(DOC, b"".join(changes[fed:]))
        b2 = await Child.start(env, len(changes))
        second_conn = await b2.expect("CONN ")
        done = json.loads(await b2.expect("DONE "))
        link2 = await asyncio.wait_for(a.peer.wait_link(), WAIT)
        result = {
            "changes": len(changes),
            "exit_status": killed,
            "b_had_at_kill": b.have,
            "noticed": noticed,
            "closed_by": closed_by,
            "first_conn": first_conn,
            "first_link": first_link.conn_id,
            "second_conn": second_conn,
            "second_link": link2.conn_id,
            "equal_heads": done["heads"] == [h.hex() for h in a.sync.docs[DOC].heads],
            "b2": done["stats"],
            "metrics": await env.metrics(),
        }
        await b2.stop()
        await a.close()
        return result


async def channel_drop(before: int, after: int) -> dict[str, Any]:
    """The answerer's peer connection dies under a stream: relay, then a new generation."""
    add_veth()
    got: list[int] = []
    got_event = asyncio.Event()

    def on_message(_link: PeerLink, doc: str, data: bytes) -> None:
        assert doc == RAW, doc
        got.append(int(data))
        got_event.set()

    cfg = config(relay_delay=0.0, retry_min=200 * MS, retry_max=1_000 * MS)
    async with router_env() as env:
        a = await env.node(cfg, on_message=on_message)
        b = await env.node(cfg, on_message=on_message)
        link = await asyncio.wait_for(a.peer.wait_link(), WAIT)
        blink = await asyncio.wait_for(b.peer.wait_link(), WAIT)
        await asyncio.wait_for(link.wait_channel(), WAIT)
        await asyncio.wait_for(blink.wait_channel(), WAIT)
        answerer = blink if link.offerer else link
        sent = 0
        for _ in range(before):
            a.peer.send(link.conn_id, RAW, b"%d" % sent)
            sent += 1
        # drop the channel under the stream, then keep sending until a new one carries `after`
        await answerer._pc.close()
        sent_at_reopen = -1
        async with asyncio.timeout(WAIT):
            while sent_at_reopen < 0 or sent < sent_at_reopen + after:
                if sent_at_reopen < 0 and link.channels_opened >= 2 and link.path == "channel":
                    sent_at_reopen = sent
                for _ in range(5):
                    a.peer.send(link.conn_id, RAW, b"%d" % sent)
                    sent += 1
                await asyncio.sleep(2 * MS)  # pace the sender so the outage spans messages
        await until(lambda: len(got) >= sent, lambda: got_event)
        result = {
            "sent": sent,
            "received": len(got),
            "in_order": got == list(range(sent)),
            "a": link.stats(),
            "b": blink.stats(),
            "metrics": await env.metrics(),
        }
        await a.close()
        await b.close()
        return result


async def held_then_relayed(n: int) -> dict[str, Any]:
    """relay_delay > ice_timeout: data waits for a channel, then goes by relay when ICE fails."""
    got: list[int] = []
    got_event = asyncio.Event()
    at_first: dict[str, Any] = {}
    links: list[PeerLink] = []

    def on_message(_link: PeerLink, doc: str, data: bytes) -> None:
        assert doc == RAW, doc
        if not got and links:
            # what the sender had done when the first message arrived
            at_first.update(links[0].stats())
        got.append(int(data))
        got_event.set()

    # no veth: no usable address, so every attempt fails at ice_timeout, long
    # before relay_delay would release the held data by itself
    cfg = config(relay_delay=WAIT * 10, ice_timeout=2_000 * MS, retry_min=WAIT * 10)
    async with router_env() as env:
        a = await env.node(cfg, on_message=on_message)
        b = await env.node(cfg, on_message=on_message)
        link = await asyncio.wait_for(a.peer.wait_link(), WAIT)
        links.append(link)
        blink = await asyncio.wait_for(b.peer.wait_link(), WAIT)
        for i in range(n):
            assert a.peer.send(link.conn_id, RAW, b"%d" % i)
        held = link.stats()
        outbox_held = len(link._outbox)
        await until(lambda: len(got) >= n, lambda: got_event)
        result = {
            "sent": n,
            "received": len(got),
            "in_order": got == list(range(n)),
            "held": held,
            "outbox_held": outbox_held,
            "at_first": at_first,
            "a": link.stats(),
            "b": blink.stats(),
            "metrics": await env.metrics(),
        }
        await a.close()
        await b.close()
        return result


SCENARIOS: dict[str, Callable[..., Awaitable[dict[str, Any]]]] = {
    "mesh": mesh,
    "channel_drop": channel_drop,
    "sync_1000": sync_1000,
    "ice_fail": ice_fail,
    "held_then_relayed": held_then_relayed,
    "turn": turn,
    "vanish": vanish,
    "vanish_kill": vanish_kill,
    "child_peer": child_peer,
}


def main() -> None:
    name, args = sys.argv[1], json.loads(sys.argv[2])
    logging.basicConfig(level=os.environ.get("P2P_LOG", "WARNING"), stream=sys.stderr)
    setup_loopback()
    result = asyncio.run(SCENARIOS[name](**args))
    print(RESULT_PREFIX + json.dumps(result, default=str), flush=True)


if __name__ == "__main__":
    main()

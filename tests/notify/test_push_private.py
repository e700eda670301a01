"""Push endpoints at loopback/private addresses are refused (SSRF), unless the operator allows them.

A push endpoint is chosen by whoever registers it; without these checks any
DID could make the router POST into its operator's network. Registration
refuses literal non-public hosts; sending refuses names that resolve only to
such addresses (checked on the address connected to) and IP literals
registered earlier, without a request and without a retry.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
import pytest

from router.push import (
    PushMessage,
    PushOutcome,
    PushQueue,
    PushSubscription,
    VapidKey,
    WebPushSender,
)
from router.push_queue import PushLimits
from router.urgency import PushUrgency
from tests.notify.dns_server import DnsServer
from tests.notify.helpers import MS, WAIT, within
from tests.notify.push_endpoint import PushEndpoint
from tests.notify.routerfix import Client, Router, running_router
from tests.notify.test_router_mail import Person, register

SUBJECT = "mailto:ops@hearth.test"
NAME = "private.push.test"  # the test DNS server answers 127.0.0.1 for it


def _subscription(endpoint: str) -> dict[str, object]:
    sub = PushEndpoint("unused").device().subscription
    return {**sub, "endpoint": endpoint}


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("https://127.0.0.1/push/x", "not a public address"),
        ("https://10.0.0.1/push/x", "not a public address"),
        ("https://[::1]/push/x", "not a public address"),
        ("https://[::ffff:127.0.0.1]/push/x", "not a public address"),
        ("https://169.254.169.254/push/x", "not a public address"),
        ("https://127.1/push/x", "not a dotted-quad"),
        ("http://push.example.com/push/x", "https URL"),
    ],
)
async def test_registration_refuses_private_hosts_and_plain_http(
    tmp_path: Path, endpoint: str, reason: str
) -> None:
    bob = Person()
    async with running_router(tmp_path, allow_private_hosts=False, push_allow_http=False) as r:
        resp = await r.xrpc(bob.signer, "register", {"subscription": _subscription(endpoint)})
        assert resp.status_code == 400, resp.text
        assert resp.json()["error"] == "InvalidSubscription"
        assert reason in resp.json()["message"]
        # a public name registers (what it resolves to is checked when sending)
        public = _subscription("https://push.example.com/push/x")
        resp = await r.xrpc(bob.signer, "register", {"subscription": public})
        assert resp.status_code == 200, resp.text


async def test_registration_allows_private_hosts_when_the_operator_does(tmp_path: Path) -> None:
    bob = Person()
    async with running_router(tmp_path, allow_private_hosts=True, push_allow_http=False) as r:
        for endpoint in ("https://127.0.0.1/push/x", "https://[::1]/push/y"):
            resp = await r.xrpc(bob.signer, "register", {"subscription": _subscription(endpoint)})
            assert resp.status_code == 200, resp.text


async def _metric(router: Router, name: str) -> float:
    async with httpx.AsyncClient(timeout=WAIT) as http:
        text = (await http.get(f"{router.url}/metrics")).text
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    return 0.0


async def test_a_name_resolving_to_loopback_is_refused_at_send_time(tmp_path: Path) -> None:
    alice, bob = Person(), Person()
    dns = DnsServer({NAME: "127.0.0.1"})
    dropped = 'hearth_router_push_dropped_total{reason="not_public"}'
    async with (
        dns.running(),
        running_router(
            tmp_path, allow_private_hosts=False, nameservers=(("127.0.0.1", dns.port),)
        ) as r,
    ):
        key = (await r.xrpc(None, "vapidPublicKey", {})).json()["publicKey"]
        async with PushEndpoint(key).running() as endpoint:
            endpoint.url = endpoint.url.replace("127.0.0.1", NAME)
            await register(r, bob, endpoint.device().subscription, "engaged", "phone")
            a = await Client.open(r, alice.signer)
            await a.send(["mail", bob.did, "m", 60, "normal"], b"sealed")
            assert (await a.recv())[0] == ["receipt", "m", "stored"]

            async def refused() -> None:
                # The router's counters are visible only through /metrics.
                while await _metric(r, dropped) < 1:  # noqa: ASYNC110
                    await asyncio.sleep(10 * MS)

            await within(refused())
            assert NAME in dns.queried  # looked up when sending ...
            assert endpoint.received.empty() and not endpoint.attempts  # ... never reached
            assert await _metric(r, 'hearth_router_pushes_total{outcome="retried"}') == 0
            assert await _metric(r, "hearth_router_push_pending") == 0
            await a.close()


async def test_sender_refuses_without_a_request_and_the_queue_never_retries(
    tmp_path: Path,
) -> None:
    vapid = VapidKey.load_or_create(tmp_path / "vapid.pem", SUBJECT)
    dns = DnsServer({NAME: "127.0.0.1"})
    async with dns.running(), PushEndpoint(vapid.public_key).running() as ep:
        port = ep.url.rsplit(":", 1)[1]
        nameservers = [("127.0.0.1", dns.port)]
        # Registered while the switch was on (or before this check existed).
        subs = []
        for host in (NAME, "127.0.0.1", "[::ffff:127.0.0.1]", "[::1]"):
            ep.url = f"http://{host}:{port}"
            subs.append(
                PushSubscription.from_json(
                    ep.device().subscription, allow_insecure=True, allow_private=True
                )
            )
        sender = WebPushSender(vapid, timeout=WAIT, nameservers=nameservers)
        queue = PushQueue(sender, PushLimits(retry_base=MS))
        queue.start()
        try:
            for sub in subs:
                result = await within(sender.send(PushMessage(sub, b"x", 60, PushUrgency.LOW)))
                assert result.outcome is PushOutcome.REFUSED
            for sub in subs:
                assert queue.submit(PushMessage(sub, b"x", 60, PushUrgency.LOW), "did:key:zBob")
            await within(queue.idle())
            assert queue.stats_dropped["not_public"] == len(subs)
            assert queue.stats.retried == 0 and queue.stats.failed == 0
            assert queue.scheduler.circuits_open(time.monotonic()) == 0
            assert ep.received.empty() and not ep.attempts
        finally:
            await queue.stop()
            await sender.aclose()
        # The same name, with the operator's switch on, is delivered.
        ep.url = f"http://{NAME}:{port}"  # the VAPID `aud` it expects
        allowed = WebPushSender(vapid, timeout=WAIT, nameservers=nameservers, allow_private=True)
        try:
            result = await within(allowed.send(PushMessage(subs[0], b"y", 60, PushUrgency.LOW)))
            assert result.outcome is PushOutcome.SENT
            assert (await within(ep.received.get())).plaintext == b"y"
        finally:
            await allowed.aclose()

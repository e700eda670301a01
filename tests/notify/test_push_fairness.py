"""One DID's dead push endpoints must not starve anyone else's notifications.

Real sockets: a router on port 0, a push endpoint that accepts TCP and never
answers for one DID's 32 devices, and the local RFC 8030 push service for an
honest DID.
"""

from __future__ import annotations

from pathlib import Path

import httpx

from tests.notify.helpers import WAIT, within
from tests.notify.push_endpoint import PushEndpoint
from tests.notify.routerfix import Client, running_router
from tests.notify.stall_endpoint import StallEndpoint
from tests.notify.test_router_mail import Person, barrier, register

DEVICES = 32  # the most one DID may register
SENDERS, MAILS = 20, 5  # 3,200 pushes to a push service that never answers
# (from 20 senders: pushes to one device from one sender share a Topic and
# collapse while queued, so a flood needs many senders)


def _gauge(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_dead_endpoints_of_one_did_do_not_starve_another(tmp_path: Path) -> None:
    mallory, alice, bob = Person(), Person(), Person()
    accomplices = [Person() for _ in range(SENDERS)]
    # No stalled request ends (times out) while the test runs: whatever reaches
    # bob got past a full backlog of requests that are all still hanging.
    async with (
        running_router(tmp_path, push_timeout=20 * WAIT, push_per_origin=4) as r,
        StallEndpoint().running() as dead,
    ):
        key = (await r.xrpc(None, "vapidPublicKey", {})).json()["publicKey"]
        async with PushEndpoint(key).running() as honest:
            fake = PushEndpoint(key)
            fake.url = dead.url
            for i in range(DEVICES):
                await register(r, mallory, fake.device().subscription, "engaged", f"m{i}")
            bob_phone = honest.device()
            await register(r, bob, bob_phone.subscription, "engaged", "bob-phone")

            for accomplice in accomplices:
                m = await Client.open(r, accomplice.signer)
                for i in range(MAILS):
                    await m.send(["mail", mallory.did, f"flood-{i}", 3600, "urgent"], b"x" * 64)
                for i in range(MAILS):
                    assert (await m.recv())[0] == ["receipt", f"flood-{i}", "stored"]
                await m.close()
            m = await Client.open(r, mallory.signer)
            await barrier(m)
            await within(dead.wait_connections(4))  # the flood is being sent

            a = await Client.open(r, alice.signer)
            sealed = alice.seal_for(bob, "hi", b"dinner?")
            await a.send(["mail", bob.did, "hi", 3600, "normal"], sealed)
            assert (await a.recv())[0] == ["receipt", "hi", "stored"]
            push = await within(honest.received.get())
            assert (push.sub_id, push.plaintext) == (bob_phone.sub_id, sealed)

            # ... while mallory's pushes are still held, not sent or dropped
            async with httpx.AsyncClient(timeout=WAIT) as http:
                text = (await http.get(f"{r.url}/metrics")).text
            # ... and she could not fill the queue: her share is 500 (push_queue_per_did)
            assert _gauge(text, "hearth_router_push_pending") == 500
            assert _gauge(text, 'hearth_router_push_dropped_total{reason="owner_full"}') > 0
            await a.close()
            await m.close()

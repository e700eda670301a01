"""did:key people writing signed space ops at today's time, and an XRPC client for
`chat.hearth.v1.space.*` on a running syncserver (tests only)."""

from __future__ import annotations

import json
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

from hearth.jwt import Signer, mint_service_jwt
from hearth.spaces import AuthorityLog, OpId, sign_op
from hearth.spaces.ops import Body, Create, JoinPolicy, Op, SignedOp
from hearth.types import Did


@dataclass
class Person:
    name: str
    signer: Signer = field(default_factory=Signer.generate)
    token: str = ""  # a syncserver session token, once fetched

    @property
    def did(self) -> Did:
        return Did(self.signer.did_key)


def now_ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Space:
    """Writes signed ops; `parents=None` means the heads of everything it holds."""

    owner: Person
    policy: JoinPolicy = JoinPolicy.OPEN
    ops: list[SignedOp] = field(default_factory=list)

    def __post_init__(self) -> None:
        body = Create("Hearth", "Hearth (members)", self.policy, secrets.token_hex(8))
        create = sign_op(Op(None, self.owner.did, (), now_ms(), body), self.owner.signer)
        self.id = create.id
        self.create = create
        self.ops.append(create)
        self.log = AuthorityLog(self.id)
        self.log.add_signed(create)

    def write(
        self,
        who: Person,
        body: Body,
        parents: list[OpId] | None = None,
        *,
        time_ms: int | None = None,
        sign_as: Person | None = None,
        keep: bool = True,
    ) -> SignedOp:
        """A signed op; kept in the local log (so later ops follow it) unless `keep` is
        false or the local rules refuse it."""
        if parents is None:
            parents = self.log.heads
        t = time_ms if time_ms is not None else max(now_ms(), self._max_time(parents))
        op = Op(self.id, who.did, tuple(sorted(set(parents))), t, body)
        signed = sign_op(op, (sign_as or who).signer)
        if keep:
            self.ops.append(signed)
            try:
                self.log.add_signed(signed)
            except Exception:  # noqa: BLE001 - a deliberately bad op: written, not kept
                pass
        return signed

    def _max_time(self, parents: list[OpId]) -> int:
        times = [s.op.time for s in self.ops if s.id in parents]
        return max(times, default=0)


@dataclass
class SpacesClient:
    """`chat.hearth.v1.space.*` calls with a person's session token."""

    url: str
    did: str  # the server's

    async def token(self, who: Person) -> str:
        if not who.token:
            jwt = mint_service_jwt(
                who.signer, iss=who.did, aud=self.did, lxm="chat.hearth.v1.sync.token"
            )
            async with httpx.AsyncClient() as http:
                r = await http.get(
                    self.url + "/xrpc/chat.hearth.v1.sync.token",
                    headers={"authorization": f"Bearer {jwt}"},
                )
            assert r.status_code == 200, r.text
            who.token = r.json()["token"]
        return who.token

    async def call(
        self,
        who: Person | None,
        method: str,
        name: str,
        *,
        params: dict[str, str] | None = None,
        body: Any = None,
        jwt: bool = False,
    ) -> httpx.Response:
        headers = {"content-type": "application/json"}
        if who is not None and jwt:
            token = mint_service_jwt(
                who.signer, iss=who.did, aud=self.did, lxm=f"chat.hearth.v1.space.{name}"
            )
            headers["authorization"] = f"Bearer {token}"
        elif who is not None:
            headers["authorization"] = f"Bearer {await self.token(who)}"
        async with httpx.AsyncClient() as http:
            return await http.request(
                method,
                f"{self.url}/xrpc/chat.hearth.v1.space.{name}",
                headers=headers,
                params=params,
                # ASCII-escaped, so a test can send a lone surrogate.
                content=None if body is None else json.dumps(body).encode(),
            )

    async def submit(
        self, who: Person, space: str, *ops: SignedOp | bytes, status: int = 200
    ) -> Any:
        wires = [o if isinstance(o, bytes) else o.wire for o in ops]
        r = await self.call(
            who,
            "POST",
            "submitOps",
            body={"space": space, "ops": [w.decode("utf-8", "surrogateescape") for w in wires]},
        )
        assert r.status_code == status, r.text
        return r.json()

    async def ops(self, who: Person | None, space: str, since: int = 0, limit: int = 0) -> Any:
        params = {"space": space, "since": str(since)}
        if limit:
            params["limit"] = str(limit)
        r = await self.call(who, "GET", "getOps", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    async def all_ops(self, who: Person, space: str) -> list[str]:
        out: list[str] = []
        since = 0
        while True:
            page = await self.ops(who, space, since)
            out += page["ops"]
            since = page["cursor"]
            if not page["more"]:
                return out

    async def state(self, who: Person | None, space: str) -> Any:
        r = await self.call(who, "GET", "getState", params={"space": space})
        assert r.status_code == 200, r.text
        return r.json()


def statuses(answer: Any) -> list[tuple[str, str | None]]:
    return [(r["status"], r.get("reason")) for r in answer["results"]]

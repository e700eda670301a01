"""Invite tokens: what an invite link carries instead of the bare space id.

An invite is an Ed25519 key pair made for the occasion. Its public key goes
into the log in an `invite` op (with an optional expiry and use count); the
32-byte seed goes into the token, and only there. Whoever holds the token
proves it by signing their own DID with the invite key in their `join` op
(`inviteSig`), so the token never enters the log, reading the log admits
nobody, and a join signature is worth nothing to another DID.

Token: `hsi1.<space id>.<invite op id>.<seed>`: two op ids (64 lowercase hex)
and the seed as base64url without padding (43 characters). docs/spaces.md,
"Joining", has an example.
"""

from __future__ import annotations

import base64
import re
import secrets
from dataclasses import dataclass

from hearth.jwt import Signer
from hearth.spaces.errors import OpError
from hearth.spaces.ops import Invite, Join, OpId
from hearth.spaces.signing import sign_invite
from hearth.types import Did

_TOKEN_RE = re.compile(r"hsi1\.([0-9a-f]{64})\.([0-9a-f]{64})\.([A-Za-z0-9_-]{43})")
PREFIX = "hsi1"


@dataclass(frozen=True, slots=True)
class InviteToken:
    space: OpId
    invite: OpId
    seed: bytes  # 32 bytes: the invite key's Ed25519 seed

    def encode(self) -> str:
        seed = base64.urlsafe_b64encode(self.seed).rstrip(b"=").decode()
        return f"{PREFIX}.{self.space}.{self.invite}.{seed}"

    @property
    def signer(self) -> Signer:
        return Signer.from_ed25519_seed(self.seed)

    def join(self, joiner: Did, stamp: str | None = None) -> Join:
        """The body of `joiner`'s join op; its parents must include `self.invite`."""
        return Join(self.invite, sign_invite(self.invite, joiner, self.signer), stamp)


def new_invite(
    expires: int | None = None, max_uses: int | None = None, seed: bytes | None = None
) -> tuple[Invite, bytes]:
    """A fresh invite: the `invite` op body to sign and add, and the seed to keep for
    the token (`InviteToken(space, the op's id, seed)`) once the op has its id."""
    seed = secrets.token_bytes(32) if seed is None else seed
    if len(seed) != 32:
        raise ValueError("an invite seed is 32 bytes")
    key = Signer.from_ed25519_seed(seed).public_key.multibase
    return Invite(key, expires, max_uses), seed


def parse_invite_token(text: str) -> InviteToken:
    """The token in `text` (surrounding whitespace ignored); OpError('bad-invite-token')."""
    m = _TOKEN_RE.fullmatch(text.strip()) if isinstance(text, str) else None
    if m is None:
        raise OpError("bad-invite-token", "not an invite token (hsi1.<space>.<invite>.<seed>)")
    seed = base64.urlsafe_b64decode(m[3] + "=")
    token = InviteToken(OpId(m[1]), OpId(m[2]), seed)
    if token.encode() != text.strip():  # one seed, one spelling (no stray low bits)
        raise OpError("bad-invite-token", "invite token seed is not canonical base64url")
    return token

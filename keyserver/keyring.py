"""The keyserver's rules, without HTTP: who gets which keys, and when keys are made.

- Anybody may read a DID's public keys. A did:plc or did:web DID without keys
  gets a fresh pair on first lookup if it resolves to a DID document (so others
  can encrypt to someone who has not joined yet); that creation is rate-limited
  per client address.
- A did:key DID is self-certifying: its public keys are its own Ed25519 key and
  that key's X25519 form, computed here and never stored, unless its owner
  registered others. The server never holds a private key for a did:key.
- Only the DID's owner (the caller of a verified service-auth JWT) gets private
  keys, rotates, or registers its own public keys. Registering erases every
  private key the server held for that DID.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from hearth.ratelimit import RateLimiter
from hearth.types import Did
from keyserver.keypair import KeyPair, PublicPair, did_key_pair
from keyserver.sealing import Sealer, SealError
from keyserver.storage import Generation, KeyRecord, KeyStore, NewKeys, TooManyGenerations

log = logging.getLogger("hearth.keyserver")

CREATABLE_METHODS = ("did:plc:", "did:web:")


class DidDirectory(Protocol):
    async def has_document(self, did: Did) -> bool:
        """True if `did` resolves to a DID document, False if it does not exist.
        Raise DirectoryUnavailable when that cannot be told right now."""
        ...


class KeyringError(Exception):
    """Base of the refusals the HTTP layer turns into atproto error bodies."""


class NoKeys(KeyringError):
    """The DID has no keys and none will be made for it."""


class OwnerHoldsKey(KeyringError):
    """The server holds no private key for this DID: its owner does."""


class RateLimited(KeyringError):
    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class DirectoryUnavailable(KeyringError):
    """The DID could not be resolved right now (upstream failure)."""


class Unsupported(KeyringError):
    """The operation makes no sense for this DID."""


class LimitExceeded(KeyringError):
    """The DID has as many key generations as the server keeps."""


class Corrupt(KeyringError):
    """Stored keys do not open or do not match: tampering or a wrong master key."""


@dataclass(frozen=True, slots=True)
class PublicGeneration:
    keys: PublicPair
    valid_until: int | None  # unix ms; None for the current keys


@dataclass(frozen=True, slots=True)
class PublicView:
    did: Did
    current: PublicPair
    previous: tuple[PublicGeneration, ...]  # newest first


@dataclass(frozen=True, slots=True)
class PrivateGeneration:
    public: PublicPair
    private: KeyPair | None  # None where the owner holds (or took over) the private half
    valid_until: int | None


@dataclass(frozen=True, slots=True)
class PrivateView:
    did: Did
    current: KeyPair
    previous: tuple[PrivateGeneration, ...]


def _pair(gen: Generation) -> PublicPair:
    return PublicPair.from_raw(gen.signing_key, gen.encryption_key)


def public_view(record: KeyRecord) -> PublicView:
    return PublicView(
        record.did,
        _pair(record.current),
        tuple(PublicGeneration(_pair(g), g.valid_until) for g in record.previous),
    )


class Keyring:
    def __init__(
        self,
        store: KeyStore,
        sealer: Sealer,
        directory: DidDirectory,
        *,
        create_limiter: RateLimiter,
        owner_limiter: RateLimiter,
        max_generations: int,
        clock: Callable[[], float] = time.time,
        on_created: Callable[[str], None] = lambda _how: None,
        on_changed: Callable[[Did], None] = lambda _did: None,
    ) -> None:
        self._store = store
        self._sealer = sealer
        self._directory = directory
        self._create_limiter = create_limiter
        self._owner_limiter = owner_limiter
        self._max_generations = max_generations
        self._clock = clock
        self._on_created = on_created
        self._on_changed = on_changed
        # One creation in flight per DID in this process; storage makes it atomic
        # across processes too.
        self._creating: dict[Did, asyncio.Task[KeyRecord]] = {}

    async def ping(self) -> None:
        """Raise if storage cannot answer."""
        await self._store.ping()

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def public(self, did: Did, client: str) -> PublicView:
        """The DID's public keys, creating them for a resolvable atproto DID."""
        record = await self._store.get(did)
        if record is not None:
            return public_view(record)
        if did.startswith("did:key:"):
            derived = did_key_pair(did)
            if derived is None:
                raise NoKeys("this did:key is not an Ed25519 key and registered no keys")
            return PublicView(did, derived, ())
        if not did.startswith(CREATABLE_METHODS):
            raise NoKeys("keys are only made for did:plc and did:web identities")
        task = self._creating.get(did)
        if task is None:
            wait = self._create_limiter.take(client, self._clock())
            if wait > 0:
                raise RateLimited("too many new identities from this address", wait)
            task = self._start_creation(did, resolve=True)
        return public_view(await asyncio.shield(task))

    async def private(self, owner: Did) -> PrivateView:
        """The owner's keys with their private halves, creating them if absent.

        The caller must have verified that the request comes from `owner`.
        """
        record = await self._store.get(owner)
        if record is None:
            if owner.startswith("did:key:"):
                raise OwnerHoldsKey("a did:key identity holds its own private key")
            if not owner.startswith(CREATABLE_METHODS):
                raise NoKeys("keys are only made for did:plc and did:web identities")
            task = self._creating.get(owner) or self._start_creation(owner, resolve=False)
            record = await asyncio.shield(task)
        return self._open(record)

    async def rotate(self, owner: Did) -> PrivateView:
        """New server-held keys for the owner; the old ones become `previous`."""
        if owner.startswith("did:key:"):
            raise Unsupported(
                "a did:key identity holds its own keys; publish others with key.register"
            )
        self._owner_limit(owner)
        pair = KeyPair.generate()
        record = await self._replace(owner, self._new_keys(owner, pair), erase_private=False)
        self._on_created("rotate")
        return self._open(record)

    async def register(self, owner: Did, keys: PublicPair) -> PublicView:
        """Publish the owner's own public keys; erase every private key held for it."""
        current = await self._store.get(owner)
        if (
            current is not None
            and current.current.sealed_private is None
            and _pair(current.current) == keys
            and all(g.sealed_private is None for g in current.previous)
        ):
            return public_view(current)  # the same registration again changes nothing
        self._owner_limit(owner)
        new = NewKeys(keys.signing.raw, keys.encryption.raw, None)
        record = await self._replace(owner, new, erase_private=True)
        self._on_created("register")
        return public_view(record)

    def _owner_limit(self, owner: Did) -> None:
        wait = self._owner_limiter.take(owner, self._clock())
        if wait > 0:
            raise RateLimited("too many key changes for this DID", wait)

    async def _replace(self, owner: Did, keys: NewKeys, *, erase_private: bool) -> KeyRecord:
        # Invalidate before and after: lookups racing the write never cache the old keys.
        self._on_changed(owner)
        try:
            return await self._store.replace(
                owner,
                keys,
                self._now_ms(),
                erase_private=erase_private,
                max_generations=self._max_generations,
            )
        except TooManyGenerations as e:
            raise LimitExceeded(
                f"this DID already has {self._max_generations} key generations"
            ) from e
        finally:
            self._on_changed(owner)

    def _new_keys(self, did: Did, pair: KeyPair) -> NewKeys:
        sealed = self._sealer.seal(did, pair.private_bytes())
        return NewKeys(pair.public.signing.raw, pair.public.encryption.raw, sealed)

    def _start_creation(self, did: Did, *, resolve: bool) -> asyncio.Task[KeyRecord]:
        task = asyncio.create_task(self._create(did, resolve=resolve))
        self._creating[did] = task
        task.add_done_callback(lambda t: self._creation_done(did, t))
        return task

    def _creation_done(self, did: Did, task: asyncio.Task[KeyRecord]) -> None:
        self._creating.pop(did, None)
        if not task.cancelled():
            task.exception()  # retrieved here too, in case every waiter went away

    async def _create(self, did: Did, *, resolve: bool) -> KeyRecord:
        if resolve and not await self._directory.has_document(did):
            raise NoKeys("DID does not resolve to a DID document")
        pair = KeyPair.generate()
        record = await self._store.create(did, self._new_keys(did, pair), self._now_ms())
        if record.current.signing_key == pair.public.signing.raw:
            self._on_created("lookup" if resolve else "owner")
        return record

    def _open(self, record: KeyRecord) -> PrivateView:
        if record.current.sealed_private is None:
            raise OwnerHoldsKey(
                "the owner registered its own keys; the server holds no private key for this DID"
            )
        current = self._open_generation(record.did, record.current)
        assert current is not None
        previous = tuple(
            PrivateGeneration(_pair(g), self._open_generation(record.did, g), g.valid_until)
            for g in record.previous
        )
        return PrivateView(record.did, current, previous)

    def _open_generation(self, did: Did, gen: Generation) -> KeyPair | None:
        if gen.sealed_private is None:
            return None
        try:
            pair = KeyPair.from_private_bytes(self._sealer.open(did, gen.sealed_private))
        except SealError as e:
            log.error("sealed keys of generation %d of a DID do not open", gen.number)
            raise Corrupt("stored keys do not open") from e
        if pair.public != _pair(gen):
            log.error("sealed keys of generation %d do not match their public keys", gen.number)
            raise Corrupt("stored keys do not match")
        return pair

"""Where the keyserver keeps keys: one small interface, one contract suite.

Every implementation passes `keyserver.storage.contract.KeyStoreContract`.
The embedded default is `keyserver.storage.sqlite.SqliteKeyStore`.

A DID's keys are a list of generations. The newest is current (`valid_until`
is None); every older one is `previous`, with the time it stopped being
current. A generation's `sealed_private` is None when the DID's owner
registered its own public keys (the server never had the private half) or
after the owner took its keys over with `key.register`.
Storage never sees a private key in the clear: it stores what `Sealer` made.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from hearth.storage import StorageHealth
from hearth.types import Did


@dataclass(frozen=True, slots=True)
class Generation:
    number: int  # 0 for the first keys of a DID, then +1 per rotation or registration
    signing_key: bytes  # raw Ed25519 public key, 32 bytes
    encryption_key: bytes  # raw X25519 public key, 32 bytes
    sealed_private: bytes | None
    created_at: int  # unix milliseconds
    valid_until: int | None  # unix milliseconds; None for the current generation

    def __repr__(self) -> str:
        held = "sealed" if self.sealed_private is not None else "owner-held"
        return f"Generation({self.number}, {held}, valid_until={self.valid_until})"


@dataclass(frozen=True, slots=True)
class NewKeys:
    """What a caller asks storage to make current."""

    signing_key: bytes
    encryption_key: bytes
    sealed_private: bytes | None

    def __repr__(self) -> str:
        return "NewKeys(<public keys>, sealed)" if self.sealed_private else "NewKeys(<public>)"


@dataclass(frozen=True, slots=True)
class KeyRecord:
    did: Did
    current: Generation
    previous: tuple[Generation, ...]  # newest first


class StorageError(Exception):
    """Base class of the errors storage raises on purpose."""


class TooManyGenerations(StorageError):
    """A replace would exceed the caller's limit of generations per DID."""


class MasterKeyMismatch(StorageError):
    """The store was sealed under a different master key."""


class KeyStore(Protocol):
    """Async interface; implementations do their blocking work off the event loop."""

    async def bind_master_key(self, fingerprint: str) -> None:
        """Remember the master key's fingerprint on first use; afterwards raise
        MasterKeyMismatch when called with another one. Call once before anything else."""
        ...

    async def get(self, did: Did) -> KeyRecord | None:
        """The DID's keys, or None if it has none."""
        ...

    async def create(self, did: Did, keys: NewKeys, now: int) -> KeyRecord:
        """Make `keys` generation 0 of `did` unless it already has keys.

        Atomic: of any number of concurrent calls for one DID, exactly one
        stores its keys, and every call returns the record actually stored.
        """
        ...

    async def replace(
        self,
        did: Did,
        keys: NewKeys,
        now: int,
        *,
        erase_private: bool,
        max_generations: int,
    ) -> KeyRecord:
        """Make `keys` current; the current generation becomes previous with
        `valid_until = now`. With `erase_private`, every older generation's sealed
        private key is erased in the same transaction. Works on a DID without keys
        (then `keys` is generation 0). Raises TooManyGenerations, changing nothing,
        if the DID would then have more than `max_generations` generations.
        """
        ...

    async def ping(self) -> None:
        """Raise (StorageUnavailable) if the store cannot answer a trivial query.

        While `health` is failing, also check whether the cause has gone.
        """
        ...

    @property
    def health(self) -> StorageHealth:
        """The store's state, for `/xrpc/_health`. Calls that find the store
        unusable raise `hearth.storage.StorageUnavailable`."""
        ...

    async def close(self) -> None:
        """Finish pending writes and release resources; the store is unusable afterwards."""
        ...

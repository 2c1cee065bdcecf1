"""The store interface: what etcd is to Kubernetes, kybern asks of a storage backend.

Keys are strings shaped like kube-apiserver's etcd keys (``/registry/pods/default/web-1``);
values are opaque bytes (the API server stores JSON). Every write gets the next global
revision, which the API server exposes as ``metadata.resourceVersion``. A backend is a
plugin (hook ``kybern_open_store``); the SQL one lives in ``kybern.plugins.sqlstore``.

The interface is synchronous and thread-safe on purpose: SQL drivers are blocking, and the
async API server calls it from a small thread pool; watches hand events to a callback-free
queue so both threads and asyncio code can consume them.
"""

from __future__ import annotations

import enum
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Protocol, runtime_checkable


class StoreError(Exception):
    """Base class of every error a store raises on purpose."""


class KeyExistsError(StoreError):
    """create() of a key that already holds a live value."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key already exists: {key}")
        self.key = key


class KeyNotFoundError(StoreError):
    """update()/delete() of a key that holds no live value."""

    def __init__(self, key: str) -> None:
        super().__init__(f"key not found: {key}")
        self.key = key


class ConflictError(StoreError):
    """The expected revision of a key is no longer its current revision."""

    def __init__(self, key: str, expected: int, actual: int) -> None:
        super().__init__(f"revision conflict on {key}: expected {expected}, found {actual}")
        self.key = key
        self.expected = expected
        self.actual = actual


class CompactedError(StoreError):
    """A read or watch asked for a revision that compaction has already discarded."""

    def __init__(self, requested: int, compacted: int) -> None:
        super().__init__(f"revision {requested} has been compacted (compacted up to {compacted})")
        self.requested = requested
        self.compacted = compacted


class FutureRevisionError(StoreError):
    """A read asked for a revision newer than the store's current one."""


class InvalidContinueError(StoreError):
    """A continue token that this store did not produce, or for another prefix."""


class StoreUnavailableError(StoreError):
    """The database cannot be reached or opened; the message says what to check."""


@dataclass(frozen=True, slots=True)
class KeyValue:
    key: str
    value: bytes
    #: revision of the write that produced this value (resourceVersion)
    mod_revision: int
    #: revision at which the key was (last) created
    create_revision: int


class EventType(enum.Enum):
    PUT = "PUT"  # create or update: ``prev`` is None for a create
    DELETE = "DELETE"


@dataclass(frozen=True, slots=True)
class Event:
    type: EventType
    #: the new value; for DELETE, the key with the last value and the delete's revision
    kv: KeyValue
    #: the value before this write (None for a create)
    prev: KeyValue | None
    revision: int

    @property
    def is_create(self) -> bool:
        return self.type is EventType.PUT and self.prev is None


@dataclass(frozen=True, slots=True)
class ListResult:
    items: list[KeyValue]
    #: the store revision the list is consistent at
    revision: int
    #: opaque token to pass back as ``continue_token`` for the next page, or None at the end
    continue_token: str | None
    #: items left after this page (an estimate is fine), for metadata.remainingItemCount
    remaining: int | None = None


class Watch(Protocol):
    """A stream of events after a revision, in revision order, each exactly once.

    Iterating blocks until the next event; ``get(timeout)`` returns None on timeout.
    ``close()`` ends the stream (iteration stops). If the store closes or the watcher
    falls too far behind, iteration raises :class:`CompactedError` or :class:`StoreError`.
    """

    def get(self, timeout: float | None = None) -> Event | None: ...

    def close(self) -> None: ...

    def __iter__(self) -> Iterator[Event]: ...


@runtime_checkable
class Store(Protocol):
    """What a storage backend offers. All methods are thread-safe."""

    def create(self, key: str, value: bytes) -> int:
        """Store a new key; return its revision. Raises KeyExistsError."""
        ...

    def update(self, key: str, value: bytes, expected_revision: int | None = None) -> int:
        """Replace a key's value if its revision is still ``expected_revision`` (None: any).

        Returns the new revision. Raises KeyNotFoundError, ConflictError.
        """
        ...

    def delete(self, key: str, expected_revision: int | None = None) -> KeyValue:
        """Delete a key; return its last value with ``mod_revision`` = the delete's revision.

        Raises KeyNotFoundError, ConflictError.
        """
        ...

    def get(self, key: str, revision: int | None = None) -> KeyValue | None:
        """The live value of a key now, or at ``revision``. Raises CompactedError."""
        ...

    def list(
        self,
        prefix: str,
        revision: int | None = None,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> ListResult:
        """Live keys under a prefix, sorted by key, consistent at one revision.

        A continue token carries its revision: later pages read at the same revision.
        Raises CompactedError (also for an expired token), InvalidContinueError.
        """
        ...

    def count(self, prefix: str) -> int:
        """Number of live keys under a prefix now."""
        ...

    def watch(self, prefix: str, after_revision: int) -> Watch:
        """Every change under ``prefix`` with a revision greater than ``after_revision``.

        Raises CompactedError if ``after_revision`` is older than the compacted revision.
        """
        ...

    def current_revision(self) -> int:
        """The newest revision written (by any process sharing the database)."""
        ...

    def compacted_revision(self) -> int:
        """Revisions at or below this have no history left."""
        ...

    def compact(self, revision: int) -> int:
        """Drop history at or below ``revision`` (live values are kept); return rows removed."""
        ...

    def close(self) -> None:
        """Stop background work and end every open watch."""
        ...


def prefix_end(prefix: str) -> str:
    """The smallest string greater than every string starting with ``prefix``.

    Used for range scans ``prefix <= key < prefix_end(prefix)``.
    """
    if not prefix:
        return "\U0010ffff"
    return prefix[:-1] + chr(ord(prefix[-1]) + 1)

"""Watches: one poller per store reads the log in revision order and fans events out.

Why one poller rather than a query per watcher: the API server opens a watch per client
(kubectl, every controller's informer), and N watchers polling the database would cost N
queries per interval. The poller reads each new row once, in id order, and appends the event
to the queue of every watcher whose prefix matches, so each watcher sees every change exactly
once and in order. Writes made by this process wake the poller at once; writes by other
processes sharing the database are found on the next poll.

A watcher that starts from a revision the poller has already passed first reads that
history from the database ("catching up"); events the poller finds meanwhile are held back
and released after the history, so the order stays intact.
"""

from __future__ import annotations

import collections
import threading
import time
from collections.abc import Callable, Iterator

from kybern.store import CompactedError, Event, StoreError
from loguru import logger

log = logger.bind(component="sqlstore")


class WatchOverflowError(StoreError):
    """The watcher did not consume its events fast enough; it must watch (or list) again."""


class SqlWatch:
    """One watcher's queue (implements kybern.store.Watch)."""

    def __init__(self, hub: WatchHub, prefix: str, after_revision: int, max_queue: int) -> None:
        self._hub = hub
        self.prefix = prefix
        #: the newest revision queued (or skipped by the prefix filter) for this watcher
        self.position = after_revision
        self._max_queue = max_queue
        self._queue: collections.deque[Event] = collections.deque()
        self._cond = threading.Condition()
        self._error: StoreError | None = None
        self._closed = False
        #: while catching up on history, live events wait here
        self._held: list[Event] | None = None

    # -- consumer side -------------------------------------------------------------------

    def get(self, timeout: float | None = None) -> Event | None:
        """The next event; None on timeout or once closed. Raises the error that ended the watch."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while True:
                if self._queue:
                    return self._queue.popleft()
                if self._error is not None:
                    raise self._error
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    return None
                self._cond.wait(remaining)

    def __iter__(self) -> Iterator[Event]:
        while True:
            event = self.get()
            if event is None:
                return
            yield event

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._queue.clear()
            self._cond.notify_all()
        self._hub.remove(self)

    def __enter__(self) -> SqlWatch:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # -- producer side (called by the hub with its lock held) ------------------------------

    def offer(self, event: Event) -> None:
        """Queue an event that matches this watcher's prefix and comes after its position."""
        if event.revision <= self.position:
            return
        self.position = event.revision
        if self._held is not None:
            self._held.append(event)
            return
        self._push([event])

    def _push(self, events: list[Event]) -> None:
        with self._cond:
            if self._closed or self._error is not None:
                return
            if len(self._queue) + len(events) > self._max_queue:
                self._queue.clear()
                self._error = WatchOverflowError(
                    f"watch on {self.prefix!r} fell more than {self._max_queue} events behind; "
                    "list and watch again"
                )
            else:
                self._queue.extend(events)
            self._cond.notify_all()

    def fail(self, error: StoreError) -> None:
        """End the watch with an error (store closed, history compacted away)."""
        with self._cond:
            if self._error is None and not self._closed:
                self._error = error
            self._cond.notify_all()


class WatchHub:
    """The poller thread and the set of open watchers of one store."""

    def __init__(
        self,
        read_after: Callable[[int, int], tuple[list[Event], int]],
        read_range: Callable[[str, int, int], list[Event]],
        start_revision: int,
        poll_interval: float,
        max_queue: int,
    ) -> None:
        self._read_after = read_after
        self._read_range = read_range
        self._poll_interval = poll_interval
        self._max_queue = max_queue
        self._lock = threading.Lock()
        self._caught_up = threading.Condition(self._lock)
        self._watchers: set[SqlWatch] = set()
        #: the newest revision the poller has read and delivered
        self.position = start_revision
        self._catching_up: dict[SqlWatch, int] = {}
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlstore-watch-poller", daemon=True)
        self._thread.start()

    def notify(self) -> None:
        """A write committed in this process: poll now rather than at the next interval."""
        self._wake.set()

    def oldest_needed(self) -> int:
        """The lowest revision whose successors some reader here still has to read from the
        database (compaction must not remove history past it)."""
        with self._lock:
            return min([self.position, *self._catching_up.values()])

    def wait_until(self, revision: int, timeout: float) -> bool:
        """Block until the poller has delivered ``revision`` (used before compaction)."""
        deadline = time.monotonic() + timeout
        with self._caught_up:
            while self.position < revision:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or self._stop.is_set():
                    return False
                self._wake.set()
                self._caught_up.wait(min(remaining, 0.05))
            return True

    def add(self, prefix: str, after_revision: int) -> SqlWatch:
        watch = SqlWatch(self, prefix, after_revision, self._max_queue)
        with self._lock:
            if self._stop.is_set():
                raise StoreError("store is closed")
            upto = self.position
            if after_revision < upto:
                watch._held = []
                self._catching_up[watch] = after_revision
            self._watchers.add(watch)
        if watch._held is None:
            return watch
        try:
            history = self._read_range(prefix, after_revision, upto)
        except BaseException:
            self.remove(watch)
            raise
        with self._lock:
            self._catching_up.pop(watch, None)
            held, watch._held = watch._held, None
            events = [e for e in history if e.revision > after_revision] + (held or [])
            watch.position = max(watch.position, upto)
            if events:
                watch._push(events)
        return watch

    def remove(self, watch: SqlWatch) -> None:
        with self._lock:
            self._watchers.discard(watch)
            self._catching_up.pop(watch, None)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=10)
        with self._lock:
            watchers = list(self._watchers)
            self._watchers.clear()
            self._caught_up.notify_all()
        for watch in watchers:
            watch.fail(StoreError("store closed"))

    # -- the poller ------------------------------------------------------------------------

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            self._wake.wait(self._poll_interval)
            self._wake.clear()
            if self._stop.is_set():
                return
            try:
                while self._poll_once():
                    pass
                failures = 0
            except Exception as exc:
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    log.warning("watch poller cannot read the database ({} failures): {}", failures, exc)
                self._stop.wait(min(5.0, self._poll_interval * failures))

    def _poll_once(self) -> bool:
        """Read and deliver one batch; True if there may be more right away."""
        events, compacted = self._read_after(self.position, 1000)
        with self._lock:
            if compacted > self.position:
                # another process compacted past what we had read: the rows in between may be
                # gone, so every watcher that relied on them must start over
                log.warning(
                    "history compacted to {} before the watch poller read past {}", compacted, self.position
                )
                error = CompactedError(self.position + 1, compacted)
                for watch in list(self._watchers):
                    watch.fail(error)
                self._watchers.clear()
                self.position = compacted
            for event in events:
                key = event.kv.key
                for watch in self._watchers:
                    if key.startswith(watch.prefix):
                        watch.offer(event)
                self.position = event.revision
            self._caught_up.notify_all()
        return len(events) >= 1000

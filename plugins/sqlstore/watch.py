"""Watches: one poller per store reads the log in revision order and fans events out.

Why one poller rather than a query per watcher: the API server opens a watch per client
(kubectl, every controller's informer), and N watchers polling the database would cost N
queries per interval. The poller reads each new row once, in id order, and appends the event
to the queue of every watcher whose prefix matches, so each watcher sees every change exactly
once and in order. Writes by other processes sharing the database are found on the next
poll (``poll_interval``).

Writes made by this process take a shortcut: the writer hands its event to the hub right
after commit (:meth:`WatchHub.publish`), and when it is the very next revision the hub
delivers it at once, without a database read. Had another process written in between (or
on PostgreSQL a rolled-back transaction used up a sequence number), the event waits in
``pending`` and the poller, woken immediately, reads the log to fill the gap, so order and
exactly-once hold either way. That keeps in-process watch latency well under a millisecond
and spares the poller a query per write.

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
        self._ready: Callable[[], None] | None = None

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

    def on_ready(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` whenever events become available to :meth:`get` (the queue goes
        from empty to not empty) or the watch ends, instead of having a thread block in
        :meth:`get`. It runs on the writer's thread with the watch's lock held, so it must only
        schedule work (the API server's watch cache wakes its event loop, which then takes
        the events itself with ``get(timeout=0)``). Called at once if events are waiting."""
        with self._cond:
            self._ready = callback
            pending = bool(self._queue) or self._error is not None or self._closed
        if pending:
            callback()

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
    def finished(self) -> bool:
        """Closed, or ended by an error: the hub stops feeding it."""
        return self._closed or self._error is not None

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
                self._hub.prune = True
                self._error = WatchOverflowError(
                    f"watch on {self.prefix!r} fell more than {self._max_queue} events behind; "
                    "list and watch again"
                )
            else:
                was_empty = not self._queue
                self._queue.extend(events)
                if not was_empty:
                    return  # the consumer has been told already and has not taken them all
            self._cond.notify_all()
            if self._ready is not None:
                self._ready()

    def fail(self, error: StoreError) -> None:
        """End the watch with an error (store closed, history compacted away)."""
        with self._cond:
            if self._error is None and not self._closed:
                self._error = error
            self._cond.notify_all()
            if self._ready is not None:
                self._ready()


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
        self._poll_interval = max(poll_interval, 0.005)  # 0 would spin
        self._max_queue = max(max_queue, 1)
        self._lock = threading.Lock()
        self._caught_up = threading.Condition(self._lock)
        self._watchers: set[SqlWatch] = set()
        #: the newest revision the poller has read and delivered
        self.position = start_revision
        self._catching_up: dict[SqlWatch, int] = {}
        #: this process' own events that arrived before an earlier revision was delivered
        self._pending: dict[int, Event] = {}
        #: set when a watcher ended on an error, so the fan-out loop can drop it
        self.prune = False
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlstore-watch-poller", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        """Poll now: another process wrote (PostgreSQL NOTIFY)."""
        self._wake.set()

    def publish(self, event: Event) -> None:
        """The event of a write this process just committed (the fast path, see module doc)."""
        with self._lock:
            if event.revision <= self.position:
                return  # the poller was quicker
            if len(self._pending) < self._max_queue:
                self._pending[event.revision] = event
            self._drain_pending()
            gap = bool(self._pending)
        if gap:
            self._wake.set()

    def _deliver(self, event: Event) -> None:
        """Fan one event out to matching watchers (hub lock held), in revision order."""
        if event.revision <= self.position:
            return
        key = event.kv.key
        for watch in self._watchers:
            if key.startswith(watch.prefix):
                watch.offer(event)
        self.position = event.revision

    def _drain_pending(self) -> None:
        """Deliver pending own events that are next in line; drop those already delivered."""
        while self._pending:
            event = self._pending.pop(self.position + 1, None)
            if event is None:
                break
            self._deliver(event)
        if self._pending and min(self._pending) <= self.position:
            self._pending = {r: e for r, e in self._pending.items() if r > self.position}
        if self.prune:
            self.prune = False
            self._watchers -= {w for w in self._watchers if w.finished}
        self._caught_up.notify_all()

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
                self._deliver(event)
            self._drain_pending()
        return len(events) >= 1000

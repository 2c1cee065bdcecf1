"""PostgreSQL LISTEN/NOTIFY: wake the watch poller when *another* process writes.

Without it, a write by another kybern server sharing the database reaches this process'
watchers only at the next poll (``poll_interval``). Every write transaction sends
``pg_notify(CHANNEL, <store id>)`` (in the same statement that takes the writer lock, so it
costs no round trip); PostgreSQL delivers it at commit. This thread ignores notifications
carrying its own store's id (those events already took the in-process fast path) and wakes
the poller for the rest. Notifications are only a hint: the poller still reads the log and
still polls on its interval, so a lost notification or a dropped listener connection delays
events but never loses them.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

import psycopg
from loguru import logger
from sqlalchemy.engine import URL

log = logger.bind(component="sqlstore")

CHANNEL = "kybern_kv"


class PgListener:
    """A daemon thread holding one autocommit connection that LISTENs on :data:`CHANNEL`."""

    def __init__(self, url: URL, own_id: str, wake: Callable[[], None], connect_timeout: int) -> None:
        self._conninfo = url.set(drivername="postgresql").render_as_string(hide_password=False)
        self._own_id = own_id
        self._wake = wake
        self._connect_timeout = connect_timeout
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="sqlstore-pg-listener", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Ask the thread to stop; it leaves within a second and closes its connection.

        Not joined: nothing depends on the listener, and waiting would slow every close.
        """
        self._stop.set()

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self._conninfo, autocommit=True, connect_timeout=self._connect_timeout
                ) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    failures = 0
                    self._wake()  # catch up on whatever happened while we were not listening
                    while not self._stop.is_set():
                        for note in conn.notifies(timeout=1.0):
                            if note.payload != self._own_id:
                                self._wake()
            except Exception as exc:
                if self._stop.is_set():
                    return
                failures += 1
                if failures in (1, 10) or failures % 100 == 0:
                    reason = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                    log.warning("LISTEN connection failed ({} times), polling only: {}", failures, reason)
                self._stop.wait(min(30.0, 0.5 * failures))

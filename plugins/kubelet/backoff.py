"""Per-key exponential back-off, shaped like client-go's ``flowcontrol.Backoff``.

The kubelet keys it by container (CrashLoopBackOff) and by image (ImagePullBackOff): the first
failure is retried at once, later ones wait 10 s, 20 s, ... up to 5 min, and an entry left alone
for twice the maximum (10 min of a container running fine) starts over.
"""

from __future__ import annotations

import time
from dataclasses import dataclass


@dataclass
class _Entry:
    delay: float
    last_update: float


class Backoff:
    def __init__(self, initial: float = 10.0, maximum: float = 300.0) -> None:
        self.initial = initial
        self.maximum = maximum
        self._entries: dict[object, _Entry] = {}

    def _fresh(self, key: object, event_time: float) -> _Entry | None:
        """The entry, unless the failure at ``event_time`` came long after the last one."""
        entry = self._entries.get(key)
        if entry is not None and event_time - entry.last_update > 2 * self.maximum:
            del self._entries[key]
            return None
        return entry

    def next(self, key: object, event_time: float | None = None) -> float:
        """Record a failure at ``event_time`` (default now); the delay before the next try."""
        event_time = event_time or time.time()
        entry = self._fresh(key, event_time)
        if entry is None:
            entry = self._entries[key] = _Entry(self.initial, event_time)
        else:
            entry.delay = min(entry.delay * 2, self.maximum)
            entry.last_update = event_time
        return entry.delay

    def remaining(self, key: object, event_time: float) -> float:
        """Seconds still to wait after a failure at ``event_time``; 0 when a retry may go now."""
        entry = self._fresh(key, event_time)
        if entry is None:
            return 0.0
        return max(0.0, entry.delay - (time.time() - event_time))

    def delay(self, key: object) -> float:
        entry = self._entries.get(key)
        return entry.delay if entry else 0.0

    def forget(self, key: object) -> None:
        self._entries.pop(key, None)

    def forget_prefix(self, prefix: str) -> None:
        """Drop every entry of one pod (keys are tuples starting with its uid)."""
        for key in [k for k in self._entries if isinstance(k, tuple) and k and k[0] == prefix]:
            del self._entries[key]

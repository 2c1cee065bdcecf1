"""Noticing OOM kills the kernel logged, for when Podman does not.

On this host's cgroup v1 hierarchy conmon never registers its OOM eventfd, so Podman
reports ``OOMKilled: false`` for a container the memory cgroup killed. The kernel still logs
every memcg OOM kill to /dev/kmsg with the victim's cgroup (``task_memcg=/.../libpod-<id>``),
which is where cAdvisor's OOM watcher looks too. Reading it needs root; without it the
Podman answer stands.
"""

from __future__ import annotations

import os
import re
import threading

from loguru import logger

log = logger.bind(component="podman")
_VICTIM = re.compile(r"oom-kill:.*?task_memcg=[^,]*libpod-([0-9a-f]{64})")


class KernelOomLog:
    """Container ids the kernel OOM-killed a process of, read incrementally from /dev/kmsg."""

    def __init__(self, path: str = "/dev/kmsg") -> None:
        self.path = path
        self._seen_seq = -1
        self._victims: set[str] = set()
        self._lock = threading.Lock()

    def victims(self) -> set[str]:
        with self._lock:
            self._scan()
            return set(self._victims)

    def _scan(self) -> None:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
        except OSError as exc:
            log.debug("cannot read {}: {}", self.path, exc)
            return
        try:
            while True:
                try:
                    record = os.read(fd, 8192)
                except BlockingIOError:
                    return
                except BrokenPipeError:  # records overwritten while reading: go on
                    continue
                if not record:
                    return
                head, _, message = record.decode(errors="replace").partition(";")
                fields = head.split(",")
                seq = int(fields[1]) if len(fields) > 1 and fields[1].isdigit() else -1
                if seq <= self._seen_seq:
                    continue
                self._seen_seq = seq
                match = _VICTIM.search(message)
                if match:
                    self._victims.add(match.group(1))
        finally:
            os.close(fd)

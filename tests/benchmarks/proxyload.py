"""The benchmark's HTTP load: CONCURRENCY clients, a new HTTP/1.0 connection per request (so each
one goes through the proxy's choice of endpoint). Imported by bench_proxy.py, and run as a
script inside a network namespace to load from a "pod":

    python proxyload.py IP:PORT[,IP:PORT...] SECONDS      (prints requests/s)
"""

from __future__ import annotations

import asyncio
import random
import sys
import time

CONCURRENCY = 16
Target = tuple[str, int]


async def one_request(target: Target, local: str | None = None) -> bool:
    try:
        reader, writer = await asyncio.open_connection(*target, local_addr=(local, 0) if local else None)
    except OSError:
        return False
    try:
        writer.write(b"GET / HTTP/1.0\r\nHost: bench\r\n\r\n")
        await writer.drain()
        data = await reader.read()
        return data.startswith(b"HTTP/1.") and b" 200 " in data[:20]
    except OSError:
        return False
    finally:
        writer.close()


async def rate(targets: list[Target], seconds: float, local: str | None = None) -> float:
    """Completed requests per second with CONCURRENCY clients, a new connection each, to a
    target chosen at random per connection."""
    done = 0
    errors = 0
    deadline = time.monotonic() + seconds

    async def worker() -> None:
        nonlocal done, errors
        while time.monotonic() < deadline:
            if await one_request(random.choice(targets), local):
                done += 1
            else:
                errors += 1

    start = time.monotonic()
    await asyncio.gather(*(worker() for _ in range(CONCURRENCY)))
    if errors:
        print(f"  ({errors} failed requests to {targets})", file=sys.stderr)
    return done / (time.monotonic() - start)


def main() -> None:
    targets = [(t.rpartition(":")[0], int(t.rpartition(":")[2])) for t in sys.argv[1].split(",")]
    print(f"{asyncio.run(rate(targets, float(sys.argv[2]))):.1f}")


if __name__ == "__main__":
    main()

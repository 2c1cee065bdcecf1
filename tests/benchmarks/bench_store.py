"""Store benchmark: write throughput and watch latency on SQLite and PostgreSQL.

Not a test (prints figures, asserts nothing timed). Run it alone:

    .venv/bin/python tests/benchmarks/bench_store.py [--pg URL] [--writes N]

``--pg`` (default: env KYBERN_TEST_PG_URL) must name a role that may CREATE DATABASE: the
benchmark runs in a throw-away database. For 1 and 16 concurrent writer threads it creates
N keys (~600-byte JSON values, like small objects) and reports creates per second and the
delay from a create being acknowledged to its watch event arriving (p50/p99). The writer
and the watcher share one store, as in the API server, so events take the in-process fast
path; a second table shows the delay for creates made by another process (found by the
poller: PostgreSQL's NOTIFY wakes it at once, SQLite waits for the next poll).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psycopg
from kybern.plugins.sqlstore import SqlStore
from loguru import logger
from sqlalchemy.engine import make_url

VALUE = (
    b'{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"x","namespace":"default"},"data":{"k":"'
    + b"v" * 500
    + b'"}}'
)


@contextmanager
def sqlite_url() -> Iterator[str]:
    with tempfile.TemporaryDirectory(prefix="kybern-bench-") as tmp:
        yield f"sqlite:///{Path(tmp) / 'state.db'}"


@contextmanager
def pg_url(admin: str) -> Iterator[str]:
    base = make_url(admin).set(drivername="postgresql")
    name = f"kybern_bench_{uuid.uuid4().hex[:8]}"
    libpq = base.render_as_string(hide_password=False)
    with psycopg.connect(libpq, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(libpq, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run(url: str, writers: int, total: int) -> tuple[float, float, float]:
    """(creates/s, p50 ms, p99 ms) for ``writers`` threads creating ``total`` keys."""
    store = SqlStore(url, compact_interval=0, pool_size=max(4, writers // 2))
    prefix = f"/registry/configmaps/bench-{writers}/"
    acked: dict[int, float] = {}
    received: dict[int, float] = {}
    watch = store.watch(prefix, store.current_revision())

    def consume() -> None:
        while len(received) < total:
            event = watch.get(30)
            if event is None:
                return
            received[event.revision] = time.perf_counter()

    consumer = threading.Thread(target=consume)
    consumer.start()
    per_writer = total // writers

    def write(w: int) -> None:
        for i in range(per_writer):
            rev = store.create(f"{prefix}w{w}-{i}", VALUE)
            acked[rev] = time.perf_counter()

    threads = [threading.Thread(target=write, args=(w,)) for w in range(writers)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    consumer.join(timeout=60)
    watch.close()
    store.close()
    latencies = [max(0.0, received[r] - t) * 1000 for r, t in acked.items() if r in received]
    if len(latencies) != len(acked):
        print(f"  warning: {len(acked) - len(latencies)} events not received", file=sys.stderr)
    return per_writer * writers / elapsed, statistics.median(latencies), percentile(latencies, 0.99)


CHILD = """
import sys, time
from loguru import logger
logger.remove()
from kybern.plugins.sqlstore import SqlStore
store = SqlStore(sys.argv[1], compact_interval=0, pool_size=1)
print("ready", flush=True)
sys.stdin.readline()
for i in range(int(sys.argv[3])):
    rev = store.create(f"{sys.argv[2]}{i}", b"x" * 600)
    print(rev, time.time(), flush=True)
    time.sleep(0.005)
store.close()
"""


def run_other_process(url: str, total: int) -> tuple[float, float]:
    """(p50 ms, p99 ms) from a create acknowledged in another process to the event here."""
    store = SqlStore(url, compact_interval=0)
    prefix = "/registry/configmaps/bench-remote/"
    watch = store.watch(prefix, store.current_revision())
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, url, prefix, str(total)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdin is not None and child.stdout is not None
    assert child.stdout.readline().strip() == "ready"
    child.stdin.write("go\n")
    child.stdin.close()
    received: dict[int, float] = {}
    while len(received) < total:
        event = watch.get(30)
        if event is None:
            break
        received[event.revision] = time.time()
    acked = {int(r): float(t) for r, t in (line.split() for line in child.stdout)}
    child.wait(timeout=60)
    watch.close()
    store.close()
    latencies = [max(0.0, received[r] - t) * 1000 for r, t in acked.items() if r in received]
    return statistics.median(latencies), percentile(latencies, 0.99)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pg", default=os.environ.get("KYBERN_TEST_PG_URL"), help="PostgreSQL admin URL")
    parser.add_argument("--writes", type=int, default=3200, help="creates per run")
    args = parser.parse_args()
    logger.remove()
    backends = [("sqlite", sqlite_url())]
    if args.pg:
        backends.append(("postgresql", pg_url(args.pg)))
    else:
        print("PostgreSQL skipped (pass --pg URL or set KYBERN_TEST_PG_URL)")
    rows = []
    remote: list[tuple[str, float, float]] = []
    for name, ctx in backends:
        with ctx as url:
            for writers in (1, 16):
                rate, p50, p99 = run(url, writers, args.writes)
                rows.append((name, writers, rate, p50, p99))
                print(f"  {name} x{writers}: {rate:.0f} creates/s", file=sys.stderr)
            p50, p99 = run_other_process(url, 300)
            remote.append((name, p50, p99))
    print(f"\n{'backend':<11} {'writers':>7} {'creates/s':>10} {'watch p50 ms':>13} {'watch p99 ms':>13}")
    for name, writers, rate, p50, p99 in rows:
        print(f"{name:<11} {writers:>7} {rate:>10.0f} {p50:>13.2f} {p99:>13.2f}")
    print(f"\n({args.writes} creates per run, {os.cpu_count()} CPUs, values of {len(VALUE)} bytes)")
    print("\nwatch latency for creates made by another process (1 writer, 200 creates/s):")
    print(f"{'backend':<11} {'p50 ms':>8} {'p99 ms':>8}")
    for name, p50, p99 in remote:
        print(f"{name:<11} {p50:>8.2f} {p99:>8.2f}")


if __name__ == "__main__":
    main()

"""A writer process for the concurrency tests (run as a script, not collected by pytest).

    python writer_proc.py URL PREFIX COUNT

Prints ``ready`` once its store is open and waits for a line on stdin. Then it creates
PREFIX0, PREFIX1, ... (COUNT of them, or forever when COUNT is 0) and, after each
create is acknowledged, prints ``REVISION KEY`` and flushes, so the parent knows exactly
which writes the store has confirmed even if this process is killed mid-write.
"""

from __future__ import annotations

import itertools
import sys

from kybern.plugins.sqlstore import SqlStore


def main() -> None:
    url, prefix, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = SqlStore(url, compact_interval=0, pool_size=1)
    print("ready", flush=True)
    sys.stdin.readline()  # "go": the parent starts every writer at once
    numbers = range(count) if count else itertools.count()
    for i in numbers:
        key = f"{prefix}{i}"
        revision = store.create(key, key.encode())
        sys.stdout.write(f"{revision} {key}\n")
        sys.stdout.flush()
    store.close()


if __name__ == "__main__":
    main()

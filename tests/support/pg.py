"""Throw-away PostgreSQL databases for tests."""

from __future__ import annotations

import time

import psycopg


def drop_database(admin_url: str, name: str, attempts: int = 20) -> None:
    """DROP DATABASE ... WITH (FORCE), retried: FORCE cannot end an autovacuum worker that
    happens to be in the database (it belongs to the superuser), so wait for it to finish."""
    for attempt in range(attempts):
        try:
            with psycopg.connect(admin_url, autocommit=True) as conn:
                conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except (psycopg.errors.InsufficientPrivilege, psycopg.errors.ObjectInUse):
            if attempt == attempts - 1:
                raise
            time.sleep(0.25)

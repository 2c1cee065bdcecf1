"""Alembic environment and migration scripts for the SQL store, shipped in the wheel."""

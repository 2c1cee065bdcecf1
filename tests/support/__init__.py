"""Helpers shared by kybern's tests (the kybern command, test images, ...)."""

from pathlib import Path

#: the repository root (this file is tests/support/__init__.py)
REPO = Path(__file__).resolve().parents[2]

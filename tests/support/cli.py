"""Running the installed ``kybern`` command the way a user does: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

#: the console script of the venv running the tests (.venv/bin/kybern)
KYBERN = Path(sys.executable).with_name("kybern")


@dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str

    @property
    def stderr_lines(self) -> list[str]:
        return [line for line in self.stderr.splitlines() if line.strip()]


def run_kybern(
    *args: str,
    env: dict[str, str] | None = None,
    cwd: Path | str | None = None,
    timeout: float = 120,
    binary: Path | str = KYBERN,
) -> Result:
    """Run ``kybern ARGS`` with ``env`` added to this process's environment."""
    full_env = {**os.environ, "NO_COLOR": "1", **(env or {})}
    out = subprocess.run(
        [str(binary), *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
        stdin=subprocess.DEVNULL,
    )
    return Result(out.returncode, out.stdout, out.stderr)


def assert_one_line_error(result: Result, *fragments: str) -> str:
    """A user error: non-zero exit, no traceback, exactly one stderr line naming ``fragments``."""
    assert result.returncode != 0, f"expected failure, got 0; stdout={result.stdout!r}"
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr_lines
    assert len(lines) == 1, f"expected one line on stderr, got {len(lines)}:\n{result.stderr}"
    for fragment in fragments:
        assert fragment in lines[0], f"{fragment!r} not in {lines[0]!r}"
    return lines[0]


def installed_plugins(binary: Path | str = KYBERN) -> dict[str, dict]:
    """``kybern plugins --json``: the plugins that loaded, by entry point name."""
    result = run_kybern("plugins", "--json", binary=binary)
    assert result.returncode == 0, result.stderr
    return {p["name"]: p for p in json.loads(result.stdout)["plugins"]}


def require_plugins(*names: str) -> None:
    """Skip a test that needs built-in plugins which are not (yet) installed and loading."""
    loaded = installed_plugins()
    missing = [n for n in names if n not in loaded]
    if missing:
        pytest.skip(f"plugin(s) not loaded: {', '.join(missing)}")

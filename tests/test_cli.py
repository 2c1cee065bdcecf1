"""The ``kybern`` command as a user meets it: real subprocesses of the installed script.

Every mistake a user can make ends in exactly one line on stderr and a non-zero exit,
never a traceback.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import kybern
import pytest
from support.cli import assert_one_line_error, require_plugins, run_kybern


def test_version_names_kybern_and_kubernetes_versions() -> None:
    result = run_kybern("version")
    assert result.returncode == 0, result.stderr
    assert (
        result.stdout.strip() == f"kybern {kybern.__version__} (Kubernetes API {kybern.KUBERNETES_VERSION})"
    )


def test_version_option() -> None:
    result = run_kybern("--version")
    assert result.returncode == 0, result.stderr
    assert kybern.__version__ in result.stdout


def test_help_lists_the_commands() -> None:
    result = run_kybern("--help")
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    commands = result.stdout.split("Commands:", 1)[1].split()
    for name in ("server", "agent", "plugins", "version", "kubectl"):
        assert name in commands, result.stdout


def test_server_help_shows_its_options() -> None:
    result = run_kybern("server", "--help")
    assert result.returncode == 0, result.stderr
    for option in (
        "--data-dir",
        "--https-listen-port",
        "--datastore-endpoint",
        "--disable",
        "--disable-agent",
    ):
        assert option in result.stdout


@pytest.mark.parametrize(
    "args",
    [("--no-such-flag",), ("server", "--no-such-flag"), ("server", "--https-listen-port", "notaport")],
)
def test_bad_flag_is_one_line(args: tuple[str, ...]) -> None:
    result = run_kybern(*args)
    assert result.returncode == 2
    assert_one_line_error(result, args[-1])


def test_bad_flag_has_no_traceback() -> None:
    result = run_kybern("server", "--no-such-flag")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "--no-such-flag" in result.stderr


def test_unknown_disable_name(tmp_path: Path) -> None:
    result = run_kybern("server", "--disable", "no-such-thing", "--data-dir", str(tmp_path))
    line = assert_one_line_error(result, "'no-such-thing'", "--disable")
    # the message lists the names that would have worked
    assert "scheduler" in line and "apiserver" in line


def test_unreachable_database(tmp_path: Path) -> None:
    require_plugins("sqlstore")
    result = run_kybern(
        "--log-level",
        "WARNING",
        "server",
        "--datastore-endpoint",
        "postgresql://nobody@127.0.0.1:1/x",
        "--data-dir",
        str(tmp_path),
        "--disable-agent",
        timeout=60,
    )
    assert_one_line_error(result, "127.0.0.1")


@pytest.fixture
def busy_port() -> Iterator[int]:
    """A port on 127.0.0.1 this test holds open, so a server cannot bind it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_port_in_use(tmp_path: Path, busy_port: int) -> None:
    require_plugins("sqlstore", "apiserver")
    try:
        result = run_kybern(
            "--log-level",
            "WARNING",
            "server",
            "--bind-address",
            "127.0.0.1",
            "--https-listen-port",
            str(busy_port),
            "--data-dir",
            str(tmp_path),
            "--disable-agent",
            timeout=90,
        )
    except subprocess.TimeoutExpired:
        pytest.fail(f"kybern server kept running although port {busy_port} was taken")
    assert_one_line_error(result, str(busy_port))


def test_data_dir_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    result = run_kybern("server", "--data-dir", str(blocker / "sub"))
    assert_one_line_error(result, str(blocker / "sub"))


def test_kubectl_without_cluster_is_one_line(tmp_path: Path) -> None:
    result = run_kybern("kubectl", "--data-dir", str(tmp_path), "get", "pods")
    assert_one_line_error(result, "kubeconfig", "kybern server")


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_kubectl_version_client_needs_no_cluster(tmp_path: Path) -> None:
    result = run_kybern("kubectl", "--data-dir", str(tmp_path), "version", "--client")
    assert result.returncode == 0, result.stderr
    assert "Client Version: v1." in result.stdout


def _has_command(name: str) -> bool:
    result = run_kybern("--help")
    return name in result.stdout.split("Commands:", 1)[-1].split()


def test_db_current_on_a_fresh_data_dir(tmp_path: Path) -> None:
    if not _has_command("db"):
        pytest.skip("no plugin adds `kybern db` (the sqlstore plugin is not installed)")
    missing = run_kybern("db", "current", "--data-dir", str(tmp_path))
    assert_one_line_error(missing, "kybern db upgrade")

    upgraded = run_kybern("db", "upgrade", "--data-dir", str(tmp_path))
    assert upgraded.returncode == 0, upgraded.stderr
    current = run_kybern("db", "current", "--data-dir", str(tmp_path))
    assert current.returncode == 0, current.stderr
    assert "(head)" in current.stdout
    assert "revision: 0" in current.stdout.splitlines()


def test_db_current_unreachable_postgres() -> None:
    if not _has_command("db"):
        pytest.skip("no plugin adds `kybern db` (the sqlstore plugin is not installed)")
    result = run_kybern(
        "db", "current", "--datastore-endpoint", "postgresql://nobody@127.0.0.1:1/x", timeout=60
    )
    assert_one_line_error(result, "127.0.0.1")

"""What users install: the wheel, and the test image contrib/ builds for hosts.

The wheel is built from a copy of the sources (the work tree stays clean) and installed into a
fresh venv; kybern then runs from a directory outside the repository, so it imports the wheel's
files and finds plugins only through the wheel's entry points.
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from support import REPO
from support.cli import run_kybern
from support.images import DEFAULT_TAG, ensure_busybox_image, image_exists

#: files besides Python modules that the package needs at run time
DATA_SUFFIXES = {".mako", ".ini", ".gz", ".json", ".yaml", ".yml", ".sql", ".html", ".js", ".css"}
PYPROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())
DECLARED_PLUGINS: dict[str, str] = PYPROJECT["project"]["entry-points"]["kybern.plugins"]
#: import package -> source folder, as pyproject.toml maps them (kybern -> core, ...)
PACKAGE_DIRS: dict[str, str] = PYPROJECT["tool"]["setuptools"]["package-dir"]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    src = work / "src"
    shutil.copytree(
        REPO,
        src,
        ignore=shutil.ignore_patterns(
            ".venv", ".git", "build", "dist", "*.egg-info", "__pycache__", ".*_cache", "tests", "contrib"
        ),
    )
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "build",
            "--wheel",
            "--no-isolation",
            "--outdir",
            str(work / "dist"),
            str(src),
        ],
        capture_output=True,
        text=True,
        stdin=subprocess.DEVNULL,
    )
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    (whl,) = (work / "dist").glob("kybern-*.whl")
    return whl


def _shipped_sources() -> list[str]:
    """Every module and data file under the four source roots, as its path inside the wheel."""
    expected = []
    for package, folder in PACKAGE_DIRS.items():
        prefix = package.replace(".", "/")
        for path in sorted((REPO / folder).rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or path.suffix in DATA_SUFFIXES:
                expected.append(f"{prefix}/{path.relative_to(REPO / folder).as_posix()}")
    return expected


def test_wheel_holds_every_package_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "kybern/__init__.py",
        "kybern/hookspecs.py",
        "kybern/plugins/__init__.py",
        "kybern/runtimes/__init__.py",
    ):
        assert required in names
    missing = [p for p in _shipped_sources() if p not in names]
    assert not missing, f"not in the wheel (a folder without __init__.py, or package-data?): {missing}"


def test_wheel_ships_migrations(wheel: Path) -> None:
    if not (REPO / "migrations" / "env.py").exists():
        pytest.skip("the SQL store has no migrations yet")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "kybern/migrations/env.py" in names
    versions = [n for n in names if n.startswith("kybern/migrations/versions/") and n.endswith(".py")]
    assert versions, "no migration scripts in the wheel"


def test_wheel_declares_the_plugin_entry_points(wheel: Path) -> None:
    with zipfile.ZipFile(wheel) as zf:
        (ep_file,) = [n for n in zf.namelist() if n.endswith(".dist-info/entry_points.txt")]
        parser = configparser.ConfigParser()
        parser.optionxform = str  # type: ignore[assignment,method-assign]
        parser.read_string(zf.read(ep_file).decode())
        names = set(zf.namelist())
    assert parser["console_scripts"]["kybern"] == "kybern.cli:main"
    assert dict(parser["kybern.plugins"]) == DECLARED_PLUGINS
    for name, module in DECLARED_PLUGINS.items():
        path = module.replace(".", "/")
        assert f"{path}/__init__.py" in names or f"{path}.py" in names, (
            f"plugin {name}: {module} not in wheel"
        )


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A fresh venv with only the wheel installed; dependencies come from the test venv.

    A ``.pth`` line adds the test venv's site-packages after the new venv's own, so kybern
    itself is imported from the wheel while pluggy, click... are reused (no downloads).
    """
    venv = tmp_path_factory.mktemp("venv") / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, stdin=subprocess.DEVNULL)
    site = next(venv.glob("lib/python3*/site-packages"))
    deps = next(p for p in map(Path, sys.path) if p.name == "site-packages" and p.is_dir())
    (site / "zz_kybern_test_deps.pth").write_text(f"{deps}\n")
    subprocess.run(
        [
            str(venv / "bin" / "python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            str(wheel),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return venv


def test_installed_wheel_lists_the_builtin_plugins(installed: Path, tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    where = subprocess.run(
        [str(installed / "bin" / "python"), "-c", "import kybern; print(kybern.__file__)"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=env,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(installed), where.stdout
    result = run_kybern("plugins", "--json", binary=installed / "bin" / "kybern", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    assert listing["errors"] == []
    loaded = {p["name"]: p for p in listing["plugins"]}
    assert sorted(loaded) == sorted(DECLARED_PLUGINS)
    for plugin in loaded.values():
        assert plugin["distribution"] == "kybern"
        assert plugin["hooks"], f"{plugin['name']} implements no hook"


@pytest.mark.podman
def test_busybox_test_image(tmp_path: Path) -> None:
    tag = f"localhost/kybern-busybox-test:{os.getpid()}"
    try:
        assert ensure_busybox_image(tag) == tag
        assert image_exists(tag)
        assert ensure_busybox_image(tag) == tag  # a second call keeps the image
        out = subprocess.run(
            [
                "podman",
                "run",
                "--rm",
                tag,
                "sh",
                "-c",
                "echo $PATH; cat /www/index.html; which httpd wget nslookup",
            ],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=120,
        )
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "/bin"
        assert "Hello from kybern" in out.stdout
        assert lines[-3:] == ["/bin/httpd", "/bin/wget", "/bin/nslookup"]
    finally:
        subprocess.run(["podman", "rmi", "-f", tag], capture_output=True, stdin=subprocess.DEVNULL)


def test_demo_manifest_is_valid_for_kubernetes_1_32() -> None:
    """The quickstart's demo passes the official 1.32 schemas and runs the local test image."""
    import kubernetes_validate
    import yaml

    docs = list(yaml.safe_load_all((REPO / "contrib" / "manifests" / "demo.yaml").read_text()))
    assert [d["kind"] for d in docs] == ["Namespace", "ConfigMap", "Deployment", "Service"]
    for doc in docs:
        kubernetes_validate.validate(doc, "1.32.0", strict=True)
    (deployment,) = [d for d in docs if d["kind"] == "Deployment"]
    (container,) = deployment["spec"]["template"]["spec"]["containers"]
    assert container["image"] == DEFAULT_TAG
    assert container["command"] == ["httpd", "-f", "-p", "8080", "-h", "/www"]


def _check_podman(conf: str | None, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """contrib/check-podman.sh, with ``conf`` replacing every containers.conf when given."""
    env = dict(os.environ)
    if conf is not None:
        (tmp_path / "containers.conf").write_text(conf)
        env["CONTAINERS_CONF"] = str(tmp_path / "containers.conf")
    return subprocess.run(
        ["bash", str(REPO / "contrib" / "check-podman.sh"), DEFAULT_TAG],
        capture_output=True,
        text=True,
        env=env,
        stdin=subprocess.DEVNULL,
        timeout=300,
    )


@pytest.mark.podman
def test_check_podman_passes_with_the_host_setup_config(tmp_path: Path) -> None:
    ensure_busybox_image()
    out = _check_podman(None, tmp_path)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"podman runs containers (image {DEFAULT_TAG})"


@pytest.mark.podman
@pytest.mark.parametrize(
    ("conf", "fix"),
    [
        # Podman's default ulimits: over this host class's hard limits
        ('[engine]\nruntime = "runc"\n', "set default_ulimits"),
        # crun: not installed by host-setup, and it fails on hybrid cgroups where it is
        (
            '[engine]\nruntime = "crun"\n[containers]\n'
            'default_ulimits = ["nofile=1024:1024", "nproc=1024:1024"]\n',
            'set runtime = "runc"',
        ),
    ],
)
def test_check_podman_names_the_fix(conf: str, fix: str, tmp_path: Path) -> None:
    ensure_busybox_image()
    out = _check_podman(conf, tmp_path)
    if out.returncode == 0:
        pytest.skip("this host runs containers even without kybern's Podman settings")
    assert out.returncode == 1
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    assert lines[0].startswith("check-podman: error: ") and fix in lines[0]
    assert "50-kybern.conf" in lines[0]

"""Third-party plugins: the example distribution in contrib/example-plugin, and broken ones.

The example is installed with pip into a temporary directory that only the subprocesses (via
PYTHONPATH) and, briefly, this process's ``sys.path`` see, so the test venv stays as it was.
Broken plugins are hand-made distributions (dist-info + entry_points.txt), which is all that
``importlib.metadata`` needs to find an entry point.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest
from kybern.hooktypes import AdmissionRequest
from kybern.models.core_v1 import ConfigMap, Secret
from kybern.pluginmanager import PluginLoadError, load_plugins
from kybern.resources import ResourceType
from support import REPO
from support.cli import require_plugins, run_kybern
from support.cluster import running_server

EXAMPLE_SRC = REPO / "contrib" / "example-plugin"
EXAMPLE_HOOKS = ["kybern_admission_mutate", "kybern_cli_commands"]


@pytest.fixture(scope="session")
def example_site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the installed example plugin (package + dist-info)."""
    work = tmp_path_factory.mktemp("example-plugin")
    src = work / "src"
    # build from a copy: pip writes build/ and *.egg-info next to the sources
    shutil.copytree(EXAMPLE_SRC, src, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    site = work / "site"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "-q",
            "--disable-pip-version-check",
            "--no-deps",
            "--no-build-isolation",
            "--target",
            str(site),
            str(src),
        ],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return site


def _with_path(*dirs: Path) -> dict[str, str]:
    return {"PYTHONPATH": ":".join(str(d) for d in dirs)}


def test_example_plugin_is_listed_with_distribution_and_hooks(example_site: Path, tmp_path: Path) -> None:
    result = run_kybern("plugins", env=_with_path(example_site), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    lines = [line for line in result.stdout.splitlines() if line.split()[:1] == ["example"]]
    assert len(lines) == 1, result.stdout
    assert "kybern-example-plugin 0.1.0" in lines[0]
    assert "kybern_admission_mutate, kybern_cli_commands" in lines[0]


def test_example_plugin_in_json(example_site: Path, tmp_path: Path) -> None:
    result = run_kybern("plugins", "--json", env=_with_path(example_site), cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    listing = json.loads(result.stdout)
    example = [p for p in listing["plugins"] if p["name"] == "example"]
    assert example == [
        {
            "name": "example",
            "distribution": "kybern-example-plugin",
            "version": "0.1.0",
            "module": "kybern_example",
            "hooks": EXAMPLE_HOOKS,
        }
    ]
    assert not [e for e in listing["errors"] if e["name"] == "example"]


def test_example_plugin_adds_a_command(example_site: Path, tmp_path: Path) -> None:
    hello = run_kybern("hello", "--name", "tester", env=_with_path(example_site), cwd=tmp_path)
    assert hello.returncode == 0, hello.stderr
    assert hello.stdout.strip() == "Hello, tester! (from the kybern example plugin)"
    helptext = run_kybern("--help", env=_with_path(example_site), cwd=tmp_path)
    assert "hello" in helptext.stdout.split("Commands:", 1)[1].split()
    # without the plugin on the path there is no such command
    absent = run_kybern("hello", cwd=tmp_path)
    assert absent.returncode != 0
    assert "No such command 'hello'" in absent.stderr


@pytest.fixture
def example_in_process(example_site: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    monkeypatch.syspath_prepend(str(example_site))
    yield
    sys.modules.pop("kybern_example", None)


def _resource(kind: str, model: type) -> ResourceType:
    return ResourceType(
        group="",
        version="v1",
        kind=kind,
        plural=kind.lower() + "s",
        singular=kind.lower(),
        namespaced=True,
        model=model,
    )


def _request(resource: ResourceType, obj: dict, operation: str = "CREATE") -> AdmissionRequest:
    return AdmissionRequest(
        operation=operation,  # type: ignore[arg-type]
        resource=resource,
        namespace="default",
        name=obj["metadata"]["name"],
        object=obj,
    )


def test_admission_hook_labels_created_configmaps(example_in_process: None) -> None:
    loaded = load_plugins()
    assert "example" in [p.name for p in loaded.plugins]
    hook = loaded.manager.hook.kybern_admission_mutate

    created = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "a", "labels": {"app": "x"}}}
    hook(request=_request(_resource("ConfigMap", ConfigMap), created))
    assert created["metadata"]["labels"] == {"app": "x", "example.kybern.io/seen": "true"}

    unlabeled = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "b"}}
    hook(request=_request(_resource("ConfigMap", ConfigMap), unlabeled))
    assert unlabeled["metadata"]["labels"] == {"example.kybern.io/seen": "true"}

    # other kinds and other operations are left alone
    secret = {"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "s"}}
    hook(request=_request(_resource("Secret", Secret), secret))
    assert "labels" not in secret["metadata"]
    updated = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c"}}
    hook(request=_request(_resource("ConfigMap", ConfigMap), updated, operation="UPDATE"))
    assert "labels" not in updated["metadata"]


def _fake_distribution(site: Path, dist: str, entry_name: str, module: str, source: str) -> None:
    """Write an installed distribution by hand: module, METADATA and entry_points.txt."""
    (site / f"{module}.py").write_text(textwrap.dedent(source))
    info = site / f"{dist.replace('-', '_')}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {dist}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[kybern.plugins]\n{entry_name} = {module}\n")


@pytest.fixture
def broken_site(tmp_path: Path) -> Path:
    site = tmp_path / "broken-site"
    site.mkdir()
    _fake_distribution(
        site,
        "kybern-broken-import",
        "broken-import",
        "kybern_broken_import",
        """
        raise ImportError("needs the frobnicator library")
        """,
    )
    _fake_distribution(
        site,
        "kybern-typo-hook",
        "typo-hook",
        "kybern_typo_hook",
        """
        from kybern import hookimpl

        @hookimpl
        def kybern_admision_mutate(request):
            pass
        """,
    )
    return site


def test_broken_plugins_are_reported_and_the_rest_works(broken_site: Path, example_site: Path) -> None:
    result = run_kybern("plugins", env=_with_path(broken_site, example_site), cwd=broken_site.parent)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    import_errors = [line for line in result.stderr_lines if "kybern-broken-import" in line]
    assert len(import_errors) == 1, result.stderr
    assert "'broken-import'" in import_errors[0] and "needs the frobnicator library" in import_errors[0]
    typo_errors = [line for line in result.stderr_lines if "kybern-typo-hook" in line]
    assert len(typo_errors) == 1, result.stderr
    assert "kybern_admision_mutate" in typo_errors[0] and "matches no hook specification" in typo_errors[0]
    # the healthy plugin still loaded and its command still works in the same environment
    assert any(line.startswith("example ") for line in result.stdout.splitlines())
    hello = run_kybern("hello", env=_with_path(broken_site, example_site), cwd=broken_site.parent)
    assert hello.returncode == 0 and "Hello, world!" in hello.stdout


def test_broken_plugins_in_json(broken_site: Path) -> None:
    result = run_kybern("plugins", "--json", env=_with_path(broken_site), cwd=broken_site.parent)
    assert result.returncode == 0, result.stderr
    errors = {e["name"]: e for e in json.loads(result.stdout)["errors"]}
    assert errors["broken-import"]["distribution"] == "kybern-broken-import"
    assert errors["broken-import"]["error"] == "ImportError: needs the frobnicator library"
    assert errors["typo-hook"]["distribution"] == "kybern-typo-hook"


def test_required_broken_plugin_fails_loading(broken_site: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(broken_site))
    try:
        with pytest.raises(PluginLoadError, match="kybern-broken-import"):
            load_plugins(required={"broken-import"})
        with pytest.raises(PluginLoadError, match="kybern_admision_mutate"):
            load_plugins(required={"typo-hook"})
        with pytest.raises(PluginLoadError, match="'not-installed' is not installed"):
            load_plugins(required={"not-installed"})
        # not required: the same plugins are only reported
        loaded = load_plugins()
        assert {"broken-import", "typo-hook"} <= {p.name for p in loaded.problems}
    finally:
        for name in ("kybern_broken_import", "kybern_typo_hook"):
            sys.modules.pop(name, None)


@pytest.mark.skipif(shutil.which("kubectl") is None, reason="kubectl is not installed")
def test_api_server_runs_the_example_admission_hook(example_site: Path, tmp_path: Path) -> None:
    """Installed next to kybern, the plugin labels ConfigMaps created with the real kubectl."""
    require_plugins("sqlstore", "apiserver", "resources-core")
    with running_server(tmp_path, env=_with_path(example_site)) as server:
        server.kubectl("create", "configmap", "settings", "--from-literal=color=blue")
        created = json.loads(server.kubectl("get", "configmap", "settings", "-o", "json").stdout)
        assert created["metadata"]["labels"] == {"example.kybern.io/seen": "true"}
        assert created["data"] == {"color": "blue"}
        server.kubectl("create", "secret", "generic", "token", "--from-literal=a=b")
        secret = json.loads(server.kubectl("get", "secret", "token", "-o", "json").stdout)
        assert "labels" not in secret["metadata"]

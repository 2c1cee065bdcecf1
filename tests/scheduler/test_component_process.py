"""The scheduler in its own OS process: ``kybern component scheduler`` against a real server
(with a kubeconfig, as kube-scheduler runs), and ``kybern server --component-process scheduler``
supervising it as a child (health report, restart after a crash, nothing left after stop)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from kybern.components import KNOWN_COMPONENTS
from support.cli import KYBERN, assert_one_line_error, run_kybern
from support.cluster import Server, running_server

from .kube import MOST_ALLOCATED_CONFIG, apply, make_nodes, namespace, placement, pod_manifest, wait_for

#: everything off but the API server and the scheduler
SCHEDULER_ONLY: tuple[str, ...] = tuple(
    arg for name in KNOWN_COMPONENTS if name not in ("apiserver", "scheduler") for arg in ("--disable", name)
)


def children(pid: int) -> list[int]:
    """Processes whose parent is ``pid`` (from /proc, no helper library)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "PID (COMM) STATE PPID ...": COMM may hold spaces, so split after its closing paren
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def scheduler_status(server: Server) -> tuple[str, str]:
    out = server.kubectl(
        "get",
        "componentstatus",
        "scheduler",
        "-o",
        "jsonpath={.conditions[0].status}|{.conditions[0].message}",
    )
    status, _, message = out.stdout.partition("|")
    return status, message


def schedules_a_pod(server: Server, ns: str, name: str, node: str) -> None:
    apply(server, [pod_manifest(name, ns)])
    wait_for(f"{name} bound to {node}", lambda: placement(server, ns).get(name) == node, timeout=60)


def test_component_scheduler_with_a_kubeconfig(tmp_path: Path) -> None:
    with running_server(tmp_path, *SCHEDULER_ONLY, "--disable", "scheduler") as server:
        ns = namespace(server, "kcfg")
        make_nodes(server, {"name": "kcfg-n", "cpu": "2"})
        log_path = tmp_path / "component.log"
        with open(log_path, "wb") as log:
            child = subprocess.Popen(
                [str(KYBERN), "component", "scheduler", "--kubeconfig", str(server.kubeconfig)],
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        try:
            schedules_a_pod(server, ns, "p0", "kcfg-n")
            # the server runs no scheduler: the component process is not its child
            assert child.pid not in children(server.process.pid)
        finally:
            child.send_signal(signal.SIGTERM)
            code = child.wait(timeout=20)
        assert code == 0, log_path.read_text()


def test_server_runs_the_scheduler_in_a_child_and_restarts_it(tmp_path: Path) -> None:
    with running_server(tmp_path, *SCHEDULER_ONLY, "--component-process", "scheduler") as server:
        pid = server.process.pid
        wait_for("scheduler healthy", lambda: scheduler_status(server)[0] == "True", timeout=60)
        (first,) = children(pid)
        ns = namespace(server, "child")
        make_nodes(server, {"name": "child-n", "cpu": "2"})
        schedules_a_pod(server, ns, "p0", "child-n")

        os.kill(first, signal.SIGKILL)
        wait_for("the dead child reaped", lambda: not alive(first), timeout=30)
        status, message = scheduler_status(server)
        # down, or already back up by the time kubectl asked
        assert (status, message) == ("True", "ok") or "killed by SIGKILL" in message, message
        wait_for("scheduler healthy again", lambda: scheduler_status(server)[0] == "True", timeout=60)
        (second,) = children(pid)
        assert second != first
        assert "scheduler process was killed by SIGKILL; restarting it" in server.log()
        schedules_a_pod(server, ns, "p1", "child-n")

        server.stop()
        assert server.process.returncode == 0, server.log()
        assert not alive(second)
        assert children(pid) == []


def test_the_child_stops_when_its_server_is_killed(tmp_path: Path) -> None:
    with running_server(tmp_path, *SCHEDULER_ONLY, "--component-process", "scheduler") as server:
        wait_for("scheduler healthy", lambda: scheduler_status(server)[0] == "True", timeout=60)
        (child,) = children(server.process.pid)
        server.process.kill()  # no SIGTERM handler runs: the child sees its socket close
        server.process.wait()
        deadline = time.monotonic() + 20
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not alive(child)


def test_bad_component_input_is_one_line(tmp_path: Path) -> None:
    kubeconfig = tmp_path / "kubeconfig.yaml"
    kubeconfig.write_text("apiVersion: v1\nkind: Config\nclusters: []\n")
    data = str(tmp_path / "data")
    cases = {  # command line -> what its one error line names
        ("component", "nonsense", "--data-dir", data): "'nonsense'",
        ("component", "apiserver", "--data-dir", data): "apiserver",
        ("component", "kubelet", "--data-dir", data): "kybern agent",
        ("component", "service-allocation", "--data-dir", data): "store",
        ("component", "scheduler"): "no kubeconfig",
        ("component", "scheduler", "--kubeconfig", str(kubeconfig)): "current-context",
        ("component", "scheduler", "--data-dir", data): "admin token",
        ("server", "--data-dir", data, "--component-process", "apiserver", *SCHEDULER_ONLY): "apiserver",
    }
    # each is a fresh interpreter loading every plugin: run them side by side
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = dict(zip(cases, pool.map(lambda args: run_kybern(*args), cases), strict=True))
    for args, fragment in cases.items():
        assert_one_line_error(results[args], fragment)


def test_scheduler_and_controller_manager_children_get_the_server_options(tmp_path: Path) -> None:
    config = tmp_path / "scheduler.yaml"
    config.write_text(MOST_ALLOCATED_CONFIG)  # a second profile: bin-packing
    keep = ("apiserver", "scheduler", "controller-manager")
    args = [a for name in KNOWN_COMPONENTS if name not in keep for a in ("--disable", name)]
    args += ["--component-process", "scheduler", "--component-process", "controller-manager"]
    with running_server(tmp_path, *args, "--scheduler-config", str(config)) as server:
        ns = namespace(server, "both")
        make_nodes(server, {"name": "both-n", "cpu": "2"})
        template = pod_manifest("x", ns, labels={"app": "web"}, schedulerName="bin-packing")
        deployment = {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": "web", "namespace": ns},
            "spec": {
                "replicas": 2,
                "selector": {"matchLabels": {"app": "web"}},
                "template": {"metadata": {"labels": {"app": "web"}}, "spec": template["spec"]},
            },
        }
        apply(server, [deployment])
        # the controller manager's ReplicaSet makes the pods, the bin-packing profile (only in
        # --scheduler-config) binds them: both children got what the server was given
        wait_for(
            "2 deployment pods bound",
            lambda: sorted(placement(server, ns).values()) == ["both-n", "both-n"],
            timeout=60,
        )
        statuses = server.kubectl(
            "get", "componentstatuses", "-o", "jsonpath={.items[*].conditions[0].status}"
        )
        assert statuses.stdout.split() == ["True", "True", "True"]
        assert len(children(server.process.pid)) == 2

"""The Podman runtime against real Podman: pods, containers, limits, logs, exec, adoption.

Every test runs real containers from the locally built busybox image in an isolated Podman
(own storage, service and bridge network; see podman_env). No timing assertions.
"""

from __future__ import annotations

import asyncio
import re
import socket
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from kybern.runtime import (
    LABEL_CONTAINER_ATTEMPT,
    LABEL_POD_UID,
    ContainerRuntime,
    ContainerSpec,
    DnsConfig,
    ImagePullError,
    Mount,
    PortMapping,
    Resources,
)
from kybern.runtimes.podman.config import PodmanConfig
from kybern.runtimes.podman.runtime import PodmanRuntime

from .podman_env import (
    BUSYBOX,
    close_runtime,
    open_runtime,
    podman_cli,
    release_dirs,
    run_container,
    sandbox_spec,
    wait_exited,
)

pytestmark = pytest.mark.podman

HTTPD = ContainerSpec(name="web", image=BUSYBOX, command=["httpd", "-f", "-p", "8080", "-h", "/www"])


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def http_get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=10) as response:
        return str(response.read().decode())


def test_is_a_container_runtime_and_ready(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        assert isinstance(runtime, ContainerRuntime)
        version = await runtime.version()
        assert str(version).startswith("podman://4.")
        status = await runtime.status()
        assert status.ok, status.reason

    asyncio.run(main())


def test_pod_serves_http_on_its_ip_and_host_port(runtime: PodmanRuntime) -> None:
    port = free_port()

    async def main() -> None:
        spec = sandbox_spec(
            "web",
            hostname="web-0",
            dns=DnsConfig(
                nameservers=["10.43.0.10"], searches=["default.svc.cluster.local"], options=["ndots:5"]
            ),
            port_mappings=[PortMapping(container_port=8080, host_port=port)],
            labels={"app": "web"},
        )
        sandbox = await runtime.run_pod_sandbox(spec)
        assert sandbox.state == "ready" and sandbox.ip and sandbox.network == runtime.config.network
        assert sandbox.uid == spec.uid and sandbox.labels["app"] == "web"
        # idempotent: asking again returns the same running sandbox
        assert (await runtime.run_pod_sandbox(spec)).id == sandbox.id
        cid = await run_container(runtime, sandbox, HTTPD)
        loop = asyncio.get_running_loop()
        body = ""
        for _ in range(50):  # httpd needs a moment to listen
            try:
                body = await loop.run_in_executor(None, http_get, f"http://{sandbox.ip}:8080/index.html")
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert "Hello from kybern" in body
        via_host_port = await loop.run_in_executor(None, http_get, f"http://127.0.0.1:{port}/index.html")
        assert "Hello from kybern" in via_host_port
        code, out = await runtime.exec_sync(cid, ["sh", "-c", "hostname; cat /etc/resolv.conf"], timeout=10)
        assert code == 0
        text = out.decode()
        assert text.splitlines()[0] == "web-0"
        assert "nameserver 10.43.0.10" in text and "default.svc.cluster.local" in text and "ndots:5" in text
        [status] = await runtime.list_containers(spec.uid)
        assert status.state == "running" and status.id == cid and status.image == BUSYBOX
        assert status.image_id and status.started_at is not None and status.exit_code is None
        stats = await runtime.stats(cid)
        assert stats.memory_usage_bytes > 0 and stats.cpu_usage_nanos > 0
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_command_args_env_workdir_and_exit_codes(runtime: PodmanRuntime, tmp_path: Path) -> None:
    (tmp_path / "data.txt").write_text("from the host\n")
    tmp_path.chmod(0o755)  # readable by the container's user (nobody)
    for parent in tmp_path.parents:
        if parent == Path("/tmp"):
            break
        parent.chmod(parent.stat().st_mode | 0o005)

    async def main() -> None:
        spec = sandbox_spec("job")
        sandbox = await runtime.run_pod_sandbox(spec)
        script = 'echo "$GREETING $WHO"; pwd; cat /data/data.txt; touch /data/x 2>/dev/null || echo ro; ' \
            'echo scratch > /scratch/f && cat /scratch/f; id -u; exit "$1"'  # fmt: skip
        failing = ContainerSpec(
            name="failing",
            image=BUSYBOX,
            command=["sh", "-c", script, "sh"],
            # args replace the image's cmd; here they are the script's "$1"
            args=["7"],
            env=[("GREETING", "hi"), ("WHO", "nobody"), ("WHO", "world")],
            working_dir="/tmp",
            mounts=[
                Mount(container_path="/data", host_path=str(tmp_path), read_only=True),
                Mount(container_path="/scratch", tmpfs=True, tmpfs_size=1 << 20),
            ],
            run_as_user=65534,
            run_as_group=65534,
        )
        await run_container(runtime, sandbox, failing)
        ok = ContainerSpec(name="ok", image=BUSYBOX, args=["true"], attempt=2)
        await run_container(runtime, sandbox, ok)
        done = await wait_exited(runtime, spec.uid, "failing")
        assert done.exit_code == 7 and done.reason == "Error"
        assert done.finished_at is not None and done.started_at is not None
        assert done.finished_at >= done.started_at
        logs = b"".join([c async for c in runtime.container_logs(done.id)]).decode().splitlines()
        assert logs == ["hi world", "/tmp", "from the host", "ro", "scratch", "65534"]
        completed = await wait_exited(runtime, spec.uid, "ok")
        assert completed.exit_code == 0 and completed.reason == "Completed"
        assert completed.attempt == 2 and completed.labels[LABEL_CONTAINER_ATTEMPT] == "2"
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_memory_limit_oom_killed(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        spec = sandbox_spec("hog")
        sandbox = await runtime.run_pod_sandbox(spec)
        hog = ContainerSpec(
            name="hog",
            image=BUSYBOX,
            command=["sh", "-c", 'a=$(head -c 200m /dev/zero | tr "\\0" x); echo survived'],
            resources=Resources(memory_limit_bytes=20 * 1024 * 1024, cpu_limit_millis=500),
        )
        cid = await run_container(runtime, sandbox, hog)
        inspect = await runtime._inspect(cid)
        assert inspect["HostConfig"]["Memory"] == 20 * 1024 * 1024
        assert inspect["HostConfig"]["CpuQuota"] == 50_000 and inspect["HostConfig"]["CpuPeriod"] == 100_000
        status = await wait_exited(runtime, spec.uid, "hog", timeout=60)
        assert status.reason == "OOMKilled", status
        assert status.exit_code == 137
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_logs_tail_timestamps_follow(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        spec = sandbox_spec("logger")
        sandbox = await runtime.run_pod_sandbox(spec)
        talker = ContainerSpec(
            name="talker",
            image=BUSYBOX,
            command=["sh", "-c", "for i in 1 2 3; do echo line$i; done; echo oops >&2; sleep 1; echo late"],
        )
        cid = await run_container(runtime, sandbox, talker)
        followed = b"".join([c async for c in runtime.container_logs(cid, follow=True)]).decode()
        assert followed.splitlines() == ["line1", "line2", "line3", "oops", "late"]
        await wait_exited(runtime, spec.uid, "talker")
        tail = b"".join([c async for c in runtime.container_logs(cid, tail=2)]).decode()
        assert tail.splitlines() == ["oops", "late"]
        stamped = b"".join([c async for c in runtime.container_logs(cid, timestamps=True)]).decode()
        lines = stamped.splitlines()
        assert len(lines) == 5
        assert all(
            re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d) ", ln) for ln in lines
        ), lines
        assert lines[-1].endswith(" late")
        done = next(s for s in await runtime.list_containers(spec.uid) if s.id == cid)
        assert done.started_at and done.finished_at
        since_start = b"".join([c async for c in runtime.container_logs(cid, since=done.started_at)])
        assert since_start.decode().splitlines()[-1] == "late"
        after_end = b"".join(
            [c async for c in runtime.container_logs(cid, since=done.finished_at + timedelta(seconds=1))]
        )
        assert after_end == b""
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_follow_stops_when_consumer_stops(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        spec = sandbox_spec("forever")
        sandbox = await runtime.run_pod_sandbox(spec)
        cid = await run_container(
            runtime,
            sandbox,
            ContainerSpec(
                name="ticker", image=BUSYBOX, command=["sh", "-c", "while :; do echo tick; sleep 0.2; done"]
            ),
        )
        seen = 0
        stream = runtime.container_logs(cid, follow=True)
        async for chunk in stream:
            seen += chunk.count(b"tick")
            if seen >= 2:
                break
        await stream.aclose()  # type: ignore[attr-defined]
        assert seen >= 2
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_stop_container_sigterm_then_sigkill(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        spec = sandbox_spec("stopper")
        sandbox = await runtime.run_pod_sandbox(spec)
        polite = ContainerSpec(
            name="polite",
            image=BUSYBOX,
            command=["sh", "-c", "trap 'echo bye; exit 0' TERM; while :; do sleep 0.1; done"],
        )
        polite_id = await run_container(runtime, sandbox, polite)
        stubborn_id = await run_container(runtime, sandbox, HTTPD)  # PID 1 ignores SIGTERM
        await asyncio.sleep(0.3)  # let the shell install its trap
        await runtime.stop_container(polite_id, timeout_s=20)
        await runtime.stop_container(stubborn_id, timeout_s=1)
        by_name = {s.name: s for s in await runtime.list_containers(spec.uid)}
        assert (by_name["polite"].state, by_name["polite"].exit_code) == ("exited", 0)
        assert by_name["polite"].reason == "Completed"
        assert b"bye" in b"".join([c async for c in runtime.container_logs(polite_id)])
        assert (by_name["web"].state, by_name["web"].exit_code, by_name["web"].reason) == (
            "exited",
            137,
            "Error",
        )
        await runtime.remove_container(polite_id)
        assert [s.name for s in await runtime.list_containers(spec.uid)] == ["web"]
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_exec_sync_and_interactive_exec(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        spec = sandbox_spec("shell")
        sandbox = await runtime.run_pod_sandbox(spec)
        cid = await run_container(
            runtime, sandbox, ContainerSpec(name="sleeper", image=BUSYBOX, command=["sleep", "3600"])
        )
        code, out = await runtime.exec_sync(cid, ["sh", "-c", "echo out; echo err >&2; exit 4"], timeout=10)
        assert code == 4 and b"out\n" in out and b"err\n" in out
        with pytest.raises(TimeoutError):
            await runtime.exec_sync(cid, ["sleep", "31"], timeout=0.5)
        # the timed-out process was killed, not left running
        code, out = await runtime.exec_sync(cid, ["ps"], timeout=10)
        assert code == 0 and b"sleep 3600" in out and b"sleep 31" not in out, out

        session = await runtime.exec(cid, ["sh", "-c", "tr a-z A-Z; echo done >&2"], stdin=True)
        await session.write(b"hello stdin\n")
        await session.close_stdin()
        got: dict[str, bytes] = {"stdout": b"", "stderr": b""}
        async for stream, chunk in session.output():
            got[stream] += chunk
        assert got == {"stdout": b"HELLO STDIN\n", "stderr": b"done\n"}
        assert await session.wait() == 0
        await session.close()

        tty = await runtime.exec(cid, ["sh"], stdin=True, tty=True)
        await tty.resize(100, 40)
        await tty.write(b"stty size; exit 5\n")
        output = b""
        async for stream, chunk in tty.output():
            assert stream == "stdout"
            output += chunk
        assert b"40 100" in output
        assert await tty.wait() == 5
        await tty.close()
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_restarted_agent_adopts_by_labels_and_removes_unowned(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        keep, drop = sandbox_spec("keep"), sandbox_spec("drop")
        kept = await runtime.run_pod_sandbox(keep)
        dropped = await runtime.run_pod_sandbox(drop)
        kept_cid = await run_container(
            runtime, kept, ContainerSpec(name="app", image=BUSYBOX, command=["sleep", "3600"], attempt=3)
        )
        await run_container(
            runtime, dropped, ContainerSpec(name="app", image=BUSYBOX, command=["sleep", "3600"])
        )

        # the agent dies and its Podman service with it; the containers live on (conmon)
        runtime.service.stop()
        fresh = PodmanRuntime(PodmanConfig(**vars(runtime.config)))  # the restarted agent
        try:
            sandboxes = {s.uid: s for s in await fresh.list_sandboxes()}
            assert {keep.uid, drop.uid} <= set(sandboxes)
            assert sandboxes[keep.uid].ip == kept.ip and sandboxes[keep.uid].state == "ready"
            assert (sandboxes[keep.uid].namespace, sandboxes[keep.uid].name) == ("default", "keep")
            [app] = await fresh.list_containers(keep.uid)
            assert (app.id, app.name, app.attempt, app.state) == (kept_cid, "app", 3, "running")
            assert (app.pod_uid, app.pod_name, app.sandbox_id) == (keep.uid, "keep", kept.id)

            others = {s.uid for s in sandboxes.values()} - {drop.uid}
            removed = await fresh.remove_unowned(others)
            assert removed == [drop.uid]
            assert drop.uid not in {s.uid for s in await fresh.list_sandboxes()}
            assert [c.id for c in await fresh.list_containers(keep.uid)] == [kept_cid]
        finally:
            await fresh.close()  # stops the service it started
        # the first runtime reconnects (starting a service again) on its next call, be it a
        # stream (exec) or a plain request
        assert await runtime.exec_sync(kept_cid, ["echo", "still here"], timeout=10) == (0, b"still here\n")
        assert [c.id for c in await runtime.list_containers(keep.uid)] == [kept_cid]
        await runtime.remove_pod_sandbox(keep.uid)

    asyncio.run(main())


def test_remove_pod_sandbox_leaves_nothing(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        spec = sandbox_spec("gone")
        sandbox = await runtime.run_pod_sandbox(spec)
        await run_container(runtime, sandbox, HTTPD)
        await run_container(runtime, sandbox, ContainerSpec(name="side", image=BUSYBOX, command=["true"]))
        label = f"label={LABEL_POD_UID}={spec.uid}"
        assert podman_cli(runtime.config, "ps", "-a", "-q", "--filter", f"pod={sandbox.id}").split()
        await runtime.stop_pod_sandbox(spec.uid, timeout_s=0)
        assert (await runtime.list_sandboxes()) and all(
            s.state == "notready" for s in await runtime.list_sandboxes() if s.uid == spec.uid
        )
        await runtime.remove_pod_sandbox(spec.uid)
        assert podman_cli(runtime.config, "pod", "ps", "-q", "--filter", label).split() == []
        assert podman_cli(runtime.config, "ps", "-a", "-q", "--filter", label).split() == []
        assert podman_cli(runtime.config, "ps", "-a", "-q", "--filter", f"pod={sandbox.id}").split() == []
        assert await runtime.list_containers(spec.uid) == []
        await runtime.remove_pod_sandbox(spec.uid)  # already gone: no error

    asyncio.run(main())


def test_separate_roots_do_not_see_each_other(
    runtime: PodmanRuntime, podman_assets: tuple[Path, Path], tmp_path: Path
) -> None:
    conf, archive = podman_assets

    async def main() -> None:
        other = await open_runtime(tmp_path, conf, archive, "node-b")
        try:
            assert other.service.socket != runtime.service.socket
            mine = sandbox_spec("mine")
            theirs = sandbox_spec("theirs")
            await runtime.run_pod_sandbox(mine)
            await other.run_pod_sandbox(theirs)
            assert theirs.uid not in {s.uid for s in await runtime.list_sandboxes()}
            assert {s.uid for s in await other.list_sandboxes()} == {theirs.uid}
            assert (
                podman_cli(other.config, "pod", "ps", "-q", "--filter", f"label={LABEL_POD_UID}={mine.uid}")
                == ""
            )
            await runtime.remove_pod_sandbox(mine.uid)
        finally:
            await close_runtime(other)

    asyncio.run(main())


def test_images_pull_policies_and_errors(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        present = await runtime.pull_image(BUSYBOX, policy="IfNotPresent")
        assert present.id and present == await runtime.image_present(BUSYBOX)
        assert await runtime.image_present("localhost/kybern-missing:1.0") is None
        with pytest.raises(ImagePullError) as never:
            await runtime.pull_image("localhost/kybern-missing:1.0", policy="Never")
        assert never.value.reason == "ErrImageNeverPull"
        with pytest.raises(ImagePullError) as failed:
            await runtime.pull_image(
                f"127.0.0.1:{free_port()}/kybern/missing:1.0", auth={"username": "u", "password": "p"}
            )
        assert failed.value.reason == "ErrImagePull" and failed.value.message
        with pytest.raises(ImagePullError) as invalid:
            await runtime.pull_image("Bad/Name:1")
        assert invalid.value.reason == "InvalidImageName"

    asyncio.run(main())


def test_status_explains_missing_podman_dead_socket_and_ulimits(
    podman_assets: tuple[Path, Path], tmp_path: Path
) -> None:
    from .podman_env import write_containers_conf

    async def main() -> None:
        missing = PodmanRuntime(
            PodmanConfig(data_dir=tmp_path / "m", isolated=True, podman_binary="/nonexistent/podman")
        )
        try:
            status = await missing.status()
            assert not status.ok and "apt-get install podman runc" in status.reason
        finally:
            await missing.close()
            release_dirs(missing.config)

        dead = PodmanRuntime(PodmanConfig(data_dir=tmp_path / "d", socket=str(tmp_path / "nobody-home.sock")))
        try:
            status = await dead.status()
            assert (
                not status.ok and "does not answer" in status.reason and "nobody-home.sock" in status.reason
            )
            assert dead.service.process is None  # an operator's socket is never replaced
        finally:
            await dead.close()

        conf = write_containers_conf(tmp_path / "no-ulimits.conf", ulimits=False)
        rt = PodmanRuntime(PodmanConfig(data_dir=tmp_path / "u", isolated=True, containers_conf=conf))
        try:
            status = await rt.status()
            if status.ok:
                pytest.skip("podman's default ulimits fit this host's hard limits")
            assert "default_ulimits" in status.reason and "\n" not in status.reason
        finally:
            await rt.close()
            release_dirs(rt.config)

    asyncio.run(main())


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[tuple[str, dict[str, str]]]:
    """A real registry on loopback with htpasswd auth: (host:port, credentials)."""
    import shutil
    import subprocess
    import time
    import warnings

    if shutil.which("docker-registry") is None:
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        crypt = pytest.importorskip("crypt")
    creds = {"username": "kybern", "password": "s3cret"}
    hashed = crypt.crypt(creds["password"], crypt.mksalt(crypt.METHOD_BLOWFISH))
    (tmp_path / "htpasswd").write_text(f"{creds['username']}:{hashed}\n")
    port = free_port()
    (tmp_path / "config.yml").write_text(
        "version: 0.1\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path / 'data'}}}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
        f"auth: {{htpasswd: {{realm: kybern-test, path: {tmp_path / 'htpasswd'}}}}}\n"
        "log: {level: error}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(tmp_path / "config.yml")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}", creds
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_pull_from_registry_with_auth(runtime: PodmanRuntime, registry: tuple[str, dict[str, str]]) -> None:
    host, creds = registry
    image = f"{host}/kybern/pulled:1.0"
    podman_cli(
        runtime.config, "push", "--quiet", "--tls-verify=false",
        "--creds", f"{creds['username']}:{creds['password']}", BUSYBOX, image,
    )  # fmt: skip

    async def main() -> None:
        with pytest.raises(ImagePullError) as anonymous:
            await runtime.pull_image(image, policy="Always")
        assert anonymous.value.reason == "ErrImagePull"
        assert "unauthorized" in anonymous.value.message.lower() or "auth" in anonymous.value.message.lower()
        with pytest.raises(ImagePullError):
            await runtime.pull_image(image, auth={**creds, "password": "wrong"}, policy="Always")
        assert await runtime.image_present(image) is None
        pulled = await runtime.pull_image(image, auth=creds, policy="IfNotPresent")
        assert pulled.id and pulled == await runtime.image_present(image)
        # the pulled image runs
        spec = sandbox_spec("pulled")
        sandbox = await runtime.run_pod_sandbox(spec)
        await run_container(
            runtime, sandbox, ContainerSpec(name="echo", image=image, command=["echo", "pulled ok"])
        )
        done = await wait_exited(runtime, spec.uid, "echo")
        assert done.exit_code == 0 and done.image == image and done.image_id == pulled.id
        await runtime.remove_pod_sandbox(spec.uid)
        await runtime._api("delete", f"/images/{image}", ok_missing=True)

    asyncio.run(main())

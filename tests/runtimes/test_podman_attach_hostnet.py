"""The Podman runtime's attach (the main process' stdio), host-network sandboxes and a pull
from a registry that never answers, against real Podman (isolated, see podman_env)."""

from __future__ import annotations

import asyncio
import socket
import threading
import urllib.request

import pytest
from kybern.runtime import ContainerSpec, DnsConfig, ImagePullError, PortMapping
from kybern.runtimes.podman.runtime import HOST_NETWORK, PodmanRuntime

from .podman_env import BUSYBOX, run_container, sandbox_spec, wait_exited

pytestmark = pytest.mark.podman


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("0.0.0.0", 0))
        return int(s.getsockname()[1])


def test_host_network_sandbox(runtime: PodmanRuntime) -> None:
    port = free_port()

    async def main() -> None:
        dns = DnsConfig(nameservers=["10.43.0.10"], searches=["team.svc.cluster.local"], options=["ndots:5"])
        # a hostPort is the container's own port here: nothing to publish, and no error
        spec = sandbox_spec("hostnet", network=HOST_NETWORK, dns=dns,
                            port_mappings=[PortMapping(container_port=port, host_port=port)])  # fmt: skip
        sandbox = await runtime.run_pod_sandbox(spec)
        assert sandbox.state == "ready" and sandbox.network == HOST_NETWORK and sandbox.ip is None
        command = ["httpd", "-f", "-p", str(port), "-h", "/www"]
        httpd = ContainerSpec(name="web", image=BUSYBOX, command=command)
        cid = await run_container(runtime, sandbox, httpd)
        loop = asyncio.get_running_loop()
        body = ""
        for _ in range(50):
            try:
                body = await loop.run_in_executor(None, _get, f"http://127.0.0.1:{port}/index.html")
                break
            except OSError:
                await asyncio.sleep(0.1)
        assert "Hello from kybern" in body
        code, out = await runtime.exec_sync(cid, ["sh", "-c", "hostname; cat /etc/resolv.conf"], timeout=10)
        hostname, resolv = out.decode().split("\n", 1)
        assert code == 0 and hostname == socket.gethostname()
        assert "nameserver 10.43.0.10" in resolv and "search team.svc.cluster.local" in resolv
        assert "options ndots:5" in resolv
        # a listing (what a restarted agent adopts from) has the mode, from the sandbox's labels
        [found] = [s for s in await runtime.list_sandboxes() if s.uid == spec.uid]
        assert found.network == HOST_NETWORK and found.state == "ready" and found.ip is None
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def _get(url: str) -> str:
    with urllib.request.urlopen(url, timeout=5) as response:
        return str(response.read().decode())


def test_attach_to_the_main_process(runtime: PodmanRuntime) -> None:
    async def main() -> None:
        spec = sandbox_spec("attached")
        sandbox = await runtime.run_pod_sandbox(spec)
        loop_cmd = 'while read line; do echo "got $line"; echo "err $line" >&2; done; echo bye; exit 6'
        ctr = ContainerSpec(name="app", image=BUSYBOX, command=["sh", "-c", loop_cmd], stdin=True)
        cid = await run_container(runtime, sandbox, ctr)
        session = await runtime.attach(cid, stdin=True)
        assert not session.tty
        await session.write(b"one\n")
        out: dict[str, bytes] = {"stdout": b"", "stderr": b""}

        async def read() -> None:
            async for stream, chunk in session.output():
                out[stream] += chunk
                if out["stdout"] == b"got one\n" and out["stderr"] == b"err one\n":
                    await session.close_stdin()

        await asyncio.wait_for(read(), 30)  # the output ends when the process exits
        await session.close()
        assert out == {"stdout": b"got one\nbye\n", "stderr": b"err one\n"}
        status = await wait_exited(runtime, spec.uid, "app")
        assert status.exit_code == 6
        await runtime.remove_pod_sandbox(spec.uid)

    asyncio.run(main())


def test_a_pull_from_a_registry_that_never_answers_gives_up(runtime: PodmanRuntime) -> None:
    """A registry that accepts connections and then says nothing: Podman would wait for ever."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(16)
    port = listener.getsockname()[1]
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            try:
                accepted.append(listener.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    saved = runtime.config.pull_stall_timeout_s
    runtime.config.pull_stall_timeout_s = 3.0
    try:
        with pytest.raises(ImagePullError) as failed:
            asyncio.run(runtime.pull_image(f"127.0.0.1:{port}/silent/app:1", policy="Always"))
        assert failed.value.reason == "ErrImagePull"
        assert failed.value.message == f"pulling 127.0.0.1:{port}/silent/app:1 made no progress for 3s"
        assert accepted, "Podman did reach the registry"
    finally:
        runtime.config.pull_stall_timeout_s = saved
        stop.set()
        thread.join()
        for conn in accepted:
            conn.close()
        listener.close()
    # the runtime still works afterwards
    assert asyncio.run(runtime.image_present(BUSYBOX)) is not None

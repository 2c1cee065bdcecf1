"""kube-apiserver's health endpoints as kubectl reads them (``get --raw``), verbose and per check."""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request

from conftest import Cluster


def test_verbose_and_single_checks(cluster: Cluster) -> None:
    ready = cluster.kubectl("get", "--raw", "/readyz?verbose").stdout.splitlines()
    assert ready[0] == "[+]ping ok"
    assert "[+]etcd ok" in ready and "[+]informer-sync ok" in ready and "[+]shutdown ok" in ready
    assert ready[-1] == "readyz check passed"
    live = cluster.kubectl("get", "--raw", "/livez?verbose").stdout.splitlines()
    assert live == ["[+]ping ok", "[+]log ok", "livez check passed"]
    assert cluster.kubectl("get", "--raw", "/healthz").stdout == "ok"
    assert cluster.kubectl("get", "--raw", "/readyz/etcd").stdout == "ok"
    missing = cluster.kubectl("get", "--raw", "/readyz/nosuchcheck", check=False)
    assert missing.returncode != 0 and "NotFound" in missing.stderr


def test_health_needs_no_token(cluster: Cluster) -> None:
    ctx = ssl.create_default_context(cafile=cluster.ca_file)
    for path in ("/livez", "/readyz/ping", "/healthz?verbose"):
        with urllib.request.urlopen(cluster.url + path, context=ctx, timeout=10) as r:
            assert r.status == 200
            assert r.read().decode().split("\n")[0] in ("ok", "[+]ping ok")
    try:
        urllib.request.urlopen(cluster.url + "/api/v1/namespaces", context=ctx, timeout=10)
        raise AssertionError("an API path answered without a token")
    except urllib.error.HTTPError as exc:
        assert exc.code == 401

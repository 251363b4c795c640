"""The hot reads' fast path on a real coordinator and ZooKeeper: the same bytes as the
routes, validators that change exactly when the mirror does, gzip, and every refusal
still answered by the route."""

from __future__ import annotations

import gzip
from collections.abc import Iterator

import pytest
from kazoo.client import KazooClient

from coordinator.store import ensure_layout
from registry.layout import Layout
from tests.coordinator.test_api_support import (
    Api,
    foreign_leader,
    put_group,
    register,
    running,
    schedule,
)
from tests.helpers import wait_until

PATHS = ("/v1/topology", "/v1/vms", "/v1/events")


@pytest.fixture
def api(zk_hosts: str, zk: KazooClient, zk_layout: Layout) -> Iterator[Api]:
    ensure_layout(zk, zk_layout)
    for i in range(30):  # enough rows for gzip to apply
        register(zk, zk_layout, f"vm-{i}", fd=i % 3, ud=i % 5)
    put_group(zk, zk_layout, "g", ["vm-0", "vm-1", "vm-2"], min_available=2)
    schedule(zk, zk_layout, "E1", ["vm-0"])
    with foreign_leader(zk, zk_layout), running(zk_hosts, zk_layout) as api:
        wait_until(lambda: len(api.node.cache.view().vm_views()) == 30, 10)
        yield api


@pytest.mark.parametrize("path", PATHS)
def test_same_bytes_as_the_route_with_a_validator(api: Api, path: str) -> None:
    with api.viewer as http:
        fast = http.get(path, headers={"Accept-Encoding": "identity"})
        routed = http.get(path + "?", params={"active": "true"} if path == "/v1/events"
                          else {"_": "route"})  # a query string takes the FastAPI route
    assert fast.status_code == 200 and "etag" in fast.headers
    assert fast.headers["content-type"] == "application/json"
    if path != "/v1/events":
        assert fast.json() == routed.json()
    else:
        assert [e for e in fast.json() if e["active"]] == routed.json()
    with api.viewer as http:
        again = http.get(path, headers={"If-None-Match": fast.headers["etag"],
                                        "Accept-Encoding": "identity"})
        assert again.status_code == 304 and again.content == b""
        assert again.headers["etag"] == fast.headers["etag"]
        head = http.head(path, headers={"Accept-Encoding": "identity"})
        assert head.status_code == 200 and head.content == b""
        assert head.headers["content-length"] == str(len(fast.content))


def test_gzip_is_its_own_representation(api: Api) -> None:
    with api.viewer as http:
        plain = http.get("/v1/vms", headers={"Accept-Encoding": "identity"})
        raw = http.build_request("GET", "/v1/vms", headers={"Accept-Encoding": "gzip"})
        zipped = http.send(raw, stream=True)
        wire = b"".join(zipped.iter_raw())  # the bytes as sent, not decoded by httpx
        zipped.close()
    assert zipped.headers["content-encoding"] == "gzip"
    assert zipped.headers["etag"] != plain.headers["etag"]
    assert int(zipped.headers["content-length"]) == len(wire) < len(plain.content)
    assert gzip.decompress(wire) == plain.content


def test_a_change_in_the_mirror_changes_the_validator(api: Api, zk: KazooClient,
                                                      zk_layout: Layout) -> None:
    with api.viewer as http:
        before = http.get("/v1/topology")
        register(zk, zk_layout, "vm-30", fd=0, ud=0)
        wait_until(lambda: "vm-30" in api.node.cache.view().vm_views(), 10)
        after = http.get("/v1/topology", headers={"If-None-Match": before.headers["etag"]})
    assert after.status_code == 200 and after.headers["etag"] != before.headers["etag"]
    assert "vm-30" in after.text


def test_refusals_are_the_routes(api: Api) -> None:
    with api.client(token=None) as http:
        missing = http.get("/v1/topology")
    with api.client(token="not-a-token") as http:
        unknown = http.get("/v1/topology")
    assert missing.status_code == 401 and unknown.status_code == 401
    assert "etag" not in missing.headers and missing.json()["detail"]

"""The control API: cluster, settings, VMs, events, clock; bad requests are 4xx, never 500."""

from __future__ import annotations

import httpx
import pytest

from imds_sim.testing import Emulator
from registry.clock import VirtualClock, parse_clock
from tests.imds_sim.conftest import INSTANCE, H


def test_clock_spec_can_be_adopted(fast_emu: Emulator) -> None:
    body = fast_emu.control.get("/clock").json()
    clock = parse_clock(body["spec"])
    assert isinstance(clock, VirtualClock) and clock.speed == 600
    assert abs(clock.now() - fast_emu.clock.now()) < 60  # 0.1 s real at 600x
    assert abs(body["now"] - clock.now()) < 600


def test_explicit_cluster(emu: Emulator, http: httpx.Client) -> None:
    r = emu.control.put("/cluster", json={"vms": [
        {"name": "kafka-0", "fd": 0, "ud": 0, "availability_set": "kafka", "zone": "1",
         "vm_size": "Standard_E4s_v5", "location": "northeurope"},
        {"name": "kafka-1", "fd": 1, "ud": 1, "availability_set": "kafka",
         "private_ip": "10.0.7.9", "mac": "000D3AABCDEF"},
    ], "default_vm": "kafka-1", "rate_limit_per_s": 0})  # fmt: skip
    assert r.status_code == 200
    view = r.json()
    assert view["default_vm"] == "kafka-1" and [v["name"] for v in view["vms"]] == [
        "kafka-0", "kafka-1"
    ]  # fmt: skip
    c = http.get(emu.url + INSTANCE + "?api-version=2021-02-01", headers=H).json()
    assert c["compute"]["name"] == "kafka-1"
    nic = c["network"]["interface"][0]
    assert nic["macAddress"] == "000D3AABCDEF"
    assert nic["ipv4"]["ipAddress"][0]["privateIpAddress"] == "10.0.7.9"
    k0 = emu.vm("kafka-0")
    assert (k0["zone"], k0["vm_size"], k0["location"], k0["state"]) == (
        "1", "Standard_E4s_v5", "northeurope", "up")  # fmt: skip


def test_generator_cluster(emu: Emulator) -> None:
    r = emu.control.post("/cluster", json={"fds": 2, "uds": 3, "vms": 7, "prefix": "node",
                                           "availability_set": "as-x"})  # fmt: skip
    assert r.status_code == 200
    vms = r.json()["vms"]
    assert [(v["name"], v["fd"], v["ud"]) for v in vms] == [
        ("node0", 0, 0), ("node1", 1, 1), ("node2", 0, 2), ("node3", 1, 0),
        ("node4", 0, 1), ("node5", 1, 2), ("node6", 0, 0),
    ]  # fmt: skip
    assert {v["availability_set"] for v in vms} == {"as-x"}
    assert emu.control.get("/cluster").json()["rate_limit_per_s"] == 5


def test_replacing_the_cluster_resets_events_and_faults(emu: Emulator) -> None:
    emu.schedule(ud=0)
    emu.fault(kind="drop")
    emu.reset({"vms": 3})
    assert emu.control.get("/events").json() == []
    assert emu.control.get("/faults").json() == []


def test_events_listing_and_filters(emu: Emulator) -> None:
    a = emu.schedule(ud=0, type="Freeze", source="User", description="d", duration_s=9,
                     notice_s=60)  # fmt: skip
    b = emu.schedule(vms=["vm-1"], started=True, downtime_s=0, impact_delay_s=0)
    assert a["not_before"] - a["created_at"] == pytest.approx(60, abs=1)
    assert (a["type"], a["source"], a["duration_s"], a["downtime_s"]) == ("Freeze", "User", 9, 9)
    all_events = emu.control.get("/events").json()
    assert [e["event_id"] for e in all_events] == [a["event_id"], b["event_id"]]
    active = emu.control.get("/events", params={"active": "true"}).json()
    assert [e["event_id"] for e in active] == [a["event_id"]]
    done = emu.control.get("/events", params={"active": "false"}).json()
    assert [(e["event_id"], e["status"]) for e in done] == [(b["event_id"], "Completed")]
    assert emu.event(a["event_id"].lower())["event_id"] == a["event_id"]


def test_given_event_id_and_not_before(emu: Emulator) -> None:
    not_before = emu.clock.now() + 3600
    e = emu.schedule(ud=1, event_id="c7061bac-afdc-4513-b24b-aa5f13a16123", not_before=not_before)
    assert e["event_id"] == "C7061BAC-AFDC-4513-B24B-AA5F13A16123"
    assert e["not_before"] == not_before
    again = emu.control.post("/events", json={"ud": 2, "event_id": e["event_id"]})
    assert again.status_code == 409


def test_multi_ud_flag(emu: Emulator) -> None:
    r = emu.control.post("/events", json={"vms": ["vm-0", "vm-1"]})
    assert r.status_code == 400 and "update domain" in r.json()["detail"]
    r = emu.control.post("/events", json={"vms": ["vm-0", "vm-1"], "allow_multi_ud": True})
    assert r.status_code == 201 and r.json()["uds"] == [0, 1]


@pytest.mark.parametrize(
    ("method", "path", "body", "status"),
    [
        ("post", "/events", {}, 422),  # neither ud nor vms
        ("post", "/events", {"ud": 0, "vms": ["vm-0"]}, 422),
        ("post", "/events", {"vms": []}, 422),
        ("post", "/events", {"ud": 0, "type": "Explode"}, 422),
        ("post", "/events", {"ud": 0, "source": "Nobody"}, 422),
        ("post", "/events", {"ud": -1}, 422),
        ("post", "/events", {"ud": 0, "notice_s": -5}, 422),
        ("post", "/events", {"ud": 0, "duration_s": -2}, 422),
        ("post", "/events", {"ud": 0, "event_id": "not-a-guid"}, 422),
        ("post", "/events", {"ud": 0, "colour": "red"}, 422),  # unknown key
        ("post", "/events", {"ud": 0, "not_before": "tomorrow"}, 422),
        ("post", "/events", {"ud": 99}, 400),  # no VM in that UD
        ("post", "/events", {"vms": ["ghost"]}, 400),
        ("post", "/events", {"vms": ["bad name!"]}, 422),
        ("get", "/events/00000000-0000-0000-0000-000000000000", None, 404),
        ("delete", "/events/00000000-0000-0000-0000-000000000000", None, 404),
        ("get", "/vms/ghost", None, 404),
        ("put", "/cluster", {"vms": 0}, 422),
        ("put", "/cluster", {"vms": 100000}, 422),
        ("put", "/cluster", {"vms": [{"name": "a"}, {"name": "a"}]}, 422),
        (
            "put",
            "/cluster",
            {"vms": [{"name": "a", "availability_set": "x", "scale_set": "y"}]},
            422,
        ),  # fmt: skip
        ("put", "/cluster", {"vms": [{"name": "a", "mac": "00:0d:3a:00:00:00"}]}, 422),
        ("put", "/cluster", {"vms": [{"name": "a", "private_ip": "127.0.0.1"}]}, 422),
        ("put", "/cluster", {"vms": 3, "default_vm": "ghost"}, 400),
        ("put", "/cluster", {"vms": 3, "fds": 0}, 422),
        ("put", "/cluster", {"vms": 3, "prefix": "a/b"}, 422),
        ("put", "/cluster", [1, 2], 422),
        ("patch", "/settings", {"default_vm": "ghost"}, 404),
        ("patch", "/settings", {"rate_limit_per_s": -1}, 422),
        ("post", "/faults", {"kind": "explode"}, 422),
        ("post", "/faults", {"kind": "status", "status": 200}, 422),
        ("post", "/faults", {"kind": "drop", "vm": "ghost"}, 400),
        ("post", "/faults", {"kind": "slow_first_call", "delay_s": 121}, 422),
        ("post", "/faults", {"kind": "latency", "count": 0}, 422),
        ("post", "/faults", {"kind": "latency", "endpoint": "attested"}, 422),
        ("delete", "/faults/12345", None, 404),
        ("delete", "/faults/abc", None, 422),
    ],
)
def test_validation_errors_are_4xx(emu: Emulator, method: str, path: str, body: object,
                                   status: int) -> None:  # fmt: skip
    kwargs = {} if body is None else {"json": body}
    r = emu.control.request(method.upper(), path, **kwargs)
    assert r.status_code == status, r.text
    assert "detail" in r.json()


def test_invalid_json_body_is_422(emu: Emulator) -> None:
    headers = {"content-type": "application/json"}
    r = emu.control.post("/events", content=b"{not json", headers=headers)
    assert r.status_code == 422


def test_cancel_started_is_409(emu: Emulator) -> None:
    e = emu.schedule(ud=0, started=True, downtime_s=60)
    r = emu.control.delete(f"/events/{e['event_id']}")
    assert r.status_code == 409


def test_settings_roundtrip(emu: Emulator) -> None:
    r = emu.control.patch("/settings", json={"rate_limit_per_s": 7, "strict_incarnation": True})
    assert r.json() == {"default_vm": "vm-0", "rate_limit_per_s": 7, "strict_incarnation": True}
    assert emu.control.get("/settings").json()["rate_limit_per_s"] == 7


def test_openapi_lists_control_api(emu: Emulator, http: httpx.Client) -> None:
    paths = http.get(emu.url + "/openapi.json").json()["paths"]
    assert {"/control/events", "/control/faults", "/control/cluster", "/control/clock"} <= set(
        paths
    )
    assert not any(p.startswith("/metadata") for p in paths)

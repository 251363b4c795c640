"""`/metadata/scheduledevents` over HTTP: life cycle, incarnations, ETags, acknowledgements."""

from __future__ import annotations

import re
import subprocess
import time
from collections.abc import Callable

import httpx
import pytest

from imds_sim.testing import Emulator
from tests.imds_sim.conftest import SE, H, needs_curl

V = "?api-version=2020-07-01"
RFC1123 = re.compile(r"[A-Z][a-z]{2}, \d{2} [A-Z][a-z]{2} \d{4} \d{2}:\d{2}:\d{2} GMT")
GUID = re.compile(r"[0-9A-F]{8}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{4}-[0-9A-F]{12}")


def doc(http: httpx.Client, emu: Emulator, vm: str, version: str = "2020-07-01") -> dict:
    r = http.get(emu.vm_url(vm) + SE + f"?api-version={version}", headers=H)
    assert r.status_code == 200, r.text
    return r.json()


def ack(http: httpx.Client, emu: Emulator, vm: str, *ids: str, **extra: object) -> httpx.Response:
    body = {"StartRequests": [{"EventId": i} for i in ids], **extra}
    return http.post(emu.vm_url(vm) + SE + V, headers=H, json=body)


def unreachable(http: httpx.Client, emu: Emulator, vm: str) -> bool:
    try:
        http.get(emu.vm_url(vm) + SE + V, headers=H)
    except httpx.TransportError:
        return True
    return False


def wait_for(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


def test_documented_incarnation_sequence(emu: Emulator, http: httpx.Client) -> None:
    """1 (no events) -> 2 (Scheduled) -> 3 (Started, NotBefore "") -> 4 (no events)."""
    first = doc(http, emu, "vm-0")
    assert first == {"DocumentIncarnation": 1, "Events": []}
    assert doc(http, emu, "vm-0") == first  # polling changes nothing

    event = emu.schedule(ud=1, type="Freeze", duration_s=1, description="Host agent update")
    scheduled = doc(http, emu, "vm-0")
    assert scheduled["DocumentIncarnation"] == 2
    [e] = scheduled["Events"]
    assert e == {
        "EventId": event["event_id"],
        "EventStatus": "Scheduled",
        "EventType": "Freeze",
        "ResourceType": "VirtualMachine",
        "Resources": ["vm-1", "vm-6", "vm-11"],
        "NotBefore": event["not_before_text"],
        "Description": "Host agent update",
        "EventSource": "Platform",
        "DurationInSeconds": 1,
    }
    assert GUID.fullmatch(e["EventId"]) and RFC1123.fullmatch(e["NotBefore"])
    assert doc(http, emu, "vm-0")["DocumentIncarnation"] == 2

    assert ack(http, emu, "vm-6", e["EventId"]).status_code == 200
    started = doc(http, emu, "vm-0")
    assert started["DocumentIncarnation"] == 3
    assert started["Events"][0]["EventStatus"] == "Started"
    assert started["Events"][0]["NotBefore"] == ""
    assert started["Events"][0]["EventId"] == e["EventId"]

    wait_for(lambda: doc(http, emu, "vm-0")["DocumentIncarnation"] == 4)
    assert doc(http, emu, "vm-0") == {"DocumentIncarnation": 4, "Events": []}
    assert doc(http, emu, "vm-6") == {"DocumentIncarnation": 4, "Events": []}  # back up


def test_ack_by_one_vm_starts_it_for_all_resources(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(ud=2, type="Reboot", downtime_s=1.0, impact_delay_s=0)
    assert doc(http, emu, "vm-2")["Events"][0]["EventStatus"] == "Scheduled"
    r = ack(http, emu, "vm-0", event["event_id"], DocumentIncarnation=2)  # not a resource
    assert r.status_code == 200
    for vm in ("vm-2", "vm-7", "vm-12"):
        assert unreachable(http, emu, vm), vm
    assert not unreachable(http, emu, "vm-0") and not unreachable(http, emu, "vm-3")
    views = {v["name"]: v for v in emu.control.get("/vms").json()}
    assert views["vm-7"]["state"] == "down" and views["vm-7"]["down_by"] == [event["event_id"]]
    recorded = emu.event(event["event_id"])
    assert recorded["start_cause"] == "ack" and recorded["status"] == "Started"
    assert [(a["vm"], a["incarnation"], a["effective"]) for a in recorded["acks"]] == [
        ("vm-0", 2, True)
    ]

    wait_for(lambda: not unreachable(http, emu, "vm-7"))
    assert doc(http, emu, "vm-7") == {"DocumentIncarnation": 4, "Events": []}
    history = emu.vm("vm-7")["history"]
    assert [h["state"] for h in history] == ["up", "down", "up"]
    assert history[2]["at"] - history[1]["at"] == pytest.approx(1.0)
    assert emu.event(event["event_id"])["status"] == "Completed"


@needs_curl
def test_down_vm_looks_like_a_vanished_host_to_curl(emu: Emulator) -> None:
    emu.schedule(vms=["vm-4"], started=True, downtime_s=30, impact_delay_s=0)
    url = emu.vm_url("vm-4") + SE + V
    run = subprocess.run(["curl", "-sS", "-H", "Metadata:true", url],
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    assert run.returncode == 52, run  # "Empty reply from server"
    assert run.stdout == ""


def test_second_ack_is_200_and_recorded(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(ud=3, impact_delay_s=60)
    assert ack(http, emu, "vm-3", event["event_id"], DocumentIncarnation="2").status_code == 200
    assert ack(http, emu, "vm-8", event["event_id"].lower()).status_code == 200
    acks = emu.event(event["event_id"])["acks"]
    assert [(a["vm"], a["incarnation"], a["effective"]) for a in acks] == [
        ("vm-3", "2", True),
        ("vm-8", None, False),
    ]


def test_not_before_start_on_fast_clock(fast_emu: Emulator, http: httpx.Client) -> None:
    emu = fast_emu
    event = emu.schedule(ud=4, type="Reboot", downtime_s=600)  # 15 min notice: 1.5 s real
    assert doc(http, emu, "vm-4")["Events"][0]["NotBefore"] == event["not_before_text"]
    start = time.monotonic()
    wait_for(lambda: emu.event(event["event_id"])["status"] != "Scheduled", timeout=4)
    assert 1.0 < time.monotonic() - start < 3.5
    recorded = emu.event(event["event_id"])
    assert recorded["start_cause"] == "not_before"
    assert recorded["started_at"] == event["not_before"]
    assert unreachable(http, emu, "vm-9")
    assert doc(http, emu, "vm-0")["Events"][0]["EventStatus"] == "Started"
    wait_for(lambda: not unreachable(http, emu, "vm-9"), timeout=4)  # 600 s virtual = 1 s
    assert doc(http, emu, "vm-9") == {"DocumentIncarnation": 4, "Events": []}
    assert emu.clock.now() >= recorded["started_at"] + 600


def test_visible_to_the_availability_set_only(emu: Emulator, http: httpx.Client) -> None:
    emu.reset({"vms": [
        {"name": "a0", "availability_set": "A", "ud": 0},
        {"name": "a1", "availability_set": "A", "ud": 1},
        {"name": "b0", "availability_set": "B", "ud": 0},
        {"name": "s0", "scale_set": "S", "ud": 0},
    ], "rate_limit_per_s": 0})  # fmt: skip
    event = emu.schedule(ud=0, availability_set="A")
    assert event["resources"] == ["a0"]
    assert [e["EventId"] for e in doc(http, emu, "a1")["Events"]] == [event["event_id"]]
    assert doc(http, emu, "b0") == {"DocumentIncarnation": 1, "Events": []}
    assert doc(http, emu, "s0") == {"DocumentIncarnation": 1, "Events": []}
    r = ack(http, emu, "b0", event["event_id"])
    assert r.status_code == 400 and event["event_id"] in r.json()["error"]
    assert ack(http, emu, "a1", event["event_id"]).status_code == 200


def test_fields_and_types_by_version(emu: Emulator, http: httpx.Client) -> None:
    emu.schedule(ud=0, type="Reboot", source="User", description="user reboot")
    emu.schedule(ud=0, type="Preempt")
    emu.schedule(ud=0, type="Terminate", notice_s=300)
    expected = {
        "2017-03-01": (["Reboot"], set()),
        "2017-08-01": (["Reboot"], set()),
        "2017-11-01": (["Reboot", "Preempt"], set()),
        "2019-01-01": (["Reboot", "Preempt", "Terminate"], set()),
        "2019-04-01": (["Reboot", "Preempt", "Terminate"], {"Description"}),
        "2019-08-01": (["Reboot", "Preempt", "Terminate"], {"Description", "EventSource"}),
        "2020-07-01": (["Reboot", "Preempt", "Terminate"],
                       {"Description", "EventSource", "DurationInSeconds"}),
    }  # fmt: skip
    base = {"EventId", "EventStatus", "EventType", "ResourceType", "Resources", "NotBefore"}
    for version, (types, extra) in expected.items():
        d = doc(http, emu, "vm-1", version)
        assert d["DocumentIncarnation"] == 4
        assert [e["EventType"] for e in d["Events"]] == types, version
        assert all(set(e) == base | extra for e in d["Events"]), version
        names = d["Events"][0]["Resources"]
        assert names == (["_vm-0", "_vm-5", "_vm-10"] if version == "2017-03-01"
                         else ["vm-0", "vm-5", "vm-10"])  # fmt: skip
    reboot = doc(http, emu, "vm-1")["Events"][0]
    assert (reboot["EventSource"], reboot["DurationInSeconds"]) == ("User", -1)


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"[]",
        b'{"StartRequests": {}}',
        b'{"StartRequests": []}',
        b'{"StartRequests": [{}]}',
        b'{"StartRequests": [{"EventId": 5}]}',
        b'{"StartRequests": ["id"]}',
        b'{"startrequests": [{"EventId": "x"}]}',
        b'{"StartRequests": [{"EventId": "x"}], "DocumentIncarnation": [1]}',
    ],
)
def test_malformed_post_400(emu: Emulator, http: httpx.Client, body: bytes) -> None:
    event = emu.schedule(ud=0)
    r = http.post(emu.url + SE + V, headers=H, content=body.replace(b'"x"', b'"%s"' % (
        event["event_id"].encode())))  # fmt: skip
    assert r.status_code == 400
    assert r.json() == {"error": "Bad request. Malformed StartRequests payload"}
    assert emu.event(event["event_id"])["status"] == "Scheduled"


def test_unknown_event_id_400_with_message(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(ud=0)
    bogus = "F020BA2E-3BC0-4C40-A10B-86575A9EABD5"
    r = ack(http, emu, "vm-0", event["event_id"], bogus)
    assert r.status_code == 400
    assert r.json() == {
        "error": f"Bad request. EventId {bogus} is not a scheduled event of this VM"
    }
    assert emu.event(event["event_id"])["status"] == "Scheduled"  # all or nothing


def test_content_type_not_checked(emu: Emulator, http: httpx.Client) -> None:
    body = '{"StartRequests": [{"EventId": "%s"}]}'
    for content_type in ("application/x-www-form-urlencoded", "text/plain", None):
        event = emu.schedule(ud=1, impact_delay_s=3600)
        headers = dict(H) if content_type is None else {**H, "Content-Type": content_type}
        r = http.post(emu.url + SE + V, headers=headers, content=body % event["event_id"])
        assert r.status_code == 200, content_type
        assert emu.event(event["event_id"])["status"] == "Started"


def test_post_needs_metadata_and_version(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(ud=0)
    body = {"StartRequests": [{"EventId": event["event_id"]}]}
    assert http.post(emu.url + SE + V, json=body).status_code == 400
    assert http.post(emu.url + SE, headers=H, json=body).status_code == 400
    assert emu.event(event["event_id"])["status"] == "Scheduled"


def test_etag_and_if_none_match(emu: Emulator, http: httpx.Client) -> None:
    url = emu.vm_url("vm-2") + SE + V
    first = http.get(url, headers=H)
    tag = first.headers["ETag"]
    for placeholder in ("0", "null", "*", '"nope"'):
        r = http.get(url, headers={**H, "If-None-Match": placeholder})
        assert r.status_code == 200 and r.json() == first.json()
    r = http.get(url, headers={**H, "If-None-Match": tag})
    assert r.status_code == 304 and r.content == b"" and r.headers["ETag"] == tag
    event = emu.schedule(ud=2, impact_delay_s=3600)
    changed = http.get(url, headers={**H, "If-None-Match": tag})
    assert changed.status_code == 200 and changed.headers["ETag"] != tag
    new_tag = changed.headers["ETag"]
    old_client = http.get(emu.vm_url("vm-2") + SE + "?api-version=2017-03-01", headers=H)
    assert old_client.headers["ETag"] != new_tag  # the tag names this version's document
    assert http.get(url, headers={**H, "If-None-Match": new_tag}).status_code == 304
    posted = http.post(url, headers={**H, "If-None-Match": new_tag},
                       json={"StartRequests": [{"EventId": event["event_id"]}]})  # fmt: skip
    assert posted.status_code == 200
    assert http.get(url, headers={**H, "If-None-Match": new_tag}).status_code == 200


def test_cancel_removes_without_downtime(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(ud=0, description="cancelled maintenance")
    assert doc(http, emu, "vm-0")["DocumentIncarnation"] == 2
    cancelled = emu.control.delete(f"/events/{event['event_id']}")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "Cancelled"
    assert doc(http, emu, "vm-0") == {"DocumentIncarnation": 3, "Events": []}
    assert [h["state"] for h in emu.vm("vm-0")["history"]] == ["up"]
    r = ack(http, emu, "vm-0", event["event_id"])
    assert r.status_code == 400  # gone


def test_hardware_failure_goes_straight_to_started(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(ud=1, type="Redeploy", started=True, downtime_s=30, impact_delay_s=0)
    d = doc(http, emu, "vm-0")
    assert d["DocumentIncarnation"] == 2
    assert d["Events"][0]["EventStatus"] == "Started" and d["Events"][0]["NotBefore"] == ""
    assert emu.event(event["event_id"])["start_cause"] == "immediate"
    assert unreachable(http, emu, "vm-1")


def test_impact_delay_lets_resources_see_started(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(vms=["vm-3"], not_before=emu.clock.now(), impact_delay_s=0.5,
                         downtime_s=0.3)  # fmt: skip
    wait_for(lambda: emu.event(event["event_id"])["status"] == "Started")
    seen = doc(http, emu, "vm-3")
    assert seen["DocumentIncarnation"] == 3 and seen["Events"][0]["EventStatus"] == "Started"
    wait_for(lambda: unreachable(http, emu, "vm-3"))
    wait_for(lambda: not unreachable(http, emu, "vm-3"))
    assert doc(http, emu, "vm-3") == {"DocumentIncarnation": 4, "Events": []}


def test_format_not_supported_on_scheduled_events(emu: Emulator, http: httpx.Client) -> None:
    r = http.get(emu.url + SE + V + "&format=text", headers=H)
    assert r.status_code == 400
    assert http.get(emu.url + SE + V + "&format=json", headers=H).status_code == 200


def test_strict_incarnation_setting(emu: Emulator, http: httpx.Client) -> None:
    emu.control.patch("/settings", json={"strict_incarnation": True}).raise_for_status()
    event = emu.schedule(ud=0, impact_delay_s=3600)
    stale = ack(http, emu, "vm-5", event["event_id"], DocumentIncarnation=1)
    assert stale.status_code == 400 and "stale" in stale.json()["error"]
    assert ack(http, emu, "vm-5", event["event_id"], DocumentIncarnation="2").status_code == 200

"""Today's Azure topologies over real HTTP: the newer api-versions and compute fields, the
zonal and Flexible scale-set clusters, the event shapes a coordinator must survive, and
the platform's maintenance walks (update domain, zone or fault domain at a time)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from agent.imds_models import InstanceMetadata
from imds_sim.testing import Emulator
from registry.domains import DomainMode, Where, kind_of, resolve
from tests.imds_sim.conftest import INSTANCE, SE, H

NEWEST = "2025-04-07"
SE_V = "?api-version=2020-07-01"


def compute(http: httpx.Client, emu: Emulator, vm: str, version: str = NEWEST) -> dict:
    r = http.get(emu.vm_url(vm) + INSTANCE + f"/compute?api-version={version}", headers=H)
    assert r.status_code == 200, r.text
    return r.json()


def events(http: httpx.Client, emu: Emulator, vm: str, version: str = "2020-07-01") -> dict:
    r = http.get(emu.vm_url(vm) + SE + f"?api-version={version}", headers=H)
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(condition: Callable[[], Any], timeout: float = 10.0) -> Any:
    deadline = time.monotonic() + timeout
    while not (value := condition()):
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)
    return value


def is_down(http: httpx.Client, emu: Emulator, vm: str) -> bool:
    try:
        http.get(emu.vm_url(vm) + SE + SE_V, headers=H)
    except httpx.TransportError:
        return True
    return False


# ------------------------------------------------------------------ versions and fields


def test_versions_up_to_the_newest_documented(emu: Emulator, http: httpx.Client) -> None:
    listed = http.get(emu.url + "/metadata/versions", headers=H).json()["apiVersions"]
    for version in ("2023-11-15", "2024-03-15", "2024-07-17", NEWEST):
        assert version in listed
        assert http.get(emu.url + INSTANCE + f"?api-version={version}",
                        headers=H).status_code == 200
    # not in the documentation's list: refused, with the newest three
    r = http.get(emu.url + INSTANCE + "?api-version=2022-08-01", headers=H)
    assert r.status_code == 400
    assert r.json()["newest-versions"] == [NEWEST, "2024-07-17", "2024-03-15"]
    # scheduled events keep their own list (2020-07-01 is still the newest)
    assert http.get(emu.url + SE + f"?api-version={NEWEST}", headers=H).status_code == 400


def test_newer_fields_from_the_version_that_introduced_them(emu: Emulator,
                                                             http: httpx.Client) -> None:
    emu.reset({"vms": [
        {"name": "z1", "zone": "2", "sub_fd": "1", "host": "/sub/x/hosts/h1", "fd": 0},
        {"name": "g1", "host_group": "/sub/x/hostGroups/hg", "fd": 1},
    ], "rate_limit_per_s": 0})
    newest = compute(http, emu, "z1")
    assert newest["physicalZone"] == "westeurope-AZ02"
    assert newest["zone"] == "2"
    assert newest["platformSubFaultDomain"] == "1"
    assert newest["host"] == {"id": "/sub/x/hosts/h1"} and newest["hostGroup"] == {"id": ""}
    assert newest["additionalCapabilities"] == {"hibernationEnabled": "false"}
    assert newest["securityProfile"]["encryptionAtHost"] == "false"
    image = newest["storageProfile"]["imageReference"]
    assert {"communityGalleryImageId", "sharedGalleryImageId", "exactVersion"} <= set(image)
    grouped = compute(http, emu, "g1")
    assert grouped["host"] == {"id": ""} and grouped["hostGroup"] == {"id": "/sub/x/hostGroups/hg"}
    assert grouped["physicalZone"] == ""
    # each field only from its version on
    assert "physicalZone" not in compute(http, emu, "z1", "2023-07-01")
    assert "host" not in compute(http, emu, "z1", "2021-11-01")
    assert "additionalCapabilities" not in compute(http, emu, "z1", "2021-10-01")
    assert "platformSubFaultDomain" not in compute(http, emu, "z1", "2021-08-01")
    assert "zone" not in compute(http, emu, "z1", "2017-10-01")
    assert compute(http, emu, "z1", "2017-12-01")["zone"] == "2"
    r = http.get(emu.vm_url("z1") + INSTANCE + "/compute/physicalZone?api-version="
                 f"{NEWEST}&format=text", headers=H)
    assert r.text == "westeurope-AZ02"


def test_a_vm_has_a_host_or_a_host_group_not_both(emu: Emulator) -> None:
    r = emu.control.put("/cluster", json={"vms": [{"name": "a", "host": "h", "host_group": "g"}]})
    assert r.status_code == 422


# ------------------------------------------------------------------ topologies


def registered(http: httpx.Client, emu: Emulator, vm: str) -> InstanceMetadata:
    """What the agent reads from this VM's IMDS (the agent's own parser)."""
    r = http.get(emu.vm_url(vm) + INSTANCE + "?api-version=2021-02-01", headers=H)
    return InstanceMetadata.from_document(r.json())


def where(meta: InstanceMetadata) -> Where:
    return Where(meta.fd, meta.ud, meta.zone, meta.scale_set,
                 flexible=meta.flexible)


def test_zonal_vms_report_zone_and_domains_zero(emu: Emulator, http: httpx.Client) -> None:
    emu.reset({"topology": "zonal", "vms": 6, "rate_limit_per_s": 0})
    docs = {f"vm-{i}": compute(http, emu, f"vm-{i}") for i in range(6)}
    assert [d["zone"] for d in docs.values()] == ["1", "2", "3", "1", "2", "3"]
    for d in docs.values():
        assert (d["platformFaultDomain"], d["platformUpdateDomain"]) == ("0", "0")
        assert d["vmScaleSetName"] == "" and d["virtualMachineScaleSet"] == {"id": ""}
        assert d["placementGroupId"] == ""
        assert d["physicalZone"] == f"westeurope-AZ0{d['zone']}"
    views = emu.control.get("/vms").json()
    assert [(v["zone"], v["fd"], v["ud"], v["availability_set"]) for v in views[:3]] == [
        ("1", 0, 0, ""), ("2", 0, 0, ""), ("3", 0, 0, "")]
    metas = [registered(http, emu, f"vm-{i}") for i in range(6)]
    assert {kind_of(where(m)) for m in metas} == {"zonal"}
    assert resolve(DomainMode.AUTO, [(m.name, where(m)) for m in metas]) == (DomainMode.ZONE, "")


def test_flexible_scale_set_reports_fault_domains_and_no_update_domain(
        emu: Emulator, http: httpx.Client) -> None:
    emu.reset({"topology": "flex", "vms": 6, "fds": 3, "rate_limit_per_s": 0})
    for i in range(6):
        d = compute(http, emu, f"vm-{i}")
        assert d["platformFaultDomain"] == str(i % 3)
        assert d["platformUpdateDomain"] == ""
        assert d["vmScaleSetName"] == "vmss-flex" and d["zone"] == ""
        assert d["virtualMachineScaleSet"]["id"].endswith("/virtualMachineScaleSets/vmss-flex")
        assert d["placementGroupId"] == ""
    r = http.get(emu.vm_url("vm-1") + INSTANCE + "/compute/platformUpdateDomain"
                 "?api-version=2021-02-01&format=text", headers=H)
    assert r.status_code == 200 and r.text == ""
    view = emu.vm("vm-1")
    assert (view["fd"], view["ud"], view["scale_set"], view["orchestration"]) == (
        1, None, "vmss-flex", "flexible")
    metas = [registered(http, emu, f"vm-{i}") for i in range(6)]
    assert all(m.ud is None and m.fd is not None for m in metas)
    newer = InstanceMetadata.from_document(http.get(
        emu.vm_url("vm-1") + INSTANCE + "?api-version=2021-03-01", headers=H).json())
    assert newer.flexible, "virtualMachineScaleSet.id marks a Flexible VM"
    assert {kind_of(where(m)) for m in metas} == {"flexible scale set"}
    assert resolve(DomainMode.AUTO, [(m.name, where(m)) for m in metas]) == (
        DomainMode.FAULT_DOMAIN, "")


def test_zone_spanning_flexible_scale_set(emu: Emulator, http: httpx.Client) -> None:
    emu.reset({"topology": "flex-zonal", "vms": 3, "scale_set": "web", "rate_limit_per_s": 0})
    for i in range(3):
        d = compute(http, emu, f"vm-{i}")
        assert (d["zone"], d["platformFaultDomain"], d["platformUpdateDomain"]) == (
            str(i + 1), "0", "")
        assert d["vmScaleSetName"] == "web"
    metas = [registered(http, emu, f"vm-{i}") for i in range(3)]
    assert resolve(DomainMode.AUTO, [(m.name, where(m)) for m in metas]) == (DomainMode.ZONE, "")


def test_events_by_zone_and_by_fault_domain(emu: Emulator, http: httpx.Client) -> None:
    emu.reset({"topology": "zonal", "vms": 6, "rate_limit_per_s": 0})
    event = emu.schedule(zone="2", notice_s=600)
    assert event["resources"] == ["vm-1", "vm-4"]
    assert (event["zones"], event["uds"], event["fds"]) == (["2"], [0], [0])
    # standalone zonal VMs: each one sees only its own events
    assert len(events(http, emu, "vm-1")["Events"]) == 1
    assert events(http, emu, "vm-0")["Events"] == []
    emu.reset({"topology": "flex", "vms": 6, "rate_limit_per_s": 0})
    event = emu.schedule(fd=1, notice_s=600)
    assert event["resources"] == ["vm-1", "vm-4"] and event["fds"] == [1] and event["uds"] == []
    # a Flexible scale set's VMs all see its events
    assert [e["EventId"] for e in events(http, emu, "vm-0")["Events"]] == [event["event_id"]]
    assert emu.control.post("/events", json={"zone": "9"}).status_code == 400
    assert emu.control.post("/events", json={"fd": 0, "zone": "1"}).status_code == 422


# ------------------------------------------------------------------ event shapes


def test_cancelled_event_vanishes_and_nobody_goes_down(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(ud=1, notice_s=600)
    before = events(http, emu, "vm-1")
    assert before["Events"][0]["EventStatus"] == "Scheduled"
    assert emu.control.delete(f"/events/{event['event_id']}").json()["status"] == "Cancelled"
    after = events(http, emu, "vm-1")
    assert after == {"DocumentIncarnation": before["DocumentIncarnation"] + 1, "Events": []}
    assert [t["state"] for t in emu.vm("vm-1")["history"]] == ["up"]


def test_hardware_failure_is_started_at_once_and_seen_before_the_impact(
        emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(vms=["vm-3"], started=True, impact_delay_s=1.0, downtime_s=1.0)
    assert event["start_cause"] == "immediate" and event["impact_delay_s"] == 1.0
    [own] = events(http, emu, "vm-3")["Events"]
    assert (own["EventStatus"], own["NotBefore"], own["EventType"]) == ("Started", "", "Reboot")
    wait_for(lambda: is_down(http, emu, "vm-3"), 5)
    wait_for(lambda: emu.event(event["event_id"])["status"] == "Completed", 5)


def test_default_impact_delay_lets_an_affected_vm_see_its_event_started(
        emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(ud=2, notice_s=600, downtime_s=1.0)
    assert event["impact_delay_s"] == 2.0
    eid = event["event_id"]
    assert http.post(emu.vm_url("vm-2") + SE + SE_V, headers=H,
                     json={"StartRequests": [{"EventId": eid}]}).status_code == 200
    for vm in event["resources"]:  # every affected VM still answers, and sees it Started
        assert events(http, emu, vm)["Events"][0]["EventStatus"] == "Started"
    wait_for(lambda: all(is_down(http, emu, vm) for vm in event["resources"]), 5)
    view = emu.event(eid)
    assert view["down_at"] - view["started_at"] == pytest.approx(2.0)


def test_resources_spanning_several_domains(emu: Emulator) -> None:
    r = emu.control.post("/events", json={"vms": ["vm-0", "vm-1"]})
    assert r.status_code == 400 and "update domains [0, 1]" in r.json()["detail"]
    multi = emu.schedule(vms=["vm-0", "vm-1", "vm-2"], allow_multi_ud=True)
    assert multi["uds"] == [0, 1, 2]
    emu.reset({"topology": "zonal", "vms": 6, "rate_limit_per_s": 0})
    r = emu.control.post("/events", json={"vms": ["vm-0", "vm-1"]})
    assert r.status_code == 400 and "zone 1, zone 2" in r.json()["detail"]
    assert emu.schedule(vms=["vm-0", "vm-1"], allow_multi_ud=True)["zones"] == ["1", "2"]
    emu.reset({"topology": "flex", "vms": 6, "rate_limit_per_s": 0})
    r = emu.control.post("/events", json={"vms": ["vm-0", "vm-1"]})
    assert r.status_code == 400 and "FD 0, FD 1" in r.json()["detail"]


def test_a_vm_in_two_events(emu: Emulator, http: httpx.Client) -> None:
    first = emu.schedule(vms=["vm-3"], type="Freeze", notice_s=600, duration_s=5)
    second = emu.schedule(vms=["vm-3", "vm-8"], type="Reboot", notice_s=900)
    shown = events(http, emu, "vm-3")["Events"]
    assert [e["EventId"] for e in shown] == [first["event_id"], second["event_id"]]
    assert [e["EventType"] for e in shown] == ["Freeze", "Reboot"]
    # acknowledging one leaves the other Scheduled
    http.post(emu.vm_url("vm-3") + SE + SE_V, headers=H,
              json={"StartRequests": [{"EventId": first["event_id"]}]}).raise_for_status()
    assert emu.event(second["event_id"])["status"] == "Scheduled"
    statuses = {e["EventId"]: e["EventStatus"] for e in events(http, emu, "vm-8")["Events"]}
    assert statuses == {first["event_id"]: "Started", second["event_id"]: "Scheduled"}


def test_terminate_notice_is_the_scale_sets_setting(emu: Emulator, http: httpx.Client) -> None:
    emu.reset({"topology": "flex", "vms": 3, "terminate_notice_s": 600, "rate_limit_per_s": 0})
    event = emu.schedule(vms=["vm-1"], type="Terminate")
    assert event["not_before"] - event["created_at"] == pytest.approx(600, abs=1)
    assert event["delete_vms"] and event["duration_s"] == -1
    assert emu.control.get("/cluster").json()["terminate_notice_s"] == 600
    # hidden from clients older than 2019-01-01, shown from then on
    assert events(http, emu, "vm-1", "2017-11-01")["Events"] == []
    assert events(http, emu, "vm-1", "2019-01-01")["Events"][0]["EventType"] == "Terminate"
    for bad in (299, 901):
        r = emu.control.put("/cluster", json={"vms": 3, "terminate_notice_s": bad})
        assert r.status_code == 422


def test_preempt_has_thirty_seconds_and_unknown_duration(emu: Emulator,
                                                          http: httpx.Client) -> None:
    event = emu.schedule(vms=["vm-2"], type="Preempt")
    assert event["not_before"] - event["created_at"] == pytest.approx(30, abs=1)
    [shown] = events(http, emu, "vm-2")["Events"]
    assert (shown["EventType"], shown["DurationInSeconds"]) == ("Preempt", -1)
    assert "DurationInSeconds" not in events(http, emu, "vm-2", "2019-08-01")["Events"][0]
    assert events(http, emu, "vm-2", "2017-08-01")["Events"] == []  # Preempt is 2017-11-01


def test_reboot_duration_unknown_unless_given(emu: Emulator, http: httpx.Client) -> None:
    unknown = emu.schedule(ud=0, notice_s=600)
    known = emu.schedule(ud=1, type="Freeze", notice_s=600, duration_s=9)
    durations = {e["EventId"]: e["DurationInSeconds"] for e in events(http, emu, "vm-0")["Events"]}
    assert durations == {unknown["event_id"]: -1, known["event_id"]: 9}


# ------------------------------------------------------------------ maintenance walks


def walked(emu: Emulator, walk: dict, timeout: float = 10.0) -> dict:
    return wait_for(lambda: (w := emu.get_walk(walk["walk_id"]))["status"] == "done" and w,
                    timeout)


def check_sequential(done: dict) -> None:
    steps = done["steps"]
    for earlier, later in zip(steps, steps[1:], strict=False):
        assert later["scheduled_at"] >= earlier["ended_at"] >= earlier["scheduled_at"]


def test_zonal_walk_goes_zone_by_zone(fast_emu: Emulator) -> None:
    fast_emu.reset({"topology": "zonal", "vms": 6, "rate_limit_per_s": 0})
    walk = fast_emu.walk(notice_s=60, downtime_s=30, split="vm")
    assert walk["unit"] == "zone" and walk["status"] == "running"
    assert [s["domain"] for s in walk["steps"]] == ["zone 1", "zone 2", "zone 3"]
    done = walked(fast_emu, walk)
    check_sequential(done)
    assert [s["vms"] for s in done["steps"]] == [["vm-0", "vm-3"], ["vm-1", "vm-4"],
                                                 ["vm-2", "vm-5"]]
    for step in done["steps"]:
        assert len(step["event_ids"]) == 2  # one event per standalone VM
        for eid in step["event_ids"]:
            view = fast_emu.event(eid)
            assert view["zones"] == [step["value"]] and view["walk_id"] == walk["walk_id"]
            assert view["start_cause"] == "not_before" and view["status"] == "Completed"


def test_flex_walk_goes_fault_domain_by_fault_domain(fast_emu: Emulator) -> None:
    fast_emu.reset({"topology": "flex", "vms": 6, "fds": 3, "rate_limit_per_s": 0})
    walk = fast_emu.walk(notice_s=60, downtime_s=30, order=["2", "0", "1"])
    assert walk["unit"] == "fault_domain"
    done = walked(fast_emu, walk)
    check_sequential(done)
    assert [s["domain"] for s in done["steps"]] == ["FD 2", "FD 0", "FD 1"]
    for step in done["steps"]:
        [eid] = step["event_ids"]
        assert fast_emu.event(eid)["fds"] == [int(step["value"])]
        assert fast_emu.event(eid)["resources"] == step["vms"]


def test_availability_set_walk_and_acknowledgements_speed_it_up(
        fast_emu: Emulator, http: httpx.Client) -> None:
    fast_emu.reset({"vms": 6, "fds": 2, "uds": 3, "rate_limit_per_s": 0})
    walk = fast_emu.walk(notice_s=3600, downtime_s=10, gap_s=5)
    assert walk["unit"] == "update_domain"
    for step in range(3):  # acknowledge each step's event as soon as it appears
        ids = wait_for(lambda s=step: fast_emu.get_walk(walk["walk_id"])["steps"][s]["event_ids"])
        eid = ids[0]
        view = fast_emu.event(eid)
        http.post(fast_emu.vm_url(view["resources"][0]) + SE + SE_V, headers=H,
                  json={"StartRequests": [{"EventId": eid}]}).raise_for_status()
    done = walked(fast_emu, walk)
    check_sequential(done)
    assert [s["domain"] for s in done["steps"]] == ["UD 0", "UD 1", "UD 2"]
    assert done["steps"][1]["scheduled_at"] == pytest.approx(done["steps"][0]["ended_at"] + 5)
    assert done["ended_at"] - done["created_at"] < 3600, "acknowledged, not forced"


def test_walk_together_and_refusals(fast_emu: Emulator) -> None:
    fast_emu.reset({"topology": "flex", "vms": 6, "rate_limit_per_s": 0})
    walk = fast_emu.walk(notice_s=60, downtime_s=30, together=True)
    assert all(s["scheduled_at"] == walk["created_at"] for s in walk["steps"])
    walked(fast_emu, walk)
    assert fast_emu.control.post("/walks", json={"order": ["7"]}).status_code == 400
    assert fast_emu.control.post("/walks", json={"unit": "zone"}).status_code == 400
    # a mixed cluster has no common unit: the walk must name one
    fast_emu.reset({"vms": [{"name": "a", "zone": "1"}, {"name": "b", "ud": 1}],
                    "rate_limit_per_s": 0})
    r = fast_emu.control.post("/walks", json={})
    assert r.status_code == 400 and "mixes" in r.json()["detail"]
    named = fast_emu.walk(unit="fault_domain", notice_s=3600)
    stopped = fast_emu.control.delete(f"/walks/{named['walk_id']}").json()
    assert stopped["status"] == "stopped" and len(stopped["steps"][0]["event_ids"]) == 1
    assert fast_emu.control.get("/walks").json()[0]["walk_id"] == named["walk_id"]

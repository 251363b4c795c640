"""Injected faults over HTTP: every kind, targeting, count, duration, clearing."""

from __future__ import annotations

import json
import shutil
import subprocess
import time

import httpx
import pytest

from imds_sim.testing import Emulator
from tests.imds_sim.conftest import INSTANCE, SE, H

SEV = SE + "?api-version=2020-07-01"
IV = INSTANCE + "?api-version=2021-02-01"


def test_status_fault_count_and_target(emu: Emulator, http: httpx.Client) -> None:
    fault = emu.fault(kind="status", status=500, vm="vm-1", count=2)
    assert fault["remaining"] == 2 and fault["vms"] == ["vm-1"]
    url = emu.vm_url("vm-1") + SEV
    first = http.get(url, headers=H)
    assert first.status_code == 500
    assert first.json() == {"error": "Internal server error. Retry after some time"}
    assert http.get(emu.vm_url("vm-2") + SEV, headers=H).status_code == 200  # other VM
    assert http.get(url, headers=H).status_code == 500
    assert http.get(url, headers=H).status_code == 200  # used up
    assert emu.control.get("/faults").json() == []


@pytest.mark.parametrize("status", [429, 410, 404, 503])
def test_other_statuses(emu: Emulator, http: httpx.Client, status: int) -> None:
    emu.fault(kind="status", status=status, count=1)
    r = http.get(emu.url + IV, headers=H)
    assert r.status_code == status and "error" in r.json()


def test_fault_applies_to_valid_requests_only(emu: Emulator, http: httpx.Client) -> None:
    emu.fault(kind="status", status=500, count=1)
    assert http.get(emu.url + INSTANCE, headers=H).status_code == 400  # no api-version
    assert http.get(emu.url + IV, headers=H).status_code == 500


def test_endpoint_and_method_filters(emu: Emulator, http: httpx.Client) -> None:
    emu.fault(kind="status", status=500, endpoint="scheduledevents", method="POST")
    event = emu.schedule(ud=0)
    assert http.get(emu.url + SEV, headers=H).status_code == 200
    assert http.get(emu.url + IV, headers=H).status_code == 200
    body = {"StartRequests": [{"EventId": event["event_id"]}]}
    assert http.post(emu.url + SEV, headers=H, json=body).status_code == 500
    assert emu.event(event["event_id"])["status"] == "Scheduled"  # fault: not processed
    emu.clear_faults()
    assert http.post(emu.url + SEV, headers=H, json=body).status_code == 200


def test_drop_connection(emu: Emulator, http: httpx.Client) -> None:
    emu.fault(kind="drop", vm="vm-3", count=1)
    with pytest.raises(httpx.RemoteProtocolError):
        http.get(emu.vm_url("vm-3") + IV, headers=H)
    assert http.get(emu.vm_url("vm-3") + IV, headers=H).status_code == 200
    if shutil.which("curl") is None:
        return
    emu.fault(kind="drop", vm="vm-3", count=1)
    run = subprocess.run(["curl", "-sS", "-H", "Metadata:true", emu.vm_url("vm-3") + IV],
                         capture_output=True, text=True, timeout=10)  # fmt: skip
    assert run.returncode == 52


def test_latency_virtual_and_real(fast_emu: Emulator, http: httpx.Client) -> None:
    emu = fast_emu
    emu.fault(kind="latency", latency_s=120, count=1)  # virtual: 0.2 s at 600x
    start = time.monotonic()
    assert http.get(emu.url + SEV, headers=H).status_code == 200
    assert 0.15 < time.monotonic() - start < 1.5
    emu.fault(kind="latency", latency_s=0.3, real=True, count=1)
    start = time.monotonic()
    assert http.get(emu.url + SEV, headers=H).status_code == 200
    assert 0.25 < time.monotonic() - start < 1.5


def test_latency_times_out_a_client(emu: Emulator) -> None:
    emu.fault(kind="latency", latency_s=2, vm="vm-1", count=1)
    with (
        httpx.Client(trust_env=False, timeout=0.3) as client,
        pytest.raises(httpx.ReadTimeout),
    ):
        client.get(emu.vm_url("vm-1") + IV, headers=H)


@pytest.mark.parametrize("endpoint", ["scheduledevents", "instance", "versions"])
def test_malformed_json(emu: Emulator, http: httpx.Client, endpoint: str) -> None:
    emu.fault(kind="malformed_json", endpoint=endpoint, count=1)
    path = {"scheduledevents": SEV, "instance": IV, "versions": "/metadata/versions"}[endpoint]
    r = http.get(emu.url + path, headers=H)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    with pytest.raises(json.JSONDecodeError):
        json.loads(r.text)
    r.raise_for_status()
    assert http.get(emu.url + path, headers=H).json()  # next one is fine


def test_wrong_shape(emu: Emulator, http: httpx.Client) -> None:
    emu.fault(kind="wrong_shape", count=2)
    events = http.get(emu.url + SEV, headers=H).json()
    assert not isinstance(events["DocumentIncarnation"], int)
    assert not isinstance(events["Events"], list)
    instance = http.get(emu.url + IV, headers=H).json()
    assert not isinstance(instance["compute"], dict)


def test_slow_first_scheduled_events_call(fast_emu: Emulator, http: httpx.Client) -> None:
    emu = fast_emu
    fault = emu.fault(kind="slow_first_call", vms=["vm-1", "vm-2"], delay_s=120)
    assert fault["pending_vms"] == ["vm-1", "vm-2"] and fault["endpoint"] == "scheduledevents"
    assert http.get(emu.vm_url("vm-1") + IV, headers=H).status_code == 200  # not SE: quick
    start = time.monotonic()
    assert http.get(emu.vm_url("vm-1") + SEV, headers=H).status_code == 200
    assert time.monotonic() - start > 0.15  # 120 virtual s = 0.2 real s at 600x
    start = time.monotonic()
    assert http.get(emu.vm_url("vm-1") + SEV, headers=H).status_code == 200
    assert time.monotonic() - start < 0.15  # only the first call is slow
    assert emu.control.get("/faults").json()[0]["pending_vms"] == ["vm-2"]


def test_duration_is_virtual(fast_emu: Emulator, http: httpx.Client) -> None:
    emu = fast_emu
    fault = emu.fault(kind="status", status=500, duration_s=300)  # 0.5 real s
    assert fault["expires_at"] is not None
    assert http.get(emu.url + IV, headers=H).status_code == 500
    time.sleep(0.6)
    assert http.get(emu.url + IV, headers=H).status_code == 200


def test_clear_and_remove(emu: Emulator, http: httpx.Client) -> None:
    a = emu.fault(kind="status", status=500)
    emu.fault(kind="drop", vm="vm-9")
    assert len(emu.control.get("/faults").json()) == 2
    assert emu.control.delete(f"/faults/{a['fault_id']}").status_code == 204
    assert emu.control.delete(f"/faults/{a['fault_id']}").status_code == 404
    assert http.get(emu.url + IV, headers=H).status_code == 200
    assert emu.control.delete("/faults").json() == {"cleared": 1}
    assert http.get(emu.vm_url("vm-9") + IV, headers=H).status_code == 200


def test_global_fault_hits_every_vm(emu: Emulator, http: httpx.Client) -> None:
    emu.fault(kind="status", status=500)
    for vm in ("vm-0", "vm-7", "vm-14"):
        assert http.get(emu.vm_url(vm) + IV, headers=H).status_code == 500
    hits = emu.control.get("/faults").json()[0]["hits"]
    assert hits == 3

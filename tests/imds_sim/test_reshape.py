"""Events the platform reshapes: Resources that change while Scheduled, a second impact
while Started, and VMs a Terminate deletes for good."""

from __future__ import annotations

import httpx
import pytest

from imds_sim.model import Conflict, Simulation, SimulationError
from imds_sim.schemas import ClusterSpec, EventRequest
from imds_sim.testing import Emulator

T0 = 1_700_000_000.0


def sim() -> Simulation:
    return Simulation.from_spec(ClusterSpec(fds=3, uds=5, vms=15), T0)


def test_resources_change_while_scheduled_and_every_document_moves() -> None:
    s = sim()
    event = s.schedule(EventRequest(vms=["vm-0"], type="Reboot"), T0)
    before = {vm.name: vm.incarnation for vm in s.vms(T0)}
    s.reshape(event.event_id, ["vm-0", "vm-5"], T0 + 10)
    after = {vm.name: vm.incarnation for vm in s.vms(T0 + 10)}
    assert event.resources == ("vm-0", "vm-5")
    assert all(after[n] == before[n] + 1 for n in event.audience), "every viewer sees it"
    assert [r for _, r in event.resources_history] == [("vm-0",), ("vm-0", "vm-5")]
    _, shown = s.document("vm-3", T0 + 10)
    assert shown[0].resources == ("vm-0", "vm-5")
    with pytest.raises(SimulationError, match="update domains"):
        s.reshape(event.event_id, ["vm-0", "vm-1"], T0 + 20)
    s.reshape(event.event_id, ["vm-0", "vm-1"], T0 + 20, allow_multi_ud=True)
    assert event.uds == (0, 1)
    s.acknowledge("vm-0", [event.event_id], None, "2020-07-01", T0 + 30)
    with pytest.raises(Conflict):
        s.reshape(event.event_id, ["vm-0"], T0 + 40)


def test_a_second_impact_keeps_the_event_started_until_it_ends() -> None:
    s = sim()
    event = s.schedule(EventRequest(vms=["vm-2"], type="Redeploy", downtime_s=100,
                                    started=True, impact_delay_s=0), T0)
    assert s.is_down("vm-2", T0)
    s.add_impact(event.event_id, T0 + 50, downtime_s=200, delay_s=100)
    assert not s.is_down("vm-2", T0 + 120) and event.status.value == "Started"
    assert s.is_down("vm-2", T0 + 160) and event.status.value == "Started"
    assert not s.is_down("vm-2", T0 + 351) and event.status.value == "Completed"
    states = [(t.state, t.at - T0) for t in s.vm("vm-2", T0 + 351).history]
    assert states == [("up", 0), ("down", 0), ("up", 100), ("down", 150), ("up", 350)]
    assert [(i.down_at - T0, i.up_at - T0) for i in event.impacts] == [(0, 100), (150, 350)]
    with pytest.raises(Conflict):
        s.add_impact(event.event_id, T0 + 400, downtime_s=10)


def test_terminate_deletes_its_vms_for_good(emu: Emulator, http: httpx.Client) -> None:
    event = emu.schedule(vms=["vm-4"], type="Terminate", started=True, downtime_s=10,
                         impact_delay_s=0)
    assert event["delete_vms"]
    view = emu.vm("vm-4")
    assert view["deleted"] and view["state"] == "down"
    emu.sim.tick(emu.clock.now() + 3600)
    assert emu.event(event["event_id"])["status"] == "Completed"
    assert emu.vm("vm-4")["state"] == "down", "a deleted VM never comes back"
    with pytest.raises(httpx.HTTPError):
        http.get(f"{emu.vm_url('vm-4')}/metadata/scheduledevents",
                 params={"api-version": "2020-07-01"}, headers={"Metadata": "true"},
                 timeout=2).raise_for_status()
    kept = emu.schedule(vms=["vm-5"], type="Terminate", started=True, delete_vms=False)
    assert not kept["delete_vms"] and not emu.vm("vm-5")["deleted"]


def test_control_api_reshape_and_impact(emu: Emulator) -> None:
    event = emu.schedule(vms=["vm-6"], type="Reboot")
    changed = emu.reshape(event["event_id"], ["vm-6", "vm-11"])
    assert changed["resources"] == ["vm-6", "vm-11"]
    assert [h["resources"] for h in changed["resources_history"]] == [["vm-6"],
                                                                     ["vm-6", "vm-11"]]
    bad = emu.control.patch(f"/events/{event['event_id']}", json={"vms": ["vm-6", "vm-7"]})
    assert bad.status_code == 400 and "update domains" in bad.json()["detail"]
    conflict = emu.control.post(f"/events/{event['event_id']}/impact", json={"downtime_s": 5})
    assert conflict.status_code == 409
    started = emu.schedule(vms=["vm-8"], type="Freeze", started=True, downtime_s=60)
    again = emu.impact(started["event_id"], downtime_s=30, delay_s=90)
    assert len(again["impacts"]) == 2 and again["impacts"][1]["down_at"] is None

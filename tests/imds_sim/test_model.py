"""The pure simulation and rendering, without HTTP: life cycle, incarnations, versions."""

from __future__ import annotations

import json

import pytest

from imds_sim import documents
from imds_sim.cluster import build_cluster
from imds_sim.faults import FaultBook
from imds_sim.model import Conflict, Simulation, SimulationError, StaleIncarnation, UnknownEvent
from imds_sim.ratelimit import SlidingWindowLimiter
from imds_sim.schemas import ClusterSpec, EventRequest, FaultRequest

T0 = 1_700_000_000.0


def sim(**spec: object) -> Simulation:
    return Simulation.from_spec(ClusterSpec.model_validate(spec), T0)


def test_generator_places_vms_round_robin() -> None:
    s = sim(fds=3, uds=5, vms=15)
    vms = {vm.name: vm.config for vm in s.vms(T0)}
    assert list(vms) == [f"vm-{i}" for i in range(15)]
    assert {(c.fd, c.ud) for c in vms.values()} == {(f, u) for f in range(3) for u in range(5)}
    assert vms["vm-7"].fd == 1 and vms["vm-7"].ud == 2
    assert s.default_vm == "vm-0"


def test_identity_is_deterministic_and_private() -> None:
    a = build_cluster(ClusterSpec(vms=300))
    b = build_cluster(ClusterSpec(vms=300))
    assert a.vms == b.vms
    ips = [vm.private_ip for vm in a.vms]
    assert len(set(ips)) == 300
    assert all(ip.startswith("10.0.") and not ip.startswith("127.") for ip in ips)
    assert all(len(vm.mac) == 12 and vm.mac == vm.mac.upper() for vm in a.vms)
    assert len({vm.vm_id for vm in a.vms}) == 300


def test_documented_incarnation_sequence() -> None:
    s = sim()
    assert s.document("vm-1", T0) == (1, [])
    event = s.schedule(EventRequest(ud=1, type="Freeze", notice_s=900, duration_s=5,
                                    impact_delay_s=0), T0)
    incarnation, events = s.document("vm-1", T0 + 1)
    assert incarnation == 2 and events[0].status == "Scheduled"
    assert s.document("vm-1", T0 + 2)[0] == 2  # unchanged poll: no bump
    assert s.document("vm-1", T0 + 900)[0] == 3  # Started at NotBefore
    assert event.start_cause == "not_before" and event.started_at == T0 + 900
    assert s.is_down("vm-1", T0 + 901)
    assert s.document("vm-2", T0 + 905) == (4, [])  # gone, vm back
    assert not s.is_down("vm-1", T0 + 905)
    history = [(t.state, t.at) for t in s.vm("vm-1", T0 + 905).history]
    assert history == [("up", T0), ("down", T0 + 900), ("up", T0 + 905)]


def test_lazy_tick_is_exact_even_if_late() -> None:
    """Nobody looked for an hour: transitions still carry their due times."""
    s = sim()
    event = s.schedule(EventRequest(vms=["vm-4"], type="Reboot", notice_s=60, downtime_s=30,
                                    impact_delay_s=0), T0)
    assert s.document("vm-0", T0 + 3600) == (4, [])
    assert (event.started_at, event.down_at, event.ended_at) == (T0 + 60, T0 + 60, T0 + 90)
    assert event.status == "Completed"


def test_ack_starts_for_all_resources_and_is_recorded() -> None:
    s = sim()
    event = s.schedule(EventRequest(ud=2, notice_s=900, downtime_s=60, impact_delay_s=0), T0)
    assert event.resources == ("vm-2", "vm-7", "vm-12")
    s.acknowledge("vm-0", [event.event_id.lower()], "2", "2020-07-01", T0 + 10)
    assert event.status == "Started" and event.start_cause == "ack"
    assert all(s.is_down(name, T0 + 10) for name in event.resources)
    assert not s.is_down("vm-0", T0 + 10)
    s.acknowledge("vm-1", [event.event_id], 3, "2017-03-01", T0 + 11)  # already started: fine
    acks = [(a.vm, a.incarnation, a.effective) for a in event.acks]
    assert acks == [("vm-0", "2", True), ("vm-1", 3, False)]


def test_unknown_or_foreign_event_rejects_whole_ack() -> None:
    s = sim(vms=[{"name": "a", "availability_set": "x"}, {"name": "b", "availability_set": "y"}])
    event = s.schedule(EventRequest(vms=["a"]), T0)
    with pytest.raises(UnknownEvent):
        s.acknowledge("b", [event.event_id], None, "2020-07-01", T0)  # other scope
    with pytest.raises(UnknownEvent):
        s.acknowledge("a", [event.event_id, "00000000-0000-0000-0000-000000000000"], None,
                      "2020-07-01", T0)  # fmt: skip
    assert event.status == "Scheduled" and not event.acks


def test_strict_incarnation() -> None:
    s = sim(strict_incarnation=True)
    event = s.schedule(EventRequest(ud=0), T0)
    with pytest.raises(StaleIncarnation):
        s.acknowledge("vm-0", [event.event_id], 1, "2020-07-01", T0)
    s.acknowledge("vm-0", [event.event_id], "2", "2020-07-01", T0)
    assert event.status == "Started"


def test_visibility_follows_availability_set() -> None:
    s = sim(vms=[{"name": "a1", "availability_set": "A", "ud": 0},
                 {"name": "a2", "availability_set": "A", "ud": 1},
                 {"name": "b1", "availability_set": "B", "ud": 0},
                 {"name": "lone", "ud": 0}])  # fmt: skip
    s.schedule(EventRequest(vms=["a1"]), T0)
    seen = {name: s.document(name, T0)[0] for name in ("a1", "a2", "b1", "lone")}
    assert seen == {"a1": 2, "a2": 2, "b1": 1, "lone": 1}
    s.schedule(EventRequest(vms=["lone"]), T0)
    assert s.document("lone", T0)[0] == 2 and s.document("a2", T0)[0] == 2


def test_multi_ud_refused_unless_allowed() -> None:
    s = sim()
    with pytest.raises(SimulationError, match="update domain"):
        s.schedule(EventRequest(vms=["vm-0", "vm-1"]), T0)
    event = s.schedule(EventRequest(vms=["vm-0", "vm-1"], allow_multi_ud=True), T0)
    assert event.uds == (0, 1)


def test_cancel_only_scheduled() -> None:
    s = sim()
    event = s.schedule(EventRequest(ud=0, notice_s=100), T0)
    s.cancel(event.event_id, T0 + 1)
    assert event.status == "Cancelled" and s.document("vm-0", T0 + 200) == (3, [])
    assert not any(t.state == "down" for t in s.vm("vm-0", T0 + 200).history)
    started = s.schedule(EventRequest(ud=0, started=True), T0 + 300)
    assert started.start_cause == "immediate"
    with pytest.raises(Conflict):
        s.cancel(started.event_id, T0 + 300)


def test_overlapping_events_keep_vm_down_until_both_end() -> None:
    s = sim()
    s.schedule(EventRequest(vms=["vm-0"], started=True, downtime_s=10, impact_delay_s=0), T0)
    s.schedule(EventRequest(vms=["vm-0"], started=True, downtime_s=20, impact_delay_s=0),
               T0 + 5)
    assert s.is_down("vm-0", T0 + 15)
    assert not s.is_down("vm-0", T0 + 25)
    assert [t.state for t in s.vm("vm-0", T0 + 25).history] == ["up", "down", "up"]


def test_impact_delay_makes_started_visible_to_resources() -> None:
    s = sim()
    s.schedule(EventRequest(vms=["vm-0"], notice_s=10, impact_delay_s=5, downtime_s=5), T0)
    assert not s.is_down("vm-0", T0 + 12)
    assert s.document("vm-0", T0 + 12)[1][0].status == "Started"
    assert s.is_down("vm-0", T0 + 16)


def test_default_notice_per_type_and_rfc1123() -> None:
    s = sim()
    freeze = s.schedule(EventRequest(ud=0, type="Freeze"), T0 + 0.25)
    redeploy = s.schedule(EventRequest(ud=1, type="Redeploy"), T0)
    assert freeze.not_before == T0 + 901  # whole seconds, never earlier than the notice
    assert redeploy.not_before == T0 + 600
    assert documents.rfc1123(1474309787) == "Mon, 19 Sep 2016 18:29:47 GMT"


# ------------------------------------------------------------------ rendering


def test_instance_fields_by_version() -> None:
    cluster = build_cluster(ClusterSpec(vms=3))
    vm = cluster.vms[1]
    old = documents.instance_document(cluster, vm, "2017-04-02")
    assert set(old["compute"]) == {
        "location", "name", "offer", "osType", "platformFaultDomain", "platformUpdateDomain",
        "publisher", "sku", "version", "vmId", "vmSize",
    }  # fmt: skip
    assert old["compute"]["platformFaultDomain"] == "1"
    new = documents.instance_document(cluster, vm, "2021-12-13")
    assert new["compute"]["securityProfile"]["securityType"] == ""
    assert new["compute"]["osProfile"]["computerName"] == "vm-1"
    mid = documents.instance_document(cluster, vm, "2020-07-15")
    assert "disablePasswordAuthentication" not in mid["compute"]["osProfile"]
    assert "resourceDisk" not in mid["compute"]["storageProfile"]

    def primitives(node: object) -> list[object]:
        if isinstance(node, dict):
            return [p for v in node.values() for p in primitives(v)]
        if isinstance(node, list):
            return [p for v in node for p in primitives(v)]
        return [node]

    assert all(isinstance(p, str) for p in primitives(new))


def test_scheduled_events_rendering_by_version() -> None:
    s = sim()
    s.schedule(EventRequest(ud=0, type="Freeze", description="live migration"), T0)
    s.schedule(EventRequest(ud=0, type="Preempt"), T0)
    s.schedule(EventRequest(ud=0, type="Terminate"), T0)
    incarnation, events = s.document("vm-0", T0)
    v1703 = documents.scheduled_events_document(incarnation, events, "2017-03-01")
    assert [e["EventType"] for e in v1703["Events"]] == ["Freeze"]
    assert v1703["Events"][0]["Resources"] == ["_vm-0", "_vm-5", "_vm-10"]
    assert set(v1703["Events"][0]) == {"EventId", "EventStatus", "EventType", "ResourceType",
                                       "Resources", "NotBefore"}  # fmt: skip
    v1711 = documents.scheduled_events_document(incarnation, events, "2017-11-01")
    assert [e["EventType"] for e in v1711["Events"]] == ["Freeze", "Preempt"]
    v2007 = documents.scheduled_events_document(incarnation, events, "2020-07-01")
    assert [e["EventType"] for e in v2007["Events"]] == ["Freeze", "Preempt", "Terminate"]
    assert v2007["Events"][0]["DurationInSeconds"] == 5
    assert v2007["Events"][0]["Description"] == "live migration"
    assert v2007["Events"][0]["Resources"][0] == "vm-0"


def test_walk_and_text() -> None:
    doc = {"a": [{"b": "x"}, {"b": ""}], "c": {"d": True}}
    assert documents.walk(doc, ["a", "1", "b"]) == ""
    for bad in (["a", "2"], ["a", "-1"], ["A"], ["a", "0", "b", "z"]):
        with pytest.raises(documents.NotFound):
            documents.walk(doc, bad)
    assert documents.as_text(doc) == "a/\nc/"
    assert documents.as_text(True) == "true"


def test_etag_matching() -> None:
    tag = documents.etag(b"{}")
    assert documents.etag_matches(tag, tag)
    assert documents.etag_matches(f'W/{tag}, "x"', tag)
    assert documents.etag_matches(tag.strip('"'), tag)
    for other in ("0", "null", "*", '""', ""):
        assert not documents.etag_matches(other, tag)
    json.loads(documents.dumps({"k": "v"}))


# ------------------------------------------------------------------ faults and throttle


def test_fault_book_count_duration_and_precedence() -> None:
    book = FaultBook()
    book.add(FaultRequest(kind="status", status=500, count=2), T0, ["a", "b"])
    book.add(FaultRequest(kind="drop", vm="b", duration_s=10), T0, ["a", "b"])
    assert book.take("b", "instance", "GET", T0).kind == "drop"  # VM-specific first
    assert book.take("a", "instance", "GET", T0).status == 500
    assert book.take("a", "instance", "GET", T0).status == 500
    assert book.take("a", "instance", "GET", T0) is None  # count used up
    assert book.take("b", "instance", "GET", T0 + 11) is None  # expired
    assert book.list(T0 + 11) == []


def test_fault_book_slow_first_call_once_per_vm() -> None:
    book = FaultBook()
    book.add(FaultRequest(kind="slow_first_call", delay_s=60), T0, ["a", "b"])
    assert book.take("a", "instance", "GET", T0) is None
    assert book.take("a", "scheduledevents", "GET", T0) is not None
    assert book.take("a", "scheduledevents", "GET", T0) is None
    assert book.take("b", "scheduledevents", "POST", T0) is not None
    assert book.list(T0) == []


def test_document_faults_only_hit_gets() -> None:
    book = FaultBook()
    book.add(FaultRequest(kind="malformed_json"), T0, ["a"])
    assert book.take("a", "scheduledevents", "POST", T0) is None
    assert book.take("a", "scheduledevents", "GET", T0) is not None


def test_sliding_window_limiter() -> None:
    now = [0.0]
    limiter = SlidingWindowLimiter(monotonic=lambda: now[0])
    assert all(limiter.allow("a", 5) for _ in range(5))
    assert not limiter.allow("a", 5)
    assert limiter.allow("b", 5)
    now[0] = 0.999
    assert not limiter.allow("a", 5)
    now[0] = 1.0
    assert limiter.allow("a", 5)
    assert all(limiter.allow("a", 0) for _ in range(50))

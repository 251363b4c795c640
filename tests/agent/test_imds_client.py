"""The IMDS client against the emulator over real HTTP: pacing, backoff, quirks."""

from __future__ import annotations

import time

import pytest

from agent.imds import ImdsClient, ImdsMalformed, ImdsUnavailable
from imds_sim.testing import Emulator

from .conftest import CountingTransport


def client(emu: Emulator, vm: str = "vm-1", **kw: object) -> tuple[ImdsClient, CountingTransport]:
    transport = CountingTransport()
    kw.setdefault("backoff_base_s", 0.05)
    return ImdsClient(emu.vm_url(vm), transport=transport, **kw), transport  # type: ignore[arg-type]


def test_documents_etag_and_304(emulator: Emulator) -> None:
    imds, transport = client(emulator)
    meta = imds.instance()
    assert (meta.name, meta.fd, meta.ud) == ("vm-1", 1, 1)
    assert meta.address.startswith("10.")
    first = imds.scheduled_events()
    assert first.events == [] and imds.etag
    assert imds.scheduled_events() is first  # 304: the same document
    assert 304 in transport.statuses
    event = emulator.schedule(ud=1, type="Freeze")
    doc = imds.scheduled_events()
    assert doc.incarnation > first.incarnation
    ev = doc.event(event["event_id"])
    assert ev is not None and ev.not_before == event["not_before"]
    assert sorted(ev.resources) == ["vm-1", "vm-4"]


@pytest.mark.parametrize(("instance", "events"), [("2017-04-02", "2017-03-01"),
                                                  ("2017-04-02", "2017-08-01")])
def test_2017_versions(emulator: Emulator, instance: str, events: str) -> None:
    imds, _ = client(emulator, instance_api_version=instance, events_api_version=events)
    assert imds.instance().name == "vm-1"
    emulator.schedule(ud=1, type="Reboot")
    (ev,) = imds.scheduled_events().events
    assert sorted(ev.resources) == ["vm-1", "vm-4"] and ev.not_before


def test_unsupported_version_falls_back(emulator: Emulator) -> None:
    imds, _ = client(emulator, instance_api_version="2099-01-01")
    assert imds.instance().name == "vm-1"
    assert imds.instance_api_version < "2099-01-01"


@pytest.mark.parametrize("status", [429, 500, 503])
def test_backoff_then_success(emulator: Emulator, status: int) -> None:
    imds, transport = client(emulator, max_attempts=5)
    imds.scheduled_events()
    emulator.fault(kind="status", status=status, vm="vm-1", endpoint="scheduledevents", count=3)
    began = time.monotonic()
    doc = imds.scheduled_events()
    elapsed = time.monotonic() - began
    assert doc.events == []
    assert transport.count() == 1 + 4  # three faults, then the answer
    assert transport.statuses[-4:-1] == [status] * 3
    # jittered exponential backoff: 0.05 + 0.1 + 0.2 at 50-100 %, plus the pacing
    assert elapsed >= 0.17


def test_gives_up_within_budget(emulator: Emulator) -> None:
    errors: list[str] = []
    imds, transport = client(emulator, max_attempts=3, on_error=errors.append)
    emulator.fault(kind="status", status=500, vm="vm-1")
    began = time.monotonic()
    with pytest.raises(ImdsUnavailable):
        imds.scheduled_events()
    assert time.monotonic() - began < 3
    assert transport.count() == 3 and errors == ["500"] * 3
    emulator.clear_faults()
    assert imds.scheduled_events().events == []


def test_deadline_bounds_retries(emulator: Emulator) -> None:
    imds, transport = client(emulator, max_attempts=20, deadline_s=0.8, backoff_base_s=0.2)
    emulator.fault(kind="status", status=429, vm="vm-1")
    began = time.monotonic()
    with pytest.raises(ImdsUnavailable):
        imds.scheduled_events()
    assert time.monotonic() - began < 2.0
    assert transport.count() < 6


def test_refused_connection_is_retried_and_bounded() -> None:
    imds = ImdsClient("http://127.0.0.1:9", max_attempts=3, backoff_base_s=0.05)
    with pytest.raises(ImdsUnavailable) as info:
        imds.scheduled_events()
    assert info.value.code == "connect"


def test_stays_under_five_requests_per_second(emulator: Emulator) -> None:
    imds, transport = client(emulator)
    began = time.monotonic()
    for _ in range(9):
        imds.instance()
    assert time.monotonic() - began >= 1.9  # 4/s, so the emulator's 5/s never bites
    assert 429 not in transport.statuses


@pytest.mark.parametrize("kind", ["malformed_json", "wrong_shape"])
def test_malformed_document_keeps_last_good(emulator: Emulator, kind: str) -> None:
    errors: list[str] = []
    imds, _ = client(emulator, on_error=errors.append)
    emulator.schedule(ud=1, type="Reboot")
    good = imds.scheduled_events()
    emulator.fault(kind=kind, vm="vm-1", endpoint="scheduledevents", count=1)
    assert imds.scheduled_events() is good
    assert not imds.events_fresh and errors == ["malformed"]
    fresh = imds.scheduled_events()
    assert imds.events_fresh and fresh == good
    emulator.fault(kind=kind, vm="vm-1", endpoint="instance", count=1)
    with pytest.raises(ImdsMalformed):  # nothing good to fall back on yet: an error, no crash
        imds.instance()
    meta = imds.instance()
    emulator.fault(kind=kind, vm="vm-1", endpoint="instance", count=1)
    assert imds.instance() is meta and meta.name == "vm-1"


def test_first_events_call_may_be_slow(emulator: Emulator) -> None:
    imds, _ = client(emulator, timeout_s=0.3, first_call_timeout_s=5.0, max_attempts=1)
    emulator.fault(kind="slow_first_call", vm="vm-1", delay_s=1.0, real=True)
    assert imds.scheduled_events().events == []  # waited ~1 s despite the 0.3 s timeout
    emulator.fault(kind="latency", vm="vm-1", endpoint="scheduledevents", latency_s=1.0,
                   real=True, count=1)
    with pytest.raises(ImdsUnavailable) as info:
        imds.scheduled_events()  # later calls keep the short timeout
    assert info.value.code == "timeout"


def test_proxy_variables_are_ignored(emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
    monkeypatch.delenv("NO_PROXY", raising=False)
    monkeypatch.delenv("no_proxy", raising=False)
    imds = ImdsClient(emulator.vm_url("vm-1"), max_attempts=1)  # default transport
    assert imds.instance().name == "vm-1"
    assert imds.scheduled_events().events == []


def test_start_requests_starts_event_for_all_resources(emulator: Emulator) -> None:
    imds, transport = client(emulator)
    event = emulator.schedule(ud=1, type="Reboot", impact_delay_s=0)
    doc = imds.scheduled_events()
    response = imds.start_requests([event["event_id"]], doc.incarnation)
    assert response.ok
    view = emulator.event(event["event_id"])
    assert view["status"] == "Started" and view["start_cause"] == "ack"
    assert [(a["vm"], a["incarnation"]) for a in view["acks"]] == [("vm-1", doc.incarnation)]
    for vm in ("vm-1", "vm-4"):
        assert emulator.vm(vm)["down_by"] == [event["event_id"]]
    assert transport.count("POST") == 1


@pytest.mark.parametrize("topology,kind", [("flex", "flexible scale set"),
                                           ("zonal", "zonal"),
                                           ("availability-set", "availability set")])
def test_the_default_api_version_tells_the_deployment(topology: str, kind: str) -> None:
    """The agent's default instance api-version carries `virtualMachineScaleSet.id` (from
    2021-03-01), so a Flexible VM is known as one whatever its update domain shows."""
    from imds_sim.testing import running_emulator
    from registry.domains import Where, kind_of

    with running_emulator(cluster={"vms": 6, "fds": 3, "uds": 2,
                                   "topology": topology}) as emu:
        imds = ImdsClient(emu.vm_url("vm-1"))
        try:
            meta = imds.instance()
        finally:
            imds.close()
    where = Where(meta.fd, meta.ud, meta.zone, meta.scale_set, meta.flexible)
    assert kind_of(where) == kind
    assert meta.flexible is (topology == "flex")

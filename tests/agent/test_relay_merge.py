"""The pure merge rules every agent applies to `events/<id>`."""

from __future__ import annotations

from agent.imds_models import ScheduledEvent
from agent.relay import mark_gone, merge, observed
from registry.records import PlatformStatus


def _ev(status: str = "Scheduled", not_before: str = "2030-01-01T00:00:00Z",
        resources: tuple[str, ...] = ("vm-0", "vm-1")) -> ScheduledEvent:
    return ScheduledEvent.model_validate({
        "EventId": "E1", "EventType": "Reboot", "EventStatus": status,
        "Resources": list(resources), "NotBefore": not_before})


def test_observers_accumulate_and_newest_observation_wins() -> None:
    record = merge(None, observed(_ev(), 2, "vm-0", 10.0), 10.0)
    record = merge(record, observed(_ev(), 2, "vm-1", 11.0), 11.0)
    assert record.seen_by == ["vm-0", "vm-1"] and record.incarnation == 2
    assert record.incarnations == {"vm-0": 2, "vm-1": 2}
    started = merge(record, observed(_ev("Started", ""), 3, "vm-1", 12.0), 12.0)
    assert started.status == PlatformStatus.STARTED and started.started_at == 12.0
    assert started.not_before is None and started.incarnation == 3


def test_incarnations_are_per_vm_and_never_compared_across_vms() -> None:
    """Newer Resources from a VM with a low counter win; stale ones from a high counter
    lose (issue 12.6: comparing counters across VMs fed the growing-Resources hole)."""
    record = merge(None, observed(_ev(), 9, "vm-0", 10.0), 10.0)
    grown = observed(_ev(resources=("vm-0", "vm-1", "vm-5")), 2, "vm-1", 20.0)
    record = merge(record, grown, 20.0)
    assert record.resources == ["vm-0", "vm-1", "vm-5"] and record.observed_at == 20.0
    late_stale = observed(_ev(), 9, "vm-0", 15.0)  # fetched before vm-1's, written after
    assert merge(record, late_stale, 21.0).resources == ["vm-0", "vm-1", "vm-5"]
    older_of_same_vm = observed(_ev(), 1, "vm-1", 30.0)
    assert merge(record, older_of_same_vm, 30.0) is record


def test_started_never_goes_back_to_scheduled() -> None:
    record = merge(None, observed(_ev("Started", ""), 3, "vm-0", 10.0), 10.0)
    stale = merge(record, observed(_ev(), 2, "vm-2", 11.0), 11.0)
    assert stale.status == PlatformStatus.STARTED
    assert "vm-2" in stale.seen_by


def test_gone_is_undone_by_a_later_sighting_only() -> None:
    record = merge(None, observed(_ev("Started", ""), 3, "vm-0", 10.0), 10.0)
    gone = mark_gone(record, "vm-0", 4, 12.0)
    assert gone is not None and gone.status == PlatformStatus.GONE and gone.gone_at == 12.0
    assert gone.gone_by == ["vm-0"]
    stale = merge(gone, observed(_ev("Started", ""), 3, "vm-1", 12.0 - 31), 13.0)
    assert stale.status == PlatformStatus.GONE, "fetched well before the Gone: proves nothing"
    skewed = merge(gone, observed(_ev("Started", ""), 3, "vm-1", 12.0 - 20), 13.0)
    assert skewed.status == PlatformStatus.STARTED, (
        "within the agents' clock disagreement a sighting counts as newer: a VM with a "
        "fast clock must not end an event the others still see")
    again = merge(gone, observed(_ev("Started", ""), 5, "vm-1", 13.0), 13.0)
    assert again.status == PlatformStatus.STARTED and again.gone_at is None
    assert again.gone_by == []


def test_every_vm_that_misses_the_event_is_named() -> None:
    record = merge(None, observed(_ev(), 5, "vm-0", 10.0), 10.0)
    gone = mark_gone(record, "vm-1", 3, 11.0)  # another VM's counter may be lower
    assert gone.status == PlatformStatus.GONE and gone.incarnation == 5
    both = mark_gone(gone, "vm-0", 6, 12.0)
    assert both.gone_by == ["vm-1", "vm-0"] and both.gone_at == 11.0
    assert mark_gone(both, "vm-0", 7, 13.0) is both
    assert mark_gone(record, "vm-0", 5, 11.0) is record, "not a newer document of vm-0"
    assert mark_gone(record, "vm-0", None, 11.0).status == PlatformStatus.GONE, (
        "adopted after a restart: any document fetched since is newer")


def test_no_change_means_no_write() -> None:
    record = merge(None, observed(_ev(), 2, "vm-0", 10.0), 10.0)
    assert merge(record, observed(_ev(), 2, "vm-0", 20.0), 20.0) is record
